/**
 * intake/maildrop-pickup.ts — moves spool/maildrop/ into the queue (the
 * daemon side of the sendmail command). Runs at start and whenever the
 * sendmail command pokes the control socket; runs are merged, never
 * overlapping. Idempotent by queue ID (see queue/maildrop.ts).
 */
import type { Logger } from 'pino';
import type { Queue } from '../queue/queue.js';
import type { Envelope } from '../queue/envelope.js';
import type { QueueId } from '../queue/queue-id.js';
import { CorruptEnvelopeError } from '../errors.js';
import { listMaildrop, moveMaildropToCorrupt, readMaildrop, removeMaildrop } from '../queue/maildrop.js';
import { receivedHeader } from './received.js';
import { precedenceClass } from '../queue/priority.js';

export interface PickupDeps {
  spool: string;
  hostname: string;
  queue: Queue;
  log: Logger;
  now: () => number;
  /** A returned promise is awaited (interactive mode: the sendmail command waits for delivery). */
  onQueued?: (envelopes: Envelope[]) => Promise<void> | undefined;
}

export class MaildropPickup {
  private current: Promise<unknown> = Promise.resolve();
  private queued: Promise<Map<QueueId, Envelope[]>> | null = null;

  constructor(private readonly deps: PickupDeps) {}

  /**
   * Picks up everything in maildrop. A call always gets a run that starts
   * after it was made; calls made while a run waits to start share it.
   */
  run(): Promise<Map<QueueId, Envelope[]>> {
    if (this.queued) return this.queued;
    const next = this.current.then(() => {
      this.queued = null;
      return this.pickupAll();
    });
    this.queued = next;
    this.current = next.catch(() => undefined);
    return next;
  }

  private async pickupAll(): Promise<Map<QueueId, Envelope[]>> {
    const done = new Map<QueueId, Envelope[]>();
    for (const id of await listMaildrop(this.deps.spool)) {
      try {
        done.set(id, await this.pickupOne(id));
      } catch (err) {
        if (err instanceof CorruptEnvelopeError) {
          this.deps.log.error({ qid: id, reason: err.message }, 'cannot read maildrop file: moved to corrupt');
          await moveMaildropToCorrupt(this.deps.spool, id);
        } else {
          this.deps.log.error({ qid: id, err: (err as Error).message }, 'cannot pick up maildrop file');
        }
      }
    }
    return done;
  }

  private async pickupOne(id: QueueId): Promise<Envelope[]> {
    const { queue, spool, log } = this.deps;
    const existing = await queue.find(id);
    if (existing) {
      await removeMaildrop(spool, id);
      return [existing.env];
    }
    const { sub, body } = await readMaildrop(spool, id);
    const trace = Buffer.from(receivedHeader({
      hostname: this.deps.hostname, id, now: this.deps.now(), user: sub.user, protocol: 'local',
      recipient: sub.recipients.length === 1 ? sub.recipients[0] : undefined,
    }));
    const headerEnd = body.indexOf('\r\n\r\n');
    const precedence = /(?:^|\r\n)Precedence:[ \t]*([^\r\n]*)/i.exec(body.subarray(0, headerEnd < 0 ? body.length : headerEnd).toString('latin1'))?.[1];
    const writer = await queue.begin(id);
    let envelopes: Envelope[];
    try {
      await writer.write(Buffer.concat([trace, body]));
      envelopes = await queue.commit(writer, trace.length + body.length, {
        sender: sub.sender,
        recipients: sub.recipients.map((address) => ({ address, notify: sub.dsn.notify })),
        bodyType: sub.bodyType,
        smtputf8: false,
        dsn: { ret: sub.dsn.ret, envid: sub.dsn.envid },
        client: { via: 'sendmail', user: sub.user },
        class: precedenceClass(precedence),
      });
    } catch (err) {
      await writer.abort().catch(() => undefined);
      throw err;
    }
    await removeMaildrop(spool, id);
    log.info({ qid: id, from: sub.sender, size: trace.length + body.length, nrcpts: sub.recipients.length, to: sub.recipients, relay: `${sub.user}@localhost`, proto: 'local', parts: envelopes.length }, 'queued');
    const delivering = this.deps.onQueued?.(envelopes);
    if (delivering) await delivering;
    return envelopes;
  }
}
