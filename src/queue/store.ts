/**
 * queue/store.ts — the queue backend interface (OpenSMTPD-sized). A backend
 * stores and lists; IDs, envelope validation, transitions and logging live in
 * queue/queue.ts. Nothing here names a file: a backend may keep messages in
 * a spool (queue/fs-store.ts), in memory (queue/memory-store.ts), or wrap
 * another (queue/journaled-store.ts). Every write is durable when its
 * promise resolves; init() makes whatever an earlier run left durable too.
 */
import type { QueueId } from './queue-id.js';

/** Where an envelope lives. `queued` is split by queue group. */
export type QueueState = 'queued' | 'held' | 'quarantined' | 'corrupt';

export interface Place {
  state: QueueState;
  /** Queue group, for state `queued`. */
  group?: string;
}

/** Every place a live message can be, in the order they are searched: each group's queued, held, quarantined. */
export function livePlaces(groups: readonly string[]): Place[] {
  return [...groups.map((g): Place => ({ state: 'queued', group: g })), { state: 'held' }, { state: 'quarantined' }];
}

/** A new message's body, streamed in by intake. */
export interface BodyWriter {
  readonly id: QueueId;
  write(chunk: Buffer): Promise<void>;
  /** Closes and deletes a body that will not be committed. */
  abort(): Promise<void>;
}

/** A new message: its body (streamed with create(), or whole) and its envelopes, one per queue group. */
export interface NewMessage {
  /** The body's ID (the first envelope's; the other parts share the body). */
  id: QueueId;
  body: BodyWriter | Buffer;
  envelopes: ReadonlyArray<{ place: Place; id: QueueId; bytes: Buffer }>;
}

export interface QueueStore {
  /** Creates what the groups need, and makes everything already stored durable. */
  init(groups: readonly string[]): Promise<void>;
  /** Opens a new body for `id`. */
  create(id: QueueId): Promise<BodyWriter>;
  /**
   * Puts new messages in place: each whole or not at all (a failed one is
   * taken back and the promise rejects). Durable when it resolves.
   */
  put(messages: readonly NewMessage[]): Promise<void>;
  /** Writes (or replaces) an envelope atomically at `place`. */
  putEnvelope(place: Place, id: QueueId, bytes: Buffer): Promise<void>;
  /** Moves an envelope atomically, optionally rewriting it on the way. */
  move(id: QueueId, from: Place, to: Place, bytes?: Buffer): Promise<void>;
  /** Deletes an envelope and its body. */
  remove(id: QueueId, place: Place): Promise<void>;
  /** Rejects with code ENOENT when there is no such envelope there. */
  readEnvelope(id: QueueId, place: Place): Promise<Buffer>;
  /** `sizeHint` (the envelope's size) lets a backend pick how to read. */
  readBody(id: QueueId, sizeHint?: number): Promise<Buffer>;
  /** IDs at a place, in no particular order. */
  walk(place: Place): AsyncIterable<QueueId>;
  /** Groups that have a queued place. */
  groups(): Promise<string[]>;
  /** Removes leftovers of interrupted writes (bodies without envelopes) older than `before`. */
  recover(isReferenced: (id: QueueId) => boolean, before: number): Promise<number>;
  /** Finishes pending work (timers, write-back); the store may not be used after. */
  close(): Promise<void>;
}

/** The error a backend rejects with for a missing envelope or body. */
export function notFound(what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${what}: not found`), { code: 'ENOENT' });
}
