/**
 * link/window-history.ts — the flush-window history (SPEC §4): every window
 * appends one JSON line to `spool/windows.log`; `quietlink windows` and
 * `status` read it back.
 *
 * Owns `spool/windows.log` and `spool/windows.log.1` (mode 0640). Appends are
 * serialised in this process and written with O_APPEND; before a line would
 * take the file past `maxBytes` (default 1 MiB) the file is renamed to
 * `windows.log.1`, replacing the previous one, so the history never takes
 * more than about 2 × maxBytes. An append stats the file (so a file removed
 * or truncated by an operator is noticed) and never reads it.
 *
 * Called by the daemon (one WindowHistory, `load()` once at start, `append()`
 * when a window closes, `recent()` for status) and by the CLI (`readWindows`,
 * no daemon needed).
 *
 * Failure: `append()` never rejects — an I/O error goes to `opts.onError` and
 * the record is still kept in `recent()`; the history is a report, and a full
 * disk must not break a window. `load()` reports to onError too and starts
 * empty. `readWindows()` throws (a QuietlinkError naming the file) on
 * anything but a missing file. Lines that are not JSON records are skipped.
 *
 * Known limits: no fsync (a crash may lose the last line; nothing depends on
 * it). `readWindows()` racing a rotation in the daemon may miss the lines
 * that were in windows.log at that moment; run it again.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { EtrnResult } from '../etrn/etrn-client.js';
import { exitCodeOf, QuietlinkError } from '../errors.js';

/** One flush window, as spool/windows.log keeps it (one JSON line each). */
export interface WindowRecord {
  /** e.g. 'cron *\/15 8-18 * * 1-5', 'interval', 'link-up', 'operator', 'poll 0 *\/3 * * *'; joined triggers as 'a + b' */
  cause: string;
  /** a poll window gets the link only to send ETRN */
  kind: 'send' | 'poll';
  /** ISO 8601 */
  start: string;
  /** ISO 8601 */
  end: string;
  /** ran link.dial */
  dialed: boolean;
  /** the window had the link */
  linkOpen: boolean;
  /** first to last WAN packet */
  linkSeconds: number;
  delivered: number;
  deferred: number;
  failed: number;
  /** recipients left waiting for the link */
  waiting: number;
  connections: number;
  /** messages received from outside the LAN during the window (the ISP's push) */
  inbound: number;
  /** how long the window kept the link after ETRN */
  lingerSeconds: number;
  etrn: EtrnResult | null;
  /** Set when the window itself failed (an I/O error): what it did up to then is above. */
  error?: string;
}

export interface WindowHistoryOptions {
  /** The size windows.log may reach before it is rotated; default 1 MiB. */
  maxBytes?: number;
  /** How many recent records recent() keeps; default 10. */
  keep?: number;
  /** Told about every I/O error of append() and load() (the daemon logs it). */
  onError?: (err: Error) => void;
}

export const WINDOWS_LOG = 'windows.log';
const MODE = 0o640;
/** load() reads the tail in chunks of this size, backwards, until it has enough lines. */
const TAIL_CHUNK = 16 * 1024;

export function windowsLogPath(spool: string): string {
  return path.join(spool, WINDOWS_LOG);
}

/** Pure: one line of windows.log as a record, or null when it is not one (garbage, a torn last line, other JSON). */
export function parseWindowLine(line: string): WindowRecord | null {
  const text = line.trim();
  if (!text.startsWith('{')) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const r = value as Partial<WindowRecord> | null;
  if (!r || typeof r !== 'object' || Array.isArray(r) || typeof r.start !== 'string' || typeof r.cause !== 'string') return null;
  return r as WindowRecord;
}

/** Pure: when a record happened for `--since` — its end, or its start when the end is missing or not a date. NaN when neither is. */
export function recordTime(r: WindowRecord): number {
  const end = typeof r.end === 'string' ? Date.parse(r.end) : NaN;
  return Number.isNaN(end) ? Date.parse(r.start) : end;
}

