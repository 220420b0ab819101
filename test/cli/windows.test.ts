/**
 * `quietlink windows [--json] [--since DATE]` (cli/windows.ts): the --since
 * and argument decisions as tables, the line format, and the real CLI
 * against a spool whose windows.log the test wrote (no daemon).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { formatSummary, formatWindowLine, formatWindowShort, parseSince, parseWindowsArgs, summarizeWindows } from '../../src/cli/windows.js';
import type { WindowRecord } from '../../src/link/window-history.js';
import { runCli, tempDir, writeConfig } from '../helpers/daemon.js';

const NOW = Date.parse('2026-12-02T12:00:00.000Z');

test('parseSince() reads local dates and times, explicit zones and relative ages; anything else is null', () => {
  const cases: Array<[string, number | null]> = [
    ['2026-12-01', new Date(2026, 11, 1).getTime()],
    ['2026-12-01T08:00', new Date(2026, 11, 1, 8, 0).getTime()],
    ['2026-12-01 08:00:30', new Date(2026, 11, 1, 8, 0, 30).getTime()],
    ['2026-12-01T08:00:30.25', new Date(2026, 11, 1, 8, 0, 30, 250).getTime()],
    ['2026-12-01T08:00Z', Date.parse('2026-12-01T08:00:00Z')],
    ['2026-12-01T08:00:00+01:00', Date.parse('2026-12-01T07:00:00Z')],
    ['2026-12-01T08:00-0500', Date.parse('2026-12-01T13:00:00Z')],
    ['2026-12-01Z', Date.parse('2026-12-01T00:00:00Z')],
    ['2024-02-29', new Date(2024, 1, 29).getTime()],
    ['30m', NOW - 30 * 60_000],
    ['1h', NOW - 3_600_000],
    ['2d', NOW - 2 * 86_400_000],
    ['90s', NOW - 90_000],
    ['1w', NOW - 7 * 86_400_000],
    [' 1h ', NOW - 3_600_000],
    ['', null],
    ['yesterday', null],
    ['1y', null],
    ['-1h', null],
    ['1.5h', null],
    ['2026-13-01', null],
    ['2026-02-30', null],
    ['2026-02-29', null],
    ['2026-12-01T24:00', null],
    ['2026-12-01T08:60', null],
    ['2026-12-01T08', null],
    ['12/01/2026', null],
    ['2026-12-01T08:00+25', null],
  ];
  for (const [value, expected] of cases) assert.equal(parseSince(value, NOW)?.getTime() ?? null, expected, JSON.stringify(value));
});

test('parseWindowsArgs() takes --json and --since (both spellings); other options and arguments are usage errors', () => {
  assert.deepEqual(parseWindowsArgs([]), { json: false });
  assert.deepEqual(parseWindowsArgs(['--json', '--since', '1h']), { json: true, since: '1h' });
  assert.deepEqual(parseWindowsArgs(['--since=2026-12-01']), { json: false, since: '2026-12-01' });
  const bad: Array<[string[], RegExp]> = [
    [['--since'], /--since needs a date/],
    [['-v'], /unknown option -v/],
    [['--all'], /unknown option --all/],
    [['today'], /unexpected argument today/],
  ];
  for (const [argv, message] of bad) {
    assert.throws(() => parseWindowsArgs(argv), (e: Error & { exitCode?: number }) => message.test(e.message) && e.exitCode === 64, argv.join(' '));
  }
});

/** A window starting at local `hh:mm:ss` on 2026-12-02, so the expected text does not depend on the test's time zone. */
function win(over: Partial<WindowRecord> = {}, at = new Date(2026, 11, 2, 8, 15, 0)): WindowRecord {
  return {
    cause: 'cron */15 8-18 * * 1-5', kind: 'send', start: at.toISOString(), end: new Date(at.getTime() + 75_000).toISOString(),
    dialed: true, linkOpen: true, linkSeconds: 12.34, delivered: 5, deferred: 0, failed: 0, waiting: 0,
    connections: 1, inbound: 3, lingerSeconds: 61.6,
    etrn: { relay: 'mx.isp.example [192.0.2.1]:25', offersEtrn: true, replies: [{ domain: 'office.example', code: 250, text: '250 OK' }] },
    ...over,
  };
}

test('formatWindowLine() writes one line per window in the spirit of sendmail logs', () => {
  const cases: Array<[WindowRecord, string]> = [
    [win(), '2026-12-02 08:15:00  cron */15 8-18 * * 1-5  send  dialed  link 12.3s  delivered 5 deferred 0 waiting 0  conns 1  inbound 3  linger 62s  ETRN office.example 250'],
    [win({ cause: 'link-up', dialed: false, failed: 2, etrn: null }), '2026-12-02 08:15:00  link-up  send  had-link  link 12.3s  delivered 5 deferred 0 failed 2 waiting 0  conns 1  inbound 3  linger 62s'],
    [win({ cause: 'interval', dialed: false, linkOpen: false, linkSeconds: 0, delivered: 0, waiting: 4, connections: 0, inbound: 0, lingerSeconds: 0, etrn: null }),
      '2026-12-02 08:15:00  interval  send  no-link  link 0.0s  delivered 0 deferred 0 waiting 4  conns 0  inbound 0  linger 0s'],
    [win({ cause: 'poll 0 */3 * * *', kind: 'poll', delivered: 0, etrn: { relay: 'r', offersEtrn: true, replies: [{ domain: 'office.example', code: 250, text: '' }, { domain: 'cust.example', code: 458, text: '' }] } }),
      '2026-12-02 08:15:00  poll 0 */3 * * *  poll  dialed  link 12.3s  delivered 0 deferred 0 waiting 0  conns 1  inbound 3  linger 62s  ETRN office.example 250, cust.example 458'],
    [win({ etrn: { relay: 'r', offersEtrn: false, replies: [], error: 'connection closed by the relay' } }),
      '2026-12-02 08:15:00  cron */15 8-18 * * 1-5  send  dialed  link 12.3s  delivered 5 deferred 0 waiting 0  conns 1  inbound 3  linger 62s  ETRN failed: connection closed by the relay'],
  ];
  for (const [record, line] of cases) assert.equal(formatWindowLine(record), line);
  assert.equal(formatWindowShort(win()), '2026-12-02 08:15:00 cron */15 8-18 * * 1-5 (send): dialed, 5 delivered, 0 deferred, 3 inbound, 12.3 link-s, ETRN 250');
});

