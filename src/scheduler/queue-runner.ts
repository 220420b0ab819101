/**
 * scheduler/queue-runner.ts — decides what is delivered now, and runs it.
 *
 * A run walks the queue in chunks (a restart with 100,000 messages starts
 * delivering after the first chunk, never after reading everything), sorts
 * each chunk by priority, routes every pending recipient, keeps those that
 * may be attempted for this trigger (routing/may-attempt.ts) and are due,
 * groups them by next hop and hands each hop to the deliverer with at most
 * DESTINATION_CONNECTIONS connections per next hop (across concurrent runs),
 * all hops together at most queue.maxQueueChildren. Each message is locked in the queue while it is
 * being delivered (admin commands wait), its results are folded into the
 * envelope (scheduler/apply-results.ts) and written back before the lock is
 * released; notices (DSNs) are queued before the original is removed.
 */
import type { Envelope } from '../queue/envelope.js';
import type { Located } from '../queue/queue.js';
import type { QueueId } from '../queue/queue-id.js';
import { matches } from '../queue/select.js';
import { domainOf } from '../intake/address.js';
import { route as routeOf, type Route } from '../routing/route.js';
import { mayAttempt } from '../routing/may-attempt.js';
import { applyResults, type AttemptResult } from './apply-results.js';
import { isDue } from './next-attempt.js';
import { enhancedCode, outcomeOf } from '../delivery/classify.js';
import type { Job } from '../delivery/deliverer.js';
import type { Target } from '../delivery/resolver.js';
import type { SessionEvent } from '../delivery/smtp-session.js';
import { JobQueue } from './job-queue.js';
import { Slots } from './slots.js';

export const DESTINATION_CONNECTIONS = 4;
const CHUNK = 1000;

export type { RunEvent, RunOptions, RunSummary, RunnerDeps } from './run-types.js';
import type { RunOptions, RunSummary, RunnerDeps } from './run-types.js';

interface HopState {
  jobs: JobQueue<Job>;
  done: Promise<void>;
  /** Jobs handed to the hop and not yet answered: if the hop fails, they are deferred (and unlocked) here. */
  open: Set<Job>;
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
  private readonly slots: Slots;
  /** Connections per next hop, across all runs at once (an intake run, a window, an ETRN flush). */
  private readonly hopSlots = new Map<string, Slots>();

  constructor(private readonly deps: RunnerDeps) {
    this.slots = new Slots(deps.config().queue.maxQueueChildren);
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
    let chunk: Located[] = [];
    const flush = async () => {
      const batch = chunk;
      chunk = [];
      if (batch.length) {
        this.deps.log.debug({ messages: batch.length }, 'run: chunk read');
        await this.dispatch(batch, run);
        this.deps.log.debug({ messages: batch.length }, 'run: chunk handed to the hops');
      }
    };
    try {
      if (opts.ids) {
        for (const id of opts.ids) {
          const loc = await this.deps.queue.find(id);
          if (loc?.place.state === 'queued') chunk.push({ ...loc, version: this.deps.queue.version(id) });
        }
      } else {
        for await (const loc of this.deps.queue.walk(['queued'])) {
          if (this.stopping) break;
          chunk.push(loc);
          if (chunk.length >= CHUNK) await flush();
          if (opts.planLimit !== undefined && (summary.plan?.length ?? 0) >= opts.planLimit) break;
        }
      }
      await flush();
    } finally {
      const hops = new Set(run.hops.values());
      for (const hop of hops) hop.jobs.close();
      await Promise.all([...hops].map((h) => h.done));
    }
    if (summary.loadQueued && !opts.ids) this.deps.log.info({ trigger: opts.trigger.kind, loadQueued: summary.loadQueued }, 'run: messages left for a later run because the load is above queueLA');
    return summary;
  }

