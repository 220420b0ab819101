/**
 * scheduler/candidates.ts — which messages a run looks at, from the queue's
 * in-memory index (queue/index.ts), with no envelope read: the messages
 * waiting for a domain the run may serve (or must count), in priority
 * order. A run's work is then proportional to what it may deliver, not to
 * the queue: an ISP holding a million messages for its customers looks at
 * none of them in a scheduled run, and at one customer's in its ETRN. Pure.
 */
import type { IndexEntry } from '../queue/index.js';
import type { QueueId } from '../queue/queue-id.js';

/** What the runner decides on before it reads an envelope: an envelope, or the index's view of one. */
export interface Candidate {
  id: QueueId;
  group: string;
  sender: string;
  priority: number;
  attempts: number;
  nextAttempt: string | null;
  quarantine?: unknown;
  recipients: ReadonlyArray<{ address: string; state: string }>;
}

export function candidateOf(id: QueueId, e: IndexEntry): Candidate {
  const l = e.listed;
  return { id, group: l.group, sender: l.sender, priority: e.priority, attempts: e.attempts, nextAttempt: e.nextAttempt, recipients: l.recipients };
}

export interface IndexView {
  queuedFor(wanted: (domain: string) => boolean): Set<QueueId>;
  get(id: QueueId): IndexEntry | undefined;
}

/**
 * Queued messages with a pending recipient at a domain `looksAt` accepts,
 * lowest priority number first (the whole queue's order, not a chunk's).
 */
export function candidatesFromIndex(index: IndexView, looksAt: (domain: string) => boolean): Candidate[] {
  const out: Candidate[] = [];
  for (const id of index.queuedFor(looksAt)) {
    const e = index.get(id);
    if (e && e.listed.state === 'queued') out.push(candidateOf(id, e));
  }
  return out.sort((a, b) => a.priority - b.priority);
}
