/**
 * queue/journal.ts — the intake journal: group commit for new messages.
 *
 * A new message (its envelopes and body) is appended to the active segment
 * `spool/journal/NNNNNNNNNN.wal`; concurrent appends are written with one
 * writev and made durable with one fdatasync, and then every caller of the
 * batch is told. That is the moment intake may answer 250. The queue keeps
 * such messages in memory and writes their own files later, in bulk, when
 * intake is idle (queue/queue.ts): on ext4 every fdatasync would otherwise
 * also flush each freshly created queue file, which costs more than the rest
 * of intake together. A segment is deleted once the files of all its
 * records are durable (settled()).
 *
 * Record: "QLJ1" | u32 payload length | u32 crc32(payload) | payload, where
 * payload = u32 envelope-JSON length | envelopes JSON (array) | body.
 * A torn record at the end of a segment (crash mid-write) was never
 * acknowledged; replay stops there.
 *
 * Owned by queue/queue.ts. A failed write or fdatasync rejects every caller
 * of that batch (they answer 451) and later records go to a new segment.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { fsyncDir } from './group-sync.js';

const MAGIC = Buffer.from('QLJ1');
const HEADER = 12;
const writev = promisify(fs.writev);
const fdatasync = promisify(fs.fdatasync);
const close = promisify(fs.close);
const ftruncate = promisify(fs.ftruncate);
const open = promisify(fs.open);

export interface JournalRecord {
  envelopes: Buffer;
  body: Buffer;
}

interface Segment {
  seq: number;
  file: string;
  fd: number | null;
  size: number;
  /** Appended records whose own files are not durable yet. */
  unsettled: number;
  /** Deleted from disk: nothing in it can come back at replay. */
  released: boolean;
}

interface Pending {
  bufs: Buffer[];
  bytes: number;
  resolve: (seg: Segment) => void;
  reject: (err: unknown) => void;
}

export function encodeRecord(rec: JournalRecord): Buffer[] {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(rec.envelopes.length);
  const payloadLength = 4 + rec.envelopes.length + rec.body.length;
  let crc = zlib.crc32(len);
  crc = zlib.crc32(rec.envelopes, crc);
  crc = zlib.crc32(rec.body, crc);
  const header = Buffer.alloc(HEADER);
  MAGIC.copy(header, 0);
  header.writeUInt32BE(payloadLength, 4);
  header.writeUInt32BE(crc >>> 0, 8);
  return [header, len, rec.envelopes, rec.body];
}

/** Every whole, intact record of a segment file; stops at the first torn or damaged one. */
export function decodeSegment(bytes: Buffer): { records: JournalRecord[]; tornAt: number | null } {
  const records: JournalRecord[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    if (pos + HEADER > bytes.length || !bytes.subarray(pos, pos + 4).equals(MAGIC)) return { records, tornAt: pos };
    const length = bytes.readUInt32BE(pos + 4);
    const crc = bytes.readUInt32BE(pos + 8);
    const payload = bytes.subarray(pos + HEADER, pos + HEADER + length);
    if (payload.length !== length || (zlib.crc32(payload) >>> 0) !== crc) return { records, tornAt: pos };
    const envLength = payload.readUInt32BE(0);
    records.push({ envelopes: payload.subarray(4, 4 + envLength), body: payload.subarray(4 + envLength) });
    pos += HEADER + length;
  }
  return { records, tornAt: null };
}

export class IntakeJournal {
  private readonly dir: string;
  private active: Segment | null = null;
  private readonly sealed: Segment[] = [];
  private pending: Pending[] = [];
  /** Batches and segment rotations run one at a time, in order. */
  private serial: Promise<void> = Promise.resolve();
  private batchScheduled = false;
  private nextSeq = 1;

  constructor(spool: string, private readonly opts: { onError?: (err: unknown) => void } = {}) {
    this.dir = path.join(spool, 'journal');
  }

  private segmentPath(seq: number): string {
    return path.join(this.dir, `${String(seq).padStart(10, '0')}.wal`);
  }

