/**
 * queue/summary.ts — what `mailq` and `mailq --json` show of a message
 * (pure): the envelope, plus its state.
 */
import type { Located } from './queue.js';
import type { Envelope } from './envelope.js';

export type MessageSummary = Omit<Envelope, 'version'> & { state: 'queued' | 'held' | 'quarantined' | 'corrupt' };

/** The envelope as it is, with its state first. */
export function summarize({ env, place }: Located): MessageSummary {
  const { version: _version, ...rest } = env;
  return { state: place.state, ...rest };
}
