/**
 * queue/roles.ts — what each consumer may do with the queue (queue/queue.ts),
 * so none of them depends on the whole class: intake submits, the runner
 * delivers, the control socket administers, status and counters read.
 */
import type { Queue } from './queue.js';

/** Intake, maildrop pickup, notices: new messages only. */
export type QueueSubmit = Pick<Queue, 'begin' | 'commit'>;
/** The queue runner: picks from the index, reads under the lock, writes results back. */
export type QueueDeliver = Pick<Queue, 'index' | 'find' | 'walk' | 'lock' | 'version' | 'readBody' | 'update' | 'finish'>;
/** Status, metrics, ETRN and ODMR counts, mailq: reads, never changes. */
export type QueueRead = Pick<Queue, 'index' | 'listed' | 'list' | 'counts' | 'find' | 'walk' | 'listingReady' | 'readBody'>;
/** Operator commands: the state changes an administrator may ask for, and what they read. */
export type QueueAdmin = QueueRead & Pick<Queue, 'hold' | 'release' | 'quarantine' | 'unquarantine'>;
