/**
 * queue/queue.ts — the queue: the only module that changes a message's state.
 *
 * Allowed transitions (anything else throws IllegalTransitionError):
 *
 *   (new)        → queued        commit(): durable (journal or fsync) before it resolves
 *   queued       → held          hold()
 *   held         → queued        release()
 *   queued|held  → quarantined   quarantine(reason)
 *   quarantined  → quarantined   quarantine(newReason)   (reason changed)
 *   quarantined  → queued|held   unquarantine()          (back where it was)
 *   queued       → queued        update()                (delivery results)
 *   queued       → (removed)     finish()                (no recipient pending)
 *   any          → corrupt       an envelope that cannot be decoded
 *
 * New small messages go through the intake journal (group commit, see
 * queue/journal.ts) and stay "resident" — served from memory, state queued —
 * until settle() writes their own files: in bulk when intake has been idle
 * for a moment or memory use passes a cap, or one at a time before any other
 * transition. A large message (or a queue without a journal) is written to
 * its own files and fsynced before commit() resolves.
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
import type { BodyWriter, Place, QueueState, QueueStore } from './store.js';
import type { IntakeJournal } from './journal.js';
import { listingOf, type Listed } from './listing.js';

/** Files written at once when resident messages are settled. */
const SETTLE_CONCURRENCY = 8;

/** Resident messages are settled at least this often under a steady trickle (ms). */
const SETTLE_MAX_AGE = 30_000;

/** Bodies up to this size are kept in memory and go through the intake journal. */
export const JOURNAL_MAX_BODY = 1024 * 1024;

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
  /** Group commit for small new messages; without it every message is fsynced on its own. */
  journal?: IntakeJournal;
  /** Resident messages are written to their own files after this much idle time (ms). */
  settleIdle?: number;
  /** …or as soon as they hold this many bytes of memory. */
  settleBytes?: number;
}

export interface Located {
  env: Envelope;
  place: Place;
  /** The message's change count when it was read (see Queue.version). */
  version?: number;
}

/** Envelopes read at once while walking (the reads run in parallel). */
const WALK_BATCH = 64;

export class NotInQueueError extends QuietlinkError {
  constructor(id: string) {
    super(`Message ${id} is not in the queue`, { exitCode: EX.DATAERR });
  }
}

/**
 * A new message being received: kept in memory while small (it will go
 * through the journal), spilled to its own body file once large.
 */
export class MessageWriter {
  private chunks: Buffer[] = [];
  private bytes = 0;
  spilled: BodyWriter | null = null;

  constructor(readonly id: QueueId, private readonly store: QueueStore, private readonly spillAt: number) {}

  async write(chunk: Buffer): Promise<void> {
    if (this.spilled) return this.spilled.write(chunk);
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes > this.spillAt) {
      this.spilled = await this.store.create(this.id);
      await this.spilled.write(this.takeBuffered());
    }
  }

  takeBuffered(): Buffer {
    const b = Buffer.concat(this.chunks);
    this.chunks = [];
    return b;
  }

  async abort(): Promise<void> {
    this.chunks = [];
    await this.spilled?.abort();
  }
}

interface Resident {
  /** All envelopes of the message (split parts share the body). */
  envelopes: Envelope[];
  body: Buffer;
  token: unknown;
}

export class Queue {
  private readonly now: () => number;
  private readonly groups: readonly QueueGroupConfig[];
  private readonly log: Logger;
  private readonly journal?: IntakeJournal;
  /** Messages durable in the journal only, by envelope ID (each part points to its message). */
  private readonly resident = new Map<QueueId, Resident>();
  private residentBytes = 0;
  private settleTimer: NodeJS.Timeout | null = null;
  private settleChain: Promise<void> = Promise.resolve();
  private readonly changes = new Map<QueueId, number>();
  /** The journal segment each message's record went to, until that segment is deleted. */
  private readonly journaledIn = new Map<QueueId, unknown>();
  /** Per-message locks: delivery holds one while it works on a message; admin commands wait. */
  private readonly locks = new Map<QueueId, Promise<void>>();
  /** When the oldest message still resident was committed (null: none waiting for a settle). */
  private residentSince: number | null = null;
  /** mailq's view of every message that has its own files (resident ones are listed from memory). */
  private readonly listing = new Map<QueueId, Listed>();
  /** The start-up walk (recover) has listed every message that was on disk. */
  private listingComplete = false;
  private listingSettled!: (complete: boolean) => void;
  /** Resolves once recover() has finished: true when the listing is complete. */
  readonly listingReady = new Promise<boolean>((resolve) => (this.listingSettled = resolve));

