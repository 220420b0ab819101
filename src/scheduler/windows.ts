/**
 * scheduler/windows.ts — flush windows (SPEC §4): one intended link session
 * each. A window asks what link-route mail is due (one walk of the queue),
 * takes a link session from the link's owner (link/link-owner.ts: it dials
 * only when the window wants the link — due link mail, or a poll window
 * with ETRN to send), prefetches the DNS answers the due mail needs,
 * delivers, sends ETRN when it has the link, lingers while the ISP pushes
 * inbound mail, and closes the session (hangup exactly once if it dialed).
 *
 * Triggers that come while a window is open join it (one more delivery
 * pass) instead of opening a second one; a trigger during the previous
 * window's hangup waits for it. Every window ends with one record (the log
 * line "window", spool/windows.log through onWindow).
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { LinkOwner } from '../link/link-owner.js';
import { etrnStartedFlush, lingerLeft, windowWantsLink } from '../link/link-gate.js';
import type { WindowRecord } from '../link/window-history.js';
import type { Selection } from '../queue/select.js';
import type { Trigger } from '../routing/may-attempt.js';
import type { EtrnResult } from '../etrn/etrn-client.js';
import type { QueueRunner, RunEvent, RunSummary } from './queue-runner.js';

export type { WindowRecord };

export interface WindowRequest {
  cause: string;
  /** A poll window (etrn.poll): it gets the link to send ETRN even with no mail due. */
  poll?: boolean;
  selection?: Selection;
  onEvent?: (e: RunEvent) => void;
}

export interface WindowDeps {
  runner: QueueRunner;
  config: () => Config;
  link: LinkOwner;
  log: Logger;
  now: () => number;
  /** Sends ETRN for etrn.domains to etrn.relay; null when none is configured. */
  etrn: () => Promise<EtrnResult | null>;
  /** Warms the resolver for these names (addresses, and MX where `mx`) in one burst. */
  prefetch?: (names: Array<{ name: string; mx: boolean }>) => Promise<void>;
  /** Told about every window when it ends (metrics, history). */
  onWindow?: (record: WindowRecord) => void;
  /** Whether any route may need a lookup (else prefetching has nothing to do and is skipped). */
  mayNeedDns?: () => boolean;
}

interface OpenWindow {
  passes: WindowRequest[];
  done: Promise<WindowRecord>;
  /** Wakes a lingering window when a trigger joins it. */
  wake: (() => void) | null;
}

/** An operator's flush tries matching mail whatever its retry time; other windows only what is due. */
function triggerOf(pass: WindowRequest): Trigger {
  return pass.cause === 'operator' ? { kind: 'flush', names: (pass.selection?.selectors.length ?? 0) > 0 } : { kind: 'run' };
}

/** Pure: the host names a plan's next hops need looked up: `[name]` its addresses only, a bare name its MX too. */
export function namesToPrefetch(plan: ReadonlyArray<{ nexthop: string }>): Array<{ name: string; mx: boolean }> {
  const names = new Map<string, boolean>();
  for (const p of plan) for (const h of p.nexthop.replace(/^\w+:/, '').split(',')) {
    const host = h.replace(/:\d+$/, '');
    const name = host.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(name) === 0) names.set(name, (names.get(name) ?? false) || !host.startsWith('['));
  }
  return [...names].map(([name, mx]) => ({ name, mx }));
}

export class Windows {
  private open: OpenWindow | null = null;
  /** The previous window's close (hangup): the next window starts after it. */
  private closing: Promise<void> = Promise.resolve();
  last: WindowRecord | null = null;
  private stopping = false;

  constructor(private readonly deps: WindowDeps) {}

  /** A daemon stop: no linger, no dial wait; resolves once the open window has closed (hangup included). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.deps.link.abortDial();
    const w = this.open;
    w?.wake?.();
    await w?.done.catch(() => undefined);
    await this.closing;
  }

  get isOpen(): boolean {
    return this.open !== null;
  }

  /** The runner's question for a trigger (SPEC §3, §5), answered by the link's owner. */
  mayUseLink(trigger: Trigger): boolean {
    return this.deps.link.mayDeliver(trigger.kind === 'intake' ? 'intake' : 'window');
  }

