/**
 * queue/queue.ts — the queue: the only module that changes a message's state.
 *
 * Allowed transitions (anything else throws IllegalTransitionError):
 *
 *   (new)        → queued        commit(): durable before it resolves
 *   queued       → held          hold(reason)
 *   held         → queued        release()
 *   queued|held  → quarantined   quarantine(reason)
 *   quarantined  → quarantined   quarantine(newReason)   (reason changed)
 *   quarantined  → queued|held   unquarantine()          (back where it was)
 *   queued       → queued        update()                (delivery results)
 *   queued       → (removed)     finish()                (no recipient pending)
 *   any          → corrupt       an envelope that cannot be decoded
 *
 * Every change is announced to the listeners (onChange); the in-memory
 * index (queue/index.ts) is one. Storage is the store's (queue/store.ts; the
 * intake journal is a store decorator, queue/journaled-store.ts), locks and
 * change counts are queue/locks.ts's.
 *
 * Callers: intake (commit), maildrop pickup, control (admin commands),
 * delivery (update/finish). Errors from the store propagate; a corrupt
 * envelope is moved aside, logged with its ID, and the walk goes on.
 */
import type { Logger } from 'pino';
import type { QueueGroupConfig } from '../config/schema.js';
import { CorruptEnvelopeError, IllegalTransitionError, QuietlinkError, EX } from '../errors.js';
import { decodeEnvelope, encodeEnvelope, ENVELOPE_VERSION, type Envelope, type Recipient } from './envelope.js';
import { DEFAULT_GROUP, splitByGroup } from './groups.js';
import { priority } from './priority.js';
import { partId, type QueueId } from './queue-id.js';
import { matches, type Selection } from './select.js';
import { livePlaces, type BodyWriter, type Place, type QueueState, type QueueStore } from './store.js';
import { QueueIndex, type QueueChange } from './index.js';
import { Locks } from './locks.js';
import type { Listed } from './listing.js';

export { JOURNAL_MAX_BODY } from './journaled-store.js';

export interface MessageDraft {
  sender: string;
  recipients: Array<Pick<Recipient, 'address' | 'orcpt' | 'notify'>>;
  bodyType: Envelope['bodyType'];
  smtputf8: boolean;
  dsn: Envelope['dsn'];
  client: Envelope['client'];
  class?: number;
}

export interface QueueOptions {
  groups: readonly QueueGroupConfig[];
  log: Logger;
  now?: () => number;
  /** Read-only: a CLI looking at the spool of a daemon that is not running. */
  readOnly?: boolean;
}

export interface Located {
  env: Envelope;
  place: Place;
  /** The message's change count when it was read (see Locks.version). */
  version?: number;
}

/** A new message's body, as intake streams it in. */
export type MessageWriter = BodyWriter;

/** Envelopes read at once while walking (the reads run in parallel). */
const WALK_BATCH = 64;

export class NotInQueueError extends QuietlinkError {
  constructor(id: string) {
    super(`Message ${id} is not in the queue`, { exitCode: EX.DATAERR });
  }
}

export class Queue {
  private readonly now: () => number;
  private readonly groups: readonly QueueGroupConfig[];
  private readonly log: Logger;
  private readonly listeners: Array<(c: QueueChange) => void> = [];
  /** Every message by state, group, priority, next attempt and pending domains (queue/index.ts). */
  readonly index = new QueueIndex();
  readonly locks = new Locks();
  /** Resolves once recover() has walked the store: true when the index is complete. */
  readonly listingReady = this.index.ready;

  constructor(readonly store: QueueStore, private readonly opts: QueueOptions) {
    this.now = opts.now ?? Date.now;
    this.groups = opts.groups;
    this.log = opts.log;
    this.onChange((c) => this.index.apply(c));
  }

  onChange(listener: (c: QueueChange) => void): void {
    this.listeners.push(listener);
  }