  constructor(readonly store: QueueStore, private readonly opts: QueueOptions) {
    this.now = opts.now ?? Date.now;
    this.groups = opts.groups;
    this.log = opts.log;
    this.journal = opts.journal;
  }

  async init(): Promise<void> {
    await this.store.init([DEFAULT_GROUP, ...this.groups.map((g) => g.name)]);
  }

  /** Starts a new message whose body the caller streams into the returned writer. */
  async begin(id: QueueId): Promise<MessageWriter> {
    return new MessageWriter(id, this.store, this.journal ? JOURNAL_MAX_BODY : 0);
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
   * by queue group. Only after this resolves may anyone answer 250.
   */
  async commit(body: MessageWriter, size: number, draft: MessageDraft): Promise<Envelope[]> {
    const envelopes = this.buildEnvelopes(body.id, size, draft);
    if (this.journal && !body.spilled) {
      const bytes = body.takeBuffered();
      const token = await this.journal.append({ envelopes: Buffer.from(JSON.stringify(envelopes)), body: bytes });
      const entry: Resident = { envelopes, body: bytes, token };
      for (const e of envelopes) {
        this.resident.set(e.id, entry);
        this.journaledIn.set(e.id, token);
      }
      this.residentBytes += bytes.length;
      this.scheduleSettle();
      return envelopes;
    }
    const writer = body.spilled ?? (await this.store.create(body.id));
    if (!body.spilled) await writer.write(body.takeBuffered());
    await writer.finish();
    await Promise.all(envelopes.slice(1).map((e) => this.store.shareBody(body.id, e.id)));
    const placed = await Promise.allSettled(envelopes.map((e) => this.store.putEnvelope({ state: 'queued', group: e.group }, e.id, encodeEnvelope(e))));
    const failed = placed.find((p): p is PromiseRejectedResult => p.status === 'rejected');
    if (failed) {
      // all parts or none: the client is told to try again, so a part left here would go out twice (or without a body)
      await Promise.all(envelopes.map((e, i) => (placed[i].status === 'fulfilled' ? this.store.remove(e.id, { state: 'queued', group: e.group }) : undefined)))
        .catch((err) => this.log.error({ qid: body.id, err: (err as Error).message }, 'cannot take back the parts of a message that failed'));
      throw failed.reason;
    }
    for (const e of envelopes) this.listing.set(e.id, listingOf(e, 'queued'));
    return envelopes;
  }

  private scheduleSettle(): void {
    const now = this.now();
    if (this.residentSince === null) this.residentSince = now;
    // a steady trickle keeps refreshing the idle timer: settle at least every SETTLE_MAX_AGE
    if (this.residentBytes >= (this.opts.settleBytes ?? 32 * 1024 * 1024) || now - this.residentSince >= SETTLE_MAX_AGE) {
      this.residentSince = null;
      void this.settleAll().catch((err) => this.log.error({ err: (err as Error).message }, 'cannot write queued messages to their files'));
      return;
    }
    if (this.settleTimer) this.settleTimer.refresh();
    else {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = null;
        this.residentSince = null;
        void this.settleAll().catch((err) => this.log.error({ err: (err as Error).message }, 'cannot write queued messages to their files'));
      }, this.opts.settleIdle ?? 250);
      this.settleTimer.unref();
    }
  }

  private static placements(entry: Resident) {
    return entry.envelopes.map((e) => ({ place: { state: 'queued' as const, group: e.group }, id: e.id, bytes: encodeEnvelope(e) }));
  }

  private forget(entry: Resident): void {
    for (const e of entry.envelopes) {
      this.resident.delete(e.id);
      this.listing.set(e.id, listingOf(e, 'queued'));
    }
    this.residentBytes -= entry.body.length;
    this.journal?.settled(entry.token);
  }

  /** Settling runs one step at a time, so a message is never written twice or after it moved on. */
  private serially(step: () => Promise<void>): Promise<void> {
    const next = this.settleChain.then(step);
    this.settleChain = next.catch(() => undefined);
    return next;
  }

  /**
   * Writes every resident message to its own files, makes them durable with
   * one sync, and lets the journal delete its segments.
   */
  settleAll(): Promise<void> {
    const journal = this.journal;
    if (!journal) return Promise.resolve();
    return this.serially(async () => {
      await journal.rotate();
      const entries = [...new Set(this.resident.values())];
      const files: string[] = [];
      let next = 0;
      let failure: unknown = null;
      const worker = async () => {
        while (next < entries.length && failure === null) {
          const entry = entries[next++];
          try {
            files.push(...(await this.store.place(entry.envelopes[0].id, entry.body, Queue.placements(entry))));
          } catch (err) {
            failure ??= err;
          }
        }
      };
      // every worker has stopped before this step ends: none writes after a later step moved a message
      await Promise.all(Array.from({ length: SETTLE_CONCURRENCY }, worker));
      if (failure !== null) throw failure;
      await this.store.makeDurable(files);
      for (const entry of entries) this.forget(entry);
      await journal.release();
      for (const [id, token] of this.journaledIn) if (journal.isReleased(token)) this.journaledIn.delete(id);
      if (entries.length) {
        const ids = entries.flatMap((e) => e.envelopes.map((x) => x.id));
        this.log.info({ messages: entries.length, ...(ids.length <= 50 ? { ids } : {}) }, 'settled');
      }
    });
  }

  /** Before any transition: a resident message gets its own durable files first. */
  private settle(id: QueueId): Promise<void> {
    if (!this.resident.has(id)) return Promise.resolve();
    return this.serially(async () => {
      const entry = this.resident.get(id);
      if (!entry) return;
      await this.store.makeDurable(await this.store.place(entry.envelopes[0].id, entry.body, Queue.placements(entry)));
      this.forget(entry);
    });
  }

  /**
   * Start-up, before anything else touches the queue: rewrites every message
   * of the intake journal whose files a crash left missing or damaged, makes
   * them durable, then opens the journal for new messages.
   */
  async replayJournal(): Promise<number> {
    const journal = this.journal;
    if (!journal) return 0;
    const written: string[] = [];
    let repaired = 0;
    let records = 0;
    const groups = await this.store.groups();
    for await (const rec of journal.replay()) {
      records++;
      let envelopes: Envelope[];
      try {
        envelopes = (JSON.parse(rec.envelopes.toString()) as unknown[]).map((e) => decodeEnvelope(JSON.stringify(e)));
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'skipping an unreadable intake journal record');
        continue;
      }
      for (const env of envelopes) {
        let place: Place | null = null;
        let intact = false;
        for (const p of this.places(groups)) {
          const bytes = await this.store.readEnvelope(env.id, p).catch(() => null);
          if (!bytes) continue;
          place = p;
          try {
            intact = decodeEnvelope(bytes).id === env.id;
          } catch {
            intact = false;
          }
          break;
        }
        const body = await this.store.readBody(env.id).catch(() => null);
        const bodyIntact = body !== null && body.equals(rec.body);
        // files that read well may still sit in the page cache only: they are synced below too
        written.push(...this.store.files(env.id, place ?? { state: 'queued', group: env.group }));
        if (intact && bodyIntact) continue;
        repaired++;
        // an envelope that exists and reads well may have moved on (held, updated): keep it
        written.push(...(await this.store.place(env.id, rec.body, intact ? [] : [{ place: place ?? { state: 'queued', group: env.group }, id: env.id, bytes: encodeEnvelope(env) }])));
      }
    }
    // the old segments go only after everything they vouched for is durable on its own
    if (records) await this.store.makeDurable(written);
    await journal.open();
    if (repaired) this.log.warn({ messages: repaired }, 'intake journal replayed: rewrote messages a crash left incomplete');
    return repaired;
  }

  /** In read-only use: lists the journal's messages as resident (the daemon is not running). */
  async loadJournalReadOnly(): Promise<void> {
    if (!this.journal) return;
    const groups = await this.store.groups();
    for await (const rec of this.journal.replay()) {
      try {
        const envelopes = (JSON.parse(rec.envelopes.toString()) as unknown[]).map((e) => decodeEnvelope(JSON.stringify(e)));
        const missing = [];
        for (const e of envelopes) {
          let found = false;
          for (const p of this.places(groups)) if (await this.store.readEnvelope(e.id, p).then(() => true, () => false)) found = true;
          if (!found) missing.push(e);
        }
        if (missing.length) {
          const entry: Resident = { envelopes: missing, body: rec.body, token: null };
          for (const e of missing) this.resident.set(e.id, entry);
        }
      } catch {
        // a damaged record is the daemon's to report at its next start
      }
    }
  }

  /** Stops timers; resident messages stay safe in the journal. */
  async close(): Promise<void> {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = null;
    await this.settleAll();
  }

  private places(groups: readonly string[]): Place[] {
    return [...groups.map((g): Place => ({ state: 'queued', group: g })), { state: 'held' }, { state: 'quarantined' }];
  }

  private residentLocated(id: QueueId): Located | null {
    const entry = this.resident.get(id);
    const env = entry?.envelopes.find((e) => e.id === id);
    return env ? { env, place: { state: 'queued', group: env.group } } : null;
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
        this.log.warn({ qid: id, err: err.message }, 'corrupt envelope (left in place: daemon not running)');
        return null;
      }
      this.changed(id);
      this.listing.delete(id);
      await this.store.move(id, place, { state: 'corrupt' });
      this.log.error({ qid: id, from: place.state, reason: err.message }, `Cannot read envelope of ${id}: moved to corrupt`);
      return null;
    }
  }

  async find(id: QueueId): Promise<Located | null> {
    const r = this.residentLocated(id);
    if (r) return r;
    for (const place of this.places(await this.store.groups())) {
      const env = await this.read(id, place);
      if (env) return { env, place };
    }
    return null;
  }

  /** Reads a message again where it was found (e.g. after taking its lock); null when it moved on. */
  async reread(loc: Located): Promise<Located | null> {
    const r = this.residentLocated(loc.env.id);
    if (r) return r;
    const env = await this.read(loc.env.id, loc.place);
    return env ? { env, place: loc.place } : null;
  }

  /** Every envelope at the given states, read and validated. */
  async *walk(states: readonly QueueState[] = ['queued', 'held', 'quarantined']): AsyncIterable<Located> {
    const resident = new Set(this.resident.keys());
    if (states.includes('queued')) {
      for (const id of resident) {
        const r = this.residentLocated(id);
        if (r) yield r;
      }
    }
    const places = this.places(await this.store.groups()).filter((p) => states.includes(p.state));
    const readBatch = (ids: QueueId[], place: Place) => Promise.all(ids.map(async (id) => {
      const version = this.version(id);
      const env = await this.read(id, place);
      return env ? { env, place, version } : null;
    }));
    for (const place of places) {
      let ids: QueueId[] = [];
      for await (const id of this.store.walk(place)) {
        if (resident.has(id)) continue;
        ids.push(id);
        if (ids.length < WALK_BATCH) continue;
        for (const loc of await readBatch(ids, place)) if (loc) yield loc;
        ids = [];
      }
      for (const loc of await readBatch(ids, place)) if (loc) yield loc;
    }
  }

  /**
   * How often this process changed the message since it started: every
   * state change and update goes through this class, so a reader that saw
   * version N and still sees N after taking the lock has the current envelope.
   */
  version(id: QueueId): number {
    return this.changes.get(id) ?? 0;
  }

  private changed(id: QueueId): void {
    this.changes.set(id, this.version(id) + 1);
  }

  /**
   * mailq's view of the messages matching a selection, oldest first, from
   * memory; null until the start-up walk (recover) has listed the queue.
   */
  listed(sel: Selection): Listed[] | null {
    if (!this.listingComplete) return null;
    const out: Listed[] = [];
    for (const id of this.resident.keys()) {
      const r = this.residentLocated(id);
      if (r && matches(sel, r.env)) out.push(listingOf(r.env, 'queued'));
    }
    for (const l of this.listing.values()) if (!this.resident.has(l.id) && matches(sel, l)) out.push(l);
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Envelopes matching a selection, oldest first. */
  async list(sel: Selection): Promise<Located[]> {
    const out: Located[] = [];
    for await (const loc of this.walk(sel.quarantined ? ['quarantined'] : ['queued', 'held'])) {
      if (matches(sel, loc.env)) out.push(loc);
    }
    return out.sort((a, b) => (a.env.id < b.env.id ? -1 : a.env.id > b.env.id ? 1 : 0));
  }

  async counts(): Promise<Record<'queued' | 'held' | 'quarantined' | 'corrupt', number>> {
    const counts = { queued: this.resident.size, held: 0, quarantined: 0, corrupt: 0 };
    if (this.listingComplete) {
      // from memory (status and metrics scrapes of a big queue); only corrupt/ is read
      for (const l of this.listing.values()) if (!this.resident.has(l.id) && l.state !== 'corrupt') counts[l.state]++;
      for await (const _ of this.store.walk({ state: 'corrupt' })) counts.corrupt++;
      return counts;
    }
    const groups = await this.store.groups();
    for (const place of [...this.places(groups), { state: 'corrupt' } as Place]) {
      for await (const id of this.store.walk(place)) {
        if (!this.resident.has(id)) counts[place.state]++;
      }
    }
    return counts;
  }

  /** The message's bytes as they will be sent. */
  async readBody(id: QueueId, sizeHint?: number): Promise<Buffer> {
    return this.resident.get(id)?.body ?? this.store.readBody(id, sizeHint);
  }

  /** Locks a message; resolves with the release. Delivery holds it from reading to writing back. */
  async lock(id: QueueId): Promise<() => void> {
    for (let held = this.locks.get(id); held; held = this.locks.get(id)) await held;
    let release!: () => void;
    const p = new Promise<void>((resolve) => (release = resolve));
    this.locks.set(id, p);
    return () => {
      if (this.locks.get(id) === p) this.locks.delete(id);
      release();
    };
  }

  private async locked<T>(id: QueueId, fn: () => Promise<T>): Promise<T> {
    const release = await this.lock(id);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private async locate(id: QueueId): Promise<Located> {
    await this.settle(id);
    const loc = await this.find(id);
    if (!loc) throw new NotInQueueError(id);
    return loc;
  }

  private stamp(reason: string) {
    return { reason, since: new Date(this.now()).toISOString() };
  }

  hold(id: QueueId, reason = 'held by operator'): Promise<Envelope> {
    return this.locked(id, () => this.holdLocked(id, reason));
  }

  private async holdLocked(id: QueueId, reason: string): Promise<Envelope> {
    const { env, place } = await this.locate(id);
    if (place.state === 'held') return env;
    if (place.state !== 'queued') throw new IllegalTransitionError(`Cannot hold message ${id}: it is ${place.state}`);
    const next = { ...env, hold: this.stamp(reason) };
    this.changed(id);
    await this.store.move(id, place, { state: 'held' }, encodeEnvelope(next));
    this.listing.set(id, listingOf(next, 'held'));
    this.log.info({ qid: id, reason }, 'held');
    return next;
  }

  release(id: QueueId): Promise<Envelope> {
    return this.locked(id, () => this.releaseLocked(id));
  }

  private async releaseLocked(id: QueueId): Promise<Envelope> {
    const { env, place } = await this.locate(id);
    if (place.state === 'queued') return env;
    if (place.state !== 'held') throw new IllegalTransitionError(`Cannot release message ${id}: it is ${place.state} (use quarantine -Q "")`);
    const next = { ...env, hold: undefined, nextAttempt: null };
    this.changed(id);
    await this.store.move(id, place, { state: 'queued', group: env.group }, encodeEnvelope(next));
    this.listing.set(id, listingOf(next, 'queued'));
    this.log.info({ qid: id }, 'released');
    return next;
  }

  /** Quarantines with a reason; an empty reason releases from quarantine. */
  quarantine(id: QueueId, reason: string): Promise<Envelope> {
    return this.locked(id, () => (reason === '' ? this.unquarantineLocked(id) : this.quarantineLocked(id, reason)));
  }

  private async quarantineLocked(id: QueueId, reason: string): Promise<Envelope> {
    const { env, place } = await this.locate(id);
    if (place.state === 'corrupt') throw new IllegalTransitionError(`Cannot quarantine message ${id}: it is corrupt`);
    const next = { ...env, quarantine: this.stamp(reason) };
    this.changed(id);
    await this.store.move(id, place, { state: 'quarantined' }, encodeEnvelope(next));
    this.listing.set(id, listingOf(next, 'quarantined'));
    this.log.info({ qid: id, reason }, 'quarantined');
    return next;
  }

  unquarantine(id: QueueId): Promise<Envelope> {
    return this.locked(id, () => this.unquarantineLocked(id));
  }

  private async unquarantineLocked(id: QueueId): Promise<Envelope> {
    const { env, place } = await this.locate(id);
    if (place.state !== 'quarantined') return env;
    const next = { ...env, quarantine: undefined };
    const to: Place = env.hold ? { state: 'held' } : { state: 'queued', group: env.group };
    this.changed(id);
    await this.store.move(id, place, to, encodeEnvelope(next));
    this.listing.set(id, listingOf(next, to.state));
    this.log.info({ qid: id }, 'released from quarantine');
    return next;
  }

  /** Rewrites a queued envelope (delivery results, next attempt); the caller holds the lock. */
  async update(env: Envelope): Promise<void> {
    await this.settle(env.id);
    const place: Place = { state: 'queued', group: env.group };
    // never bring back a message that was removed or moved meanwhile
    if (!(await this.store.readEnvelope(env.id, place).then(() => true, () => false))) {
      throw new IllegalTransitionError(`Cannot update message ${env.id}: it is no longer queued`);
    }
    this.changed(env.id);
    await this.store.putEnvelope(place, env.id, encodeEnvelope(env));
    this.listing.set(env.id, listingOf(env, 'queued'));
  }

  /** Removes a message none of whose recipients is pending any more. */
  async finish(env: Envelope): Promise<void> {
    if (env.recipients.some((r) => r.state === 'pending')) {
      throw new IllegalTransitionError(`Cannot remove message ${env.id}: recipients are still pending`);
    }
    // a removed message must never come back from the journal: its segment goes first
    const token = this.journaledIn.get(env.id);
    if (token !== undefined && this.journal && !this.journal.isReleased(token)) {
      await this.settleAll();
      if (!this.journal.isReleased(token)) throw new QuietlinkError(`Cannot remove message ${env.id}: its intake journal segment is still in use`);
    }
    this.journaledIn.delete(env.id);
    this.changed(env.id);
    this.listing.delete(env.id);
    await this.store.remove(env.id, { state: 'queued', group: env.group });
    // the count is kept: a run that read this message earlier must see that it changed
  }

  /**
   * Sweeps leftovers of interrupted writes made before `before` (ms); returns
   * how many files went. Safe while the daemon runs: files written since
   * `before` are never touched.
   */
  async recover(before: number): Promise<number> {
    try {
      return await this.recoverAndList(before);
    } finally {
      this.listingSettled(this.listingComplete);
    }
  }

  private async recoverAndList(before: number): Promise<number> {
    const referenced = new Set<string>(this.resident.keys());
    const changedMeanwhile: QueueId[] = [];
    for await (const { env, place, version } of this.walk(['queued', 'held', 'quarantined'])) {
      referenced.add(env.id);
      // the same walk lists what was on disk at start; what changed since was listed by the change itself
      if (version === undefined || this.resident.has(env.id) || this.listing.has(env.id)) continue;
      if (this.version(env.id) === version) this.listing.set(env.id, listingOf(env, place.state));
      else changedMeanwhile.push(env.id);
    }
    // a change that failed half-way listed nothing: read those again
    for (const id of changedMeanwhile) {
      if (this.listing.has(id) || this.resident.has(id)) continue;
      const loc = await this.find(id);
      if (loc) this.listing.set(id, listingOf(loc.env, loc.place.state));
    }
    this.listingComplete = true;
    for await (const id of this.store.walk({ state: 'corrupt' })) referenced.add(id);
    return this.store.recover((id) => referenced.has(id) || this.resident.has(id), before);
  }
}
