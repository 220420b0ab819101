/**
 * intake/cleanup.ts — the one path of a new message into the queue
 * (Postfix's cleanup): whatever brought it — an SMTP session
 * (message-intake.ts), the maildrop (maildrop-pickup.ts) or a delivery
 * status notification (delivery/notices.ts) — it gets its Received: line,
 * its Precedence read into a class, is committed to the queue, logged with
 * one `queued` line, and handed to the first delivery decision.
 *
 * Owns no state: the queue owns the message once commit() resolves; the
 * first delivery decision (deliveryMode, or the message's own -od wish) is
 * `dispatch`, merged into one run per turn of the event loop
 * (scheduler/intake-runs.ts). A failed write or commit aborts the writer:
 * nothing of the message stays, and the error goes to the caller.
 * Missing Date: / Message-ID: for LAN clients are added by the SMTP path
 * while it streams (missing-headers.ts); pickup's messages got theirs when
 * `sendmail` composed them, notices are composed whole.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Envelope } from '../queue/envelope.js';
import type { MessageDraft, MessageWriter } from '../queue/queue.js';
import type { QueueSubmit } from '../queue/roles.js';
import type { QueueId } from '../queue/queue-id.js';
import { precedenceClass } from '../queue/priority.js';
import { receivedHeader, type ReceivedFacts } from './received.js';

/** The queue's part that takes new messages (its API stays `begin` / `commit`). */
export type QueueIntake = QueueSubmit;
export type { MessageWriter };
export type DeliveryWish = Config['deliveryMode'];

/** Pure: the Precedence field's value in a header section (latin1 text or bytes; only the header is looked at). */
export function precedenceOf(head: string | Buffer): string | undefined {
  const text = typeof head === 'string' ? head : head.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  return /(?:^|\r\n)Precedence:[ \t]*([^\r\n]*)/i.exec(end < 0 ? text : text.slice(0, end))?.[1];
}

/** Pure: the priority class a message's Precedence gives it. */
export function classOf(head: string | Buffer): number {
  return precedenceClass(precedenceOf(head));
}

/**
 * Commits what the writer holds and writes the one `queued` log line
 * (qid, from, size, nrcpts, to, the caller's fields, parts). The caller
 * aborts the writer if this throws. The SMTP path streams its message and
 * calls this itself; the others go through Cleanup.submit().
 */
export async function commitMessage(
  d: { queue: QueueIntake; log: Logger }, writer: MessageWriter, size: number, draft: MessageDraft, logFields: Record<string, unknown> = {},
): Promise<Envelope[]> {
  const envelopes = await d.queue.commit(writer, size, draft);
  const to = draft.recipients.map((r) => r.address);
  d.log.info({ qid: envelopes[0]?.id, from: draft.sender, size, nrcpts: to.length, to, ...logFields, parts: envelopes.length }, 'queued');
  return envelopes;
}

export interface CleanupDeps {
  queue: QueueIntake;
  log: Logger;
  now: () => number;
  hostname: string;
  /** The first delivery decision: what deliveryMode (or the wish) sends now; interactive callers get a promise. */
  dispatch: (envelopes: Envelope[], wish?: DeliveryWish) => Promise<void> | undefined;
}

/** One whole message (pickup, notices): its bytes, its envelope, and how it came. */
export interface WholeMessage {
  id: QueueId;
  body: Buffer;
  draft: MessageDraft;
  /** Facts for the Received: line; none for the gateway's own notices. */
  trace?: Omit<ReceivedFacts, 'hostname' | 'id' | 'now'>;
  /** Fields of the `queued` log line beyond qid, from, size, nrcpts, to, parts. */
  logFields?: Record<string, unknown>;
  /** Instead of `dispatch`: who decides about delivery (pickup: the sendmail request waiting for it). */
  deliver?: (envelopes: Envelope[]) => Promise<void> | undefined;
}

export class Cleanup {
  constructor(private readonly deps: CleanupDeps) {}

  /** The Received: line for a message of this gateway. */
  received(id: QueueId, facts: Omit<ReceivedFacts, 'hostname' | 'id' | 'now'>): Buffer {
    return Buffer.from(receivedHeader({ ...facts, hostname: this.deps.hostname, id, now: this.deps.now() }));
  }

  /** The first delivery decision (also for messages a sendmail request claims with its own wish). */
  dispatch(envelopes: Envelope[], wish?: DeliveryWish): Promise<void> | undefined {
    return this.deps.dispatch(envelopes, wish);
  }

  /**
   * Commits what the writer holds and logs it; the caller aborts the writer
   * if this throws. Resolves once the message is durable in the queue.
   */
  commit(writer: MessageWriter, size: number, draft: MessageDraft, logFields: Record<string, unknown> = {}): Promise<Envelope[]> {
    return commitMessage(this.deps, writer, size, draft, logFields);
  }

  /** A whole message into the queue, then to its first delivery decision; resolves when that says so (interactive). */
  async submit(m: WholeMessage): Promise<Envelope[]> {
    const trace = m.trace ? this.received(m.id, m.trace) : Buffer.alloc(0);
    const draft = { ...m.draft, class: m.draft.class ?? classOf(m.body) };
    const writer = await this.deps.queue.begin(m.id);
    let envelopes: Envelope[];
    try {
      await writer.write(trace.length ? Buffer.concat([trace, m.body]) : m.body);
      envelopes = await this.commit(writer, trace.length + m.body.length, draft, m.logFields);
    } catch (err) {
      await writer.abort().catch(() => undefined);
      throw err;
    }
    const delivering = (m.deliver ?? ((e: Envelope[]) => this.dispatch(e)))(envelopes);
    if (delivering) await delivering;
    return envelopes;
  }
}
