/**
 * The flush-window history (link/window-history.ts): spool/windows.log in a
 * real temp folder — append, rotation to windows.log.1, recent(), load()
 * from an existing file, readWindows() with since, garbage lines skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseWindowLine, readWindows, recordTime, shouldRotate, WindowHistory, type WindowRecord } from '../../src/link/window-history.js';
import { tempDir } from '../helpers/daemon.js';

const T0 = Date.parse('2026-12-02T08:00:00.000Z');

/** Window n: starts n minutes after T0, lasts 30 s; every record of n < 10 has the same length. */
function win(n: number, over: Partial<WindowRecord> = {}): WindowRecord {
  return {
    cause: `cron ${n}`, kind: 'send',
    start: new Date(T0 + n * 60_000).toISOString(), end: new Date(T0 + n * 60_000 + 30_000).toISOString(),
    dialed: true, linkOpen: true, linkSeconds: 12.5, delivered: 1, deferred: 0, failed: 0, waiting: 0,
    connections: 1, inbound: 0, lingerSeconds: 60,
    etrn: { relay: 'mx.isp.example [192.0.2.1]:25', offersEtrn: true, replies: [{ domain: 'office.example', code: 250, text: '250 OK' }] },
    ...over,
  };
}

const lineOf = (r: WindowRecord) => `${JSON.stringify(r)}\n`;
const causes = (rs: readonly WindowRecord[]) => rs.map((r) => r.cause);

test('parseWindowLine() takes JSON records and skips everything else', () => {
  const cases: Array<[string, string | null]> = [
    [JSON.stringify(win(1)), 'cron 1'],
    [`  ${JSON.stringify(win(2))}  `, 'cron 2'],
    ['', null],
    ['not json at all', null],
    ['{"cause":"torn", "start":"2026-', null],
    ['42', null],
    ['[1,2]', null],
    ['null', null],
    ['{"cause":"no start"}', null],
    ['{"start":"2026-12-02T08:00:00Z"}', null],
  ];
  for (const [line, cause] of cases) assert.equal(parseWindowLine(line)?.cause ?? null, cause, line);
});

test('shouldRotate() rotates only a non-empty file that the line would take past maxBytes', () => {
  const cases: Array<[number, number, number, boolean]> = [
    [0, 100, 50, false], // one line bigger than the limit still goes into an empty file
    [0, 10, 50, false],
    [40, 10, 50, false], // exactly maxBytes is allowed
    [41, 10, 50, true],
    [1_048_000, 600, 1_048_576, true],
  ];
  for (const [size, line, max, expected] of cases) assert.equal(shouldRotate(size, line, max), expected, `${size}+${line} vs ${max}`);
});

test('recordTime() is the end, or the start when the end is missing or not a date', () => {
  assert.equal(recordTime(win(1)), T0 + 90_000);
  assert.equal(recordTime(win(1, { end: 'garbage' })), T0 + 60_000);
  assert.equal(recordTime({ ...win(1), end: undefined } as unknown as WindowRecord), T0 + 60_000);
});

test('append() writes one JSON line per window, mode 0640, and recent() keeps the last `keep`, newest last', async () => {
  const spool = await tempDir();
  try {
    const h = new WindowHistory(spool, { keep: 3 });
    for (let n = 1; n <= 5; n++) await h.append(win(n));
    const text = await fs.readFile(path.join(spool, 'windows.log'), 'utf8');
    assert.deepEqual(text.split('\n'), [...[1, 2, 3, 4, 5].map((n) => JSON.stringify(win(n))), '']);
    assert.equal((await fs.stat(path.join(spool, 'windows.log'))).mode & 0o777, 0o640);
    assert.deepEqual(causes(h.recent()), ['cron 3', 'cron 4', 'cron 5']);
  } finally {
    await fs.rm(spool, { recursive: true, force: true });
  }
});

test('appends started together are written in order, none lost', async () => {
  const spool = await tempDir();
  try {
    const h = new WindowHistory(spool);
    await Promise.all([1, 2, 3, 4, 5, 6].map((n) => h.append(win(n))));
    assert.deepEqual(causes(await readWindows(spool)), ['cron 1', 'cron 2', 'cron 3', 'cron 4', 'cron 5', 'cron 6']);
  } finally {
    await fs.rm(spool, { recursive: true, force: true });
  }
});

test('when a line would pass maxBytes the file becomes windows.log.1 (replacing the old one) first', async () => {
  const spool = await tempDir();
  try {
    const len = Buffer.byteLength(lineOf(win(1)));
    // room for two lines
    const h = new WindowHistory(spool, { maxBytes: 2 * len + 10 });
    const log = path.join(spool, 'windows.log');
    const read = async (f: string) => (await fs.readFile(f, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l).cause);
    for (let n = 1; n <= 3; n++) await h.append(win(n));
    assert.deepEqual(await read(`${log}.1`), ['cron 1', 'cron 2']);
    assert.deepEqual(await read(log), ['cron 3']);
    assert.equal((await fs.stat(log)).mode & 0o777, 0o640, 'the new file is 0640 too');
    for (let n = 4; n <= 5; n++) await h.append(win(n));
    assert.deepEqual(await read(`${log}.1`), ['cron 3', 'cron 4'], 'the old .1 is replaced');
    assert.deepEqual(await read(log), ['cron 5']);
    assert.deepEqual(causes(await readWindows(spool)), ['cron 3', 'cron 4', 'cron 5'], 'readWindows reads .1, then the log');
    assert.ok((await fs.stat(log)).size <= 2 * len + 10);
  } finally {
    await fs.rm(spool, { recursive: true, force: true });
  }
});

