/**
 * cli/admin.ts — `hold`, `release`, `quarantine` and `status`: thin clients
 * of the daemon's control socket (exit 69 with a clear message when the
 * daemon is not running).
 */
import type { Config } from '../config/schema.js';
import { controlRequest } from '../control/client.js';
import { EX, UsageError } from '../errors.js';
import { isQueueId, type QueueId } from '../queue/queue-id.js';
import { extractSelection, rejectUnknownFlags, takeFlags } from './args.js';
import { formatEtrn } from './flush.js';
import type { EtrnResult } from '../etrn/etrn-client.js';
import { formatWindowShort } from './windows.js';

function queueIds(argv: readonly string[], command: string): QueueId[] {
  rejectUnknownFlags(argv, command);
  if (argv.length === 0) throw new UsageError(`${command}: no queue IDs given`);
  const bad = argv.find((a) => !isQueueId(a));
  if (bad) throw new UsageError(`${command}: "${bad}" is not a queue ID`);
  return argv as QueueId[];
}

/** Takes `-Q REASON` / `-QREASON` out of argv (quarantine's flag, and hold's): the reason, or undefined. */
export function takeReason(argv: readonly string[], command: string): { reason?: string; rest: string[] } {
  let reason: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-Q') {
      if (argv[i + 1] === undefined) throw new UsageError(`${command}: -Q needs a reason${command === 'quarantine' ? ' ("" releases)' : ''}`);
      reason = argv[++i];
    } else if (argv[i].startsWith('-Q')) reason = argv[i].slice(2);
    else rest.push(argv[i]);
  }
  if (reason !== undefined && /[\r\n]/.test(reason)) throw new UsageError(`${command}: the reason must be one line`);
  return { reason, rest };
}

/** `hold [-Q REASON] ID...`: mailq shows the reason under the message (`HOLD: REASON`). */
export async function runHold(config: Config, argv: string[]): Promise<number> {
  const { reason, rest } = takeReason(argv, 'hold');
  if (reason === '') throw new UsageError('hold: -Q needs a reason (release lets a message go)');
  const ids = queueIds(rest, 'hold');
  await controlRequest(config.spool, 'hold', { ids, reason });
  for (const id of ids) process.stdout.write(`${id}: held${reason ? ` (${reason})` : ''}\n`);
  return EX.OK;
}

export async function runRelease(config: Config, argv: string[]): Promise<number> {
  const ids = queueIds(argv, 'release');
  await controlRequest(config.spool, 'release', { ids });
  for (const id of ids) process.stdout.write(`${id}: released\n`);
  return EX.OK;
}

/** `quarantine -Q REASON (ID... | -qR/-qS/-qI/-qG STR [-qQ])`; `-Q ""` releases. */
export async function runQuarantine(config: Config, argv: string[]): Promise<number> {
  const { reason, rest } = takeReason(argv, 'quarantine');
  if (reason === undefined) throw new UsageError('quarantine: give a reason with -Q REASON (-Q "" releases)');
  const { selection, rest: idsArgs } = extractSelection(rest);
  const bySelection = selection.selectors.length > 0 || selection.quarantined;
  if (bySelection && idsArgs.length) throw new UsageError('quarantine: give queue IDs or selectors, not both');
  // releasing (-Q "") by selector looks at quarantined messages
  if (bySelection && reason === '') selection.quarantined = true;
  const result = await controlRequest(config.spool, 'quarantine', bySelection ? { reason, selection } : { reason, ids: queueIds(idsArgs, 'quarantine') });
  for (const id of result.changed) process.stdout.write(`${id}: ${reason === '' ? 'released from quarantine' : `quarantined (${reason})`}\n`);
  if (result.changed.length === 0) process.stdout.write('no matching messages\n');
  return EX.OK;
}