  /** Whether windows send ETRN at all (etrn.mode odmr: the ODMR session, odmr/client.ts, is the ETRN step). */
  private sendsEtrn(): boolean {
    const c = this.deps.config();
    return c.etrn.relay.length > 0 && c.etrn.domains.length > 0;
  }

  /** Opens a window, or joins the open one; resolves when the window closes. */
  request(req: WindowRequest): Promise<WindowRecord> {
    if (this.stopping) return Promise.reject(new Error('quietlink is stopping: no new flush window'));
    if (this.open) {
      this.open.passes.push(req);
      this.open.wake?.();
      this.deps.log.info({ cause: req.cause }, 'window: trigger joins the open window');
      return this.open.done;
    }
    const w: OpenWindow = { passes: [req], done: Promise.resolve(null as unknown as WindowRecord), wake: null };
    this.open = w;
    w.done = this.closing.then(() => this.run(w));
    return w.done;
  }

  /** Runs the passes that are waiting (joined triggers); adds their figures to total. */
  private async runPasses(w: OpenWindow, total: RunSummary, wan: { first: number | null; last: number | null }, causes: Set<string>): Promise<void> {
    for (let pass = w.passes.shift(); pass; pass = w.passes.shift()) {
      const joined = causes.size > 0;
      causes.add(pass.cause);
      this.deps.link.refresh();
      // a trigger that joined a window without the link (a poll, new link mail) gets it now
      if (joined && !this.stopping && !this.deps.link.windowHasLink() && (await this.wantsLink(pass))) await this.deps.link.open(true);
      const s = await this.deps.runner.run({
        trigger: triggerOf(pass), selection: pass.selection, onEvent: pass.onEvent,
        dialRetry: (what) => this.deps.link.dialRetry(what),
      });
      if (s.firstPacket !== undefined && this.deps.link.windowHasLink()) {
        wan.first = Math.min(wan.first ?? Infinity, s.firstPacket);
        wan.last = Math.max(wan.last ?? 0, s.lastPacket ?? s.firstPacket);
      }
      for (const k of ['messages', 'delivered', 'deferred', 'failed', 'connections'] as const) total[k] += s[k];
      total.waiting = s.waiting;
    }
  }

  /** The link-route mail a pass would send (one walk; a yes/no question stops at the first). */
  private planOf(pass: WindowRequest, limit?: number): Promise<RunSummary> {
    return this.deps.runner.run({ trigger: triggerOf(pass), selection: pass.selection, dryRun: true, assumeLink: true, planLinkOnly: true, planLimit: limit });
  }

  /** Whether a pass wants the link: a poll with ETRN to send, or link-route mail due. */
  private async wantsLink(pass: WindowRequest): Promise<boolean> {
    if (pass.poll && this.sendsEtrn()) return true;
    return Boolean((await this.planOf(pass, 1)).plan?.length);
  }