  private emit(id: QueueId, env: Envelope | null, state?: Exclude<QueueState, 'corrupt'>): void {
    this.locks.changed(id);
    const change: QueueChange = env && state ? { id, env, state } : { id, gone: true };
    for (const l of this.listeners) l(change);
  }

  /** Creates what the groups need; a journaled store replays its journal here. */
  async init(): Promise<void> {
    await this.store.init([DEFAULT_GROUP, ...this.groups.map((g) => g.name)]);
  }

  /** Starts a new message whose body the caller streams into the returned writer. */
  begin(id: QueueId): Promise<MessageWriter> {
    return this.store.create(id);
  }

  private buildEnvelopes(id: QueueId, size: number, draft: MessageDraft): Envelope[] {
    const parts = splitByGroup(draft.recipients.map((r) => ({ ...r, state: 'pending' as const })), this.groups);
    const arrival = new Date(this.now()).toISOString();
    const cls = draft.class ?? 0;
    return parts.map((part, i): Envelope => ({
      version: ENVELOPE_VERSION,
      id: partId(id, i + 1),
      group: part.group,
      sender: draft.sender,
      recipients: part.recipients,
      arrivalTime: arrival,
      size,
      class: cls,
      priority: priority({ size, recipients: part.recipients.length, class: cls, attempts: 0 }),
      attempts: 0,
      nextAttempt: null,
      bodyType: draft.bodyType,
      smtputf8: draft.smtputf8,
      dsn: draft.dsn,
      client: draft.client,
    }));
  }

  /**
   * Makes a fully written message durable and visible, split into envelopes
   * by queue group, all of them or none. Only after this resolves may anyone
   * answer 250.
   */
  async commit(body: MessageWriter, size: number, draft: MessageDraft): Promise<Envelope[]> {
    const envelopes = this.buildEnvelopes(body.id, size, draft);
    await this.store.put([{
      id: body.id, body,
      envelopes: envelopes.map((e) => ({ place: { state: 'queued', group: e.group }, id: e.id, bytes: encodeEnvelope(e) })),
    }]);
    for (const e of envelopes) this.emit(e.id, e, 'queued');
    return envelopes;
  }

  /** Stops the store's timers and write-back. */
  async close(): Promise<void> {
    await this.store.close();
  }

  /** Reads one envelope; a corrupt one is moved aside (unless read-only) and null returned. */
  private async read(id: QueueId, place: Place): Promise<Envelope | null> {
    let bytes: Buffer;
    try {
      bytes = await this.store.readEnvelope(id, place);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      const env = decodeEnvelope(bytes);
      if (env.id !== id) throw new CorruptEnvelopeError(`Invalid envelope: file ${id} holds id ${env.id}`);
      return env;
    } catch (err) {
      if (!(err instanceof CorruptEnvelopeError)) throw err;
      if (this.opts.readOnly) {
        this.log.warn({ qid: id, err }, 'corrupt envelope (left in place: daemon not running)');
        return null;
      }
      this.emit(id, null);
      await this.store.move(id, place, { state: 'corrupt' });
      this.log.error({ qid: id, from: place.state, reason: err.message }, `Cannot read envelope of ${id}: moved to corrupt`);
      return null;
    }
  }

  /** Where the index says the message is (one read), else every place. */
  async find(id: QueueId): Promise<Located | null> {
    const e = this.index.get(id)?.listed;
    const known: Place | null = e ? (e.state === 'queued' ? { state: 'queued', group: e.group } : { state: e.state }) : null;
    const at = async (place: Place) => {
      const env = await this.read(id, place);
      return env ? { env, place, version: this.locks.version(id) } : null;
    };
    const found = known && (await at(known));
    if (found) return found;
    for (const place of livePlaces(await this.store.groups())) {
      const loc = await at(place);
      if (loc) return loc;
    }
    return null;
  }

  /** Reads a message again where it was found (e.g. after taking its lock); null when it moved on. */
  async reread(loc: Located): Promise<Located | null> {
    const env = await this.read(loc.env.id, loc.place);
    return env ? { env, place: loc.place, version: this.locks.version(loc.env.id) } : null;
  }

