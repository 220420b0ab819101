/**
 * scheduler/queue-runner.ts — decides what is delivered now, and runs it.
 *
 * A run picks its messages from the queue's in-memory index without reading
 * an envelope (scheduler/candidates.ts: only messages waiting for a domain
 * the run may serve or must count, in priority order across the whole
 * queue); before the start-up walk has completed the index it walks the
 * store in chunks instead. For each message it routes every pending
 * recipient, keeps those that may be attempted for this trigger
 * (routing/may-attempt.ts) and are due, groups them by next hop and hands
 * each hop to the deliverer (connections per next hop across concurrent
 * runs: scheduler/destinations.ts; all hops together at most
 * queue.maxQueueChildren). The envelope is read under the message's lock
 * (admin commands wait); results are folded in (scheduler/apply-results.ts)
 * and written back before the lock is released; notices (DSNs) are queued
 * before the original is removed.
 */
import type { Envelope } from '../queue/envelope.js';
import type { Located } from '../queue/queue.js';
import type { QueueId } from '../queue/queue-id.js';
import { matches } from '../queue/select.js';
import { domainOf } from '../intake/address.js';
import { route as routeOf, type Route } from '../routing/route.js';
import { mayAttempt, type Trigger } from '../routing/may-attempt.js';
import { applyResults, type AttemptResult } from './apply-results.js';
import { isDue } from './next-attempt.js';
import { outcomeOf } from '../delivery/classify.js';
import { resultLogFields, tally } from './tally.js';
import type { Job } from '../delivery/deliverer.js';
import type { Target } from '../delivery/resolver.js';
import type { SessionEvent } from '../delivery/smtp-session.js';
import { JobQueue } from './job-queue.js';
import { candidatesFromIndex, type Candidate } from './candidates.js';
import { Destinations } from './destinations.js';
import { MailError } from '../errors.js';

const CHUNK = 1000;

export type { RunEvent, RunOptions, RunSummary, RunnerDeps } from './run-types.js';
import type { RunOptions, RunSummary, RunnerDeps } from './run-types.js';

interface HopState {
  jobs: JobQueue<Job>;
  done: Promise<void>;
  /** Jobs handed to the hop and not yet answered: if the hop fails, they are deferred (and unlocked) here. */
  open: Set<Job>;
}

/** A message a run looks at: its candidate view, and the envelope when it was read already. */
interface Picked {
  c: Candidate;
  loc?: Located;
  version?: number;
}

/** Someone asked for this run (an operator's flush, an ETRN): retry times and suspended hops do not hold it back. */
const isExplicit = (t: Trigger) => t.kind === 'flush' || t.kind === 'etrn';

interface RouteDecision {
  rt: Route;
  may: boolean;
  waitsForLink: boolean;
}

interface RunState {
  opts: RunOptions;
  summary: RunSummary;
  /** By next hop (as routes write it), and the same hops by the addresses they reach. */
  hops: Map<string, HopState>;
  hopsByTarget: Map<string, HopState>;
  locked: Map<QueueId, { pending: number; release: () => void }>;
  results: Map<QueueId, AttemptResult[]>;
  jobsPerGroup?: Map<string, number>;
}

export class QueueRunner {
  /** Per next hop across runs: connection slots, and hops found dead (scheduler/destinations.ts). */
  private readonly destinations: Destinations;

  constructor(private readonly deps: RunnerDeps) {
    this.destinations = new Destinations(deps.config().queue.maxQueueChildren, deps.now);
  }

  private groupRunners(name: string): number {
    return this.deps.config().queue.groups.find((g) => g.name === name)?.runners ?? 1;
  }

  private readonly active = new Set<Promise<RunSummary>>();

  /** Set by stop(): runs hand out no new message; what is on a connection finishes. */
  private stopping = false;

  /** Resolves when no run is going on (for a clean stop). */
  async idle(): Promise<void> {
    while (this.active.size) await Promise.allSettled([...this.active]);
  }

