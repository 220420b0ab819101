/**
 * queue/envelope.ts — the envelope codec: versioned, human-readable JSON that
 * an administrator can `cat`.
 *
 * decodeEnvelope() validates everything it returns; an unknown version or a
 * malformed file is a CorruptEnvelopeError, which the queue turns into a move
 * to corrupt/. Pure.
 */
import { CorruptEnvelopeError } from '../errors.js';
import { isQueueId, type QueueId } from './queue-id.js';

export const ENVELOPE_VERSION = 1;

export type RecipientState = 'pending' | 'delivered' | 'failed';

export interface Recipient {
  address: string;
  state: RecipientState;
  /** RFC 3461 ORCPT, as given (`rfc822;user@example`). */
  orcpt?: string;
  /** RFC 3461 NOTIFY: NEVER, or any of SUCCESS, FAILURE, DELAY. */
  notify?: string[];
  lastReply?: string;
  updated?: string;
}

export interface Envelope {
  version: typeof ENVELOPE_VERSION;
  id: QueueId;
  group: string;
  sender: string;
  recipients: Recipient[];
  arrivalTime: string;
  size: number;
  /** sendmail's precedence class: 0 normal, negative bulk/junk, positive urgent. */
  class: number;
  priority: number;
  attempts: number;
  nextAttempt: string | null;
  bodyType: '7BIT' | '8BITMIME';
  smtputf8: boolean;
  dsn: { ret?: 'FULL' | 'HDRS'; envid?: string };
  /** Where it came from; for local submissions `user`/`uid` are the file owner's, as the kernel says. */
  client: { via: 'smtp' | 'sendmail' | 'dsn'; ip?: string; helo?: string; user?: string; uid?: number };
  /** A delay warning (queueWarn) has been sent. */
  warned?: boolean;
  /**
   * When the message was first attempted: queueWarn and queueReturn count
   * from here, so mail waiting for a link that was down all weekend is not
   * warned about or bounced on Monday (SPEC §10).
   */
  firstAttempt?: string;
  hold?: { reason: string; since: string };
  quarantine?: { reason: string; since: string };
}

export function encodeEnvelope(env: Envelope): Buffer {
  return Buffer.from(`${JSON.stringify(env, null, 2)}\n`);
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isIsoDate = (v: unknown) => isString(v) && !Number.isNaN(Date.parse(v));

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new CorruptEnvelopeError(`Invalid envelope: ${what}`);
}

export function decodeEnvelope(bytes: Buffer | string): Envelope {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString());
  } catch (err) {
    throw new CorruptEnvelopeError('Invalid envelope: not JSON', { cause: err });
  }
  check(raw && typeof raw === 'object', 'not an object');
  const e = raw as Record<string, unknown>;
  check(e.version === ENVELOPE_VERSION, `unknown version ${JSON.stringify(e.version)}`);
  check(isString(e.id) && isQueueId(e.id), 'bad id');
  check(isString(e.group) && e.group.length > 0, 'bad group');
  check(isString(e.sender), 'bad sender');
  check(Array.isArray(e.recipients) && e.recipients.length > 0, 'no recipients');
  for (const r of e.recipients as unknown[]) {
    const rr = r as Record<string, unknown>;
    check(rr && isString(rr.address) && ['pending', 'delivered', 'failed'].includes(rr.state as string), 'bad recipient');
  }
  check(isIsoDate(e.arrivalTime), 'bad arrivalTime');
  check(Number.isInteger(e.size) && (e.size as number) >= 0, 'bad size');
  check(Number.isFinite(e.priority), 'bad priority');
  check(Number.isInteger(e.attempts), 'bad attempts');
  check(e.nextAttempt === null || isIsoDate(e.nextAttempt), 'bad nextAttempt');
  check(e.bodyType === '7BIT' || e.bodyType === '8BITMIME', 'bad bodyType');
  check(e.dsn && typeof e.dsn === 'object', 'bad dsn');
  check(e.client && typeof e.client === 'object', 'bad client');
  return raw as Envelope;
}
