/**
 * delivery/notices.ts — a delivery status notification (RFC 3464, SPEC §10)
 * about one message, composed (delivery/dsn.ts) and queued like any other
 * message with the null sender through intake/cleanup.ts (one `queued` log
 * line with proto=dsn), then sent as intake would send it. A delay
 * warning names the next scheduled window with its time zone ("waiting for
 * the next scheduled connection at 08:00 CET"). Never bounces a bounce: the
 * runner drops notices about null-sender mail before they get here.
 */
import { isAscii } from 'node:buffer';
import type { Config } from '../config/schema.js';
import type { Queue } from '../queue/queue.js';
import type { Envelope } from '../queue/envelope.js';
import type { QueueId } from '../queue/queue-id.js';
import type { Notice, NoticeKind } from '../scheduler/apply-results.js';
import type { Cleanup } from '../intake/cleanup.js';
import { composeDsn, isFromOutside } from './dsn.js';
import { NetworkList } from '../config/cidr.js';

export interface NoticeDeps {
  config: () => Config;
  /** The original's body (a notice may quote it). */
  queue: Pick<Queue, 'readBody'>;
  /** The one path of new messages (intake/cleanup.ts): commit, log line, first delivery decision. */
  cleanup: Pick<Cleanup, 'submit'>;
  now: () => number;
  newId: () => QueueId;
  /** The next scheduled window (link/triggers.ts), for a delay warning's text. */
  nextWindow: () => Date | null;
}

/** Pure: how a delay warning says when the next try is. */
export function nextTryText(next: Date | null, timeZone: string | undefined): string | undefined {
  if (!next) return undefined;
  const at = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', timeZone, timeZoneName: 'short' }).format(next);
  return `waiting for the next scheduled connection at ${at}`;
}

export class Notices {
  constructor(private readonly d: NoticeDeps) {}

  /** The runner's `notify`: composes the notice about `env` and queues it to its sender. */
  async queue(env: Envelope, notices: Notice[], kind: NoticeKind): Promise<void> {
    const config = this.d.config();
    const id = this.d.newId();
    const body = await composeDsn({
      hostname: config.hostname, now: this.d.now(), env, notices, kind, original: await this.d.queue.readBody(env.id), messageId: id,
      willRetryUntil: Date.parse(env.firstAttempt ?? env.arrivalTime) + config.queue.queueReturn,
      nextTry: kind === 'delay' ? nextTryText(this.d.nextWindow(), config.flush.timezone) : undefined,
      // backscatter (SPEC §9): a notice about mail from outside never carries its body
      headersOnly: isFromOutside(env.client, new NetworkList(config.smtp.mynetworks)),
    });
    await this.d.cleanup.submit({
      id, body,
      draft: { sender: '', recipients: [{ address: env.sender }], bodyType: isAscii(body) ? '7BIT' : '8BITMIME', smtputf8: false, dsn: {}, client: { via: 'dsn' } },
      logFields: { proto: 'dsn', about: env.id, kind, rcpts: notices.map((n) => n.address) },
    });
  }
}
