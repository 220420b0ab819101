/**
 * queue/journaled-store.ts — the intake journal's write-back cache, as a
 * store that wraps another (queue/store.ts). The queue above it does not
 * know it exists.
 *
 * A new small message goes through the intake journal (group commit, see
 * queue/journal.ts) and stays "resident" — served from memory, state queued
 * — until it is settled into the inner store's own files: in bulk when
 * intake has been idle for a moment, memory use passes a cap, or the oldest
 * has waited SETTLE_MAX_AGE; one at a time before any other change to it.
 * A large message goes straight to the inner store. A message is removed
 * only after the journal segment that holds it is gone, so it never comes
 * back. init() replays the journal (rewrites what a crash left incomplete);
 * read-only (a CLI while the daemon is down) lists the journal's messages
 * without writing anything.
 */
import type { Logger } from 'pino';
import { QuietlinkError } from '../errors.js';
import { decodeEnvelope, encodeEnvelope } from './envelope.js';
import type { IntakeJournal } from './journal.js';
import type { QueueId } from './queue-id.js';
import { livePlaces, notFound, type BodyWriter, type NewMessage, type Place, type QueueStore } from './store.js';

/** Bodies up to this size are kept in memory and go through the intake journal. */
export const JOURNAL_MAX_BODY = 1024 * 1024;
/** Resident messages are settled at least this often under a steady trickle (ms). */
const SETTLE_MAX_AGE = 30_000;
/** Journal records replayed at once at start-up. */
const REPLAY_CONCURRENCY = 32;

export interface JournaledStoreOptions {
  log: Logger;
  now?: () => number;
  readOnly?: boolean;
  /** Resident messages are settled after this much idle time (ms)… */
  settleIdle?: number;
  /** …or as soon as they hold this many bytes of memory. */
  settleBytes?: number;
}

interface Resident {
  envelopes: Array<{ place: Place; id: QueueId; bytes: Buffer }>;
  body: Buffer;
  token: unknown;
}

/** A new body: in memory while small, spilled to the inner store's body once large. */
class JournaledBody implements BodyWriter {
  chunks: Buffer[] = [];
  bytes = 0;
  spilled: BodyWriter | null = null;
  constructor(readonly id: QueueId, private readonly inner: QueueStore) {}

  async write(chunk: Buffer): Promise<void> {
    if (this.spilled) return this.spilled.write(chunk);
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes > JOURNAL_MAX_BODY) {
      this.spilled = await this.inner.create(this.id);
      await this.spilled.write(this.take());
    }
  }

  take(): Buffer {
    const b = Buffer.concat(this.chunks);
    this.chunks = [];
    return b;
  }

  async abort(): Promise<void> {
    this.chunks = [];
    await this.spilled?.abort();
  }
}

const placeKey = (p: Place) => (p.state === 'queued' ? `q/${p.group}` : p.state);

export class JournaledStore implements QueueStore {
  private readonly resident = new Map<QueueId, Resident>();
  private residentBytes = 0;
  private residentSince: number | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private settleChain: Promise<void> = Promise.resolve();
  /** The journal segment each message's record went to, until that segment is deleted. */
  private readonly journaledIn = new Map<QueueId, unknown>();
  private readonly now: () => number;

  constructor(private readonly inner: QueueStore, private readonly journal: IntakeJournal, private readonly opts: JournaledStoreOptions) {
    this.now = opts.now ?? Date.now;
  }

  async init(groups: readonly string[]): Promise<void> {
    if (this.opts.readOnly) return this.loadReadOnly(groups);
    await this.inner.init(groups);
    await this.replay();
  }

  async create(id: QueueId): Promise<BodyWriter> {
    return new JournaledBody(id, this.inner);
  }

  async put(messages: readonly NewMessage[]): Promise<void> {
    await Promise.all(messages.map((m) => this.putOne(m)));
  }

  private async putOne(m: NewMessage): Promise<void> {
    const spilled = m.body instanceof JournaledBody ? m.body.spilled : null;
    const bytes = Buffer.isBuffer(m.body) ? m.body : spilled ? null : (m.body as JournaledBody).take();
    if (!bytes || bytes.length > JOURNAL_MAX_BODY || m.envelopes.some((e) => e.place.state !== 'queued')) {
      return this.inner.put([{ id: m.id, body: spilled ?? bytes!, envelopes: m.envelopes }]);
    }
    // backpressure: while twice the settle threshold waits in memory, new mail waits for the write-back
    // (intake faster than the disk takes files must not grow the daemon without bound)
    while (this.residentBytes >= 2 * this.settleBytes()) await this.settleAll();
    const records = Buffer.from(`[${m.envelopes.map((e) => e.bytes.toString()).join(',')}]`);
    const token = await this.journal.append({ envelopes: records, body: bytes });
    const entry: Resident = { envelopes: [...m.envelopes], body: bytes, token };
    for (const e of m.envelopes) {
      this.resident.set(e.id, entry);
      this.journaledIn.set(e.id, token);
    }
    this.residentBytes += bytes.length;
    this.scheduleSettle();
  }

