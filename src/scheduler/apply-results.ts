/**
 * scheduler/apply-results.ts — one delivery attempt's results folded into an
 * envelope (pure): recipient states and last replies, attempts, the next
 * attempt, the queueWarn / queueReturn clocks, and the notifications due.
 */
import type { Envelope, Recipient } from '../queue/envelope.js';
import { enhancedCode, outcomeOf } from '../delivery/classify.js';
import { priority } from '../queue/priority.js';
import { retryDelay } from './next-attempt.js';

export interface AttemptResult {
  address: string;
  code: number;
  text: string;
  /** `host [ip]` that answered, or the reason no host did. */
  relay?: string;
  /** The next hop took the DSN request on (it offers DSN): notices of success are its job. */
  dsnPassed?: boolean;
  /** Not an attempt: the link went down before the next hop could be reached (no backoff, no clocks). */
  waitsForLink?: boolean;
}

export type NoticeKind = 'failure' | 'delay' | 'success';

export interface Notice {
  address: string;
  orcpt?: string;
  action: 'failed' | 'delayed' | 'relayed';
  status: string;
  diagnostic: string;
  remoteMta?: string;
}

export interface Applied {
  env: Envelope;
  /** Recipients that now need a failure notice, (once) a delay warning, or a "relayed" notice (NOTIFY=SUCCESS). */
  failed: Notice[];
  delayed: Notice[];
  relayed: Notice[];
  /** No recipient is pending any more. */
  done: boolean;
}

export interface Clocks {
  now: number;
  minQueueAge: number;
  queueWarn: number;
  queueReturn: number;
}

/** RFC 3461 NOTIFY: a recipient wants this kind of notice unless NOTIFY says otherwise. */
export function wants(r: Recipient, kind: 'FAILURE' | 'DELAY' | 'SUCCESS'): boolean {
  if (!r.notify || r.notify.length === 0) return kind !== 'SUCCESS';
  return r.notify.includes(kind);
}

export function applyResults(env: Envelope, all: readonly AttemptResult[], c: Clocks): Applied {
  const results = all.filter((r) => !r.waitsForLink);
  if (!results.length) {
    // waiting for the link is no attempt: only the reason is written down (SPEC §4)
    const why = new Map(all.map((r) => [r.address, `${r.code} ${r.text}`]));
    return { env: { ...env, recipients: env.recipients.map((r) => (why.has(r.address) && r.state === 'pending' ? { ...r, lastReply: why.get(r.address) } : r)) }, failed: [], delayed: [], relayed: [], done: false };
  }
  const byAddress = new Map(results.map((r) => [r.address, r]));
  const failed: Notice[] = [];
  const relayed: Notice[] = [];
  const stamp = new Date(c.now).toISOString();
  let deferredAny = false;
  const recipients = env.recipients.map((r): Recipient => {
    const res = byAddress.get(r.address);
    if (!res || r.state !== 'pending') return r;
    const reply = `${res.code} ${res.text}`.trim();
    const outcome = outcomeOf(res.code);
    if (outcome === 'failed') {
      failed.push({ address: r.address, orcpt: r.orcpt, action: 'failed', status: enhancedCode(res.code, res.text), diagnostic: reply, remoteMta: res.relay });
    }
    if (outcome === 'deferred') deferredAny = true;
    // RFC 3461 §4.2: a next hop without DSN cannot report success: we say "relayed"
    if (outcome === 'delivered' && !res.dsnPassed && wants(r, 'SUCCESS')) {
      relayed.push({ address: r.address, orcpt: r.orcpt, action: 'relayed', status: enhancedCode(res.code, res.text), diagnostic: reply, remoteMta: res.relay });
    }
    return { ...r, state: outcome === 'deferred' ? 'pending' : outcome, lastReply: reply, updated: stamp };
  });
  const attempts = env.attempts + 1;
  const firstAttempt = env.firstAttempt ?? stamp;
  let next: Envelope = {
    ...env,
    firstAttempt,
    recipients,
    attempts,
    priority: priority({ size: env.size, recipients: recipients.length, class: env.class, attempts }),
    nextAttempt: deferredAny ? new Date(c.now + retryDelay(attempts, c.minQueueAge)).toISOString() : env.nextAttempt,
  };
  // the clocks run from the first attempt: for link routes, the first window that had the link
  const age = c.now - Date.parse(firstAttempt);
  const delayed: Notice[] = [];
  if (deferredAny && age >= c.queueReturn) {
    // too old: what is still pending fails now (RFC 3463 4.4.7, as sendmail reports it)
    next = {
      ...next,
      recipients: next.recipients.map((r) => {
        if (r.state !== 'pending') return r;
        failed.push({ address: r.address, orcpt: r.orcpt, action: 'failed', status: '4.4.7', diagnostic: r.lastReply ?? 'no answer', remoteMta: byAddress.get(r.address)?.relay });
        return { ...r, state: 'failed', lastReply: `${r.lastReply ?? ''} (gave up after ${Math.round(age / 3_600_000)}h in the queue)`.trim() };
      }),
    };
  } else if (deferredAny && age >= c.queueWarn && !env.warned) {
    for (const r of next.recipients) {
      if (r.state === 'pending' && byAddress.has(r.address)) {
        delayed.push({ address: r.address, orcpt: r.orcpt, action: 'delayed', status: enhancedCode(byAddress.get(r.address)!.code, byAddress.get(r.address)!.text), diagnostic: r.lastReply ?? '', remoteMta: byAddress.get(r.address)?.relay });
      }
    }
    next = { ...next, warned: true };
  }
  return {
    env: next,
    failed: failed.filter((n) => wants(env.recipients.find((r) => r.address === n.address)!, 'FAILURE')),
    delayed: delayed.filter((n) => wants(env.recipients.find((r) => r.address === n.address)!, 'DELAY')),
    relayed,
    done: !next.recipients.some((r) => r.state === 'pending'),
  };
}