  /** A clean stop: no new deliveries; resolves when those in flight are written down. */
  stop(): Promise<void> {
    this.stopping = true;
    return this.idle();
  }

  run(opts: RunOptions): Promise<RunSummary> {
    const p = this.runOnce(opts);
    this.active.add(p);
    void p.finally(() => this.active.delete(p)).catch(() => undefined);
    return p;
  }

  private async runOnce(opts: RunOptions): Promise<RunSummary> {
    const summary: RunSummary = { messages: 0, delivered: 0, deferred: 0, failed: 0, waiting: 0, connections: 0, ...(opts.dryRun ? { plan: [] } : {}) };
    const run: RunState = { opts, summary, hops: new Map(), hopsByTarget: new Map(), locked: new Map(), results: new Map() };
    try {
      for await (const batch of this.batches(run)) {
        if (this.stopping) break;
        this.deps.log.debug({ messages: batch.length }, 'run: chunk read');
        await this.dispatch(batch, run);
        if (opts.planLimit !== undefined && (summary.plan?.length ?? 0) >= opts.planLimit) break;
      }
    } finally {
      const hops = new Set(run.hops.values());
      for (const hop of hops) hop.jobs.close();
      await Promise.all([...hops].map((h) => h.done));
    }
    if (summary.loadQueued && !opts.ids) this.deps.log.info({ trigger: opts.trigger.kind, loadQueued: summary.loadQueued }, 'run: messages left for a later run because the load is above queueLA');
    return summary;
  }

  /**
   * What the run looks at, in chunks: the messages asked for; else, once the
   * queue's index is complete, the messages waiting for a domain this run
   * may serve or must count (no envelope read); else every queued envelope.
   */
  private async *batches(run: RunState): AsyncIterable<Picked[]> {
    const queue = this.deps.queue;
    if (run.opts.ids) {
      const out: Picked[] = [];
      for (const id of run.opts.ids) {
        const loc = await queue.find(id);
        if (loc?.place.state === 'queued') out.push({ c: loc.env, loc, version: queue.version(id) });
      }
      yield out;
      return;
    }
    if (queue.index.complete) {
      const decide = this.routeDecisions(run);
      const all = candidatesFromIndex(queue.index, (domain) => {
        if (run.opts.domainFilter && !run.opts.domainFilter(domain)) return false;
        const d = decide(domain);
        return d.may || d.waitsForLink || Boolean(run.opts.onEvent);
      });
      for (let i = 0; i < all.length; i += CHUNK) yield all.slice(i, i + CHUNK).map((c) => ({ c, version: queue.version(c.id) }));
      return;
    }
    let chunk: Picked[] = [];
    for await (const loc of queue.walk(['queued'])) {
      chunk.push({ c: loc.env, loc, version: loc.version });
      if (chunk.length < CHUNK) continue;
      yield chunk;
      chunk = [];
    }
    if (chunk.length) yield chunk;
  }

  /** Route and may-attempt per recipient domain, computed once per chunk (the link may come or go between chunks). */
  private routeDecisions(run: RunState): (domain: string) => RouteDecision {
    const { opts } = run;
    const config = this.deps.config();
    const table = this.deps.table();
    const policy = {
      deliveryMode: opts.deliveryMode ?? config.deliveryMode as 'interactive' | 'background' | 'queue' | 'deferred',
      holdExpensive: config.holdExpensive,
      linkAvailable: (opts.dryRun && opts.assumeLink) || this.deps.linkAvailable(opts.trigger),
      permanentLink: this.deps.permanentLink(),
    };
    const memo = new Map<string, RouteDecision>();
    return (domain) => {
      let d = memo.get(domain);
      if (!d) {
        const rt = routeOf(domain, table);
        const waitsForLink = rt.link && !rt.holdUntilEtrn && !policy.linkAvailable && !policy.permanentLink;
        memo.set(domain, (d = { rt, may: mayAttempt(rt, opts.trigger, policy), waitsForLink }));
      }
      return d;
    };
  }

