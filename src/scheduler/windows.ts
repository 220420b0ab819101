/**
 * scheduler/windows.ts — flush windows (SPEC §4, §5): one intended link
 * session each. A window gets its link as link.mode says (managed: use an up
 * link, or run link.dial and wait up to link.dialTimeout; demand: the first
 * packet dials, and a window with nothing to send is not opened; permanent:
 * always), delivers every due link-route message, sends ETRN for
 * etrn.domains to etrn.relay, closes and hangs up if it dialed. Triggers that
 * come while a window is open join it (one more delivery pass) instead of
 * opening a second one. Owns the answer to "may a link route send now?".
 *
 * Every window logs one journal line: cause, start, end, link-seconds,
 * delivered / deferred / waiting, and the ETRN result.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { LinkState } from '../link/link-state.js';
import type { Selection } from '../queue/select.js';
import type { Trigger } from '../routing/may-attempt.js';
import type { EtrnResult } from '../etrn/etrn-client.js';
import type { QueueRunner, RunEvent, RunSummary } from './queue-runner.js';

export interface WindowRequest {
  cause: string;
  selection?: Selection;
  onEvent?: (e: RunEvent) => void;
}

export interface WindowRecord {
  cause: string;
  start: string;
  end: string;
  linkSeconds: number;
  linkOpen: boolean;
  dialed: boolean;
  delivered: number;
  deferred: number;
  failed: number;
  waiting: number;
  connections: number;
  etrn: EtrnResult | null;
}

export interface WindowDeps {
  runner: QueueRunner;
  config: () => Config;
  link: LinkState;
  log: Logger;
  now: () => number;
  /** Sends ETRN for etrn.domains to etrn.relay; null when none is configured. */
  etrn: () => Promise<EtrnResult | null>;
  dial: () => Promise<number | null>;
  /** Warms the resolver for these names (MX and addresses) in one burst. */
  prefetch?: (names: string[]) => Promise<void>;
  /** Told about every window when it ends (metrics). */
  onWindow?: (record: WindowRecord) => void;
  /** Whether any route may need a lookup (else prefetching has nothing to do and is skipped). */
  mayNeedDns?: () => boolean;
  hangup: () => Promise<number | null>;
}

interface OpenWindow {
  passes: WindowRequest[];
  done: Promise<WindowRecord>;
}

/** An operator's flush tries matching mail whatever its retry time; other windows only what is due. */
function triggerOf(pass: WindowRequest): Trigger {
  return pass.cause === 'operator' ? { kind: 'flush', names: (pass.selection?.selectors.length ?? 0) > 0 } : { kind: 'run' };
}

/** Pure: may a link route send now? */
export function linkOpen(mode: Config['link']['mode'], state: string, inWindow: boolean, windowLink: boolean): boolean {
  if (mode === 'permanent') return true;
  return inWindow && windowLink && (mode === 'demand' || state === 'up');
}

export class Windows {
  private open: OpenWindow | null = null;
  /** The window's own verdict on the link (managed: up or dialed up in time; demand: yes). */
  private windowLink = false;
  last: WindowRecord | null = null;

  constructor(private readonly deps: WindowDeps) {}

  get isOpen(): boolean {
    return this.open !== null;
  }

  /** The runner's question for a trigger (SPEC §3, §5). */
  mayUseLink(trigger: Trigger): boolean {
    const c = this.deps.config();
    const state = this.deps.link.current.state;
    if (trigger.kind === 'intake') {
      // background and interactive send link routes at intake when the line is up anyway
      return c.link.mode === 'permanent' || ((c.deliveryMode === 'background' || c.deliveryMode === 'interactive') && state === 'up');
    }
    return linkOpen(c.link.mode, state, this.open !== null, this.windowLink);
  }

  /** Opens a window, or joins the open one; resolves when the window closes. */
  request(req: WindowRequest): Promise<WindowRecord> {
    if (this.open) {
      this.open.passes.push(req);
      this.deps.log.info({ cause: req.cause }, 'window: trigger joins the open window');
      return this.open.done;
    }
    const w: OpenWindow = { passes: [req], done: Promise.resolve(null as unknown as WindowRecord) };
    this.open = w;
    w.done = this.run(w).finally(() => {
      this.open = null;
      this.windowLink = false;
    });
    return w.done;
  }

  private async waitForUp(ms: number): Promise<boolean> {
    if (this.deps.link.current.state === 'up') return true;
    return new Promise((resolve) => {
      const off = this.deps.link.onChange((now) => {
        if (now.state === 'up') {
          clearTimeout(t);
          off();
          resolve(true);
        }
      });
      const t = setTimeout(() => {
        off();
        resolve(this.deps.link.current.state === 'up');
      }, ms);
    });
  }

