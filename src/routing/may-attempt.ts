/**
 * routing/may-attempt.ts — may a recipient on this route be attempted now,
 * given what triggered the attempt? (SPEC §3 delivery modes, §4 triggers,
 * HoldExpensive, hold until ETRN). Pure; the scheduler asks it for every
 * recipient it considers.
 */
import type { Route } from './route.js';

export type Trigger =
  /** Right after a message was accepted (SMTP 250 or sendmail). */
  | { kind: 'intake' }
  /** A queue run: interval, cron window, link up. */
  | { kind: 'run' }
  /** An operator's flush; `names` is true when a selector picked the message (-qR/-qS/-qI/-qG). */
  | { kind: 'flush'; names: boolean }
  /** ETRN for this route's domain. */
  | { kind: 'etrn' };

export interface AttemptPolicy {
  deliveryMode: 'interactive' | 'background' | 'queue' | 'deferred';
  holdExpensive: boolean;
  /** The link module's answer: may a link route send now? */
  linkAvailable: boolean;
  /** link.mode permanent: link routes behave like LAN routes. */
  permanentLink?: boolean;
}

export function mayAttempt(route: Route, trigger: Trigger, p: AttemptPolicy): boolean {
  const r = p.permanentLink ? { ...route, link: false } : route;
  if (r.holdUntilEtrn) return trigger.kind === 'etrn' || (trigger.kind === 'flush' && trigger.names);
  if (r.link && !p.linkAvailable) return false;
  if (trigger.kind !== 'intake') return true;
  if (r.expensive && p.holdExpensive) return false;
  switch (p.deliveryMode) {
    case 'interactive':
    case 'background':
      return true;
    case 'queue':
      return false;
    case 'deferred':
      return !r.link;
  }
}
