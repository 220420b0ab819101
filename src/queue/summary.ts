/**
 * queue/summary.ts — what `mailq` and `mailq --json` show of a message
 * (pure): the envelope without internals, plus its state.
 */
import type { Located } from './queue.js';

export interface MessageSummary {
  id: string;
  state: 'queued' | 'held' | 'quarantined' | 'corrupt';
  group: string;
  size: number;
  arrivalTime: string;
  sender: string;
  priority: number;
  attempts: number;
  nextAttempt: string | null;
  recipients: Array<{ address: string; state: string; lastReply?: string }>;
  hold?: { reason: string; since: string };
  quarantine?: { reason: string; since: string };
}

export function summarize({ env, place }: Located): MessageSummary {
  return {
    id: env.id,
    state: place.state,
    group: env.group,
    size: env.size,
    arrivalTime: env.arrivalTime,
    sender: env.sender,
    priority: env.priority,
    attempts: env.attempts,
    nextAttempt: env.nextAttempt,
    recipients: env.recipients.map((r) => ({ address: r.address, state: r.state, ...(r.lastReply ? { lastReply: r.lastReply } : {}) })),
    ...(env.hold ? { hold: env.hold } : {}),
    ...(env.quarantine ? { quarantine: env.quarantine } : {}),
  };
}
