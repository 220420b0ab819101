/**
 * delivery/dsn.ts — RFC 3464 delivery status notifications (pure but for
 * the MIME builder): multipart/report; report-type=delivery-status with a
 * human part, message/delivery-status, and the original message
 * (message/rfc822) or only its headers (text/rfc822-headers, RET=HDRS).
 */
import MimeNode from 'nodemailer/lib/mime-node';
import type { Envelope } from '../queue/envelope.js';
import type { Notice, NoticeKind } from '../scheduler/apply-results.js';
import { rfc5322Date } from '../intake/received.js';

export interface DsnInput {
  hostname: string;
  now: number;
  env: Envelope;
  notices: readonly Notice[];
  kind: NoticeKind;
  original: Buffer;
  /** For delay warnings: until when quietlink keeps trying. */
  willRetryUntil?: number;
  /** A sentence about the next try, e.g. "waiting for the next scheduled connection at 08:00". */
  nextTry?: string;
  messageId: string;
}

function headersOf(message: Buffer): Buffer {
  const end = message.indexOf('\r\n\r\n');
  return end < 0 ? message : message.subarray(0, end + 2);
}

export function composeDsn(d: DsnInput): Promise<Buffer> {
  const failed = d.kind === 'failure';
  const root = new MimeNode('multipart/report; report-type=delivery-status');
  root.setHeader({
    From: `Mail Delivery System <MAILER-DAEMON@${d.hostname}>`,
    To: `<${d.env.sender}>`,
    Subject: failed ? 'Undelivered Mail Returned to Sender' : d.kind === 'delay' ? 'Delayed Mail (still being retried)' : 'Successful Mail Delivery Report',
    Date: rfc5322Date(d.now),
    'Message-ID': `<${d.messageId}@${d.hostname}>`,
    'Auto-Submitted': 'auto-replied',
  });
  const human = [
    `This is the mail system at host ${d.hostname}.`,
    '',
    failed
      ? "I'm sorry to have to inform you that your message could not be delivered to one or more recipients."
      : d.kind === 'delay'
        ? 'Your message could not be delivered yet. It will be retried; you do not need to send it again.'
        : 'Your message was relayed to the next mail system, which cannot confirm delivery itself.',
    ...(d.nextTry ? ['', `The message is ${d.nextTry}.`] : []),
    '',
    ...d.notices.map((n) => `<${n.address}>: ${n.remoteMta ? `host ${n.remoteMta} said: ` : ''}${n.diagnostic}`),
    '',
  ].join('\r\n');
  root.createChild('text/plain; charset=utf-8').setContent(human);
  const perMessage = [
    `Reporting-MTA: dns; ${d.hostname}`,
    ...(d.env.dsn.envid ? [`Original-Envelope-Id: ${d.env.dsn.envid}`] : []),
    `X-Quietlink-Queue-ID: ${d.env.id}`,
    `Arrival-Date: ${rfc5322Date(Date.parse(d.env.arrivalTime))}`,
  ].join('\r\n');
  const perRecipient = d.notices.map((n) => [
    `Final-Recipient: rfc822; ${n.address}`,
    ...(n.orcpt ? [`Original-Recipient: ${n.orcpt.includes(';') ? n.orcpt.replace(/;\s*/, '; ') : `rfc822; ${n.orcpt}`}`] : []),
    `Action: ${n.action}`,
    `Status: ${n.status}`,
    ...(n.remoteMta ? [`Remote-MTA: dns; ${n.remoteMta.replace(/ \[.*\]$/, '')}`] : []),
    `Diagnostic-Code: smtp; ${n.diagnostic.replace(/[\r\n]+/g, ' ')}`,
    `Last-Attempt-Date: ${rfc5322Date(d.now)}`,
    ...(n.action === 'delayed' && d.willRetryUntil ? [`Will-Retry-Until: ${rfc5322Date(d.willRetryUntil)}`] : []),
  ].join('\r\n'));
  root.createChild('message/delivery-status').setContent(`${[perMessage, ...perRecipient].join('\r\n\r\n')}\r\n`);
  const headersOnly = d.env.dsn.ret === 'HDRS' || !failed;
  root.createChild(headersOnly ? 'text/rfc822-headers' : 'message/rfc822').setContent(headersOnly ? headersOf(d.original) : d.original);
  return new Promise((resolve, reject) => root.build((err: Error | null, buf: Buffer) => (err ? reject(err) : resolve(buf))));
}
