/**
 * queue/maildrop.ts — spool/maildrop/: messages submitted by the `sendmail`
 * command of any local user, written durably whether or not the daemon runs
 * (sendmail's client queue, Postfix's maildrop). The daemon moves them into
 * the queue (intake/maildrop-pickup.ts).
 *
 * The folder is mode 1733 (Postfix's public drop box without postdrop's
 * set-group-ID helper, which a script cannot be): every user may create a
 * file, nobody but its owner (the daemon) may list it, the sticky bit keeps
 * users from renaming or removing each other's files, and names carry 96
 * random bits, so a file cannot be found to be read. Who submitted a file is
 * its owner as the kernel records it (fstat), never anything written in it.
 *
 * A maildrop file is one JSON line (sender, recipients, body type, DSN) and
 * the message bytes (CRLF line ends), written mode 0644 to `.NAME.tmp`,
 * fsynced and renamed to NAME. Only the daemon's owner can fsync the folder;
 * a user's command either hands the file to the running daemon (which makes
 * it durable in the queue before it answers) or, with no daemon, syncs the
 * file system (`syncfs`, through `sync -f`).
 *
 * decodeMaildrop() is the daemon's strict check of every field: a file that
 * fails it goes to corrupt/, never into the queue as written.
 */
import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import crypto from 'node:crypto';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fsyncDir } from './group-sync.js';
import { CorruptEnvelopeError } from '../errors.js';
import { isValidMailbox } from '../intake/address.js';

export const MAILDROP_VERSION = 2;
/** A maildrop message's name: 96 random bits. */
const NAME = /^[0-9a-f]{24}$/;
const DSN_NOTIFY = new Set(['NEVER', 'SUCCESS', 'FAILURE', 'DELAY']);

export interface Submission {
  version: typeof MAILDROP_VERSION;
  sender: string;
  recipients: string[];
  time: string;
  bodyType: '7BIT' | '8BITMIME';
  dsn: { ret?: 'FULL' | 'HDRS'; envid?: string; notify?: string[] };
  /** What the submitting command called its user: shown by `mailq -Ac`, never trusted. */
  user?: string;
}

export function maildropDir(spool: string): string {
  return path.join(spool, 'maildrop');
}

export function isMaildropName(name: string): boolean {
  return NAME.test(name);
}

/** Writes one submission; returns its name. The caller makes it durable (handMaildrop or syncMaildrop). */
export async function writeMaildrop(spool: string, sub: Submission, body: Buffer): Promise<string> {
  const dir = maildropDir(spool);
  const name = crypto.randomBytes(12).toString('hex');
  const tmp = path.join(dir, `.${name}.tmp`);
  // a host whose daemon never ran yet (root, or the spool's owner): make the drop box
  if (!(await fs.stat(dir).then(() => true, () => false))) {
    await fs.mkdir(dir, { recursive: true, mode: 0o1733 });
    await fs.chmod(dir, 0o1733);
    await fs.chmod(spool, 0o711).catch(() => undefined);
  }
  const fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    // whatever the caller's umask (077 under hardened cron): the daemon must read it
    await fh.chmod(0o644);
    await fh.writev([Buffer.from(`${JSON.stringify(sub)}\n`), body]);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await fs.rename(tmp, path.join(dir, name));
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  return name;
}

/**
 * Makes a written maildrop file durable without the daemon: the folder's
 * owner fsyncs the folder; anyone else syncs the file system it is on.
 */
export async function syncMaildrop(spool: string, name: string): Promise<void> {
  try {
    await fsyncDir(maildropDir(spool));
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn('sync', ['-f', path.join(maildropDir(spool), name)], { stdio: 'ignore' });
    child.once('error', () => resolve(null));
    child.once('close', resolve);
  });
  // gone: the daemon took it in between, and made it durable in its queue
  if (code !== 0 && (await fs.lstat(path.join(maildropDir(spool), name)).then(() => true, () => false))) {
    throw new Error(`Cannot sync the spool's file system (sync -f exited ${code})`);
  }
}

