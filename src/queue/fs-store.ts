/**
 * queue/fs-store.ts — the filesystem queue backend.
 *
 *   spool/tmp/                  envelopes being written (name.N.json), swept at start
 *   spool/data/ID               message bodies (written in place; an unreferenced
 *                               body is the leftover of an interrupted intake)
 *   spool/queue/GROUP/ID.json   envelopes waiting for delivery, by queue group
 *   spool/hold/ID.json          held
 *   spool/quarantine/ID.json    quarantined
 *   spool/corrupt/ID.json       unreadable envelopes, kept for a person to look at
 *
 * Every write goes to a temporary name, is fsynced, renamed into place, and the
 * directory is fsynced (shared by concurrent callers) before the promise
 * resolves. A state change is one rename. Owned by queue/queue.ts only.
 */
import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { GroupSync, fsyncDir } from './group-sync.js';
import { isQueueId, type QueueId } from './queue-id.js';
import type { BodyWriter, NewMessage, Place, QueueStore } from './store.js';

/** Messages of a batch written at once. */
const PUT_CONCURRENCY = 8;

/** Bodies up to this size are read synchronously (see readEnvelope). */
const SYNC_READ_MAX = 256 * 1024;

const STATE_DIRS = { held: 'hold', quarantined: 'quarantine', corrupt: 'corrupt' } as const;

export class FsStore implements QueueStore {
  private readonly dirSync = new GroupSync();
  private tmpSeq = 0;

  constructor(readonly spool: string) {}

  dir(place: Place): string {
    if (place.state === 'queued') return path.join(this.spool, 'queue', place.group ?? 'mqueue');
    return path.join(this.spool, STATE_DIRS[place.state]);
  }

  private envelopePath(id: QueueId, place: Place): string {
    return path.join(this.dir(place), `${id}.json`);
  }

  private bodyPath(id: QueueId): string {
    return path.join(this.spool, 'data', id);
  }

  async init(groups: readonly string[]): Promise<void> {
    await this.makeDirs(groups);
    // what a crash left in the page cache only is durable before anyone relies on it
    await this.makeDurable([this.spool]);
  }

  async close(): Promise<void> {}

  private async makeDirs(groups: readonly string[]): Promise<void> {
    const dirs = ['tmp', 'data', 'hold', 'quarantine', 'corrupt', 'maildrop', 'queue', ...groups.map((g) => path.join('queue', g))];
    for (const d of dirs) {
      // no one but the daemon reads queued mail; every local user may drop into maildrop (queue/maildrop.ts)
      await fs.mkdir(path.join(this.spool, d), { recursive: true, mode: 0o700 });
      if (d !== 'maildrop') await fs.chmod(path.join(this.spool, d), 0o700).catch(() => undefined);
    }
    // the spool: others may pass through it (to maildrop and the control socket), not list it
    await fs.chmod(this.spool, 0o711).catch(() => undefined);
    await fs.chmod(path.join(this.spool, 'maildrop'), 0o1733).catch(() => undefined);
  }

  async create(id: QueueId): Promise<BodyWriter> {
    const file = this.bodyPath(id);
    return new FsBody(id, file, await fs.open(file, 'w', 0o600));
  }

