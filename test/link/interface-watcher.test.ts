/**
 * The interface watcher: isInterfaceUp() over a table of the sysfs facts
 * Linux shows, and InterfaceWatcher against a fake sysfs tree in a temp
 * folder (files written, changed and removed; a FIFO plays a read that hangs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { isInterfaceUp, readInterfaceFacts, InterfaceWatcher, type InterfaceFacts } from '../../src/link/interface-watcher.js';
import { tempDir, withTimeout } from '../helpers/daemon.js';

const CASES: Array<[string, InterfaceFacts, boolean]> = [
  ['missing', { exists: false }, false],
  ['missing, whatever else is said', { exists: false, flags: 0x1003, operstate: 'up', carrier: 1 }, false],
  ['admin down (0x1002, down, carrier EINVAL)', { exists: true, flags: 0x1002, operstate: 'down', carrier: null }, false],
  ['admin down but operstate still up', { exists: true, flags: 0x1002, operstate: 'up', carrier: 1 }, false],
  ['up with carrier (0x1003, up, 1)', { exists: true, flags: 0x1003, operstate: 'up', carrier: 1 }, true],
  ['up without carrier (0x1003, lowerlayerdown, 0)', { exists: true, flags: 0x1003, operstate: 'lowerlayerdown', carrier: 0 }, false],
  ['operstate up but carrier 0', { exists: true, flags: 0x1003, operstate: 'up', carrier: 0 }, false],
  ['ppp style (0x10d1, unknown, carrier not reported)', { exists: true, flags: 0x10d1, operstate: 'unknown', carrier: null }, true],
  ['ppp style, carrier undefined', { exists: true, flags: 0x10d1, operstate: 'unknown' }, true],
  ['ppp style with carrier 1', { exists: true, flags: 0x10d1, operstate: 'unknown', carrier: 1 }, true],
  ['unknown with carrier 0', { exists: true, flags: 0x1091, operstate: 'unknown', carrier: 0 }, false],
  ['loopback (0x9, unknown, 1)', { exists: true, flags: 0x9, operstate: 'unknown', carrier: 1 }, true],
  ['tun without a reader (0x1091, down, 0)', { exists: true, flags: 0x1091, operstate: 'down', carrier: 0 }, false],
  ['dormant', { exists: true, flags: 0x1003, operstate: 'dormant', carrier: 1 }, false],
  ['down', { exists: true, flags: 0x1003, operstate: 'down', carrier: null }, false],
  ['testing', { exists: true, flags: 0x1003, operstate: 'testing', carrier: 1 }, false],
  ['notpresent', { exists: true, flags: 0x1003, operstate: 'notpresent', carrier: null }, false],
  ['flags unreadable', { exists: true, operstate: 'up', carrier: 1 }, false],
  ['operstate unreadable', { exists: true, flags: 0x1003, carrier: 1 }, false],
  ['IFF_RUNNING is not required (Linux never shows it in sysfs)', { exists: true, flags: 0x1043, operstate: 'up', carrier: 1 }, true],
];

test('isInterfaceUp() is true only for an existing, admin-up interface with operstate up/unknown and carrier 1 where reported', () => {
  for (const [name, facts, up] of CASES) assert.equal(isInterfaceUp(facts), up, name);
});

/** Writes one attribute atomically (temp name, rename), as a tick may read at any moment. */
async function setAttr(dir: string, name: string, value: string): Promise<void> {
  await fs.writeFile(path.join(dir, `.${name}.tmp`), `${value}\n`);
  await fs.rename(path.join(dir, `.${name}.tmp`), path.join(dir, name));
}

async function setIface(dir: string, attrs: { flags?: string; operstate?: string; carrier?: string | null }): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  // flags last: from a down state, the interface turns up only once the rest is written
  if (attrs.operstate !== undefined) await setAttr(dir, 'operstate', attrs.operstate);
  if (attrs.carrier === null) await fs.rm(path.join(dir, 'carrier'), { force: true });
  else if (attrs.carrier !== undefined) await setAttr(dir, 'carrier', attrs.carrier);
  if (attrs.flags !== undefined) await setAttr(dir, 'flags', attrs.flags);
}