/** Pure: must the file be rotated before a line of `lineBytes` is appended to it at `size`? Never for an empty file. */
export function shouldRotate(size: number, lineBytes: number, maxBytes: number): boolean {
  return size > 0 && size + lineBytes > maxBytes;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/**
 * The last `count` records of a file (fewer when it has fewer), reading
 * backwards from its end in chunks until enough whole lines parse as
 * records; [] when the file does not exist.
 */
async function tailRecords(file: string, count: number): Promise<WindowRecord[]> {
  if (count <= 0) return [];
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
  try {
    let pos = (await fh.stat()).size;
    let bytes = Buffer.alloc(0);
    let records: WindowRecord[] = [];
    while (pos > 0 && records.length < count) {
      const len = Math.min(TAIL_CHUNK, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      await fh.read(chunk, 0, len, pos);
      bytes = Buffer.concat([chunk, bytes]);
      const lines = bytes.toString('utf8').split('\n');
      // before the first newline is (when the file goes on before it) a piece of a line
      if (pos > 0) lines.shift();
      records = lines.map(parseWindowLine).filter((r): r is WindowRecord => r !== null);
    }
    return records.slice(-count);
  } finally {
    await fh.close();
  }
}

export class WindowHistory {
  readonly file: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly onError: (err: Error) => void;
  private records: WindowRecord[] = [];
  /** Appends run one after another: the size check and the rename must not interleave. */
  private tail: Promise<void> = Promise.resolve();

  constructor(spool: string, opts: WindowHistoryOptions = {}) {
    this.file = windowsLogPath(spool);
    this.maxBytes = opts.maxBytes ?? 1024 * 1024;
    this.keep = Math.max(1, opts.keep ?? 10);
    this.onError = opts.onError ?? (() => undefined);
  }

  /** The last `keep` records (from load() and append()), newest last. */
  recent(): readonly WindowRecord[] {
    return this.records;
  }

  /** Seeds recent() from the tail of the history (windows.log, then windows.log.1 if that is short); call once, at start. */
  async load(): Promise<void> {
    try {
      const current = await tailRecords(this.file, this.keep);
      const loaded = [...(await tailRecords(`${this.file}.1`, this.keep - current.length)), ...current];
      this.records = [...loaded, ...this.records].slice(-this.keep);
    } catch (err) {
      this.report(err);
    }
  }

  private report(err: unknown): void {
    try {
      this.onError(asError(err));
    } catch {
      // a reporter that throws must not leave the append chain rejected (every later append would be lost)
    }
  }

  /** Appends one line; resolves when it is written or has failed (then onError was told). */
  append(record: WindowRecord): Promise<void> {
    this.records = [...this.records, record].slice(-this.keep);
    const line = Buffer.from(`${JSON.stringify(record)}\n`);
    const done = this.tail.then(() => this.write(line)).catch((err) => this.report(err));
    this.tail = done;
    return done;
  }

  private async write(line: Buffer): Promise<void> {
    let size = 0;
    let isNew = false;
    try {
      size = (await fsp.stat(this.file)).size;
    } catch (err) {
      if (!isMissing(err)) throw err;
      isNew = true;
    }
    if (shouldRotate(size, line.length, this.maxBytes)) {
      await fsp.rename(this.file, `${this.file}.1`);
      isNew = true;
    }
    const fh = await fsp.open(this.file, 'a', MODE);
    try {
      // a file this append creates gets 0640 whatever the umask left of it
      if (isNew) await fh.chmod(MODE);
      await fh.write(line);
    } finally {
      await fh.close();
    }
  }
}

async function readLines(file: string): Promise<string[]> {
  try {
    return (await fsp.readFile(file, 'utf8')).split('\n');
  } catch (err) {
    if (isMissing(err)) return [];
    throw new QuietlinkError(`Cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? asError(err).message}`, { cause: err, exitCode: exitCodeOf(err) });
  }
}

/** Reads windows.log.1 then windows.log (skipping lines that are not JSON records), the records whose `end` (or start) is >= since. */
export async function readWindows(spool: string, since?: Date): Promise<WindowRecord[]> {
  const file = windowsLogPath(spool);
  const lines = [...(await readLines(`${file}.1`)), ...(await readLines(file))];
  const records = lines.map(parseWindowLine).filter((r): r is WindowRecord => r !== null);
  if (!since) return records;
  const from = since.getTime();
  return records.filter((r) => recordTime(r) >= from);
}
