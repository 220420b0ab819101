/**
 * cli/mailq.ts — `quietlink mailq` (also `mailq`, `sendmail -bp`): the queue
 * in sendmail's layout, or `--json`. Asks the daemon; when it is not
 * running, reads the spool directly (read-only: nothing is moved).
 */
import type { Config } from '../config/schema.js';
import { controlRequest, DaemonNotRunningError } from '../control/client.js';
import { FsStore } from '../queue/fs-store.js';
import { Queue } from '../queue/queue.js';
import { IntakeJournal } from '../queue/journal.js';
import { summarize, type MessageSummary } from '../queue/summary.js';
import type { Selection } from '../queue/select.js';
import { createCliLogger } from '../observability/logger.js';
import { extractSelection, rejectUnknownFlags, takeFlags } from './args.js';
import { EX } from '../errors.js';

export async function readQueue(config: Config, selection: Selection): Promise<MessageSummary[]> {
  try {
    return (await controlRequest(config.spool, 'mailq', { selection })) as MessageSummary[];
  } catch (err) {
    if (!(err instanceof DaemonNotRunningError)) throw err;
    const journal = new IntakeJournal(config.spool);
    const queue = new Queue(new FsStore(config.spool), { groups: config.queue.groups, log: createCliLogger(), readOnly: true, journal });
    await queue.loadJournalReadOnly();
    return (await queue.list(selection)).map(summarize);
  }
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function qtime(iso: string): string {
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** sendmail's mailq layout; `!` marks held messages (as Postfix does). Pure. */
export function formatMailq(spool: string, messages: readonly MessageSummary[], quarantined: boolean): string {
  const lines: string[] = [];
  if (messages.length === 0) {
    lines.push(`${spool} is empty`);
  } else {
    lines.push(`\t\t${spool} (${messages.length} request${messages.length === 1 ? '' : 's'})`);
    lines.push('-------Q-ID------- --Size-- -----Q-Time----- ------------Sender/Recipient-----------');
    for (const m of messages) {
      const mark = m.state === 'held' ? '!' : ' ';
      lines.push(`${m.id.padEnd(18)} ${String(m.size).padStart(8)}${mark}${qtime(m.arrivalTime)} <${m.sender}>`);
      if (m.quarantine) lines.push(`      QUARANTINE: ${m.quarantine.reason}`);
      if (m.hold) lines.push(`      HOLD: ${m.hold.reason}`);
      for (const r of m.recipients) {
        if (r.state !== 'pending') continue;
        if (r.lastReply) lines.push(`                   (${r.lastReply})`);
        lines.push(`${' '.repeat(43)}<${r.address}>`);
      }
    }
  }
  if (quarantined) lines.push('\t\t(quarantined messages only)');
  lines.push(`\t\tTotal requests: ${messages.length}`);
  return `${lines.join('\n')}\n`;
}

export async function runMailq(config: Config, argv: string[]): Promise<number> {
  const { selection, rest } = extractSelection(argv);
  const { '--json': json } = takeFlags(rest, ['--json']);
  takeFlags(rest, ['-bp']);
  rejectUnknownFlags(rest, 'mailq');
  const messages = await readQueue(config, selection);
  if (json) process.stdout.write(`${JSON.stringify({ total: messages.length, messages }, null, 2)}\n`);
  else process.stdout.write(formatMailq(config.spool, messages, selection.quarantined));
  return EX.OK;
}
