/**
 * control/credentials.ts — who is asking on the control socket. The socket
 * is open to every local user (mailq, flush and submission are for
 * everyone, as with Postfix); commands that change the queue or the link
 * also need proof of the caller's uid. Node has no SO_PEERCRED, so the proof
 * is a file only that user can have made: the CLI creates
 * `maildrop/cred.NONCE` (128 random bits, the nonce also its content) and
 * sends the nonce; the daemon opens it without following links, checks that
 * it is a regular file with one link, fresh, holding exactly the nonce, takes
 * its owner from fstat, and removes it. The maildrop cannot be listed, so
 * no one else learns the name; a hard link or a renamed file of another user
 * fails the link count or the content.
 */
import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import crypto from 'node:crypto';
import path from 'node:path';
import { QuietlinkError, EX } from '../errors.js';
import { maildropDir } from '../queue/maildrop.js';

const FRESH_MS = 5 * 60_000;

export class PermissionError extends QuietlinkError {
  constructor(message: string) {
    super(message, { exitCode: EX.NOPERM });
  }
}

/** CLI side: writes a credential file; returns the nonce to send and a cleanup for when the daemon did not take it. */
export async function makeCredential(spool: string): Promise<{ nonce: string; cleanup: () => Promise<void> }> {
  const nonce = crypto.randomBytes(16).toString('hex');
  const file = path.join(maildropDir(spool), `cred.${nonce}`);
  const fh = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    await fh.chmod(0o644);
    await fh.writeFile(nonce);
  } finally {
    await fh.close();
  }
  return { nonce, cleanup: () => fs.rm(file, { force: true }) };
}

/** Daemon side: the uid that made the credential `nonce`; throws PermissionError when anything is off. */
export async function credentialUid(spool: string, nonce: unknown, now: number): Promise<number> {
  if (typeof nonce !== 'string' || !/^[0-9a-f]{32}$/.test(nonce)) throw new PermissionError('This command needs proof of who you are: run it with the quietlink command');
  const file = path.join(maildropDir(spool), `cred.${nonce}`);
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    throw new PermissionError('Cannot verify who you are (no credential file in the maildrop)');
  }
  try {
    const st = await fh.stat();
    const content = st.isFile() && st.size === 32 ? (await fh.readFile()).toString('latin1') : '';
    if (!st.isFile() || st.nlink !== 1 || content !== nonce || Math.abs(now - st.mtimeMs) > FRESH_MS) {
      throw new PermissionError('Cannot verify who you are (the credential file is not right)');
    }
    return st.uid;
  } finally {
    await fh.close();
    await fs.rm(file, { force: true });
  }
}