  /** Whether the run takes this message at all (group, runners, selection, retry time, group job limit). */
  private eligible(c: Candidate, run: RunState, now: number): boolean {
    const { opts } = run;
    /** The request named what it wants (ETRN, flush -qR/-qS/-qI/-qG). */
    const named = opts.trigger.kind === 'etrn' || (opts.trigger.kind === 'flush' && opts.trigger.names);
    if (opts.group && c.group !== opts.group) return false;
    // runners 0: never by a scheduled run, but a flush or ETRN that asks for it gets it (SPEC §7: someone asked)
    if (!named && this.groupRunners(c.group) === 0) return false;
    if (opts.selection && !matches(opts.selection, c)) return false;
    // fresh intake goes at once; everything else waits for its retry time unless asked for explicitly
    if (!isExplicit(opts.trigger) && !opts.ids && !isDue(c.nextAttempt, now)) return false;
    const limit = this.deps.config().queue.groups.find((g) => g.name === c.group)?.jobs;
    return limit === undefined || (run.jobsPerGroup?.get(c.group) ?? 0) < limit;
  }

  /** The message's pending recipients that may go now, by next hop; the others are counted and reported. */
  private byHop(c: Candidate, run: RunState, decide: (domain: string) => RouteDecision): Map<string, { route: Route; rcpts: Array<{ address: string }> }> {
    const { opts, summary } = run;
    const out = new Map<string, { route: Route; rcpts: Array<{ address: string }> }>();
    for (const r of c.recipients) {
      if (r.state !== 'pending') continue;
      if (opts.recipientFilter && !opts.recipientFilter(r.address, c.group)) continue;
      const d = decide(domainOf(r.address));
      if (!d.may) {
        if (d.waitsForLink) summary.waiting++;
        opts.onEvent?.({ type: 'skip', qid: c.id, to: r.address, reason: d.rt.holdUntilEtrn ? 'held until ETRN' : d.waitsForLink ? 'waits for the link' : 'not now for this route' });
        continue;
      }
      const entry = out.get(d.rt.nexthop) ?? { route: d.rt, rcpts: [] };
      entry.rcpts.push(r);
      out.set(d.rt.nexthop, entry);
    }
    return out;
  }

  /** Routes a chunk (in priority order) and hands its jobs to the hops, opening a hop when new. */
  private async dispatch(batch: Picked[], run: RunState): Promise<void> {
    const { opts, summary } = run;
    const now = this.deps.now();
    const decide = this.routeDecisions(run);
    batch.sort((a, b) => a.c.priority - b.c.priority);
    // a dry run is gated too: demand mode's check must not dial for mail the load would hold back
    const gate = isExplicit(opts.trigger) ? null : this.deps.loadGate?.() ?? null;
    for (const picked of batch) {
      if (this.stopping) break;
      const c = picked.c;
      if (!this.eligible(c, run, now)) continue;
      const hops = this.byHop(c, run, decide);
      if (!hops.size) continue;
      // something would go now: the load decides whether it does (sendmail's shouldqueue)
      const busy = gate?.(c.priority);
      if (busy && opts.dryRun) continue;
      if (busy) {
        summary.loadQueued = (summary.loadQueued ?? 0) + 1;
        this.deps.onLoadQueued?.();
        this.deps.log[opts.ids ? 'info' : 'debug']({ qid: c.id, reason: busy }, 'queued for a later run: load too high');
        opts.onEvent?.({ type: 'skip', qid: c.id, to: '', reason: busy });
        continue;
      }
      if (opts.dryRun) {
        for (const { route: rt, rcpts } of hops.values()) {
          const link = rt.link && !this.deps.permanentLink();
          if (opts.planLinkOnly && !link) continue;
          for (const r of rcpts) summary.plan!.push({ qid: c.id, to: r.address, nexthop: rt.nexthop, link });
        }
        if (opts.planLimit !== undefined && summary.plan!.length >= opts.planLimit) return;
        continue;
      }
      await this.take(picked, hops, run);
    }
  }

