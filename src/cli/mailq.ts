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
import { DAYS, MONTHS, pad } from '../intake/received.js';
import { listMaildrop, readMaildrop } from '../queue/maildrop.js';

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


function qtime(iso: string): string {
  const d = new Date(iso);
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
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

/** `mailq -Ac`: the maildrop (sendmail's client queue): what `sendmail` left for the daemon. */
async function listMaildropQueue(config: Config, json: boolean): Promise<number> {
  const entries = [];
  for (const id of await listMaildrop(config.spool)) {
    try {
      const { sub, body } = await readMaildrop(config.spool, id);
      entries.push({ id, size: body.length, time: sub.time, sender: sub.sender, recipients: sub.recipients, user: sub.user });
    } catch {
      entries.push({ id, size: 0, time: '', sender: '(unreadable)', recipients: [], user: '' });
    }
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ total: entries.length, messages: entries }, null, 2)}\n`);
    return EX.OK;
  }
  const dir = `${config.spool}/maildrop`;
  const lines = entries.length ? [`\t\t${dir} (${entries.length} request${entries.length === 1 ? '' : 's'})`, '-------Q-ID------- --Size-- -----Q-Time----- ------------Sender/Recipient-----------'] : [`${dir} is empty`];
  for (const e of entries) {
    lines.push(`${e.id.padEnd(18)} ${String(e.size).padStart(8)} ${e.time ? qtime(e.time) : '?'.padEnd(16)} <${e.sender}>`);
    for (const r of e.recipients) lines.push(`${' '.repeat(43)}<${r}>`);
  }
  lines.push(`\t\tTotal requests: ${entries.length}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return EX.OK;
}

/** `mailq -bP`: the number of entries in each queue group. */
function printGroupCounts(config: Config, messages: readonly MessageSummary[]): number {
  const counts = new Map<string, number>([['mqueue', 0], ...config.queue.groups.map((g): [string, number] => [g.name, 0])]);
  for (const m of messages) counts.set(m.group, (counts.get(m.group) ?? 0) + 1);
  const lines = [...counts].map(([g, n]) => `${g}: ${n} entr${n === 1 ? 'y' : 'ies'}`);
  lines.push(`\t\tTotal requests: ${messages.length}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return EX.OK;
}

export async function runMailq(config: Config, argv: string[]): Promise<number> {
  const { selection, rest } = extractSelection(argv);
  const { '--json': json, '-Ac': clientQueue, '-Am': _mta, '-bP': perGroup } = takeFlags(rest, ['--json', '-Ac', '-Am', '-bP']);
  void _mta;
  takeFlags(rest, ['-bp']);
  rejectUnknownFlags(rest, 'mailq');
  if (clientQueue) return listMaildropQueue(config, json);
  if (perGroup) return printGroupCounts(config, await readQueue(config, selection));
  const messages = await readQueue(config, selection);
  if (json) process.stdout.write(`${JSON.stringify({ total: messages.length, messages }, null, 2)}\n`);
  else process.stdout.write(formatMailq(config.spool, messages, selection.quarantined));
  return EX.OK;
}
