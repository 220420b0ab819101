/**
 * queue/spool.ts — the queue as the daemon and the CLI use it: the spool's
 * file store, wrapped by the intake journal's write-back cache.
 */
import type { Logger } from 'pino';
import type { QueueGroupConfig } from '../config/schema.js';
import { FsStore } from './fs-store.js';
import { IntakeJournal } from './journal.js';
import { JournaledStore } from './journaled-store.js';
import { Queue } from './queue.js';

export interface SpoolQueueOptions {
  groups: readonly QueueGroupConfig[];
  log: Logger;
  now?: () => number;
  /** A CLI looking at the spool of a daemon that is not running: nothing is written. */
  readOnly?: boolean;
  /** The journal could not write (every caller waiting on it is told too). */
  onJournalError?: (err: unknown) => void;
  /** Settling of the journal's messages: after this idle time (ms), or this many bytes. */
  settleIdle?: number;
  settleBytes?: number;
}

export function spoolQueue(spool: string, opts: SpoolQueueOptions): Queue {
  const journal = new IntakeJournal(spool, { onError: opts.onJournalError });
  const store = new JournaledStore(new FsStore(spool), journal, {
    log: opts.log, now: opts.now, readOnly: opts.readOnly, settleIdle: opts.settleIdle, settleBytes: opts.settleBytes,
  });
  return new Queue(store, { groups: opts.groups, log: opts.log, now: opts.now, readOnly: opts.readOnly });
}
