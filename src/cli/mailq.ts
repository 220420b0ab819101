/**
 * cli/mailq.ts — `quietlink mailq` (also `mailq`, `sendmail -bp`): the queue
 * in sendmail's layout, or `--json`; `-Ac` the maildrop, `-Am` the queue,
 * `-bP` the entries per queue group. Asks the daemon; when it is not
 * running, reads the spool directly (read-only: nothing is moved).
 */
import type { Config } from '../config/schema.js';
import { controlRequest, DaemonNotRunningError } from '../control/client.js';
import { countByGroup } from '../control/commands.js';
import { spoolQueue } from '../queue/spool.js';
import { summarize, type MessageSummary } from '../queue/summary.js';
import { formatMailq } from '../queue/listing.js';
import type { Selection } from '../queue/select.js';
import { createCliLogger } from '../observability/logger.js';
import { extractSelection, rejectUnknownFlags, takeFlags } from './args.js';
import { EX } from '../errors.js';
import { listMaildrop, readMaildrop } from '../queue/maildrop.js';
import type { QueueId } from '../queue/queue-id.js';

export async function readQueue(config: Config, selection: Selection): Promise<MessageSummary[]> {
  try {
    return await controlRequest(config.spool, 'mailq', { selection });
  } catch (err) {
    if (!(err instanceof DaemonNotRunningError)) throw err;
    const queue = spoolQueue(config.spool, { groups: config.queue.groups, log: createCliLogger(), readOnly: true });
    await queue.init();
    return (await queue.list(selection)).map(summarize);
  }
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
  process.stdout.write(formatMailq(`${config.spool}/maildrop`, entries.map((e) => ({
    // a maildrop name, not a queue ID: shown the same way
    id: e.id as unknown as QueueId, state: 'queued' as const, size: e.size, arrivalTime: e.time, sender: e.sender,
    recipients: e.recipients.map((address) => ({ address, state: 'pending' })),
  })), false));
  return EX.OK;
}

/** `mailq -bP`: the number of entries in each queue group. */
async function printGroupCounts(config: Config, selection: Selection): Promise<number> {
  let counts: Record<string, number>;
  try {
    // the daemon counts from its in-memory listing
    counts = await controlRequest(config.spool, 'queue-groups', { selection });
  } catch (err) {
    if (!(err instanceof DaemonNotRunningError)) throw err;
    counts = countByGroup(config.queue.groups.map((g) => g.name), await readQueue(config, selection));
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const lines = Object.entries(counts).map(([g, n]) => `${g}: ${n} entr${n === 1 ? 'y' : 'ies'}`);
  lines.push(`\t\tTotal requests: ${total}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return EX.OK;
}

export async function runMailq(config: Config, argv: string[]): Promise<number> {
  const { selection, rest } = extractSelection(argv);
  const { '--json': json, '-Ac': clientQueue, '-bP': perGroup } = takeFlags(rest, ['--json', '-Ac', '-bP']);
  // -Am asks for the MTA queue, which is what mailq lists without -Ac (as sendmail's)
  takeFlags(rest, ['-bp', '-Am']);
  rejectUnknownFlags(rest, 'mailq');
  if (clientQueue) return listMaildropQueue(config, json);
  if (perGroup) return printGroupCounts(config, selection);
  if (!json) {
    // the daemon lays the listing out from memory; without one the spool is read here
    try {
      await controlRequest(config.spool, 'mailq-text', { selection }, (e) => process.stdout.write(e.text));
      return EX.OK;
    } catch (err) {
      if (!(err instanceof DaemonNotRunningError)) throw err;
    }
  }
  const messages = await readQueue(config, selection);
  if (json) process.stdout.write(`${JSON.stringify({ total: messages.length, messages }, null, 2)}\n`);
  else process.stdout.write(formatMailq(config.spool, messages, selection.quarantined));
  return EX.OK;
}
