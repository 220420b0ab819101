/**
 * queue/store.ts — the queue backend interface (OpenSMTPD-sized). A backend
 * stores and lists; IDs, envelope validation, transitions and logging live in
 * queue/queue.ts. Every method is durable when its promise resolves: file
 * and directory fsynced. Concurrent calls share directory fsyncs (group
 * commit, queue/group-sync.ts), so durability costs little under load.
 */
import type { QueueId } from './queue-id.js';

/** Where an envelope lives. `queued` is split by queue group. */
export type QueueState = 'queued' | 'held' | 'quarantined' | 'corrupt';

export interface Place {
  state: QueueState;
  /** Queue group, for state `queued`. */
  group?: string;
}

export interface BodyWriter {
  readonly id: QueueId;
  write(chunk: Buffer): Promise<void>;
  /** Makes the body durable (fsync) and closes it. */
  finish(): Promise<void>;
  /** Closes and deletes a body that will not be committed. */
  abort(): Promise<void>;
}

export interface QueueStore {
  init(groups: readonly string[]): Promise<void>;
  /** Opens a new body file for `id`. */
  create(id: QueueId): Promise<BodyWriter>;
  /** Gives `to` the same body as `from` (split envelopes). */
  shareBody(from: QueueId, to: QueueId): Promise<void>;
  /**
   * Puts a new message's body and envelopes in place without fsync, for a
   * message the intake journal already holds durably. Returns the files
   * written (the journal's checkpoint makes them durable).
   */
  place(bodyId: QueueId, body: Buffer, envelopes: ReadonlyArray<{ place: Place; id: QueueId; bytes: Buffer }>): Promise<string[]>;
  /** Makes files written by place() durable (one syncfs where possible). */
  makeDurable(files: readonly string[]): Promise<void>;
  /** Writes (or replaces) an envelope atomically at `place`. */
  putEnvelope(place: Place, id: QueueId, bytes: Buffer): Promise<void>;
  /** Moves an envelope atomically, optionally rewriting it on the way. */
  move(id: QueueId, from: Place, to: Place, bytes?: Buffer): Promise<void>;
  /** Deletes an envelope and its body. */
  remove(id: QueueId, place: Place): Promise<void>;
  readEnvelope(id: QueueId, place: Place): Promise<Buffer>;
  /** `sizeHint` (the envelope's size) lets a backend pick how to read. */
  readBody(id: QueueId, sizeHint?: number): Promise<Buffer>;
  /** IDs at a place, in no particular order. */
  walk(place: Place): AsyncIterable<QueueId>;
  /** Groups with a queued/ directory. */
  groups(): Promise<string[]>;
  /** Removes leftovers of interrupted writes (bodies without envelopes, temp files) older than `before`. */
  recover(isReferenced: (id: QueueId) => boolean, before: number): Promise<number>;
  /** The files that make up a message at a place (for syncing). */
  files(id: QueueId, place: Place): string[];
}