  /** Locks the message, reads it as it is now, and hands its jobs to the hops. */
  private async take(picked: Picked, hops: Map<string, { route: Route; rcpts: Array<{ address: string }> }>, run: RunState): Promise<void> {
    const { c } = picked;
    // the lock keeps admin commands and other runs out while the message is being delivered
    const release = await this.deps.queue.lock(c.id);
    let fresh: Located | null;
    try {
      // read now unless it is the envelope just read and unchanged since
      fresh = picked.loc && this.deps.queue.version(c.id) === picked.version ? picked.loc : await this.deps.queue.find(c.id);
    } catch (err) {
      this.deps.log.error({ qid: c.id, err }, 'cannot read message for delivery');
      fresh = null;
    }
    if (!fresh || fresh.place.state !== 'queued' || fresh.env.attempts !== c.attempts) {
      release();
      return;
    }
    const env = fresh.env;
    run.jobsPerGroup ??= new Map();
    run.jobsPerGroup.set(c.group, (run.jobsPerGroup.get(c.group) ?? 0) + 1);
    run.summary.messages++;
    run.locked.set(c.id, { pending: hops.size, release });
    for (const [nexthop, { route: rt, rcpts }] of hops) {
      const job: Job = { env, mailer: rt.mailer, rcpts: env.recipients.filter((x) => x.state === 'pending' && rcpts.some((r) => r.address === x.address)) };
      const hop = await this.hop(run, nexthop, rt);
      hop.open.add(job);
      await hop.jobs.push(job);
    }
  }

  /**
   * The hop a next hop's jobs go to. Looked up once per run; next hops whose
   * addresses are the same (two routes to one relay, a name and its IP) share
   * one hop, so their messages share connections.
   */
  private async hop(run: RunState, nexthop: string, rt: Route): Promise<HopState> {
    const existing = run.hops.get(nexthop);
    if (existing) return existing;
    let resolved: Target[] | Error;
    try {
      resolved = await this.deps.deliverer.resolve(rt);
    } catch (err) {
      resolved = err as Error;
    }
    const key = resolved instanceof Error ? nexthop : this.deps.deliverer.hopKey(resolved);
    const same = run.hopsByTarget.get(key);
    if (same) {
      run.hops.set(nexthop, same);
      return same;
    }
    const jobs = new JobQueue<Job>(CHUNK);
    const open = new Set<Job>();
    const onEvent = run.opts.onEvent;
    // a hop found dead by an earlier run waits for its retry time, unless someone asked (flush, ETRN)
    const suspended = resolved instanceof Error || isExplicit(run.opts.trigger) ? null : this.destinations.suspended(key);
    const outcome = { connections: 0, delivered: 0, attempted: 0 };
    const destinations = this.destinations;
    const runners = run.opts.group ? this.groupRunners(run.opts.group) : 0;
    const done = this.deps.deliverer.deliverHop(rt, jobs, {
      // the hop's concurrency as it stands (it grows while the hop answers); a queue group's own run: at most its runners
      get connections() {
        const limit = destinations.limit(key);
        return run.opts.group ? Math.min(limit, Math.max(1, runners)) : limit;
      },
      resolved: suspended ? new MailError(451, '4.4.1', suspended) : resolved,
      dialRetry: rt.link ? run.opts.dialRetry : undefined,
      // a run outside a window, or one the window outlives, asks again before every new connection (ETRN's held mail: the customer's line is up)
      mayConnect: rt.link && !rt.holdUntilEtrn ? () => this.deps.linkAvailable(run.opts.trigger) : undefined,
      acquire: () => this.destinations.acquire(key),
      onConnect: (ok, alive) => this.destinations.feedback(key, ok, alive),
      onResult: (job, res) => {
        open.delete(job);
        for (const r of res) if (!r.waitsForLink) (outcome.attempted++, outcomeOf(r.code) === 'delivered' && outcome.delivered++);
        return this.onResult(run, job, res);
      },
      onEvent: onEvent ? (e: SessionEvent) => onEvent({ type: 'dialogue', dir: e.dir, line: e.line, conn: e.conn }) : undefined,
    }).then((r) => {
      if (!(resolved instanceof Error) && !suspended) {
        this.destinations.record(key, { ...outcome, connections: r.connections }, this.deps.config().queue.minQueueAge, `no address of ${nexthop} answered`);
      }
      run.summary.connections += r.connections;
      if (r.firstPacket !== undefined) run.summary.firstPacket = Math.min(run.summary.firstPacket ?? Infinity, r.firstPacket);
      if (r.lastPacket !== undefined) run.summary.lastPacket = Math.max(run.summary.lastPacket ?? 0, r.lastPacket);
    }, async (err) => {
      // a lock is a scope: no error may keep a message locked, nor the walk waiting on a queue no one reads
      this.deps.log.error({ nexthop, err }, 'delivery to a next hop failed');
      const defer = (job: Job) => this.onResult(run, job, job.rcpts.map((r) => ({ address: r.address, code: 451, text: `4.3.0 Internal error delivering to ${nexthop}: ${(err as Error).message}` })));
      for (const job of [...open]) {
        open.delete(job);
        await defer(job).catch(() => undefined);
      }
      for (let job = await jobs.next(); job; job = await jobs.next()) await defer(job).catch(() => undefined);
    });
    const hop = { jobs, done, open };
    run.hops.set(nexthop, hop);
    run.hopsByTarget.set(key, hop);
    return hop;
  }