/** Collects reports; wait(pred) resolves on the next report (after the call) that matches, or fails after ms. */
function recorder() {
  const reports: boolean[] = [];
  const waiters: Array<{ pred: (up: boolean, n: number) => boolean; resolve: () => void }> = [];
  return {
    reports,
    report: (up: boolean) => {
      reports.push(up);
      for (const w of [...waiters]) {
        if (w.pred(up, reports.length)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    wait: (pred: (up: boolean, n: number) => boolean, what: string, ms = 5000) =>
      withTimeout(new Promise<void>((resolve) => waiters.push({ pred, resolve })), ms, what),
  };
}

test('readInterfaceFacts() reads flags, operstate and carrier; a missing folder is a missing interface', async () => {
  const sysfs = await tempDir('ql-sysfs-');
  try {
    const dir = path.join(sysfs, 'qlt0');
    assert.deepEqual(await readInterfaceFacts('qlt0', sysfs), { exists: false });
    await setIface(dir, { flags: '0x1002', operstate: 'down' });
    assert.deepEqual(await readInterfaceFacts('qlt0', sysfs), { exists: true, flags: 0x1002 }, 'admin down: nothing else read');
    await setIface(dir, { flags: '0x1003', operstate: 'up', carrier: '1' });
    assert.deepEqual(await readInterfaceFacts('qlt0', sysfs), { exists: true, flags: 0x1003, operstate: 'up', carrier: 1 });
    await setIface(dir, { flags: '0x10d1', operstate: 'unknown', carrier: null });
    assert.deepEqual(await readInterfaceFacts('qlt0', sysfs), { exists: true, flags: 0x10d1, operstate: 'unknown', carrier: null });
    await setIface(dir, { flags: 'garbage' });
    assert.deepEqual(await readInterfaceFacts('qlt0', sysfs), { exists: true, flags: undefined });
  } finally {
    await fs.rm(sysfs, { recursive: true, force: true });
  }
});

test('InterfaceWatcher reports down, up, down as a fake sysfs interface appears, changes and disappears', async () => {
  const sysfs = await tempDir('ql-sysfs-');
  const dir = path.join(sysfs, 'qlt0');
  const rec = recorder();
  const w = new InterfaceWatcher('qlt0', 10, rec.report, sysfs);
  const becomes = async (up: boolean, what: string, change: () => Promise<void>) => {
    const seen = rec.wait((u) => u === up, what);
    await change();
    await seen;
  };
  try {
    await becomes(false, 'missing: down on the first tick', async () => w.start());
    await becomes(true, 'ppp style: up', () => setIface(dir, { operstate: 'unknown', carrier: null, flags: '0x10d1' }));
    await becomes(false, 'admin down: down', () => setIface(dir, { flags: '0x1002', operstate: 'down' }));
    await becomes(true, 'up with carrier: up', () => setIface(dir, { operstate: 'up', carrier: '1', flags: '0x1003' }));
    await becomes(false, 'carrier lost: down', () => setIface(dir, { carrier: '0', operstate: 'lowerlayerdown' }));
    await becomes(true, 'carrier back: up', () => setIface(dir, { operstate: 'up', carrier: '1' }));
    await becomes(false, 'dormant: down', () => setIface(dir, { operstate: 'dormant' }));
    await becomes(true, 'up again', () => setIface(dir, { operstate: 'up' }));
    await becomes(false, 'removed: down', () => fs.rm(dir, { recursive: true }));
    const n = rec.reports.length;
    await rec.wait((_u, count) => count >= n + 3, 'repeated reports: every tick reports');
    assert.deepEqual(rec.reports.slice(n), [false, false, false]);
  } finally {
    w.stop();
    await fs.rm(sysfs, { recursive: true, force: true });
  }
});

/** Opens the FIFO for writing (meeting the blocked reader), writes one line, closes. */
async function feed(fifo: string, line: string): Promise<void> {
  const fh = await withTimeout(fs.open(fifo, 'w'), 5000, 'a reader on the fake flags FIFO');
  try {
    await fh.write(line);
  } finally {
    await fh.close();
  }
}

test('a tick that finds the previous read still in flight is skipped: a slow read never piles up', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const sysfs = await tempDir('ql-sysfs-');
  const dir = path.join(sysfs, 'qlt0');
  await setIface(dir, { operstate: 'up', carrier: '1' });
  const fifo = path.join(dir, 'flags');
  execFileSync('mkfifo', [fifo]);
  const rec = recorder();
  const w = new InterfaceWatcher('qlt0', 1000, rec.report, sysfs);
  try {
    w.start(); // the first read now hangs opening the FIFO
    for (let i = 0; i < 5; i++) t.mock.timers.tick(1000); // five ticks find it in flight
    const first = rec.wait((_u, n) => n === 1, 'the first report');
    await feed(fifo, '0x1003\n');
    await first;
    t.mock.timers.tick(1000); // one new read, hanging again
    const second = rec.wait((_u, n) => n === 2, 'the second report');
    await feed(fifo, '0x1003\n');
    await second;
    // skipped ticks left no readers behind: piled-up reads would have met EOF and reported down
    assert.deepEqual(rec.reports, [true, true]);
  } finally {
    w.stop();
    // should a read still hang on the FIFO (a failed run), release it: a writer comes and goes, the read meets EOF
    fsSync.closeSync(fsSync.openSync(fifo, fsSync.constants.O_RDWR | fsSync.constants.O_NONBLOCK));
    await fs.rm(sysfs, { recursive: true, force: true });
  }
});