test('summarizeWindows() counts windows, dials and link-seconds', () => {
  assert.equal(formatSummary(summarizeWindows([])), '0 windows, 0 dials, 0.0 link-seconds');
  assert.equal(formatSummary(summarizeWindows([win()])), '1 window, 1 dial, 12.3 link-seconds');
  assert.deepEqual(summarizeWindows([win({ linkSeconds: 12.5 }), win({ dialed: false, linkSeconds: 2 }), win({ linkSeconds: 0.5 })]), { windows: 3, dials: 2, linkSeconds: 15 });
});

test('quietlink windows prints the history from spool/windows.log: text, --json, --since absolute and relative, usage errors', async () => {
  const dir = await tempDir();
  const env = { TZ: 'UTC' };
  try {
    const config = await writeConfig(dir);
    const spool = path.join(dir, 'spool');
    // no history yet: a friendly line and 0
    const none = await runCli(['windows', '-c', config], { env });
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /^no flush windows recorded yet \(.*windows\.log does not exist\)\n$/);
    assert.equal((await runCli(['-c', config, 'windows', '--json'], { env })).stdout, '[]\n');

    const now = Date.now();
    const at = (msAgo: number) => new Date(now - msAgo);
    const records = [
      win({ cause: 'cron 0 * * * *' }, at(3 * 86_400_000)),
      win({ cause: 'link-up', dialed: false, linkSeconds: 4, etrn: null }, at(5 * 3_600_000)),
      win({ cause: 'operator', linkSeconds: 1.5 }, at(10 * 60_000)),
    ];
    await fs.mkdir(spool, { recursive: true });
    await fs.writeFile(path.join(spool, 'windows.log.1'), `${JSON.stringify(records[0])}\n`);
    await fs.writeFile(path.join(spool, 'windows.log'), `${JSON.stringify(records[1])}\nnot json\n${JSON.stringify(records[2])}\n`);

    const text = await runCli(['windows', '-c', config], { env });
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4, text.stdout);
    assert.equal(lines[0], formatUtc(records[0], 'cron 0 * * * *  send  dialed  link 12.3s  delivered 5 deferred 0 waiting 0  conns 1  inbound 3  linger 62s  ETRN office.example 250'));
    assert.match(lines[1], /  link-up  send  had-link  link 4\.0s  /);
    assert.match(lines[2], /  operator  send  dialed  link 1\.5s  /);
    assert.equal(lines[3], '3 windows, 2 dials, 17.8 link-seconds');

    const json = await runCli(['windows', '--json', '-c', config], { env });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), records);

    // absolute: a local (here UTC) time without a zone, a day ago
    const dayAgo = at(86_400_000).toISOString().slice(0, 16);
    const abs = await runCli(['windows', '-c', config, '--since', dayAgo, '--json'], { env });
    assert.equal(abs.code, 0, abs.stderr);
    assert.deepEqual(JSON.parse(abs.stdout).map((r: WindowRecord) => r.cause), ['link-up', 'operator']);
    const rel = await runCli(['windows', '-c', config, '--since', '1h'], { env });
    assert.equal(rel.code, 0, rel.stderr);
    assert.match(rel.stdout, /  operator  .*\n1 window, 1 dial, 1\.5 link-seconds\n$/);
    assert.doesNotMatch(rel.stdout, /link-up/);
    assert.equal((await runCli(['windows', '-c', config, '--since=4d', '--json'], { env })).stdout.match(/"cause"/g)?.length, 3);
    const later = await runCli(['windows', '-c', config, '--since', '1m'], { env });
    assert.equal(later.code, 0, later.stderr);
    assert.match(later.stdout, /^no flush windows since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n$/);

    const badDate = await runCli(['windows', '-c', config, '--since', 'yesterday'], { env });
    assert.equal(badDate.code, 64);
    assert.match(badDate.stderr, /windows: "yesterday" is not a date/);
    assert.equal(badDate.stdout, '');
    assert.equal((await runCli(['windows', '-c', config, '--since', '2026-02-30'], { env })).code, 64);
    const badOption = await runCli(['windows', '-c', config, '--verbose'], { env });
    assert.equal(badOption.code, 64);
    assert.match(badOption.stderr, /windows: unknown option --verbose/);
    assert.match((await runCli(['help'])).stdout, /windows \[--json\] \[--since DATE\]/, 'the usage names the command');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

/** The expected line of a record in a child running with TZ=UTC. */
function formatUtc(r: WindowRecord, rest: string): string {
  return `${r.start.slice(0, 10)} ${r.start.slice(11, 19)}  ${rest}`;
}