  private async run(w: OpenWindow): Promise<WindowRecord> {
    const c = this.deps.config();
    const startMs = this.deps.now();
    const cause = w.passes[0].cause;
    let dialed = false;
    const needDns = Boolean(this.deps.prefetch) && (this.deps.mayNeedDns?.() ?? true);
    /** What the window would send (one walk of the queue; a yes/no question stops at the first). */
    const planOf = (planLimit?: number) => this.deps.runner.run({ trigger: triggerOf(w.passes[0]), selection: w.passes[0].selection, dryRun: true, assumeLink: true, planLimit });
    let plan: RunSummary | null = null;
    if (c.link.mode === 'demand' && !(c.etrn.relay.length && c.etrn.domains.length)) {
      // in demand mode the window's first packet dials the line: no window for nothing
      plan = await planOf(needDns ? undefined : 1);
      if (!plan.plan?.length && w.passes.every((p) => !p.selection?.selectors.length)) {
        this.deps.log.info({ cause }, 'window not opened: nothing to send (demand mode)');
        const none: WindowRecord = { cause, start: new Date(startMs).toISOString(), end: new Date(startMs).toISOString(), linkSeconds: 0, linkOpen: false, dialed: false, delivered: 0, deferred: 0, failed: 0, waiting: 0, connections: 0, etrn: null };
        return none;
      }
    }
    if (c.link.mode === 'permanent' || c.link.mode === 'demand') this.windowLink = true;
    else if (this.deps.link.current.state === 'up') this.windowLink = true;
    else if (c.link.dial) {
      dialed = true;
      this.deps.link.set('dialing', this.deps.now(), 'window dial');
      await this.deps.dial();
      this.windowLink = await this.waitForUp(c.link.dialTimeout);
      if (!this.windowLink) {
        this.deps.link.set('down', this.deps.now(), 'dial timeout');
        this.deps.log.warn({ cause, dialTimeout: c.link.dialTimeout }, 'window: the link did not come up in time');
      }
    }
    if (this.windowLink && needDns && this.deps.prefetch) {
      // names the due mail needs, fetched in one burst before the first connection
      plan ??= await planOf();
      const names = new Set<string>();
      for (const p of plan.plan ?? []) for (const h of p.nexthop.replace(/^\w+:/, '').split(',')) {
        const name = h.replace(/:\d+$/, '');
        if (!h.startsWith('[') && net.isIP(name) === 0) names.add(name);
      }
      if (names.size) await this.deps.prefetch([...names]);
    }
    const total: RunSummary = { messages: 0, delivered: 0, deferred: 0, failed: 0, waiting: 0, connections: 0 };
    let firstWan: number | null = null;
    let lastWan: number | null = null;
    const causes = new Set<string>();
    for (let pass = w.passes.shift(); pass; pass = w.passes.shift()) {
      causes.add(pass.cause);
      // the line may have come up while this window waited without it (a joining link-up)
      if (!this.windowLink && this.deps.link.current.state === 'up') this.windowLink = true;
      const trigger = triggerOf(pass);
      const s = await this.deps.runner.run({ trigger, selection: pass.selection, onEvent: pass.onEvent, dialDelay: c.dialDelay });
      if (s.firstPacket !== undefined && this.windowLink) {
        firstWan = Math.min(firstWan ?? Infinity, s.firstPacket);
        lastWan = Math.max(lastWan ?? 0, s.lastPacket ?? s.firstPacket);
      }
      for (const k of ['messages', 'delivered', 'deferred', 'failed', 'connections'] as const) total[k] += s[k];
      total.waiting = s.waiting;
    }
    let etrn: EtrnResult | null = null;
    if (this.windowLink) {
      const t0 = Date.now();
      etrn = await this.deps.etrn();
      if (etrn) {
        firstWan ??= t0;
        lastWan = Date.now();
      }
    } else if (total.waiting) {
      this.deps.log.info({ cause, messages: total.waiting }, `window: link down, ${total.waiting} messages wait for the link`);
    }
    if (dialed && this.windowLink && c.link.hangup) await this.deps.hangup();
    const record: WindowRecord = {
      cause: [...causes].join(' + ') || cause,
      start: new Date(startMs).toISOString(),
      end: new Date(this.deps.now()).toISOString(),
      linkSeconds: firstWan !== null && lastWan !== null ? (lastWan - firstWan) / 1000 : 0,
      linkOpen: this.windowLink,
      dialed,
      delivered: total.delivered,
      deferred: total.deferred,
      failed: total.failed,
      waiting: total.waiting,
      connections: total.connections,
      etrn,
    };
    this.last = record;
    this.deps.onWindow?.(record);
    this.deps.log.info({ ...record, etrn: etrn && { relay: etrn.relay, replies: etrn.replies, error: etrn.error } }, 'window');
    return record;
  }
}
