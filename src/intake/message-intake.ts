/**
 * intake/message-intake.ts — one message's DATA into the queue: the bytes
 * are checked as they stream in (body-scanner.ts), the first block gets the
 * Received: line (and, from LAN clients, a missing Date: / Message-ID:), the
 * rest goes to the queue's writer, and the message is committed before the
 * 250. Called by smtp-intake.ts for every DATA.
 *
 * Owns nothing after it returns: a refused message (size, bare CR, NUL,
 * too many hops, bare LF where refused, no room) and a client that goes away
 * in the middle leave nothing behind (the writer is aborted). Refusals carry
 * their reply code and enhanced code (errors.ts).
 *
 * Memory: a session holds at most BUFFER_LIMIT bytes of its own before they
 * go to the queue's writer.
 */
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { MailError } from '../errors.js';
import type { MessageWriter } from '../queue/queue.js';
import type { QueueSubmit } from '../queue/roles.js';
import type { Envelope } from '../queue/envelope.js';
import type { QueueId } from '../queue/queue-id.js';
import { precedenceClass } from '../queue/priority.js';
import { commitMessage, precedenceOf } from './cleanup.js';
import { BodyScanner, bareNewlineAction, type BareNewlineAction } from './body-scanner.js';
import { envelopeRecipients } from './recipient-expansion.js';
import { addMissingHeaders, headerSection, type MessageFacts } from './missing-headers.js';
import { receivedHeader } from './received.js';
import { insufficientStorage, isNoSpace } from './disk-policy.js';

export interface MessageIntakeDeps {
  config: Config;
  queue: QueueSubmit;
  log: Logger;
  newId: () => QueueId;
  now: () => number;
  /** In smtp.mynetworks: gets missing headers, bare LF always normalized. */
  isLan: (ip: string) => boolean;
  admitMessage?: (size: number) => MailError | null;
  onQueued?: (envelopes: Envelope[]) => Promise<void> | undefined;
  /** Logs an error of a kind for the session (rate-limited by the caller). */
  logError: (kind: string, level: 'info' | 'warn', fields: Record<string, unknown>, msg: string) => void;
}

const BUFFER_LIMIT = 256 * 1024;

/** The first block of a message as stored, and what was learnt from its header section. */
interface FirstBlock {
  block: Buffer;
  precedence?: string;
  /** The fields added (LAN clients only). */
  added: string[];
}

/** Reads Precedence from the first block and, for a LAN client (`facts`), adds a missing Date / Message-ID. */
function firstBlock(block: Buffer, facts: MessageFacts | null, isWhole: boolean): FirstBlock {
  const text = block.toString('latin1');
  const section = headerSection(text, isWhole);
  const head = section ? text.slice(0, section.end) : text;
  const precedence = precedenceOf(head);
  if (!facts || !section) return { block, precedence, added: [] };
  return { ...addMissingHeaders(block, section, facts), precedence };
}

/** Why a fully received message is refused (the first reason that applies), pure; null keeps it. */
export function refusalOf(scanner: BodyScanner, facts: { sizeExceeded: boolean; maxMessageSize: number; bareLf: BareNewlineAction }): MailError | null {
  if (facts.sizeExceeded) return new MailError(552, '5.3.4', `Message size exceeds fixed limit of ${facts.maxMessageSize} bytes`);
  if (scanner.hasBareCr) return new MailError(554, '5.6.0', 'Message contains bare <CR>; line endings must be <CRLF>');
  if (scanner.hasNul) return new MailError(554, '5.6.0', 'Message contains NUL bytes');
  if (scanner.hasTooManyHops) return new MailError(554, '5.4.6', `Too many hops (${scanner.receivedCount} Received: fields), mail loop?`);
  if (scanner.hasBareLf && facts.bareLf === 'reject') return new MailError(554, '5.6.0', 'Message contains bare <LF>; line endings must be <CRLF>');
  return null;
}

/** The Received: line of an SMTP message (protocol as RFC 3848 names it). */
function traceOf(session: SMTPServerSession, deps: MessageIntakeDeps, id: QueueId): { trace: Buffer; protocol: string } {
  const rcpts = session.envelope.rcptTo;
  const protocol = `ESMTP${session.secure ? 'S' : ''}${session.user ? 'A' : ''}` as const;
  const trace = Buffer.from(receivedHeader({
    hostname: deps.config.hostname, id, now: deps.now(), helo: session.hostNameAppearsAs, ip: session.remoteAddress,
    protocol: session.openingCommand === 'HELO' ? 'SMTP' : protocol,
    recipient: rcpts.length === 1 ? rcpts[0].address : undefined,
  }));
  return { trace, protocol };
}

/** What the stream left: the bytes not yet written, the first block, and the writer (null when refused early). */
interface Received {
  id: QueueId;
  writer: MessageWriter;
  written: number;
  first: FirstBlock | null;
  scanner: BodyScanner;
  protocol: string;
}