test('append() does not reject when the file cannot be written: onError is told and recent() still has the window', async () => {
  const dir = await tempDir();
  try {
    const errors: Error[] = [];
    const h = new WindowHistory(path.join(dir, 'no-such-spool'), { onError: (e) => errors.push(e) });
    await h.append(win(1));
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as NodeJS.ErrnoException).code, 'ENOENT');
    assert.deepEqual(causes(h.recent()), ['cron 1']);
    // and without onError it still resolves
    await new WindowHistory(path.join(dir, 'no-such-spool')).append(win(2));
    // a reporter that throws does not stop later appends once the folder is there
    const spool = path.join(dir, 'late-spool');
    const loud = new WindowHistory(spool, { onError: () => { throw new Error('reporter failed'); } });
    await loud.append(win(3));
    await fs.mkdir(spool);
    await loud.append(win(4));
    assert.deepEqual(causes(await readWindows(spool)), ['cron 4']);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('load() seeds recent() from the tail of an existing file, skipping garbage and a torn last line', async () => {
  const spool = await tempDir();
  try {
    const log = path.join(spool, 'windows.log');
    // 300 windows of ~450 bytes (with two-byte characters that a chunk may cut): the last 60 are several tail chunks back
    const cause = (n: number) => `cron ${n} ${'é'.repeat(n % 7)}`;
    const many = Array.from({ length: 300 }, (_, n) => lineOf(win(n, { cause: cause(n) })));
    many.splice(295, 0, 'garbage line\n');
    await fs.writeFile(log, `${many.join('')}{"cause":"torn","sta`);
    const h = new WindowHistory(spool, { keep: 60 });
    await h.load();
    assert.deepEqual(causes(h.recent()), Array.from({ length: 60 }, (_, i) => cause(240 + i)));
    await h.append(win(1, { cause: 'operator' }));
    assert.deepEqual(causes(h.recent()).slice(-2), [cause(299), 'operator'], 'appends follow the loaded tail');
    assert.equal(h.recent().length, 60);
  } finally {
    await fs.rm(spool, { recursive: true, force: true });
  }
});

test('load() reaches into windows.log.1 when the current file is short, and is empty without any file', async () => {
  const spool = await tempDir();
  try {
    const log = path.join(spool, 'windows.log');
    const empty = new WindowHistory(spool);
    await empty.load();
    assert.deepEqual(empty.recent(), []);
    await fs.writeFile(`${log}.1`, [1, 2, 3, 4].map((n) => lineOf(win(n))).join(''));
    await fs.writeFile(log, lineOf(win(5)));
    const h = new WindowHistory(spool, { keep: 3 });
    await h.load();
    assert.deepEqual(causes(h.recent()), ['cron 3', 'cron 4', 'cron 5']);
  } finally {
    await fs.rm(spool, { recursive: true, force: true });
  }
});

test('readWindows() returns the windows that ended at or after since, skipping lines that are not records', async () => {
  const spool = await tempDir();
  try {
    const log = path.join(spool, 'windows.log');
    assert.deepEqual(await readWindows(spool), [], 'no file yet: no windows');
    await fs.writeFile(`${log}.1`, `${lineOf(win(1))}garbage\n`);
    await fs.writeFile(log, `${lineOf(win(2))}\n{not json\n${lineOf(win(3, { end: 'never' }))}${lineOf(win(4))}`);
    assert.deepEqual(causes(await readWindows(spool)), ['cron 1', 'cron 2', 'cron 3', 'cron 4']);
    // window 2 ends at T0 + 150 s; window 3 has no end, so its start (T0 + 180 s) counts
    assert.deepEqual(causes(await readWindows(spool, new Date(T0 + 150_000))), ['cron 2', 'cron 3', 'cron 4'], 'since is inclusive');
    assert.deepEqual(causes(await readWindows(spool, new Date(T0 + 150_001))), ['cron 3', 'cron 4']);
    assert.deepEqual(causes(await readWindows(spool, new Date(T0 + 180_001))), ['cron 4']);
    assert.deepEqual(await readWindows(spool, new Date(T0 + 3_600_000)), []);
    // anything but a missing file is an error that names the file
    await fs.rm(log);
    await fs.mkdir(log);
    await assert.rejects(readWindows(spool), /^QuietlinkError: Cannot read .*windows\.log: EISDIR$/);
  } finally {
    await fs.rm(spool, { recursive: true, force: true });
  }
});
