/**
 * Crash points of the spool backend: a child commits, holds and finishes
 * messages through the journaled spool (test/queue/crash-child.ts) and is
 * killed with SIGKILL after N acknowledgements, for several N (during group
 * commits, settles, large bodies). Each time, a fresh queue on the same spool
 * must hold every acknowledged message, whole, in the state last
 * acknowledged; a finished one never comes back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import readline from 'node:readline';
import pino from 'pino';
import { spoolQueue } from '../../src/queue/spool.js';
import type { QueueId } from '../../src/queue/queue-id.js';
import { tempDir } from '../helpers/daemon.js';

interface Acked { state: string; size: number; next?: string }

async function crashAfter(spool: string, acks: number): Promise<Map<string, Acked>> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./crash-child.ts', import.meta.url).pathname, spool], { stdio: ['ignore', 'pipe', 'inherit'] });
  const seen = new Map<string, Acked>();
  let n = 0;
  const exited = new Promise((r) => child.once('exit', r));
  for await (const line of readline.createInterface({ input: child.stdout! })) {
    const [what, id, size, next] = line.split(' ');
    seen.set(id, { state: what, size: Number(size ?? seen.get(id)?.size), next: next ?? seen.get(id)?.next });
    if (++n >= acks) {
      child.kill('SIGKILL');
      break;
    }
  }
  await exited;
  return seen;
}

test('a SIGKILL at any point keeps every acknowledged message, in its acknowledged state', { timeout: 120_000 }, async () => {
  const spool = await tempDir();
  const expected = new Map<string, Acked>();
  for (const acks of [1, 3, 8, 21, 55, 90]) {
    for (const [id, v] of await crashAfter(spool, acks)) expected.set(id, v);
    const queue = spoolQueue(spool, { groups: [], log: pino({ level: 'silent' }) });
    await queue.init();
    for (const [id, acked] of expected) {
      const { size } = acked;
      const loc = await queue.find(id as QueueId);
      // the change announced after its 'queued' line may have happened before the kill: then that is its state
      let state = acked.state;
      if (state === 'queued' && acked.next === 'finished' && !loc) state = 'finished';
      if (state === 'queued' && acked.next === 'held' && loc?.place.state === 'held') state = 'held';
      expected.set(id, { ...acked, state });
      if (state === 'finished') {
        assert.equal(loc, null, `${id} was finished and must not come back (after ${acks})`);
        continue;
      }
      assert.ok(loc, `${id} (${state}) lost after a kill at ${acks} acknowledgements`);
      assert.equal(loc.place.state, state, `${id} state after a kill at ${acks}`);
      const body = await queue.readBody(id as QueueId);
      assert.equal(body.length, size);
      assert.ok(body.subarray(0, 40).toString().startsWith(`body ${id} `), `${id} body intact`);
    }
    await queue.close();
  }
  await fs.rm(spool, { recursive: true, force: true });
});
