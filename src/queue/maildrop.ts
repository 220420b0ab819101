/**
 * queue/maildrop.ts — spool/maildrop/: messages submitted by the `sendmail`
 * command, written durably whether or not the daemon runs (sendmail's client
 * queue, Postfix's maildrop). The daemon moves them into the queue (pickup).
 *
 * A maildrop file `maildrop/ID` is one JSON line (the submission: sender,
 * recipients, user) followed by the message bytes (CRLF line ends). It is
 * written to `.ID.tmp`, fsynced, renamed, and the folder fsynced. Pickup is
 * idempotent: it keeps the maildrop ID as the queue ID, so a crash between
 * "queued" and "maildrop file removed" never queues the message twice.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir } from './group-sync.js';
import { isQueueId, type QueueId } from './queue-id.js';
import { CorruptEnvelopeError } from '../errors.js';

export const MAILDROP_VERSION = 1;

export interface Submission {
  version: typeof MAILDROP_VERSION;
  sender: string;
  recipients: string[];
  user: string;
  uid: number;
  time: string;
  bodyType: '7BIT' | '8BITMIME';
  dsn: { ret?: 'FULL' | 'HDRS'; envid?: string; notify?: string[] };
}

export function maildropDir(spool: string): string {
  return path.join(spool, 'maildrop');
}

export async function writeMaildrop(spool: string, id: QueueId, sub: Submission, body: Buffer): Promise<void> {
  const dir = maildropDir(spool);
  const tmp = path.join(dir, `.${id}.tmp`);
  // a host whose daemon never ran yet: make the folder (install.sh makes it with the right owner)
  await fs.mkdir(dir, { recursive: true, mode: 0o750 });
  const fh = await fs.open(tmp, 'wx', 0o640);
  try {
    // whatever the caller's umask (077 under hardened cron): the daemon reads it through the group
    await fh.chmod(0o640);
    await fh.writev([Buffer.from(`${JSON.stringify(sub)}\n`), body]);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  // link, not rename: never replace another submission that happened to get the same ID
  try {
    await fs.link(tmp, path.join(dir, id));
  } finally {
    await fs.rm(tmp, { force: true });
  }
  await fsyncDir(dir);
}

export async function listMaildrop(spool: string): Promise<QueueId[]> {
  try {
    return (await fs.readdir(maildropDir(spool))).filter(isQueueId).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export function decodeMaildrop(bytes: Buffer): { sub: Submission; body: Buffer } {
  const nl = bytes.indexOf(0x0a);
  let sub: Submission;
  try {
    sub = JSON.parse(bytes.subarray(0, nl < 0 ? bytes.length : nl).toString());
  } catch (err) {
    throw new CorruptEnvelopeError('Invalid maildrop file: header is not JSON', { cause: err });
  }
  if (sub?.version !== MAILDROP_VERSION || typeof sub.sender !== 'string' || !Array.isArray(sub.recipients) || sub.recipients.length === 0) {
    throw new CorruptEnvelopeError('Invalid maildrop file: bad header');
  }
  return { sub, body: bytes.subarray(nl + 1) };
}

export async function readMaildrop(spool: string, id: QueueId): Promise<{ sub: Submission; body: Buffer }> {
  return decodeMaildrop(await fs.readFile(path.join(maildropDir(spool), id)));
}

export async function removeMaildrop(spool: string, id: QueueId): Promise<void> {
  await fs.rm(path.join(maildropDir(spool), id), { force: true });
  await fsyncDir(maildropDir(spool));
}

/** Moves a maildrop file that cannot be read to corrupt/ (as maildrop-ID). */
export async function moveMaildropToCorrupt(spool: string, id: QueueId): Promise<void> {
  await fs.rename(path.join(maildropDir(spool), id), path.join(spool, 'corrupt', `maildrop-${id}`));
  await fsyncDir(path.join(spool, 'corrupt'));
}