  /** Segments on disk, oldest first (left by a previous run when not empty). */
  async existing(): Promise<string[]> {
    try {
      return (await fsp.readdir(this.dir)).filter((n) => /^\d{10}\.wal$/.test(n)).sort().map((n) => path.join(this.dir, n));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** Every intact record of the segments on disk (a previous run's, before open()), with the segment it is in. */
  async *replay(): AsyncIterable<JournalRecord & { segment: string }> {
    for (const file of await this.existing()) {
      const { records } = decodeSegment(await fsp.readFile(file));
      for (const r of records) yield { ...r, segment: file };
    }
  }

  /**
   * Opens a new segment. The segments a previous run left are removed, but
   * for those holding records the caller keeps in memory (`adopted`: segment
   * file → token for each such record, see settled()): they stay until
   * every one of those records is settled.
   */
  async open(adopted: ReadonlyMap<string, number> = new Map()): Promise<Map<string, unknown>> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const old = await this.existing();
    const tokens = new Map<string, unknown>();
    let removed = 0;
    for (const f of old) {
      const n = adopted.get(f) ?? 0;
      if (n > 0) {
        const seg: Segment = { seq: Number(path.basename(f).slice(0, 10)), file: f, fd: null, size: 1, unsettled: n, released: false };
        this.sealed.push(seg);
        tokens.set(f, seg);
      } else {
        await fsp.rm(f, { force: true });
        removed++;
      }
    }
    if (removed) await fsyncDir(this.dir);
    const last = old.length ? Number(path.basename(old[old.length - 1]).slice(0, 10)) : 0;
    this.nextSeq = last + 1;
    this.active = await this.newSegment(this.nextSeq++);
    return tokens;
  }

  private async newSegment(seq: number): Promise<Segment> {
    const file = this.segmentPath(seq);
    const fd = await open(file, 'a', 0o600);
    await fsyncDir(this.dir);
    return { seq, file, fd, size: 0, unsettled: 0, released: false };
  }

  private run(step: () => Promise<void>): Promise<void> {
    const next = this.serial.then(step);
    this.serial = next.catch(() => undefined);
    return next;
  }

  /** Appends one record; resolves once it is durable, with a token for settled(). */
  append(rec: JournalRecord): Promise<unknown> {
    const bufs = encodeRecord(rec);
    return new Promise((resolve, reject) => {
      this.pending.push({ bufs, bytes: bufs.reduce((n, b) => n + b.length, 0), resolve, reject });
      this.scheduleBatch();
    });
  }

  private scheduleBatch(): void {
    if (this.batchScheduled) return;
    this.batchScheduled = true;
    void this.run(async () => {
      this.batchScheduled = false;
      await this.writeBatch();
    });
  }

  /** Writes everything pending with one writev and one fdatasync (group commit). */
  private async writeBatch(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    if (!batch.length) return;
    const bytes = batch.reduce((n, p) => n + p.bytes, 0);
    let seg = this.active;
    try {
      // a failed segment was set aside: open the next one (or answer 451 until that works)
      if (!seg) seg = this.active = await this.newSegment(this.nextSeq++);
      if (seg.fd === null) throw new Error('Intake journal is not open');
      const { bytesWritten } = await writev(seg.fd, batch.flatMap((p) => p.bufs));
      if (bytesWritten !== bytes) throw new Error(`Short write to the intake journal (${bytesWritten} of ${bytes} bytes)`);
      await fdatasync(seg.fd);
    } catch (err) {
      for (const p of batch) p.reject(err);
      this.opts.onError?.(err);
      if (seg) {
        // the callers were told 451: their records must not come back at replay, and a torn
        // record would hide every later one, so cut the segment back and set it aside
        if (seg.fd !== null) await ftruncate(seg.fd, seg.size).catch(() => undefined);
        await this.setAside(seg);
      }
      return;
    }
    seg.size += bytes;
    seg.unsettled += batch.length;
    for (const p of batch) p.resolve(seg);
  }

  /** Closes a segment; the next batch opens a new one. Runs only inside run(). */
  private async setAside(seg: Segment): Promise<void> {
    if (this.active === seg) this.active = null;
    if (seg.fd !== null) {
      const fd = seg.fd;
      seg.fd = null;
      await close(fd).catch(() => undefined);
    }
    if (!this.sealed.includes(seg)) this.sealed.push(seg);
  }

  /** New records go to a new segment from now on (so the current ones can be settled and deleted). */
  rotate(): Promise<void> {
    return this.run(async () => {
      const seg = this.active;
      if (seg && seg.size > 0) await this.setAside(seg);
    });
  }

  /** A record's own files are durable now. */
  settled(token: unknown): void {
    (token as Segment).unsettled--;
  }

  /** Deletes sealed segments all of whose records are settled. */
  async release(): Promise<void> {
    const done = this.sealed.filter((s) => s.unsettled <= 0);
    if (!done.length) return;
    for (const s of done) {
      await fsp.rm(s.file, { force: true });
      this.sealed.splice(this.sealed.indexOf(s), 1);
    }
    await fsyncDir(this.dir);
    for (const s of done) s.released = true;
  }

  /** Whether the segment a record went to is gone from disk (the token from append()). */
  isReleased(token: unknown): boolean {
    return (token as Segment).released;
  }

  /** Waits for pending batches and closes the active segment, deleting it when empty. */
  async close(): Promise<void> {
    await this.run(async () => {
      const seg = this.active;
      if (!seg) return;
      this.active = null;
      if (seg.fd !== null) await close(seg.fd).catch(() => undefined);
      seg.fd = null;
      if (seg.size === 0) await fsp.rm(seg.file, { force: true });
    });
  }
}