export async function runStatus(config: Config, argv: string[]): Promise<number> {
  const { '--json': json } = takeFlags(argv, ['--json']);
  rejectUnknownFlags(argv, 'status');
  const s = await controlRequest(config.spool, 'status', {});
  if (json) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return EX.OK;
  }
  const lines = [
    `quietlink ${s.hostname}: running, pid ${s.pid}, since ${s.startedAt}`,
    `spool:         ${s.spool}`,
    `delivery mode: ${s.deliveryMode}`,
    `smtp:          ${s.listen.map((l) => `${l.host}:${l.port}`).join(', ')}`,
    `queue:         ${Object.entries(s.queue).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    ...(Object.keys(s.byRoute).length ? [`by next hop:   ${Object.entries(s.byRoute).map(([k, v]) => `${k} ${v}`).join(', ')} (recipients)`] : []),
    `link:          ${s.link.state}${s.link.iface ? ` (${s.link.iface})` : ''} since ${s.link.since}, mode ${s.link.mode}; ${s.link.dials ?? 0} dials, ${s.link.hangups ?? 0} hangups since start`,
    `window:        ${s.window}; next ${s.nextWindow ?? 'none scheduled'}`,
    `last window:   ${s.lastWindow ? `${s.lastWindow.cause} at ${s.lastWindow.end}: ${s.lastWindow.delivered} delivered, ${s.lastWindow.deferred} deferred, ${s.lastWindow.linkSeconds.toFixed(1)} link-seconds` : 'none yet'}`,
    ...(s.recentWindows?.length ? ['recent windows:', ...s.recentWindows.map((w) => `  ${formatWindowShort(w)}`)] : []),
    `load:          ${s.load.average.toFixed(2)} (${s.load.cpus} CPUs; queueLA ${s.load.queueLA}, refuseLA ${s.load.refuseLA})${s.load.refusing ? ': REFUSING connections' : s.load.queueing ? ': queueing mail by priority' : ''}; ${s.load.queuedForLoad} queued for load so far`,
    `disk:          ${s.disk.freeBytes === null ? 'unknown' : `${(s.disk.freeBytes / 1048576).toFixed(1)} MB free`} (reserve ${'bytes' in s.disk.minFree ? `${s.disk.minFree.bytes} bytes` : `${s.disk.minFree.blocks} blocks`})${s.disk.accepting ? '' : ': REFUSING mail (452 4.3.1)'}`,
    `since start:   ${Object.entries(s.counters).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    ...Object.entries(s.held).map(([d, n]) => `held for ${d}: ${n} message${n === 1 ? '' : 's'}${s.lastEtrn[d] ? `, last ETRN ${s.lastEtrn[d].time} from ${s.lastEtrn[d].client}: ${s.lastEtrn[d].reply}` : ''}`),
  ];
  if (s.lastErrors.length) lines.push('last problems:', ...s.lastErrors.map((e) => `  ${e.time} ${e.level} ${e.qid ? `${e.qid}: ` : ''}${e.msg}`));
  process.stdout.write(`${lines.join('\n')}\n`);
  return EX.OK;
}

/** `link up [--iface IF]` / `link down`: what the PPP hooks call. */
export async function runLink(config: Config, argv: string[]): Promise<number> {
  const [state, ...rest] = argv;
  if (state !== 'up' && state !== 'down') throw new UsageError('link: say "link up [--iface IF]" or "link down"');
  let iface: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--iface' && rest[i + 1] !== undefined) iface = rest[++i];
    else throw new UsageError(`link: unexpected argument ${rest[i]}`);
  }
  const r = await controlRequest(config.spool, 'link', { state, iface });
  process.stdout.write(`link ${r.state}\n`);
  return EX.OK;
}

/**
 * `etrn [--odmr] [--relay HOST[:PORT]] DOMAIN...`: 0 when every reply is
 * 2xx; 69 for 459 (node not allowed: RFC 1985, asking again will not help)
 * and 5xx; 75 for 458 and other 4xx (ODMR's 450 and 453 too) or no answer.
 * A temporary answer for one domain wins over a permanent one for another:
 * running again is worth it. `--odmr` pulls by ODMR (RFC 2645: ATRN, the
 * mail comes down the same connection) whatever etrn.mode says.
 */
export async function runEtrn(config: Config, argv: string[]): Promise<number> {
  let relay: string | undefined;
  let odmr: true | undefined;
  const domains: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--relay') {
      relay = argv[++i];
      if (relay === undefined) throw new UsageError('etrn: --relay needs HOST[:PORT]');
    } else if (argv[i] === '--odmr') odmr = true;
    else if (argv[i].startsWith('-')) throw new UsageError(`etrn: unknown option ${argv[i]}`);
    else domains.push(argv[i]);
  }
  if (relay && !/^\[/.test(relay)) relay = `[${relay.replace(/:(\d+)$/, '')}]${/:(\d+)$/.exec(relay)?.[0] ?? ''}`;
  const r = await controlRequest(config.spool, 'etrn', { relay, domains, odmr });
  if (!r) throw new UsageError('etrn: no relay or no domains to ask for');
  process.stdout.write(formatEtrn(r));
  return etrnExitCode(r);
}

/** Pure: the exit code for an ETRN result (see runEtrn). */
export function etrnExitCode(r: Pick<EtrnResult, 'error' | 'replies'>): number {
  const permanent = (code: number) => code === 459 || code >= 500;
  if (r.error || r.replies.some((x) => x.code >= 400 && !permanent(x.code))) return EX.TEMPFAIL;
  if (r.replies.some((x) => permanent(x.code))) return EX.UNAVAILABLE;
  return EX.OK;
}