  /** Results of one message from several hops are folded in once the last hop is done with it. */
  private async onResult(run: RunState, job: Job, res: AttemptResult[]): Promise<void> {
    const id = job.env.id;
    run.results.set(id, [...(run.results.get(id) ?? []), ...res]);
    for (const r of res) {
      const outcome = outcomeOf(r.code);
      run.opts.onEvent?.({ type: 'result', qid: id, to: r.address, code: r.code, text: r.text, outcome, relay: r.relay });
      this.deps.log.info(resultLogFields(job, r, this.deps.now()), outcome);
    }
    const lock = run.locked.get(id)!;
    if (--lock.pending > 0) return;
    try {
      await this.record(job.env, run.results.get(id)!, run.summary);
    } catch (err) {
      this.deps.log.error({ qid: id, err }, 'cannot record delivery results');
    } finally {
      run.results.delete(id);
      run.locked.delete(id);
      lock.release();
    }
  }

  /** Folds one message's results into its envelope, queues notices, writes the envelope back. */
  private async record(env: Envelope, res: AttemptResult[], summary: RunSummary): Promise<void> {
    const c = this.deps.config().queue;
    const applied = applyResults(env, res, { now: this.deps.now(), minQueueAge: c.minQueueAge, queueWarn: c.queueWarn, queueReturn: c.queueReturn });
    const { delivered, waiting } = tally(res, summary);
    // bounced: failed now, or deferred past queueReturn
    this.deps.onOutcomes?.({ delivered, bounced: applied.failed.length, deferred: Math.max(0, res.length - waiting - delivered - applied.failed.length) });
    for (const [kind, notices] of [['failure', applied.failed], ['delay', applied.delayed], ['success', applied.relayed]] as const) {
      if (!notices.length) continue;
      if (env.sender === '') {
        this.deps.log.warn({ qid: env.id, to: notices.map((n) => n.address), kind }, 'notice about a message with the null sender: dropped (never bounce a bounce)');
        continue;
      }
      await this.deps.notify(env, notices, kind);
    }
    if (applied.done) await this.deps.queue.finish(applied.env);
    else await this.deps.queue.update(applied.env);
  }
}