  private residentAt(id: QueueId, place: Place) {
    return this.resident.get(id)?.envelopes.find((e) => e.id === id && placeKey(e.place) === placeKey(place));
  }

  async putEnvelope(place: Place, id: QueueId, bytes: Buffer): Promise<void> {
    await this.settle(id);
    return this.inner.putEnvelope(place, id, bytes);
  }

  async move(id: QueueId, from: Place, to: Place, bytes?: Buffer): Promise<void> {
    await this.settle(id);
    return this.inner.move(id, from, to, bytes);
  }

  async remove(id: QueueId, place: Place): Promise<void> {
    // a removed message must never come back from the journal: its segment goes first
    const token = this.journaledIn.get(id);
    if (token !== undefined && !this.journal.isReleased(token)) {
      await this.settleAll();
      if (!this.journal.isReleased(token)) throw new QuietlinkError(`Cannot remove message ${id}: its intake journal segment is still in use`);
    }
    this.journaledIn.delete(id);
    return this.inner.remove(id, place);
  }

  async readEnvelope(id: QueueId, place: Place): Promise<Buffer> {
    const r = this.residentAt(id, place);
    if (r) return r.bytes;
    if (this.resident.has(id)) throw notFound(`envelope ${id}`);
    return this.inner.readEnvelope(id, place);
  }

  async readBody(id: QueueId, sizeHint?: number): Promise<Buffer> {
    return this.resident.get(id)?.body ?? this.inner.readBody(id, sizeHint);
  }

  async *walk(place: Place): AsyncIterable<QueueId> {
    const resident = [...this.resident.keys()];
    for (const id of resident) if (this.residentAt(id, place)) yield id;
    const seen = new Set(resident);
    for await (const id of this.inner.walk(place)) if (!seen.has(id)) yield id;
  }

  groups(): Promise<string[]> {
    return this.inner.groups();
  }

  recover(isReferenced: (id: QueueId) => boolean, before: number): Promise<number> {
    return this.inner.recover((id) => isReferenced(id) || this.resident.has(id), before);
  }

  /** Stops timers and settles; resident messages were safe in the journal all along. */
  async close(): Promise<void> {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = null;
    if (this.opts.readOnly) return this.inner.close();
    await this.settleAll();
    await this.journal.close();
    await this.inner.close();
  }

  private scheduleSettle(): void {
    const now = this.now();
    if (this.residentSince === null) this.residentSince = now;
    const settleNow = () => {
      this.settleTimer = null;
      this.residentSince = null;
      void this.settleAll().catch((err) => this.opts.log.error({ err }, 'cannot write queued messages to their files'));
    };
    // a steady trickle keeps refreshing the idle timer: settle at least every SETTLE_MAX_AGE
    if (this.residentBytes >= this.settleBytes() || now - this.residentSince >= SETTLE_MAX_AGE) return settleNow();
    if (this.settleTimer) this.settleTimer.refresh();
    else {
      this.settleTimer = setTimeout(settleNow, this.opts.settleIdle ?? 250);
      this.settleTimer.unref();
    }
  }

  private settleBytes(): number {
    return this.opts.settleBytes ?? 32 * 1024 * 1024;
  }

  private forget(entry: Resident): void {
    for (const e of entry.envelopes) this.resident.delete(e.id);
    this.residentBytes -= entry.body.length;
    this.journal.settled(entry.token);
  }

  /** Settling runs one step at a time, so a message is never written twice or after it moved on. */
  private serially(step: () => Promise<void>): Promise<void> {
    const next = this.settleChain.then(step);
    this.settleChain = next.catch(() => undefined);
    return next;
  }

  private static toInner(entries: readonly Resident[]): NewMessage[] {
    return entries.map((e) => ({ id: e.envelopes[0].id, body: e.body, envelopes: e.envelopes }));
  }

  /** Writes every resident message to the inner store in one batch (one sync), then lets the journal delete its segments. */
  settleAll(): Promise<void> {
    return this.serially(async () => {
      await this.journal.rotate();
      const entries = [...new Set(this.resident.values())];
      if (entries.length) await this.inner.put(JournaledStore.toInner(entries));
      for (const entry of entries) this.forget(entry);
      await this.journal.release();
      for (const [id, token] of this.journaledIn) if (this.journal.isReleased(token)) this.journaledIn.delete(id);
      if (entries.length) {
        const ids = entries.flatMap((e) => e.envelopes.map((x) => x.id));
        this.opts.log.info({ messages: entries.length, ...(ids.length <= 50 ? { ids } : {}) }, 'settled');
      }
    });
  }

  /** Before any other change: a resident message gets its own durable files first. */
  private settle(id: QueueId): Promise<void> {
    if (!this.resident.has(id)) return Promise.resolve();
    return this.serially(async () => {
      const entry = this.resident.get(id);
      if (!entry) return;
      await this.inner.put(JournaledStore.toInner([entry]));
      this.forget(entry);
    });
  }

