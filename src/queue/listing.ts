/**
 * queue/listing.ts — what `mailq` shows of a message, small enough to keep
 * for every message in memory (the queue keeps it up to date at every state
 * change), so that listing a queue of 100,000 reads no file. Also the
 * sendmail layout of such a listing. Pure.
 */
import type { Envelope } from './envelope.js';
import type { QueueState } from './store.js';
import type { QueueId } from './queue-id.js';
import { DAYS, MONTHS, pad } from '../intake/received.js';

export interface Listed {
  id: QueueId;
  state: Exclude<QueueState, 'corrupt'> | 'corrupt';
  group: string;
  size: number;
  arrivalTime: string;
  sender: string;
  hold?: { reason: string };
  quarantine?: { reason: string };
  /** Pending recipients only: the others are done. */
  recipients: Array<{ address: string; state: 'pending'; lastReply?: string }>;
}

export function listingOf(env: Envelope, state: Listed['state']): Listed {
  return {
    id: env.id, state, group: env.group, size: env.size, arrivalTime: env.arrivalTime, sender: env.sender,
    ...(env.hold ? { hold: { reason: env.hold.reason } } : {}),
    ...(env.quarantine ? { quarantine: { reason: env.quarantine.reason } } : {}),
    recipients: env.recipients.filter((r) => r.state === 'pending')
      .map((r) => (r.lastReply ? { address: r.address, state: 'pending' as const, lastReply: r.lastReply } : { address: r.address, state: 'pending' as const })),
  };
}

function qtime(iso: string): string {
  if (!iso) return '?'.padEnd(16);
  const d = new Date(iso);
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

type Shown = Pick<Listed, 'id' | 'state' | 'size' | 'arrivalTime' | 'sender' | 'hold' | 'quarantine'> & {
  recipients: ReadonlyArray<{ address: string; state: string; lastReply?: string }>;
};

/**
 * sendmail's mailq layout, `per` messages a piece (a listing of 100,000 is
 * sent as it is made); `!` marks held messages (as Postfix does).
 */
export function* mailqPieces(spool: string, messages: readonly Shown[], quarantined: boolean, per = 250): Generator<string> {
  let piece = '';
  if (messages.length === 0) {
    piece += `${spool} is empty\n`;
  } else {
    piece += `\t\t${spool} (${messages.length} request${messages.length === 1 ? '' : 's'})\n`;
    piece += '-------Q-ID------- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n';
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      piece += `${m.id.padEnd(18)} ${String(m.size).padStart(8)}${m.state === 'held' ? '!' : ' '}${qtime(m.arrivalTime)} <${m.sender}>\n`;
      if (m.quarantine) piece += `      QUARANTINE: ${m.quarantine.reason}\n`;
      if (m.hold) piece += `      HOLD: ${m.hold.reason}\n`;
      for (const r of m.recipients) {
        if (r.state !== 'pending') continue;
        if (r.lastReply) piece += `                   (${r.lastReply})\n`;
        piece += `${RCPT_INDENT}<${r.address}>\n`;
      }
      if ((i + 1) % per === 0) {
        yield piece;
        piece = '';
      }
    }
  }
  if (quarantined) piece += '\t\t(quarantined messages only)\n';
  yield `${piece}\t\tTotal requests: ${messages.length}\n`;
}

const RCPT_INDENT = ' '.repeat(43);

export function formatMailq(spool: string, messages: readonly Shown[], quarantined: boolean): string {
  return [...mailqPieces(spool, messages, quarantined)].join('');
}