export async function listMaildrop(spool: string): Promise<string[]> {
  try {
    return (await fs.readdir(maildropDir(spool))).filter(isMaildropName).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Temporary files and unused credential files (control/credentials.ts) that a crashed command left, older than `age` ms. */
export async function staleMaildropTemps(spool: string, now: number, age: number): Promise<string[]> {
  const out: string[] = [];
  for (const n of await fs.readdir(maildropDir(spool)).catch(() => [] as string[])) {
    if (!/^\.[0-9a-f]{24}\.tmp$/.test(n) && !/^cred\.[0-9a-f]{32}$/.test(n)) continue;
    const st = await fs.lstat(path.join(maildropDir(spool), n)).catch(() => null);
    if (st && now - st.mtimeMs > age) out.push(n);
  }
  return out;
}

function bad(why: string): never {
  throw new CorruptEnvelopeError(`Invalid maildrop file: ${why}`);
}

/** Pure: the submission and body of a maildrop file, every field checked. */
export function decodeMaildrop(bytes: Buffer, limits: { maxRecipients: number } = { maxRecipients: 10_000 }): { sub: Submission; body: Buffer } {
  const nl = bytes.indexOf(0x0a);
  if (nl < 0) bad('no header line');
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(bytes.subarray(0, nl).toString('utf8'));
  } catch (err) {
    throw new CorruptEnvelopeError('Invalid maildrop file: header is not JSON', { cause: err });
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad('header is not an object');
  const known = new Set(['version', 'sender', 'recipients', 'time', 'bodyType', 'dsn', 'user']);
  for (const k of Object.keys(raw)) if (!known.has(k)) bad(`unknown field "${k}"`);
  if (raw.version !== MAILDROP_VERSION) bad(`version ${JSON.stringify(raw.version)} (want ${MAILDROP_VERSION})`);
  const sender = raw.sender;
  if (typeof sender !== 'string' || (sender !== '' && !isValidMailbox(sender))) bad('sender is not an address');
  const recipients = raw.recipients;
  if (!Array.isArray(recipients) || recipients.length === 0 || recipients.length > limits.maxRecipients) bad('recipients missing or too many');
  for (const r of recipients) if (typeof r !== 'string' || !isValidMailbox(r)) bad(`recipient ${JSON.stringify(r).slice(0, 80)} is not an address`);
  if (typeof raw.time !== 'string' || Number.isNaN(Date.parse(raw.time))) bad('time');
  if (raw.bodyType !== '7BIT' && raw.bodyType !== '8BITMIME') bad('bodyType');
  const dsn = raw.dsn as Record<string, unknown> | undefined;
  if (!dsn || typeof dsn !== 'object' || Array.isArray(dsn)) bad('dsn');
  for (const k of Object.keys(dsn)) if (!['ret', 'envid', 'notify'].includes(k)) bad(`unknown dsn field "${k}"`);
  if (dsn.ret !== undefined && dsn.ret !== 'FULL' && dsn.ret !== 'HDRS') bad('dsn.ret');
  // ENVID travels as xtext: printable ASCII, no spaces or controls, at most 100 characters (RFC 3461)
  if (dsn.envid !== undefined && (typeof dsn.envid !== 'string' || !/^[\x21-\x7e]{1,100}$/.test(dsn.envid))) bad('dsn.envid');
  if (dsn.notify !== undefined && (!Array.isArray(dsn.notify) || !dsn.notify.every((n) => typeof n === 'string' && DSN_NOTIFY.has(n)))) bad('dsn.notify');
  if (raw.user !== undefined && typeof raw.user !== 'string') bad('user');
  return { sub: raw as unknown as Submission, body: bytes.subarray(nl + 1) };
}

/** The daemon's read of one maildrop file: what it says, and who wrote it (the kernel's word). */
export async function readMaildrop(spool: string, name: string, maxBytes = Number.MAX_SAFE_INTEGER): Promise<{ sub: Submission; body: Buffer; uid: number }> {
  if (!isMaildropName(name)) bad(`name "${name}"`);
  const fh = await fs.open(path.join(maildropDir(spool), name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    // a hard link to someone else's file would carry their uid: only a file with one name counts
    if (!st.isFile()) bad('not a regular file');
    if (st.nlink !== 1) bad(`${st.nlink} links`);
    if (st.size > maxBytes) bad(`${st.size} bytes, more than smtp.maxMessageSize allows`);
    return { ...decodeMaildrop(await fh.readFile()), uid: st.uid };
  } finally {
    await fh.close();
  }
}

export async function removeMaildrop(spool: string, name: string): Promise<void> {
  await fs.rm(path.join(maildropDir(spool), name), { force: true });
  await fsyncDir(maildropDir(spool));
}

/** Moves a maildrop file that cannot be taken to corrupt/ (as maildrop-NAME). */
export async function moveMaildropToCorrupt(spool: string, name: string): Promise<void> {
  await fs.rename(path.join(maildropDir(spool), name), path.join(spool, 'corrupt', `maildrop-${name}`));
  await fsyncDir(path.join(spool, 'corrupt'));
}