  private async run(w: OpenWindow): Promise<WindowRecord> {
    const { link, log } = this.deps;
    const c = this.deps.config();
    const startMs = this.deps.now();
    const inboundAtStart = link.inboundFacts().messages;
    const first = w.passes[0];
    const poll = w.passes.some((p) => p.poll);
    const needDns = Boolean(this.deps.prefetch) && (this.deps.mayNeedDns?.() ?? true);
    const planOf = (limit?: number) => this.planOf(first, limit);
    const total: RunSummary = { messages: 0, delivered: 0, deferred: 0, failed: 0, waiting: 0, connections: 0 };
    const wan: { first: number | null; last: number | null } = { first: null, last: null };
    const causes = new Set<string>();
    let etrn: EtrnResult | null = null;
    let lingerMs = 0;
    let hadLink = false;
    let dialed = false;
    let error: string | undefined;
    try {
      // the link-route mail this window would send decides whether it gets the line
      let plan: RunSummary | null = null;
      const have = link.hasLinkNow();
      if (!have) plan = await planOf(needDns ? undefined : 1);
      const wants = have || windowWantsLink({ dueLinkMail: Boolean(plan?.plan?.length), poll, etrnConfigured: this.sendsEtrn() });
      if (!wants && c.link.mode === 'demand') log.info({ cause: first.cause }, 'window not opened: nothing to send over the link (demand mode)');
      const session = await link.open(wants && !this.stopping);
      if (session.hasLink && needDns && this.deps.prefetch) {
        // names the due mail needs, fetched in one burst before the first connection
        plan ??= await planOf();
        const names = namesToPrefetch(plan.plan ?? []);
        if (names.length) await this.deps.prefetch(names);
      }
      await this.runPasses(w, total, wan, causes);
      link.refresh();
      if (link.windowHasLink() && this.sendsEtrn()) {
        const t0 = this.deps.now();
        etrn = await this.deps.etrn();
        if (etrn) {
          wan.first ??= t0;
          wan.last = this.deps.now();
        }
      } else if (total.waiting) {
        log.info({ cause: first.cause, messages: total.waiting }, `window: link down, ${total.waiting} messages wait for the link`);
      }
      lingerMs = await this.linger(w, etrn, total, wan, causes);
      await this.runPasses(w, total, wan, causes);
    } catch (err) {
      error = (err as Error).message;
      log.error({ cause: first.cause, err: error }, 'window failed');
    } finally {
      const final = link.windowSession;
      hadLink = link.windowHasLink() || Boolean(final?.hasLink);
      dialed = Boolean(final?.dialed);
      // from here on a trigger opens the next window, which waits for this one's hangup
      if (this.open === w) this.open = null;
      this.closing = link.close().catch((err) => log.error({ err }, 'link hangup failed'));
      await this.closing;
    }
    const record: WindowRecord = {
      cause: [...causes].join(' + ') || first.cause,
      kind: poll || [...causes].some((k) => k.startsWith('poll')) ? 'poll' : 'send',
      start: new Date(startMs).toISOString(),
      end: new Date(this.deps.now()).toISOString(),
      dialed,
      linkOpen: hadLink,
      linkSeconds: wan.first !== null && wan.last !== null ? (wan.last - wan.first) / 1000 : 0,
      delivered: total.delivered,
      deferred: total.deferred,
      failed: total.failed,
      waiting: total.waiting,
      connections: total.connections,
      inbound: link.inboundFacts().messages - inboundAtStart,
      lingerSeconds: Math.round(lingerMs / 100) / 10,
      etrn,
      ...(error ? { error } : {}),
    };
    this.last = record;
    this.deps.onWindow?.(record);
    log.info({ ...record, etrn: etrn && { relay: etrn.relay, replies: etrn.replies, error: etrn.error } }, 'window');
    return record;
  }

  /**
   * After an ETRN that started a flush at the relay: keep the link while the
   * ISP pushes (SPEC §4 linger); joining triggers are served meanwhile.
   * Returns how long it lingered (ms).
   */
  private async linger(w: OpenWindow, etrn: EtrnResult | null, total: RunSummary, wan: { first: number | null; last: number | null }, causes: Set<string>): Promise<number> {
    const { link } = this.deps;
    // after ODMR the relay's mail came down our own connection, which is closed now: nothing to wait for
    if (!etrn || etrn.odmr || !etrnStartedFlush(etrn.replies)) return 0;
    const c = this.deps.config();
    const etrnAt = this.deps.now();
    // a line that drops ends the linger at once (a new line is a new window, with its own ETRN)
    const off = link.state.onChange(() => w.wake?.());
    try {
      return await this.lingerLoop(w, etrnAt, c, total, wan, causes);
    } finally {
      off();
    }
  }

  private async lingerLoop(w: OpenWindow, etrnAt: number, c: Config, total: RunSummary, wan: { first: number | null; last: number | null }, causes: Set<string>): Promise<number> {
    const { link } = this.deps;
    for (;;) {
      await this.runPasses(w, total, wan, causes);
      const f = link.inboundFacts();
      const now = this.deps.now();
      const left = lingerLeft({ now, etrnAt, openInbound: f.open, lastInboundEnd: f.lastEnd, linger: c.link.linger, lingerMax: c.link.lingerMax });
      if (left <= 0 || !link.windowHasLink() || this.stopping) {
        const wanEnd = Math.max(wan.last ?? 0, f.lastEnd ?? 0);
        if (f.lastEnd !== null && f.lastEnd >= etrnAt) wan.last = wanEnd;
        return now - etrnAt;
      }
      await Promise.race([link.waitInbound(left), new Promise<void>((resolve) => (w.wake = resolve))]);
      w.wake = null;
    }
  }
}
