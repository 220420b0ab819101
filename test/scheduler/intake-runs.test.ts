/**
 * scheduler/intake-runs.ts: messages of one event-loop turn share one run;
 * a later turn starts another; modes are batched apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IntakeRuns, type IntakeMode } from '../../src/scheduler/intake-runs.js';
import type { QueueId } from '../../src/queue/queue-id.js';

const id = (s: string) => s as unknown as QueueId;

test('IntakeRuns merges the wake-ups of one turn into one run per mode, and resolves each caller with its run', async () => {
  const runs: Array<{ ids: QueueId[]; mode: IntakeMode }> = [];
  const r = new IntakeRuns(async (ids, mode) => {
    runs.push({ ids: [...ids], mode });
  });
  await Promise.all([r.wake([id('a')], 'background'), r.wake([id('b'), id('c')], 'background'), r.wake([id('d')], 'interactive')]);
  assert.deepEqual(runs, [{ ids: ['a', 'b', 'c'], mode: 'background' }, { ids: ['d'], mode: 'interactive' }]);
  await r.wake([id('e')], 'background');
  assert.deepEqual(runs.at(-1), { ids: ['e'], mode: 'background' }, 'a later turn gets a run of its own');
});