  /** Every envelope at the given states, read and validated. */
  async *walk(states: readonly QueueState[] = ['queued', 'held', 'quarantined']): AsyncIterable<Located> {
    const places = livePlaces(await this.store.groups()).filter((p) => states.includes(p.state));
    const readBatch = (ids: QueueId[], place: Place) => Promise.all(ids.map(async (id) => {
      const version = this.locks.version(id);
      const env = await this.read(id, place);
      return env ? { env, place, version } : null;
    }));
    for (const place of places) {
      let ids: QueueId[] = [];
      for await (const id of this.store.walk(place)) {
        ids.push(id);
        if (ids.length < WALK_BATCH) continue;
        for (const loc of await readBatch(ids, place)) if (loc) yield loc;
        ids = [];
      }
      for (const loc of await readBatch(ids, place)) if (loc) yield loc;
    }
  }

  version(id: QueueId): number {
    return this.locks.version(id);
  }

  /** mailq's view of the messages matching a selection, oldest first, from memory; null until the index is complete. */
  listed(sel: Selection): Listed[] | null {
    return this.index.listed(sel);
  }

  /** Envelopes matching a selection, oldest first (read from the store). */
  async list(sel: Selection): Promise<Located[]> {
    const out: Located[] = [];
    for await (const loc of this.walk(sel.quarantined ? ['quarantined'] : ['queued', 'held'])) {
      if (matches(sel, loc.env)) out.push(loc);
    }
    return out.sort((a, b) => (a.env.id < b.env.id ? -1 : a.env.id > b.env.id ? 1 : 0));
  }

  async counts(): Promise<Record<'queued' | 'held' | 'quarantined' | 'corrupt', number>> {
    let corrupt = 0;
    for await (const _ of this.store.walk({ state: 'corrupt' })) corrupt++;
    // from memory (status and metrics scrapes of a big queue); only corrupt/ is read
    if (this.index.complete) return { ...this.index.counts(), corrupt };
    const counts = { queued: 0, held: 0, quarantined: 0, corrupt };
    for (const place of livePlaces(await this.store.groups())) {
      for await (const _ of this.store.walk(place)) counts[place.state as 'queued']++;
    }
    return counts;
  }

  /** The message's bytes as they will be sent. */
  readBody(id: QueueId, sizeHint?: number): Promise<Buffer> {
    return this.store.readBody(id, sizeHint);
  }

  /** Locks a message; resolves with the release. Delivery holds it from reading to writing back. */
  lock(id: QueueId): Promise<() => void> {
    return this.locks.acquire(id);
  }

  private async locate(id: QueueId): Promise<Located> {
    const loc = await this.find(id);
    if (!loc) throw new NotInQueueError(id);
    return loc;
  }

  private stamp(reason: string) {
    return { reason, since: new Date(this.now()).toISOString() };
  }

  /** One state change under the message's lock: read where it is, decide, move, announce, log. */
  private transition(id: QueueId, step: (loc: Located) => { env: Envelope; to: Place; log?: [object, string] } | null): Promise<Envelope> {
    return this.locks.withLock(id, async () => {
      const loc = await this.locate(id);
      const next = step(loc);
      if (!next) return loc.env;
      await this.store.move(id, loc.place, next.to, encodeEnvelope(next.env));
      this.emit(id, next.env, next.to.state as Exclude<QueueState, 'corrupt'>);
      if (next.log) this.log.info({ qid: id, ...next.log[0] }, next.log[1]);
      return next.env;
    });
  }

  hold(id: QueueId, reason = 'held by operator'): Promise<Envelope> {
    return this.transition(id, ({ env, place }) => {
      if (place.state === 'held') return null;
      if (place.state !== 'queued') throw new IllegalTransitionError(`Cannot hold message ${id}: it is ${place.state}`);
      return { env: { ...env, hold: this.stamp(reason) }, to: { state: 'held' }, log: [{ reason }, 'held'] };
    });
  }

