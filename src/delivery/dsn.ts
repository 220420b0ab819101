/**
 * delivery/dsn.ts — RFC 3464 delivery status notifications (pure but for
 * the MIME builder): multipart/report; report-type=delivery-status with a
 * human part, message/delivery-status, and the original message
 * (message/rfc822) or only its headers (text/rfc822-headers, RET=HDRS).
 *
 * Backscatter (SPEC §9): a DSN about mail that came from outside the LAN
 * (SMTP from an address outside smtp.mynetworks, not authenticated) carries
 * the headers only, whatever RET said: its sender may be forged, and the
 * body would be the attacker's payload sent on to a victim. The caller
 * says so with DsnInput.headersOnly (isFromOutside() decides).
 */
import MimeNode from 'nodemailer/lib/mime-node';
import type { Envelope } from '../queue/envelope.js';
import type { Notice, NoticeKind } from '../scheduler/apply-results.js';
import { rfc5322Date } from '../intake/received.js';

/**
 * Whether a message came from outside the LAN: over SMTP, from an address
 * not in smtp.mynetworks, without AUTH. Local submissions and DSNs are ours.
 */
export function isFromOutside(client: Envelope['client'], mynetworks: { has(ip: string): boolean }): boolean {
  return client.via === 'smtp' && !client.user && !(client.ip !== undefined && mynetworks.has(client.ip));
}

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
  /** Never return the body (RET=HDRS forced), e.g. for mail from outside the LAN; default false. */
  headersOnly?: boolean;
}

/**
 * The header section: up to the empty line, and never past the first line
 * that is neither a header field nor its continuation (a message without an
 * empty line must not smuggle its body into a headers-only DSN).
 */
export function headersOf(message: Buffer): Buffer {
  let at = 0;
  while (at < message.length) {
    const nl = message.indexOf('\n', at);
    const end = nl < 0 ? message.length : nl + 1;
    const line = message.subarray(at, end).toString('latin1').replace(/\r?\n$/, '');
    const isField = /^[!-9;-~]+:/.test(line) || (at > 0 && /^[ \t]/.test(line));
    if (!isField) break;
    at = end;
  }
  return message.subarray(0, at);
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
  const headersOnly = d.headersOnly === true || d.env.dsn.ret === 'HDRS' || !failed;
  root.createChild(headersOnly ? 'text/rfc822-headers' : 'message/rfc822').setContent(headersOnly ? headersOf(d.original) : d.original);
  return new Promise((resolve, reject) => root.build((err: Error | null, buf: Buffer) => (err ? reject(err) : resolve(buf))));
}