  /** Decodes a journal record's envelopes: where each belongs (queued, its group) and its bytes. */
  private static decodeRecord(envelopes: Buffer): Resident['envelopes'] {
    return (JSON.parse(envelopes.toString()) as unknown[]).map((raw) => {
      const env = decodeEnvelope(JSON.stringify(raw));
      return { id: env.id, place: { state: 'queued', group: env.group }, bytes: encodeEnvelope(env) };
    });
  }

  /** Where the inner store has this envelope intact (an envelope that moved on, held or updated, is kept as it is). */
  private async findInner(id: QueueId, groups: readonly string[]): Promise<{ place: Place; intact: boolean } | null> {
    for (const place of livePlaces(groups)) {
      const bytes = await this.inner.readEnvelope(id, place).catch(() => null);
      if (!bytes) continue;
      try {
        return { place, intact: decodeEnvelope(bytes).id === id };
      } catch {
        return { place, intact: false };
      }
    }
    return null;
  }

  /**
   * What to do with one journal record at start-up: a message none of whose
   * envelopes has files is kept in memory again ('adopt': written back in
   * the background, its segment kept until then); the parts a crash left
   * damaged are rewritten now; a message whose files are whole needs nothing.
   */
  private async triage(rec: { envelopes: Buffer; body: Buffer }, groups: readonly string[]): Promise<{ adopt: Resident['envelopes'] } | { repairs: NewMessage[] }> {
    const envelopes = JournaledStore.decodeRecord(rec.envelopes);
    const found = await Promise.all(envelopes.map((e) => this.findInner(e.id, groups)));
    if (found.every((f) => f === null)) return { adopt: envelopes };
    const repairs: NewMessage[] = [];
    for (const [i, e] of envelopes.entries()) {
      const f = found[i];
      const body = await this.inner.readBody(e.id).catch(() => null);
      if (f?.intact && body?.equals(rec.body)) continue;
      // an envelope that exists and reads well may have moved on (held, updated): it is kept as it is
      repairs.push({ id: e.id, body: rec.body, envelopes: f?.intact ? [] : [{ ...e, place: f?.place ?? e.place }] });
    }
    return { repairs };
  }

  /**
   * Start-up, before anything else touches the queue: messages of the journal
   * that have no files yet are served from memory again and written back in
   * the background, as after intake; what a crash left damaged is rewritten
   * (the inner store's init made the rest durable); then the journal opens.
   */
  private async replay(): Promise<void> {
    const groups = await this.inner.groups();
    const repairs: NewMessage[] = [];
    const adopted: Array<{ segment: string; envelopes: Resident['envelopes']; body: Buffer }> = [];
    const inFlight = new Set<Promise<void>>();
    for await (const rec of this.journal.replay()) {
      const p: Promise<void> = this.triage(rec, groups).then(
        (t) => void ('adopt' in t ? adopted.push({ segment: rec.segment, envelopes: t.adopt, body: rec.body }) : repairs.push(...t.repairs)),
        (err) => this.opts.log.error({ err }, 'skipping an unreadable intake journal record'),
      ).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= REPLAY_CONCURRENCY) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (repairs.length) await this.inner.put(repairs);
    const perSegment = new Map<string, number>();
    for (const a of adopted) perSegment.set(a.segment, (perSegment.get(a.segment) ?? 0) + 1);
    // the old segments go only after everything they vouched for is durable on its own
    const tokens = await this.journal.open(perSegment);
    for (const a of adopted) {
      const entry: Resident = { envelopes: a.envelopes, body: a.body, token: tokens.get(a.segment) };
      for (const e of a.envelopes) {
        this.resident.set(e.id, entry);
        this.journaledIn.set(e.id, entry.token);
      }
      this.residentBytes += a.body.length;
    }
    if (adopted.length) this.scheduleSettle();
    if (repairs.length || adopted.length) {
      this.opts.log.warn({ messages: repairs.length + adopted.length, rewritten: repairs.length, fromJournal: adopted.length }, 'intake journal replayed: messages a crash left without their files are queued again');
    }
  }

  /** Read-only: lists the journal's messages that have no files yet as resident (the daemon is not running). */
  private async loadReadOnly(groups: readonly string[]): Promise<void> {
    const all = [...new Set([...groups, ...(await this.inner.groups().catch(() => []))])];
    for await (const rec of this.journal.replay()) {
      try {
        const missing = [];
        for (const e of JournaledStore.decodeRecord(rec.envelopes)) if (!(await this.findInner(e.id, all))) missing.push(e);
        if (!missing.length) continue;
        const entry: Resident = { envelopes: missing, body: rec.body, token: null };
        for (const e of missing) this.resident.set(e.id, entry);
      } catch {
        // a damaged record is the daemon's to report at its next start
      }
    }
  }
}
