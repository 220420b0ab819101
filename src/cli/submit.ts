/**
 * cli/submit.ts — a local submission (the `sendmail` command, -bs on stdin)
 * written durably into spool/maildrop/, then the daemon asked to take it in.
 */
import os from 'node:os';
import type { Config } from '../config/schema.js';
import { controlRequest, DaemonNotRunningError } from '../control/client.js';
import { TempFailError } from '../errors.js';
import { createIdGenerator } from '../queue/queue-id.js';
import { writeMaildrop, MAILDROP_VERSION } from '../queue/maildrop.js';
import { composeLocalSubmission } from '../intake/local-submission.js';
import { hasRoom, isNoSpace, spoolSpace } from '../intake/disk-policy.js';

export function currentUser(): { name: string; uid: number } {
  try {
    const u = os.userInfo();
    return { name: u.username, uid: u.uid };
  } catch {
    return { name: `uid${process.getuid?.() ?? -1}`, uid: process.getuid?.() ?? -1 };
  }
}

export interface Drop {
  /** The envelope sender, qualified; '' is the null sender. */
  sender: string;
  recipients: string[];
  raw: Buffer;
  ignoreDots: boolean;
  extract: boolean;
  fullName?: string;
  bodyType?: '7BIT' | '8BITMIME';
  dsn: { ret?: 'FULL' | 'HDRS'; envid?: string; notify?: string[] };
}

/**
 * Writes one local submission durably into spool/maildrop/ and returns its ID
 * (sendmail's client queue). A full spool file system is EX_TEMPFAIL
 * (452 4.3.1) and leaves nothing behind.
 */
export async function dropMessage(config: Config, d: Drop): Promise<string> {
  const user = currentUser();
  const newId = createIdGenerator();
  let id = newId();
  const msg = composeLocalSubmission({
    raw: d.raw, ignoreDots: d.ignoreDots, extractRecipients: d.extract, recipients: d.recipients,
    sender: d.sender || `MAILER-DAEMON@${config.hostname}`, fullName: d.fullName, hostname: config.hostname, id, now: Date.now(),
  });
  const submission = {
    version: MAILDROP_VERSION, sender: d.sender, recipients: msg.recipients, user: user.name, uid: user.uid,
    time: new Date().toISOString(), bodyType: d.bodyType ?? (msg.eightBit ? '8BITMIME' : '7BIT'),
    dsn: d.dsn,
  } as const;
  // sendmail's MinFreeBlocks for the client queue too: exit 75 and keep nothing
  const full = new TempFailError(452, '4.3.1', `Insufficient system storage in ${config.spool}; the message was not taken, try again later`);
  // no spool yet (writeMaildrop makes it) or no statfs: the write itself will tell
  const sp = spoolSpace(config.spool);
  if (sp && !hasRoom(sp, config.queue.minFreeBlocks, msg.body.length)) throw full;
  for (let tries = 0; ; tries++) {
    try {
      await writeMaildrop(config.spool, id, submission, msg.body);
      return id;
    } catch (err) {
      if (isNoSpace(err)) throw full;
      // the same ID from another sendmail in the same millisecond: take another
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || tries > 5) throw err;
      id = newId();
    }
  }
}

/** Asks a running daemon to take maildrop in now; without one the mail waits there, safe. */
export async function askPickup(config: Config, ids: string[], verbose: boolean): Promise<void> {
  try {
    await controlRequest(config.spool, 'pickup');
    if (verbose) for (const id of ids) process.stderr.write(`${id}: queued\n`);
  } catch (err) {
    // the message is safe in maildrop either way; the daemon takes it in when it starts
    if (verbose || !(err instanceof DaemonNotRunningError)) {
      for (const id of ids) process.stderr.write(`${id}: left in maildrop (${(err as Error).message})\n`);
    }
  }
}
