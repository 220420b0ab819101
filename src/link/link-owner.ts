/**
 * link/link-owner.ts — the one owner of the link (SPEC §5): its state, the
 * reports that change it (hooks, the interface watcher, quietlink's own
 * dial and hangup), the link session of each flush window, and the answers
 * of link-gate.ts for everyone who asks (scheduler, resolver, ETRN).
 *
 * A window's session: `open(wants)` gets the link as link.mode says —
 * already up or permanent: use it; demand: the first packet dials; managed
 * with link.dial: run it and wait up to link.dialTimeout for "up" (the dial
 * command included: a hung script is killed at the deadline, a failing one
 * ends the wait at once) — and `close()` runs link.hangup exactly once when
 * the session dialed, whatever happened in between. Only windows that want
 * the link (due link-route mail, or a poll) dial.
 *
 * Allowed state transitions: down → dialing (our dial), dialing → up | down,
 * up → down, down → up (hooks, watcher). Reports naming another interface
 * than link.interface (when set) are ignored. Inbound SMTP sessions from
 * outside the LAN are counted here for the window's linger.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { NetworkList } from '../config/cidr.js';
import { LinkState, type Link } from './link-state.js';
import { InterfaceWatcher } from './interface-watcher.js';
import { startLinkCommand, runLinkCommand } from './dialer.js';
import { DialDelay } from './dial-delay.js';
import { linkPlan, mayDeliverLinkRoutes, mayForwardDns, windowHasLink, type GateFacts } from './link-gate.js';

const HANGUP_TIMEOUT = 60_000;

export interface LinkOwnerDeps {
  config: () => Config;
  log: Logger;
  now: () => number;
  /** Clients that count as the LAN for the linger (lanNetworks and smtp.mynetworks). */
  lan: () => NetworkList;
  onDial?: () => void;
}

export interface LinkSession {
  readonly hasLink: boolean;
  readonly dialed: boolean;
  /** link.hangup as it was when the session dialed (a reload in between changes nothing). */
  readonly hangup?: string;
  /** DialDelay for this window, at most once. */
  readonly dialDelay: DialDelay;
}

export class LinkOwner {
  readonly state: LinkState;
  dials = 0;
  hangups = 0;
  private session: LinkSession | null = null;
  private watcher: InterfaceWatcher | null = null;
  private inboundOpen = 0;
  private inboundMessages = 0;
  private lastInboundEnd: number | null = null;
  private inboundWaiters: Array<() => void> = [];
  /** Ends a dial wait at once (a daemon stop). */
  private dialAbort: (() => void) | null = null;
  /** Set by a stop: no window dials any more. */
  private stopped = false;
  /**
   * After our own hangup the interface may still look up for a moment: the
   * watcher's "up" is not believed until it has seen "down", or this passes.
   */
  private hungUpUntil = 0;

  constructor(private readonly deps: LinkOwnerDeps) {
    const c = deps.config();
    this.state = new LinkState(c.link.mode === 'permanent' ? 'up' : 'down', deps.now(), 'start');
  }

  get current() {
    return this.state.current;
  }

  /** The facts every gate question is answered from. */
  facts(): GateFacts {
    return { mode: this.deps.config().link.mode, state: this.state.current.state, window: this.session && { hasLink: this.session.hasLink } };
  }

  mayDeliver(at: 'intake' | 'window'): boolean {
    return mayDeliverLinkRoutes(this.facts(), at, this.deps.config().deliveryMode);
  }

  mayForwardDns(): boolean {
    return mayForwardDns(this.facts());
  }

  /** Whether the open window holds the link now (ETRN may go). */
  windowHasLink(): boolean {
    return this.session !== null && windowHasLink(this.facts());
  }

  /**
   * DialDelay of the open window: a link route's connection that no host
   * answered, or (demand mode: the line is dialing on the first packet) the
   * gateway's own lookup that got no answer.
   */
  dialRetry(what: string, kind: 'connect' | 'dns' = 'connect'): Promise<boolean> {
    const s = this.session;
    const mode = this.deps.config().link.mode;
    if (!s?.hasLink || mode === 'permanent' || (kind === 'dns' && mode !== 'demand')) return Promise.resolve(false);
    return s.dialDelay.retry(what);
  }

  /** Whether a window would have the link without dialing (permanent, or the line is up). */
  hasLinkNow(): boolean {
    return linkPlan({ mode: this.deps.config().link.mode, state: this.state.current.state, wants: false, canDial: false }) === 'have';
  }

  /** A report from a hook, the operator or the watcher; false when ignored or nothing changed. */
  report(state: 'up' | 'down', cause: string, iface?: string): boolean {
    const want = this.deps.config().link.interface;
    if (want && iface && iface !== want) {
      this.deps.log.info({ link: state, iface, linkInterface: want, cause }, 'link report ignored: another interface than link.interface');
      return false;
    }
    if (this.deps.config().link.mode === 'permanent') return false;
    return this.set(state, cause, iface);
  }

  private set(state: Link, cause: string, iface?: string): boolean {
    return this.state.set(state, this.deps.now(), cause, iface);
  }

  start(): void {
    const c = this.deps.config();
    if (!c.link.interface || c.link.mode === 'permanent') return;
    this.watcher = new InterfaceWatcher(c.link.interface, c.link.poll, (up) => {
      // the watcher reports what it sees; "dialing" ends only with up, or the window's deadline
      if (!up) this.hungUpUntil = 0;
      if (up && this.deps.now() < this.hungUpUntil) return;
      if (up) this.set('up', 'interface watcher', c.link.interface);
      else if (this.state.current.state === 'up') this.set('down', 'interface watcher');
    });
    this.watcher.start();
  }

