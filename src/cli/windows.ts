/**
 * cli/windows.ts — `quietlink windows [--json] [--since DATE]` (SPEC §4): the
 * flush-window history from `spool/windows.log` (and `.1`), read directly —
 * no daemon needed. Text: one line per window in the spirit of sendmail's
 * logs, then `N windows, D dials, L link-seconds`; `--json`: the records.
 *
 * Times are shown, and DATE without a zone is read, in the local time zone
 * (the operator's wall clock, like syslog); the file itself keeps UTC ISO
 * 8601. DATE: `2026-12-01`, `2026-12-01T08:00[:SS]` (or a space for the T),
 * optionally with `Z` / `+01:00`, or relative `90s`, `30m`, `1h`, `2d`, `1w`.
 *
 * Owns nothing; reads only. Exit codes: 0 (also with no history yet, with a
 * friendly line), 64 for a bad option or date, the file's errno class
 * (e.g. 77 for EACCES) when the history cannot be read.
 */
import fs from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import { EX, UsageError } from '../errors.js';
import { readWindows, windowsLogPath, type WindowRecord } from '../link/window-history.js';

const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const RELATIVE = /^(\d+)([smhdw])$/;
const ABSOLUTE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** Pure: the moment `--since VALUE` means at `now`; null when VALUE is not a date this command understands. */
export function parseSince(value: string, now: number): Date | null {
  const text = value.trim();
  const rel = RELATIVE.exec(text);
  if (rel) return new Date(now - Number(rel[1]) * UNIT_MS[rel[2]]);
  const m = ABSOLUTE.exec(text);
  if (!m) return null;
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '0', zone] = m;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number);
  const ms = Number(frac.padEnd(3, '0'));
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  // the calendar check: 2026-02-30 must not roll over into March
  if (new Date(Date.UTC(year, month - 1, day)).getUTCDate() !== day) return null;
  if (zone === undefined) return new Date(year, month - 1, day, hour, minute, second, ms);
  const offset = zone === 'Z' ? 'Z' : zone.replace(/^([+-]\d{2}):?(\d{2})$/, '$1:$2');
  const at = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}.${pad(ms, 3)}${offset}`);
  return Number.isNaN(at) ? null : new Date(at);
}

export interface WindowsArgs {
  json: boolean;
  since?: string;
}

/** Pure: the command's arguments (after -c was taken out); throws UsageError. */
export function parseWindowsArgs(argv: readonly string[]): WindowsArgs {
  const out: WindowsArgs = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') out.json = true;
    else if (a === '--since') {
      if (argv[i + 1] === undefined) throw new UsageError('windows: --since needs a date (2026-12-01, 2026-12-01T08:00, 30m, 1h, 2d)');
      out.since = argv[++i];
    } else if (a.startsWith('--since=')) out.since = a.slice('--since='.length);
    else if (a.startsWith('-')) throw new UsageError(`windows: unknown option ${a}`);
    else throw new UsageError(`windows: unexpected argument ${a}`);
  }
  return out;
}

/** `2026-12-02 08:15:00` in the local time zone; the text itself when it is not a date. */
export function localStamp(iso: string): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

/** How the window came by its link: it dialed, rode a link that was there, or had none. */
function linkWord(r: WindowRecord): string {
  return r.dialed ? 'dialed' : r.linkOpen ? 'had-link' : 'no-link';
}

/** `ETRN office.example 250, cust.example 458` / `ETRN failed: ...`; '' when the window sent none. */
function etrnPart(r: WindowRecord): string {
  if (!r.etrn) return '';
  const replies = (r.etrn.replies ?? []).map((x) => `${x.domain} ${x.code}`).join(', ');
  if (r.etrn.error) return `ETRN ${replies ? `${replies}, ` : ''}failed: ${r.etrn.error}`;
  return replies ? `ETRN ${replies}` : 'ETRN no reply';
}

const num = (n: unknown) => (typeof n === 'number' && Number.isFinite(n) ? n : 0);

/** Pure: one window, one line (`failed N` only when some failed, the ETRN part only when one was sent). */
export function formatWindowLine(r: WindowRecord): string {
  const counts = `delivered ${num(r.delivered)} deferred ${num(r.deferred)}${num(r.failed) ? ` failed ${num(r.failed)}` : ''} waiting ${num(r.waiting)}`;
  return [
    localStamp(r.start), r.cause, r.kind ?? 'send', linkWord(r),
    `link ${num(r.linkSeconds).toFixed(1)}s`, counts, `conns ${num(r.connections)}`,
    `inbound ${num(r.inbound)}`, `linger ${Math.round(num(r.lingerSeconds))}s`, etrnPart(r),
  ].filter((p) => p !== '').join('  ');
}

/** Pure: the short form `status` shows: `2026-12-02 08:15:00 cron ...: dialed, 5 delivered, 0 deferred, 12.3 link-s`. */
export function formatWindowShort(r: WindowRecord): string {
  const etrn = r.etrn ? (r.etrn.error ? ', ETRN failed' : `, ETRN ${(r.etrn.replies ?? []).map((x) => x.code).join('/') || 'no reply'}`) : '';
  return `${localStamp(r.start)} ${r.cause} (${r.kind ?? 'send'}): ${linkWord(r)}, ${num(r.delivered)} delivered, ${num(r.deferred)} deferred, ${num(r.inbound)} inbound, ${num(r.linkSeconds).toFixed(1)} link-s${etrn}`;
}

export interface WindowsSummary {
  windows: number;
  dials: number;
  linkSeconds: number;
}

/** Pure: how many windows, how many of them dialed, and their link-seconds. */
export function summarizeWindows(records: readonly WindowRecord[]): WindowsSummary {
  return {
    windows: records.length,
    dials: records.filter((r) => r.dialed === true).length,
    linkSeconds: records.reduce((sum, r) => sum + num(r.linkSeconds), 0),
  };
}

export function formatSummary(s: WindowsSummary): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return `${plural(s.windows, 'window')}, ${plural(s.dials, 'dial')}, ${s.linkSeconds.toFixed(1)} link-seconds`;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false);
}

export async function runWindows(config: Config, argv: string[]): Promise<number> {
  const args = parseWindowsArgs(argv);
  let since: Date | undefined;
  if (args.since !== undefined) {
    since = parseSince(args.since, Date.now()) ?? undefined;
    if (!since) throw new UsageError(`windows: "${args.since}" is not a date (use 2026-12-01, 2026-12-01T08:00, 30m, 1h or 2d)`);
  }
  const records = await readWindows(config.spool, since);
  if (args.json) {
    process.stdout.write(`${JSON.stringify(records, null, 2)}\n`);
    return EX.OK;
  }
  if (records.length === 0) {
    const file = windowsLogPath(config.spool);
    const some = (await exists(file)) || (await exists(`${file}.1`));
    const why = !some ? `no flush windows recorded yet (${file} does not exist)`
      : since ? `no flush windows since ${localStamp(since.toISOString())}` : `no flush windows recorded in ${file}`;
    process.stdout.write(`${why}\n`);
    return EX.OK;
  }
  process.stdout.write(`${records.map(formatWindowLine).join('\n')}\n${formatSummary(summarizeWindows(records))}\n`);
  return EX.OK;
}