  private async writeTemp(id: QueueId, bytes: Buffer, sync = true): Promise<string> {
    const tmp = path.join(this.spool, 'tmp', `${id}.${process.pid}.${++this.tmpSeq}.json`);
    const fh = await fs.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(bytes);
      if (sync) await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fs.rm(tmp, { force: true });
      throw err;
    } finally {
      await fh.close().catch(() => undefined);
    }
    return tmp;
  }

  /**
   * One message: every file fsynced (directories shared with concurrent
   * callers). A batch (the journal's write-back): written without fsync,
   * then one syncfs for all of it.
   */
  async put(messages: readonly NewMessage[]): Promise<void> {
    const batch = messages.length > 1;
    const files: string[] = [];
    let next = 0;
    let failure: unknown = null;
    // a batch is written by PUT_CONCURRENCY workers; every one has stopped before put() settles
    const worker = async () => {
      while (next < messages.length && failure === null) {
        const m = messages[next++];
        try {
          files.push(...(await this.putOne(m, !batch)));
        } catch (err) {
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PUT_CONCURRENCY, messages.length) }, worker));
    if (failure !== null) throw failure;
    if (batch) await this.makeDurable(files);
    else await Promise.all([...new Set(files.map((f) => path.dirname(f)))].map((d) => this.dirSync.sync(d)));
  }

  private async putOne(m: NewMessage, sync: boolean): Promise<string[]> {
    const bodyFile = this.bodyPath(m.id);
    if (Buffer.isBuffer(m.body)) await writeWhole(bodyFile, m.body, sync);
    else if (m.body instanceof FsBody && m.body.id === m.id) await m.body.finish(sync);
    else throw new Error('FsStore.put: the body was not created by this store');
    const files = [bodyFile];
    const placed: Array<{ id: QueueId; place: Place }> = [];
    try {
      for (const e of m.envelopes) {
        if (e.id !== m.id) {
          await fs.rm(this.bodyPath(e.id), { force: true });
          await fs.link(bodyFile, this.bodyPath(e.id));
        }
        const target = this.envelopePath(e.id, e.place);
        await fs.rename(await this.writeTemp(e.id, e.bytes, sync), target);
        placed.push(e);
        files.push(target);
      }
    } catch (err) {
      // all parts or none: the client is told to try again, so a part left here would go out twice
      for (const e of placed) await fs.unlink(this.envelopePath(e.id, e.place)).catch(() => undefined);
      throw err;
    }
    return files;
  }

  private async makeDurable(files: readonly string[]): Promise<void> {
    if (files.length === 0) return;
    if (await syncFileSystem(this.spool)) return;
    const dirs = new Set<string>();
    for (const f of files) {
      const fh = await fs.open(f, 'r').catch(() => null);
      if (!fh) continue;
      await fh.sync();
      await fh.close();
      dirs.add(path.dirname(f));
    }
    for (const d of dirs) await fsyncDir(d);
  }

  async putEnvelope(place: Place, id: QueueId, bytes: Buffer): Promise<void> {
    const tmp = await this.writeTemp(id, bytes);
    const target = this.envelopePath(id, place);
    await fs.rename(tmp, target);
    await this.dirSync.sync(path.dirname(target));
  }

  async move(id: QueueId, from: Place, to: Place, bytes?: Buffer): Promise<void> {
    const source = this.envelopePath(id, from);
    const target = this.envelopePath(id, to);
    if (bytes) {
      // rewrite in the old place first, then one rename: never two copies, never none
      const tmp = await this.writeTemp(id, bytes);
      await fs.rename(tmp, source);
    }
    if (source !== target) await fs.rename(source, target);
    await Promise.all([this.dirSync.sync(path.dirname(source)), this.dirSync.sync(path.dirname(target))]);
  }

  async remove(id: QueueId, place: Place): Promise<void> {
    const target = this.envelopePath(id, place);
    // (unlinkSync was measured slower here: it waits on the journal the directory syncs commit)
    await fs.unlink(target);
    await this.dirSync.sync(path.dirname(target));
    await fs.unlink(this.bodyPath(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  /**
   * Envelopes are small and read in bulk by queue runs: one synchronous read
   * (open, read, close in one call) costs a fraction of four thread-pool
   * round trips, and a small file in the page cache does not hold the loop.
   */
  async readEnvelope(id: QueueId, place: Place): Promise<Buffer> {
    return readFileSync(this.envelopePath(id, place));
  }

  /** Small bodies are read like envelopes; large ones without holding the loop. */
  async readBody(id: QueueId, sizeHint?: number): Promise<Buffer> {
    const file = this.bodyPath(id);
    return sizeHint !== undefined && sizeHint <= SYNC_READ_MAX ? readFileSync(file) : fs.readFile(file);
  }

  async *walk(place: Place): AsyncIterable<QueueId> {
    let dir;
    try {
      dir = await fs.opendir(this.dir(place));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for await (const entry of dir) {
      const name = entry.name;
      if (name.endsWith('.json') && isQueueId(name.slice(0, -5))) yield name.slice(0, -5) as QueueId;
    }
  }

  async groups(): Promise<string[]> {
    try {
      const entries = await fs.readdir(path.join(this.spool, 'queue'), { withFileTypes: true });
      return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  async recover(isReferenced: (id: QueueId) => boolean, before: number): Promise<number> {
    let removed = 0;
    const old = async (file: string) => (await fs.stat(file).catch(() => null))?.mtimeMs ?? Infinity;
    for (const name of await fs.readdir(path.join(this.spool, 'tmp'))) {
      const file = path.join(this.spool, 'tmp', name);
      if ((await old(file)) >= before) continue;
      await fs.rm(file, { force: true });
      removed++;
    }
    for (const name of await fs.readdir(path.join(this.spool, 'data'))) {
      if (!isQueueId(name) || isReferenced(name)) continue;
      const file = path.join(this.spool, 'data', name);
      if ((await old(file)) >= before) continue;
      await fs.rm(file, { force: true });
      removed++;
    }
    return removed;
  }
}

/** syncfs(2) on the file system holding `dir`, through coreutils `sync -f`; false where that is not possible. */
function syncFileSystem(dir: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('sync', ['-f', dir], { stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

/** A body being written: fsynced and closed by put(), deleted by abort(). */
class FsBody implements BodyWriter {
  private closed = false;

  constructor(readonly id: QueueId, private readonly file: string, private readonly fh: fs.FileHandle) {}

  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) off += (await this.fh.write(chunk, off)).bytesWritten;
  }

  async finish(sync: boolean): Promise<void> {
    if (this.closed) return;
    if (sync) await this.fh.sync();
    this.closed = true;
    await this.fh.close();
  }

  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.fh.close().catch(() => undefined);
    }
    await fs.rm(this.file, { force: true });
  }
}

async function writeWhole(file: string, bytes: Buffer, sync: boolean): Promise<void> {
  const fh = await fs.open(file, 'w', 0o600);
  try {
    await fh.writeFile(bytes);
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
}
