/**
 * cli/flush.ts — `quietlink flush [-qR|-qS|-qI STR] [-qG GROUP] [-v] [--wait]
 * [--dry-run]` (also `sendmail -q`): asks the daemon for a run of the
 * matching mail now. `--wait` returns when the run ends (exit 0 when nothing
 * was deferred, 75 when something was); `-v` streams each result and the
 * SMTP dialogue (sendmail -q -v), each dialogue line prefixed with its
 * connection (`[c1 127.0.0.2:25] >>> EHLO ...`), and waits; `--dry-run` only shows what
 * would be attempted and where it would go.
 */
import type { Config } from '../config/schema.js';
import path from 'node:path';
import { controlRequest, DaemonNotRunningError } from '../control/client.js';
import type { FlushReply } from '../control/commands.js';
import { EX, UsageError, UnavailableError } from '../errors.js';
import type { Selection } from '../queue/select.js';
import type { RunEvent } from '../scheduler/queue-runner.js';
import type { WindowRecord } from '../scheduler/windows.js';
import type { EtrnResult } from '../etrn/etrn-client.js';
import { extractSelection, rejectUnknownFlags, takeFlags } from './args.js';

export function formatEvent(e: RunEvent): string {
  switch (e.type) {
    case 'result': return `${e.qid}: to=<${e.to}>, relay=${e.relay ?? 'none'}, stat=${e.outcome} (${e.code} ${e.text})`;
    case 'dialogue': return `${e.conn ? `[${e.conn}] ` : ''}${e.dir === 'note' ? '---' : e.dir === 'C' ? '>>>' : '<<<'} ${e.line}`;
    case 'skip': return `${e.qid}: to=<${e.to}>, skipped: ${e.reason}`;
  }
}

/**
 * No daemon (or `--spool DIR`): this process runs the gateway's queue once
 * itself, in the foreground, holding the spool's lock (its control socket),
 * then exits 0 when nothing is left waiting, 75 when something is.
 */
async function flushStandalone(configFile: string, spool: string | undefined, selection: Selection, verbose: boolean): Promise<number> {
  const { startDaemon } = await import('../daemon.js');
  let gw;
  try {
    gw = await startDaemon(configFile, { spool, logLevel: verbose ? 'info' : 'warn' });
  } catch (err) {
    if (err instanceof UnavailableError) {
      throw new UnavailableError(`flush: ${spool ? `${spool} is the spool of a running daemon or of another flush` : 'another queue run holds the lock'}; try again later`, { exitCode: EX.TEMPFAIL });
    }
    throw err;
  }
  try {
    const w = await gw.flush(selection, verbose ? (e) => process.stdout.write(`${formatEvent(e)}\n`) : undefined);
    process.stdout.write(`window (${w.cause}, no daemon): ${w.delivered} delivered, ${w.deferred} deferred, ${w.failed} failed, ${w.waiting} waiting for the link, ${w.connections} connections${w.linkOpen ? '' : ', link down'}\n`);
    if (w.etrn) process.stdout.write(formatEtrn(w.etrn));
    const left = spool ? await gw.remaining() : 0;
    return w.deferred > 0 || w.waiting > 0 || left > 0 ? EX.TEMPFAIL : EX.OK;
  } finally {
    await gw.stop();
  }
}

export async function runFlush(config: Config, argv: string[], _maps?: unknown, configFile?: string): Promise<number> {
  // `-q` and sendmail's `-q30m` (an interval: here, one run now) select nothing
  const { selection, rest } = extractSelection(argv.filter((a) => !/^-q(\d+[smhdw]?)*$/.test(a)));
  const f = takeFlags(rest, ['-v', '--wait', '--dry-run']);
  let spool: string | undefined;
  const at = rest.indexOf('--spool');
  if (at >= 0) {
    spool = rest[at + 1];
    if (!spool) throw new UsageError('flush: --spool needs a directory');
    rest.splice(at, 2);
    spool = path.resolve(spool);
  }
  rejectUnknownFlags(rest, 'flush');
  if (rest.length) throw new UsageError(`flush: unexpected argument ${rest[0]}`);
  if (spool) {
    if (spool === config.spool) throw new UsageError('flush: --spool names the configured spool; use plain flush');
    return flushStandalone(configFile!, spool, selection, f['-v']);
  }
  const wait = f['--wait'] || f['-v'];
  let result: FlushReply;
  try {
    result = await controlRequest(config.spool, 'flush', { selection, wait, verbose: f['-v'], dryRun: f['--dry-run'] }, (e) => {
      process.stdout.write(`${formatEvent(e)}\n`);
    });
  } catch (err) {
    // no daemon at all (SPEC §11): this process runs the queue once itself
    if (err instanceof DaemonNotRunningError && !f['--dry-run'] && configFile) return flushStandalone(configFile, undefined, selection, f['-v']);
    throw err;
  }
  if ('started' in result) {
    process.stdout.write('flush started\n');
    return EX.OK;
  }
  if ('plan' in result && f['--dry-run']) {
    for (const p of result.plan ?? []) process.stdout.write(`${p.qid}: to=<${p.to}> via ${p.nexthop}\n`);
    process.stdout.write(`${result.plan?.length ?? 0} recipients would be attempted; ${result.waiting} wait for the link\n`);
    return EX.OK;
  }
  const w = result as WindowRecord;
  process.stdout.write(`window (${w.cause}): ${w.delivered} delivered, ${w.deferred} deferred, ${w.failed} failed, ${w.waiting} waiting for the link, ${w.connections} connections${w.linkOpen ? '' : ', link down'}\n`);
  if (w.etrn) process.stdout.write(formatEtrn(w.etrn));
  return w.deferred > 0 || w.waiting > 0 ? EX.TEMPFAIL : EX.OK;
}

/** Pure: an ETRN result as the operator reads it; an ODMR pull (it has `odmr`) says ATRN and how many messages came down. */
export function formatEtrn(r: EtrnResult): string {
  const verb = r.odmr ? 'ATRN' : 'ETRN';
  const lines = r.replies.map((x) => `${verb} ${x.domain} to ${r.relay}: ${x.text}`);
  if (!r.offersEtrn && !r.error) lines.push(`note: ${r.relay} does not offer ${verb} in its EHLO reply`);
  if (r.error) lines.push(`${r.odmr ? 'ODMR' : 'ETRN'} to ${r.relay} failed: ${r.error}`);
  if (r.odmr && r.replies.some((x) => x.code === 250)) lines.push(`received ${r.odmr.received} message${r.odmr.received === 1 ? '' : 's'} over ODMR from ${r.relay}`);
  return `${lines.join('\n')}\n`;
}