  release(id: QueueId): Promise<Envelope> {
    return this.transition(id, ({ env, place }) => {
      if (place.state === 'queued') return null;
      if (place.state !== 'held') throw new IllegalTransitionError(`Cannot release message ${id}: it is ${place.state} (use quarantine -Q "")`);
      return { env: { ...env, hold: undefined, nextAttempt: null }, to: { state: 'queued', group: env.group }, log: [{}, 'released'] };
    });
  }

  /** Quarantines with a reason; an empty reason releases from quarantine. */
  quarantine(id: QueueId, reason: string): Promise<Envelope> {
    if (reason === '') return this.unquarantine(id);
    return this.transition(id, ({ env, place }) => {
      if (place.state === 'corrupt') throw new IllegalTransitionError(`Cannot quarantine message ${id}: it is corrupt`);
      return { env: { ...env, quarantine: this.stamp(reason) }, to: { state: 'quarantined' }, log: [{ reason }, 'quarantined'] };
    });
  }

  unquarantine(id: QueueId): Promise<Envelope> {
    return this.transition(id, ({ env, place }) => {
      if (place.state !== 'quarantined') return null;
      const to: Place = env.hold ? { state: 'held' } : { state: 'queued', group: env.group };
      return { env: { ...env, quarantine: undefined }, to, log: [{}, 'released from quarantine'] };
    });
  }

  /** Rewrites a queued envelope (delivery results, next attempt); the caller holds the lock. */
  async update(env: Envelope): Promise<void> {
    const place: Place = { state: 'queued', group: env.group };
    // never bring back a message that was removed or moved meanwhile
    if (!(await this.store.readEnvelope(env.id, place).then(() => true, () => false))) {
      throw new IllegalTransitionError(`Cannot update message ${env.id}: it is no longer queued`);
    }
    await this.store.putEnvelope(place, env.id, encodeEnvelope(env));
    this.emit(env.id, env, 'queued');
  }

  /** Removes a message none of whose recipients is pending any more; the caller holds the lock. */
  async finish(env: Envelope): Promise<void> {
    if (env.recipients.some((r) => r.state === 'pending')) {
      throw new IllegalTransitionError(`Cannot remove message ${env.id}: recipients are still pending`);
    }
    await this.store.remove(env.id, { state: 'queued', group: env.group });
    // the change count is kept: a run that read this message earlier must see that it changed
    this.emit(env.id, null);
  }

  /**
   * Start-up, in the background: walks the store to fill the index with
   * what was stored before this process began, then sweeps leftovers of
   * interrupted writes made before `before` (ms); returns how many went.
   * Safe while the daemon runs: files written since `before` are never touched.
   */
  async recover(before: number): Promise<number> {
    let complete = false;
    try {
      const referenced = await this.indexStored();
      complete = true;
      for await (const id of this.store.walk({ state: 'corrupt' })) referenced.add(id);
      return await this.store.recover((id) => referenced.has(id), before);
    } finally {
      this.index.walked(complete);
    }
  }

  /** Fills the index from the store; what changed meanwhile was indexed by the change itself. */
  private async indexStored(): Promise<Set<string>> {
    const referenced = new Set<string>();
    const changedMeanwhile: QueueId[] = [];
    for await (const { env, place, version } of this.walk(['queued', 'held', 'quarantined'])) {
      referenced.add(env.id);
      if (version === undefined || this.index.has(env.id)) continue;
      if (this.locks.version(env.id) === version) this.index.apply({ id: env.id, env, state: place.state as 'queued' });
      else changedMeanwhile.push(env.id);
    }
    // a change that failed half-way announced nothing: read those again
    for (const id of changedMeanwhile) {
      if (this.index.has(id)) continue;
      const loc = await this.find(id);
      if (loc) this.index.apply({ id, env: loc.env, state: loc.place.state as 'queued' });
    }
    return referenced;
  }
}