  /** A daemon stop: the watcher ends, no window dials any more, a dial wait ends now. */
  stop(): void {
    this.stopped = true;
    this.watcher?.stop();
    this.abortDial();
  }

  /**
   * The link session of a window that opens now (one at a time). Called
   * again while the window is open (a poll or new mail joined a window that
   * had no use for the link), it takes the link then: one dial per window.
   */
  async open(wants: boolean): Promise<LinkSession> {
    const c = this.deps.config();
    const plan = linkPlan({ mode: c.link.mode, state: this.state.current.state, wants, canDial: Boolean(c.link.dial) && !this.stopped });
    const open = this.session;
    if (open) {
      if (open.hasLink || !wants || plan === 'none' || (plan === 'dial' && open.dialed)) return open;
      this.session = plan === 'have' ? { ...open, hasLink: true } : { ...open, dialed: true, hangup: c.link.hangup };
      if (plan === 'dial') return this.settleDial(await this.dial(c));
      return this.session;
    }
    const dialDelay = new DialDelay(c.dialDelay, (ms, what) => this.deps.log.info({ dialDelay: ms, what }, 'no answer on a link route: waiting dialDelay, then once more'));
    if (plan !== 'dial') {
      this.session = { hasLink: plan === 'have', dialed: false, dialDelay };
      return this.session;
    }
    this.session = { hasLink: false, dialed: true, hangup: c.link.hangup, dialDelay };
    return this.settleDial(await this.dial(c));
  }

  /** The dial's outcome into the session as it is now (a stop may have closed it meanwhile: then it stays closed). */
  private settleDial(hasLink: boolean): LinkSession {
    if (!this.session) return { hasLink: false, dialed: true, dialDelay: new DialDelay(0) };
    this.session = { ...this.session, hasLink };
    return this.session;
  }

  /** Runs link.dial and waits up to dialTimeout, the command's own run included. */
  private async dial(c: Config): Promise<boolean> {
    this.dials++;
    this.deps.onDial?.();
    this.set('dialing', 'window dial');
    const cmd = startLinkCommand(c.link.dial!, this.deps.log, 'dial');
    let timer: NodeJS.Timeout | undefined;
    let off = () => {};
    const outcome = await new Promise<'up' | 'failed' | 'timeout'>((resolve) => {
      if (this.state.current.state === 'up') return resolve('up');
      off = this.state.onChange((now) => {
        if (now.state === 'up') resolve('up');
      });
      timer = setTimeout(() => resolve('timeout'), c.link.dialTimeout);
      this.dialAbort = () => resolve('timeout');
      void cmd.exited.then((code) => {
        if (code !== 0 && this.state.current.state !== 'up') resolve('failed');
      });
    });
    off();
    clearTimeout(timer);
    this.dialAbort = null;
    if (outcome === 'up') return true;
    cmd.kill();
    this.deps.log.warn({ dialTimeout: c.link.dialTimeout, outcome }, outcome === 'failed' ? 'window: the dial command failed' : 'window: the link did not come up within link.dialTimeout');
    if (this.state.current.state === 'dialing') this.set('down', outcome === 'failed' ? 'dial failed' : 'dial timeout');
    return false;
  }

  /** The open window's session as it stands (open() may have taken the link since). */
  get windowSession(): LinkSession | null {
    return this.session;
  }

  /** A window that opened without the link takes it when the line has come up since (a joining link-up). */
  refresh(): void {
    if (this.session && !this.session.hasLink && this.state.current.state === 'up') this.session = { ...this.session, hasLink: true };
  }

  /** A stop: a window waiting for its dial gives up now (and still hangs up). */
  abortDial(): void {
    this.dialAbort?.();
  }

  /** Ends the window's session: link.hangup exactly once if it dialed. */
  async close(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (!s?.dialed || !s.hangup) return;
    this.hangups++;
    this.hungUpUntil = this.deps.now() + this.deps.config().link.dialTimeout;
    const status = await runLinkCommand(s.hangup, HANGUP_TIMEOUT, this.deps.log, 'hangup');
    // a hangup that failed leaves the line as it is: the next window uses it rather than dial again
    if (status !== 0) {
      this.hungUpUntil = 0;
      this.deps.log.error({ command: s.hangup, status }, 'link hangup failed: the line may still be up');
      return;
    }
    if (this.state.current.state !== 'down') this.set('down', 'hangup');
  }

  /** An inbound SMTP session opened or closed, or a message was received (intake). */
  inbound(event: 'open' | 'close' | 'message', ip: string): void {
    if (this.deps.lan().has(ip)) return;
    if (event === 'open') this.inboundOpen++;
    else if (event === 'close') {
      this.inboundOpen = Math.max(0, this.inboundOpen - 1);
      this.lastInboundEnd = this.deps.now();
    } else this.inboundMessages++;
    for (const w of this.inboundWaiters.splice(0)) w();
  }

  /** Inbound from outside as the linger sees it. */
  inboundFacts(): { open: number; messages: number; lastEnd: number | null } {
    return { open: this.inboundOpen, messages: this.inboundMessages, lastEnd: this.lastInboundEnd };
  }

  /** Resolves at the next inbound event, or after ms. */
  waitInbound(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        const i = this.inboundWaiters.indexOf(done);
        if (i >= 0) this.inboundWaiters.splice(i, 1);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.inboundWaiters.push(done);
    });
  }
}
