/**
 * intake/maildrop-pickup.ts — moves spool/maildrop/ into the queue (the
 * daemon side of the sendmail command; Postfix's pickup). Runs at start,
 * whenever a `sendmail` asks over the control socket, and every minute
 * (a notification that never came); runs are merged, never overlapping.
 *
 * Each file is opened without following links and checked (one link, a
 * regular file, no bigger than smtp.maxMessageSize allows, every header
 * field valid: queue/maildrop.ts); the submitting user is the file's owner.
 * A file that fails goes to corrupt/ with a log line naming the user. A
 * good one gets a queue ID from the daemon and is renamed into the
 * daemon's private spool/pickup/ before it is queued, so a crash in between
 * neither loses it nor queues it twice: at start, pickup/ is finished first
 * (an ID already queued is removed, any other is queued).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Queue } from '../queue/queue.js';
import type { Envelope } from '../queue/envelope.js';
import { isQueueId, type QueueId } from '../queue/queue-id.js';
import { CorruptEnvelopeError } from '../errors.js';
import { fsyncDir } from '../queue/group-sync.js';
import { decodeMaildrop, listMaildrop, maildropDir, moveMaildropToCorrupt, readMaildrop, staleMaildropTemps, type Submission } from '../queue/maildrop.js';
import type { Cleanup } from './cleanup.js';

/** Leftovers of a `sendmail` that crashed while writing are removed after this long. */
const STALE_TEMP = 86_400_000;

export interface PickupDeps {
  spool: string;
  /** Asked whether a message a crash left in pickup/ is queued already. */
  queue: Pick<Queue, 'find'>;
  /** The one path of new messages (Received:, Precedence, commit, `queued` log line). */
  cleanup: Pick<Cleanup, 'submit'>;
  log: Logger;
  now: () => number;
  newId: () => QueueId;
  /** The largest maildrop file taken (smtp.maxMessageSize and room for the header). */
  maxBytes: () => number;
  /** The user name of a uid (control/users.ts). */
  userName: (uid: number) => Promise<string>;
  /** The first delivery decision; a returned promise is awaited (interactive mode: the sendmail command waits for delivery). */
  onQueued?: (envelopes: Envelope[]) => Promise<void> | undefined;
}

interface Picked {
  sub: Submission;
  body: Buffer;
  user: string;
  uid: number;
}

/** What became of a maildrop file: its queue IDs, or null when it was refused (moved to corrupt/). */
export type PickupResult = Map<string, QueueId[] | null>;

/** How many recent results are kept for a `sendmail` asking about its file after another run took it. */
const RECENT = 10_000;
/** The scan that catches a file whose notification never came. */
const SCAN_EVERY = 60_000;

export class MaildropPickup {
  private current: Promise<unknown> = Promise.resolve();
  private queued: Promise<PickupResult> | null = null;
  private readonly pickupDir: string;
  private readonly recent: PickupResult = new Map();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: PickupDeps) {
    this.pickupDir = path.join(deps.spool, 'pickup');
  }

  /**
   * Picks up everything in maildrop; resolves with the envelopes queued for
   * each maildrop name. A call always gets a run that starts after it was
   * made; calls made while a run waits to start share it.
   */
  run(): Promise<PickupResult> {
    if (this.queued) return this.queued;
    const next = this.current.then(() => {
      this.queued = null;
      return this.pickupAll();
    });
    this.queued = next;
    this.current = next.catch(() => undefined);
    return next;
  }

  /** What became of one file, whichever run took it (undefined: never seen). */
  outcome(name: string): QueueId[] | null | undefined {
    return this.recent.get(name);
  }

  /** Scans every minute for what a missed notification left. */
  startScan(): void {
    this.timer = setInterval(() => {
      this.run().catch((err) => this.deps.log.error({ err }, 'maildrop scan failed'));
    }, SCAN_EVERY);
    this.timer.unref();
  }

  stopScan(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private note(name: string, ids: QueueId[] | null, done: PickupResult): void {
    done.set(name, ids);
    this.recent.set(name, ids);
    if (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value!);
  }

  private async pickupAll(): Promise<PickupResult> {
    const { spool, log } = this.deps;
    await fs.mkdir(this.pickupDir, { recursive: true, mode: 0o700 });
    await this.finishInterrupted();
    const done: PickupResult = new Map();
    for (const name of await listMaildrop(spool)) {
      let picked: Picked;
      try {
        const { sub, body, uid } = await readMaildrop(spool, name, this.deps.maxBytes());
        picked = { sub, body, uid, user: await this.deps.userName(uid) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        const owner = await fs.lstat(path.join(maildropDir(spool), name)).then((st) => this.deps.userName(st.uid), () => 'unknown');
        log.error({ file: name, user: owner, reason: (err as Error).message }, 'maildrop file refused: moved to corrupt');
        await moveMaildropToCorrupt(spool, name).catch((e) => log.error({ file: name, err: e }, 'cannot move maildrop file to corrupt'));
        this.note(name, null, done);
        continue;
      }
      try {
        // from here the file is the daemon's: a queue ID of its own choosing, in a folder only it can read
        const id = this.deps.newId();
        await fs.rename(path.join(maildropDir(spool), name), path.join(this.pickupDir, id));
        await fsyncDir(this.pickupDir);
        await fsyncDir(maildropDir(spool));
        this.note(name, (await this.queue(id, picked)).map((e) => e.id), done);
      } catch (err) {
        log.error({ file: name, err }, 'cannot pick up maildrop file');
      }
    }
    for (const n of await staleMaildropTemps(spool, this.deps.now(), STALE_TEMP)) {
      await fs.rm(path.join(maildropDir(spool), n), { force: true });
      log.warn({ file: n }, 'removed a maildrop file that a crashed sendmail left half-written');
    }
    return done;
  }

  /** Files a crash left in pickup/: queued already (remove) or not yet (queue). */
  private async finishInterrupted(): Promise<void> {
    for (const id of (await fs.readdir(this.pickupDir)).filter(isQueueId)) {
      const file = path.join(this.pickupDir, id);
      if (await this.deps.queue.find(id)) {
        await fs.rm(file, { force: true });
        continue;
      }
      try {
        const st = await fs.stat(file);
        const { sub, body } = decodeMaildrop(await fs.readFile(file));
        await this.queue(id, { sub, body, uid: st.uid, user: await this.deps.userName(st.uid) });
      } catch (err) {
        if (!(err instanceof CorruptEnvelopeError)) throw err;
        await fs.rename(file, path.join(this.deps.spool, 'corrupt', `maildrop-${id}`));
      }
    }
  }

  private async queue(id: QueueId, p: Picked): Promise<Envelope[]> {
    const { sub, body } = p;
    return this.deps.cleanup.submit({
      id, body,
      trace: { user: p.user, protocol: 'local', recipient: sub.recipients.length === 1 ? sub.recipients[0] : undefined },
      draft: {
        sender: sub.sender,
        recipients: sub.recipients.map((address) => ({ address, notify: sub.dsn.notify })),
        bodyType: sub.bodyType,
        smtputf8: false,
        dsn: { ret: sub.dsn.ret, envid: sub.dsn.envid },
        client: { via: 'sendmail', user: p.user, uid: p.uid },
      },
      logFields: { relay: `${p.user}@localhost`, uid: p.uid, proto: 'local' },
      // queued: the file in pickup/ has done its job before anyone waits for a delivery
      deliver: async (envelopes) => {
        await fs.rm(path.join(this.pickupDir, id), { force: true });
        await fsyncDir(this.pickupDir);
        await this.deps.onQueued?.(envelopes);
      },
    });
  }
}