  /** Routes a chunk (in priority order) and hands its jobs to the hops, opening a hop when new. */
  private async dispatch(locs: Located[], run: RunState): Promise<void> {
    const { opts, summary } = run;
    const now = this.deps.now();
    const config = this.deps.config();
    const table = this.deps.table();
    const policy = {
      deliveryMode: opts.deliveryMode ?? config.deliveryMode as 'interactive' | 'background' | 'queue' | 'deferred',
      holdExpensive: config.holdExpensive,
      linkAvailable: (opts.dryRun && opts.assumeLink) || this.deps.linkAvailable(opts.trigger),
      permanentLink: this.deps.permanentLink(),
    };
    const explicit = opts.trigger.kind === 'flush' || opts.trigger.kind === 'etrn';
    /** The request named what it wants (ETRN, flush -qR/-qS/-qI/-qG). */
    const named = opts.trigger.kind === 'etrn' || (opts.trigger.kind === 'flush' && opts.trigger.names);
    locs.sort((a, b) => a.env.priority - b.env.priority);
    // a dry run is gated too: demand mode's check must not dial for mail the load would hold back
    const gate = explicit ? null : this.deps.loadGate?.() ?? null;
    for (const loc of locs) {
      if (this.stopping) break;
      const candidate = loc.env;
      if (opts.group && candidate.group !== opts.group) continue;
      // runners 0: never by a scheduled run, but a flush or ETRN that asks for it gets it (SPEC §7: someone asked)
      if (!named && this.groupRunners(candidate.group) === 0) continue;
      if (opts.selection && !matches(opts.selection, candidate)) continue;
      // fresh intake goes at once; everything else waits for its retry time unless asked for explicitly
      if (!explicit && !opts.ids && !isDue(candidate.nextAttempt, now)) continue;
      const limit = config.queue.groups.find((g) => g.name === candidate.group)?.jobs;
      if (limit !== undefined && (run.jobsPerGroup?.get(candidate.group) ?? 0) >= limit) continue;
      const byHop = new Map<string, { route: Route; rcpts: Envelope['recipients'] }>();
      for (const r of candidate.recipients) {
        if (r.state !== 'pending') continue;
        if (opts.recipientFilter && !opts.recipientFilter(r.address, candidate.group)) continue;
        const rt = routeOf(domainOf(r.address), table);
        if (!mayAttempt(rt, opts.trigger, policy)) {
          const waitsForLink = rt.link && !rt.holdUntilEtrn && !policy.linkAvailable && !policy.permanentLink;
          if (waitsForLink) summary.waiting++;
          opts.onEvent?.({ type: 'skip', qid: candidate.id, to: r.address, reason: rt.holdUntilEtrn ? 'held until ETRN' : waitsForLink ? 'waits for the link' : 'not now for this route' });
          continue;
        }
        const entry = byHop.get(rt.nexthop) ?? { route: rt, rcpts: [] };
        entry.rcpts.push(r);
        byHop.set(rt.nexthop, entry);
      }
      if (!byHop.size) continue;
      // something would go now: the load decides whether it does (sendmail's shouldqueue)
      const busy = gate?.(candidate.priority);
      if (busy && opts.dryRun) continue;
      if (busy) {
        summary.loadQueued = (summary.loadQueued ?? 0) + 1;
        this.deps.onLoadQueued?.();
        this.deps.log[opts.ids ? 'info' : 'debug']({ qid: candidate.id, reason: busy }, 'queued for a later run: load too high');
        opts.onEvent?.({ type: 'skip', qid: candidate.id, to: '', reason: busy });
        continue;
      }
      if (opts.dryRun) {
        for (const { route: rt, rcpts } of byHop.values()) {
          const link = rt.link && !policy.permanentLink;
          if (opts.planLinkOnly && !link) continue;
          for (const r of rcpts) summary.plan!.push({ qid: candidate.id, to: r.address, nexthop: rt.nexthop, link });
        }
        if (opts.planLimit !== undefined && summary.plan!.length >= opts.planLimit) return;
        continue;
      }
      // the lock keeps admin commands and other runs out while the message is being delivered
      const release = await this.deps.queue.lock(candidate.id);
      let fresh: Located | null;
      try {
        // changed since it was read (another run, an admin command): read it again
        fresh = this.deps.queue.version(candidate.id) === loc.version ? loc : await this.deps.queue.reread(loc);
      } catch (err) {
        this.deps.log.error({ qid: candidate.id, err: (err as Error).message }, 'cannot read message for delivery');
        fresh = null;
      }
      if (!fresh || fresh.place.state !== 'queued' || fresh.env.attempts !== candidate.attempts) {
        release();
        continue;
      }
      run.jobsPerGroup ??= new Map();
      run.jobsPerGroup.set(candidate.group, (run.jobsPerGroup.get(candidate.group) ?? 0) + 1);
      summary.messages++;
      run.locked.set(candidate.id, { pending: byHop.size, release });
      for (const [nexthop, { route: rt, rcpts }] of byHop) {
        const job: Job = { env: fresh.env, mailer: rt.mailer, rcpts: rcpts.filter((r) => fresh.env.recipients.some((x) => x.address === r.address && x.state === 'pending')) };
        const hop = await this.hop(run, nexthop, rt);
        hop.open.add(job);
        await hop.jobs.push(job);
      }
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
    const done = this.deps.deliverer.deliverHop(rt, jobs, {
      connections: DESTINATION_CONNECTIONS,
      resolved,
      dialRetry: rt.link ? run.opts.dialRetry : undefined,
      // a run outside a window, or one the window outlives, asks again before every new connection (ETRN's held mail: the customer's line is up)
      mayConnect: rt.link && !rt.holdUntilEtrn ? () => this.deps.linkAvailable(run.opts.trigger) : undefined,
      acquire: async () => {
        // always the hop's slot first, then the global one: one order, no deadlock
        let hop = this.hopSlots.get(key);
        if (!hop) this.hopSlots.set(key, (hop = new Slots(DESTINATION_CONNECTIONS)));
        const releaseHop = await hop.acquire();
        const releaseAll = await this.slots.acquire();
        return () => {
          releaseAll();
          releaseHop();
          if (hop!.isIdle && this.hopSlots.get(key) === hop) this.hopSlots.delete(key);
        };
      },
      onResult: (job, res) => {
        open.delete(job);
        return this.onResult(run, job, res);
      },
      onEvent: onEvent ? (e: SessionEvent) => onEvent({ type: 'dialogue', dir: e.dir, line: e.line, conn: e.conn }) : undefined,
    }).then((r) => {
      run.summary.connections += r.connections;
      if (r.firstPacket !== undefined) run.summary.firstPacket = Math.min(run.summary.firstPacket ?? Infinity, r.firstPacket);
      if (r.lastPacket !== undefined) run.summary.lastPacket = Math.max(run.summary.lastPacket ?? 0, r.lastPacket);
    }, async (err) => {
      // a lock is a scope: no error may keep a message locked, nor the walk waiting on a queue no one reads
      this.deps.log.error({ nexthop, err: (err as Error).message }, 'delivery to a next hop failed');
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
      this.deps.log.info({
        qid: id, to: r.address, delay: Math.round((this.deps.now() - Date.parse(job.env.arrivalTime)) / 1000),
        xdelay: job.xdelay !== undefined ? job.xdelay / 1000 : undefined, mailer: job.mailer,
        relay: r.relay, dsn: enhancedCode(r.code, r.text), stat: `${outcome === 'delivered' ? 'Sent' : outcome === 'failed' ? 'Failed' : 'Deferred'} (${r.code} ${r.text})`,
      }, outcome);
    }
    const lock = run.locked.get(id)!;
    if (--lock.pending > 0) return;
    try {
      await this.record(job.env, run.results.get(id)!, run.summary);
    } catch (err) {
      this.deps.log.error({ qid: id, err: (err as Error).message }, 'cannot record delivery results');
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
    let delivered = 0;
    let waiting = 0;
    for (const r of res) {
      const o = outcomeOf(r.code);
      if (r.waitsForLink) {
        summary.waiting++;
        waiting++;
      } else if (o === 'delivered') {
        summary.delivered++;
        delivered++;
      } else if (o === 'failed') summary.failed++;
      else summary.deferred++;
    }
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
