import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration, parseSize, formatDuration } from '../../src/config/units.js';

test('parseDuration() reads the configuration units', () => {
  const cases: Array<[string | number, number]> = [
    ['30s', 30_000], ['15m', 900_000], ['4h', 14_400_000], ['5d', 432_000_000], ['1h30m', 5_400_000],
    [0, 0], ['0', 0], [10, 10_000], ['250ms', 250], ['2w', 1_209_600_000],
  ];
  for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, String(input));
});

test('parseDuration() refuses what is not a duration', () => {
  for (const bad of ['', '5x', 'm5', '1.5h', '-3s', '10 m', 'soon']) assert.throws(() => parseDuration(bad), /invalid duration/, bad);
});

test('parseSize() reads sizes', () => {
  const cases: Array<[string | number, number]> = [['25MB', 25 * 1024 * 1024], ['512k', 524_288], ['1048576', 1_048_576], ['1GB', 1024 ** 3], [100, 100], ['1.5MB', 1_572_864]];
  for (const [input, bytes] of cases) assert.equal(parseSize(input), bytes, String(input));
  for (const bad of ['MB', '25XB', '-1', 'lots']) assert.throws(() => parseSize(bad), /invalid size/, bad);
});

test('formatDuration() is the inverse for whole units', () => {
  assert.equal(formatDuration(1_800_000), '30m');
  assert.equal(formatDuration(86_400_000), '1d');
  assert.equal(formatDuration(1500), '1500ms');
});