/** Commits a fully received message (the 250 follows) and hands it to the first delivery decision. */
async function commitReceived(r: Received, session: SMTPServerSession, deps: MessageIntakeDeps): Promise<string> {
  const env = session.envelope;
  const mailFrom = env.mailFrom || { address: '' };
  // 8-bit data without BODY=8BITMIME is kept and sent on as is (sendmail's EightBitMode=pass8)
  const eightBit = env.bodyType === '8bitmime' || r.scanner.hasEightBit;
  const envelopes = await commitMessage(deps, r.writer, r.written, {
    sender: mailFrom.address,
    recipients: envelopeRecipients(env.rcptTo),
    bodyType: eightBit ? '8BITMIME' : '7BIT',
    smtputf8: Boolean(env.smtpUtf8),
    dsn: { ret: (env.dsn?.ret ?? undefined) as 'FULL' | 'HDRS' | undefined, envid: env.dsn?.envid ?? undefined },
    client: { via: 'smtp', ip: session.remoteAddress, helo: session.hostNameAppearsAs, user: session.user as string | undefined },
    class: precedenceClass(r.first?.precedence),
  }, {
    relay: `${session.hostNameAppearsAs ?? ''} [${session.remoteAddress}]`, proto: r.protocol,
    ...(r.scanner.hasBareLf ? { bareLf: 'normalized' } : {}),
    ...(eightBit && env.bodyType !== '8bitmime' ? { body: '8-bit, undeclared' } : {}),
    ...(r.first?.added.length ? { added: r.first.added.map((l) => l.slice(0, l.indexOf(':'))) } : {}),
  });
  const delivering = deps.onQueued?.(envelopes);
  if (delivering) await delivering;
  return `2.0.0 Ok: queued as ${r.id}`;
}

export async function receiveMessage(stream: SMTPServerDataStream, session: SMTPServerSession, deps: MessageIntakeDeps): Promise<string> {
  const { queue, config, log, now } = deps;
  const id = deps.newId();
  const isLan = deps.isLan(session.remoteAddress);
  const bareLf = bareNewlineAction(config.smtp.bareNewline, isLan);
  const scanner = new BodyScanner();
  const { trace, protocol } = traceOf(session, deps, id);
  const admission = deps.admitMessage?.(0);
  let writer: MessageWriter | null = null;
  let failure: unknown = admission ?? null;
  // the first block is held until it holds the header section (or is BUFFER_LIMIT long):
  // Precedence is read from it and missing Date / Message-ID are added to it
  let first: FirstBlock | null = null;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let written = 0;
  const flush = async (isWhole: boolean) => {
    let block = Buffer.concat(pending);
    pending = [];
    pendingBytes = 0;
    if (!first) {
      first = firstBlock(block, isLan ? { id, hostname: config.hostname, now: now() } : null, isWhole);
      block = Buffer.concat([trace, first.block]);
    }
    await writer!.write(block);
    written += block.length;
  };
  try {
    if (!failure) writer = await queue.begin(id);
  } catch (err) {
    failure = err;
  }
  const refuse = async (err: unknown): Promise<never> => {
    await writer?.abort().catch(() => undefined);
    throw err;
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const stored = scanner.push(chunk);
      // once the message is sure to be refused, nothing more of it is kept
      if (failure || scanner.hasBareCr || scanner.hasNul || (scanner.hasBareLf && bareLf === 'reject') || stream.sizeExceeded) continue;
      pending.push(stored);
      pendingBytes += stored.length;
      if (pendingBytes >= BUFFER_LIMIT && writer) await flush(false).catch((err) => (failure = err));
    }
  } catch (err) {
    // the client went away (or was cut) in the middle of the data: nothing of it stays
    await refuse(err);
  }
  scanner.end();
  const refusal = refusalOf(scanner, { sizeExceeded: Boolean(stream.sizeExceeded), maxMessageSize: config.smtp.maxMessageSize, bareLf });
  if (refusal) {
    // bare CR / LF: SMTP smuggling attempts; NUL; too many hops: a mail loop
    deps.logError(`${refusal.code} ${refusal.enhanced}`, 'warn', { reason: refusal.message }, 'message refused');
    await refuse(refusal);
  }
  if (isNoSpace(failure)) {
    log.warn({ sid: session.id, err: failure }, 'spool file system full: message refused');
    failure = insufficientStorage(failure);
  }
  if (failure) {
    if (!(failure instanceof MailError)) log.error({ sid: session.id, err: failure }, 'cannot write message to the queue');
    await refuse(failure);
  }
  try {
    await flush(!first);
    return await commitReceived({ id, writer: writer!, written, first, scanner, protocol }, session, deps);
  } catch (err) {
    log.error({ qid: id, err }, 'cannot commit message to the queue');
    await writer?.abort().catch(() => undefined);
    throw err instanceof MailError ? err : isNoSpace(err) ? insufficientStorage(err) : new MailError(451, '4.3.0', 'Local error in processing, try again later', { cause: err });
  }
}
