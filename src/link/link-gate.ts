/**
 * link/link-gate.ts — the one answer to "may the link be used now?" (SPEC §5):
 * pure functions of the link mode, the link state and the open window. The
 * scheduler (link routes), the resolver (forwarding a query), the ETRN step
 * and `quietlink route` all ask here; nothing else decides it.
 *
 * - permanent: always (an always-on line is a LAN as far as mail goes).
 * - A window that has the link (managed: the line is up; demand: the window
 *   is what dials it): link routes, DNS and ETRN.
 * - Outside a window: link routes only at intake in deliveryMode
 *   background / interactive while the line is up; DNS for the LAN's own
 *   queries only while the line is up (it is up anyway: no wake-up).
 */
import type { Link } from './link-state.js';

export type LinkMode = 'managed' | 'demand' | 'permanent';

export interface GateFacts {
  mode: LinkMode;
  state: Link;
  /** The open flush window, if any, and whether it got the link. */
  window: { hasLink: boolean } | null;
}

/** The window holds the link right now (a managed line that dropped mid-window no longer counts). */
export function windowHasLink(f: GateFacts): boolean {
  if (f.mode === 'permanent') return true;
  return f.window?.hasLink === true && (f.mode === 'demand' || f.state === 'up');
}

/** May link routes be attempted: at intake (deliveryMode's "at once") or by a run inside a window? */
export function mayDeliverLinkRoutes(f: GateFacts, at: 'intake' | 'window', deliveryMode: string): boolean {
  if (f.mode === 'permanent') return true;
  if (at === 'intake') return (deliveryMode === 'background' || deliveryMode === 'interactive') && f.state === 'up';
  return windowHasLink(f);
}

/** May the resolver send a query upstream? */
export function mayForwardDns(f: GateFacts): boolean {
  return f.mode === 'permanent' || f.state === 'up' || windowHasLink(f);
}

/**
 * Should a window try to get the link at all? Only when link-route mail is
 * due, or it is a poll window with ETRN to send (SPEC §4: dials per day =
 * windows with due mail + poll windows). A line that is already up is used.
 */
export function windowWantsLink(w: { dueLinkMail: boolean; poll: boolean; etrnConfigured: boolean }): boolean {
  return w.dueLinkMail || (w.poll && w.etrnConfigured);
}

/**
 * How a window gets the link: `have` (up already, permanent, or demand mode's
 * first packet dials it), `dial` (managed with link.dial), or `none`.
 */
export function linkPlan(f: { mode: LinkMode; state: Link; wants: boolean; canDial: boolean }): 'have' | 'dial' | 'none' {
  if (f.mode === 'permanent' || f.state === 'up') return 'have';
  if (!f.wants) return 'none';
  if (f.mode === 'demand') return 'have';
  return f.canDial ? 'dial' : 'none';
}

/** Whether ETRN replies say the relay started pushing mail to us (then the window lingers). */
export function etrnStartedFlush(replies: ReadonlyArray<{ code: number }>): boolean {
  return replies.some((r) => r.code === 250 || r.code === 252 || r.code === 253);
}

/**
 * Linger after ETRN (SPEC §4): when the window may close. It keeps the link
 * while inbound sessions from outside are open, or until `linger` after the
 * later of ETRN and the last such session's end; never past `lingerMax`
 * after ETRN. Returns the ms to wait before asking again, or 0 to close.
 */
export function lingerLeft(f: { now: number; etrnAt: number; openInbound: number; lastInboundEnd: number | null; linger: number; lingerMax: number }): number {
  const hardEnd = f.etrnAt + f.lingerMax;
  if (f.now >= hardEnd) return 0;
  if (f.openInbound > 0) return Math.min(1000, hardEnd - f.now);
  const quietUntil = Math.max(f.etrnAt, f.lastInboundEnd ?? 0) + f.linger;
  return Math.max(0, Math.min(quietUntil, hardEnd) - f.now);
}
