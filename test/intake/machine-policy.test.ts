/**
 * The load and disk policies (SPEC §9): sendmail's QueueLA / RefuseLA /
 * QueueFactor formula and MinFreeBlocks, as tables of cases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadThresholds, refusesConnections, shouldQueue } from '../../src/intake/load-policy.js';
import { hasRoom } from '../../src/intake/disk-policy.js';

test('thresholds: unset queueLA / refuseLA are 8 and 12 times the CPUs; set values are absolute', () => {
  assert.deepEqual(loadThresholds({ queueFactor: 600_000 }, 2), { queueLA: 16, refuseLA: 24, queueFactor: 600_000 });
  assert.deepEqual(loadThresholds({ queueFactor: 600_000 }, 4), { queueLA: 32, refuseLA: 48, queueFactor: 600_000 });
  assert.deepEqual(loadThresholds({ queueLA: 5, refuseLA: 9, queueFactor: 1000 }, 4), { queueLA: 5, refuseLA: 9, queueFactor: 1000 });
  assert.deepEqual(loadThresholds({ queueLA: 5, queueFactor: 1000 }, 2), { queueLA: 5, refuseLA: 24, queueFactor: 1000 });
});

test('shouldQueue: above queueLA, priority > queueFactor / (load - queueLA + 1) waits for a queue run', () => {
  const t = loadThresholds({ queueFactor: 600_000 }, 2); // queueLA 16, as in reference seed 003
  const cases: Array<[load: number, priority: number, queued: boolean]> = [
    // seed 003's two hosts: 600000 / (34 - 16 + 1) = 31579 (the seed's text says 35294, an arithmetic slip; the verdict is the same)
    [34, 30_242, false],
    [68, 30_242, true], // 600000 / 53 = 11321
    [16, 10_000_000, false], // at queueLA exactly: not above it
    [15.9, 10_000_000, false],
    [16.5, 400_000, false], // 600000 / 1.5 = 400000: not greater
    [16.5, 400_001, true],
    [17, 300_000, false], // 600000 / 2 = 300000
    [17, 300_001, true],
    [100, 0, false],
    [100, 7_060, true], // 600000 / 85 = 7058.8
  ];
  for (const [load, priority, queued] of cases) {
    const why = shouldQueue(load, priority, t);
    assert.equal(why !== null, queued, `load ${load}, priority ${priority}`);
    if (why) assert.match(why, new RegExp(`load average ${load.toFixed(2)} > queueLA 16 and priority ${priority} > queueFactor`));
  }
});

test('refusesConnections: at or above refuseLA', () => {
  const t = loadThresholds({ queueLA: 4, refuseLA: 6, queueFactor: 1 }, 2);
  const cases: Array<[number, boolean]> = [[0, false], [5.99, false], [6, true], [6.01, true], [50, true]];
  for (const [load, refused] of cases) assert.equal(refusesConnections(load, t), refused, `load ${load}`);
});

test('hasRoom: the reserve in blocks or bytes, with a declared SIZE counted against the free space', () => {
  const space = { bavail: 1000, bsize: 4096 }; // 4,096,000 bytes free
  const cases: Array<[min: { blocks: number } | { bytes: number }, need: number, ok: boolean]> = [
    [{ blocks: 100 }, 0, true],
    [{ blocks: 1000 }, 0, true], // exactly the reserve left
    [{ blocks: 1001 }, 0, false],
    [{ blocks: 100 }, 900 * 4096, true],
    [{ blocks: 100 }, 900 * 4096 + 1, false],
    [{ bytes: 4_096_000 }, 0, true],
    [{ bytes: 4_096_001 }, 0, false],
    [{ bytes: 1_000_000 }, 3_096_000, true],
    [{ bytes: 1_000_000 }, 3_096_001, false],
  ];
  for (const [min, need, ok] of cases) assert.equal(hasRoom(space, min, need), ok, `${JSON.stringify(min)} need ${need}`);
});
