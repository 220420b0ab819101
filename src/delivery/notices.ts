/**
 * delivery/notices.ts — a delivery status notification (RFC 3464, SPEC §10)
 * about one message, composed (delivery/dsn.ts) and queued like any other
 * message with the null sender, then sent as intake would send it. A delay
 * warning names the next scheduled window with its time zone ("waiting for
 * the next scheduled connection at 08:00 CET"). Never bounces a bounce: the
 * runner drops notices about null-sender mail before they get here.
 */
import { isAscii } from 'node:buffer';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Queue } from '../queue/queue.js';
import type { Envelope } from '../queue/envelope.js';
import type { QueueId } from '../queue/queue-id.js';
import type { Notice, NoticeKind } from '../scheduler/apply-results.js';
import { composeDsn, isFromOutside } from './dsn.js';
import { NetworkList } from '../config/cidr.js';

export interface NoticeDeps {
  config: Config;
  queue: Queue;
  log: Logger;
  now: () => number;
  newId: () => QueueId;
  nextWindow: () => Date | null;
  afterIntake: (envs: Envelope[]) => void;
}

/** Pure: how a delay warning says when the next try is. */
export function nextTryText(next: Date | null, timeZone: string | undefined): string | undefined {
  if (!next) return undefined;
  const at = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', timeZone, timeZoneName: 'short' }).format(next);
  return `waiting for the next scheduled connection at ${at}`;
}

export async function queueNotice(d: NoticeDeps, env: Envelope, notices: Notice[], kind: NoticeKind): Promise<void> {
  const { config, queue } = d;
  const id = d.newId();
  const body = await composeDsn({
    hostname: config.hostname, now: d.now(), env, notices, kind, original: await queue.readBody(env.id), messageId: id,
    willRetryUntil: Date.parse(env.firstAttempt ?? env.arrivalTime) + config.queue.queueReturn,
    nextTry: kind === 'delay' ? nextTryText(d.nextWindow(), config.flush.timezone) : undefined,
    // backscatter (SPEC §9): a notice about mail from outside never carries its body
    headersOnly: isFromOutside(env.client, new NetworkList(config.smtp.mynetworks)),
  });
  const writer = await queue.begin(id);
  await writer.write(body);
  const envs = await queue.commit(writer, body.length, {
    sender: '', recipients: [{ address: env.sender }], bodyType: isAscii(body) ? '7BIT' : '8BITMIME', smtputf8: false, dsn: {}, client: { via: 'dsn' },
  });
  d.log.info({ qid: id, about: env.id, kind, to: env.sender, rcpts: notices.map((n) => n.address) }, 'delivery status notification queued');
  d.afterIntake(envs);
}
