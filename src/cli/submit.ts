/**
 * cli/submit.ts — a local submission (the `sendmail` command, -bs on stdin)
 * by any local user: written into spool/maildrop/ and handed to the daemon
 * (or made durable there when no daemon runs) before the command says OK.
 */
import os from 'node:os';
import type { Config } from '../config/schema.js';
import { controlRequest, DaemonNotRunningError } from '../control/client.js';
import type { DeliveryWish } from '../intake/submissions.js';
import { DataError, TempFailError } from '../errors.js';
import { createIdGenerator } from '../queue/queue-id.js';
import { syncMaildrop, writeMaildrop, MAILDROP_VERSION } from '../queue/maildrop.js';
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
 * Writes one local submission into spool/maildrop/ and makes it durable
 * before returning its name: the running daemon takes it into the queue at
 * once (its answer comes once the message is fsynced there), or, with no
 * daemon, the file system is synced and the daemon takes it when it starts.
 * A full spool file system is EX_TEMPFAIL (452 4.3.1) and leaves nothing.
 * `pickup` is passed to the daemon with the request (e.g. -odi).
 */
export async function dropMessage(config: Config, d: Drop, opts: { verbose?: boolean; pickup?: { deliveryMode?: DeliveryWish } } = {}): Promise<string> {
  const user = currentUser();
  const id = createIdGenerator()();
  const msg = composeLocalSubmission({
    raw: d.raw, ignoreDots: d.ignoreDots, extractRecipients: d.extract, recipients: d.recipients,
    sender: d.sender || `MAILER-DAEMON@${config.hostname}`, fullName: d.fullName, hostname: config.hostname, id, now: Date.now(),
  });
  const submission = {
    version: MAILDROP_VERSION, sender: d.sender, recipients: msg.recipients, user: user.name,
    time: new Date().toISOString(), bodyType: d.bodyType ?? (msg.eightBit ? '8BITMIME' : '7BIT'),
    dsn: d.dsn,
  } as const;
  // sendmail's MinFreeBlocks for the client queue too: exit 75 and keep nothing
  const full = new TempFailError(452, '4.3.1', `Insufficient system storage in ${config.spool}; the message was not taken, try again later`);
  const sp = spoolSpace(config.spool);
  if (sp && !hasRoom(sp, config.queue.minFreeBlocks, msg.body.length)) throw full;
  let name: string;
  try {
    name = await writeMaildrop(config.spool, submission, msg.body);
  } catch (err) {
    if (isNoSpace(err)) throw full;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES') {
      throw new TempFailError(451, '4.3.0', `Cannot write to ${config.spool}/maildrop (${code}): is quietlink installed (scripts/install.sh) or its daemon started once?`, { cause: err });
    }
    throw err;
  }
  const ids = await handOver(config, name, opts);
  if (ids) handedOver.add(ids[0]);
  return ids?.[0] ?? name;
}

/** Submissions the daemon took in this process (for askPickup's -v line). */
const handedOver = new Set<string>();

/** The daemon takes the file now; without one (or if it failed), the file is made durable where it is. */
async function handOver(config: Config, name: string, opts: { verbose?: boolean; pickup?: { deliveryMode?: DeliveryWish } }): Promise<string[] | null> {
  try {
    const r = await controlRequest(config.spool, 'pickup', { name, ...opts.pickup });
    if (r.refused?.includes(name)) throw new DataError(`The quietlink daemon refused the submission ${name} (see its log); nothing was queued`);
    if (r.queued?.[name]) return r.queued[name];
  } catch (err) {
    if (err instanceof DataError) throw err;
    if (opts.verbose || !(err instanceof DaemonNotRunningError)) process.stderr.write(`${name}: left in maildrop (${(err as Error).message})\n`);
  }
  await syncMaildrop(config.spool, name);
  return null;
}

/** dropMessage() has handed the messages over already; -v says which the daemon queued. */
export async function askPickup(_config: Config, ids: string[], verbose: boolean): Promise<void> {
  if (verbose) for (const id of ids) if (handedOver.has(id)) process.stderr.write(`${id}: queued\n`);
}
