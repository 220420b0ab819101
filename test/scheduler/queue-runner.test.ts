/**
 * scheduler/queue-runner.ts on a real queue in a temp spool: a next hop whose
 * delivery fails outright (an internal error, not a reply: no loopback
 * server can make the deliverer itself throw, so a Deliverer subclass does)
 * leaves no message locked and no run hanging; the messages are deferred
 * with the reason, and the queue goes on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import pino from 'pino';
import { FsStore } from '../../src/queue/fs-store.js';
import { Queue } from '../../src/queue/queue.js';
import { createIdGenerator } from '../../src/queue/queue-id.js';
import { configSchema } from '../../src/config/schema.js';
import { buildRouteTable, type Route } from '../../src/routing/route.js';
import { Deliverer, type HopOptions, type Job } from '../../src/delivery/deliverer.js';
import { QueueRunner } from '../../src/scheduler/queue-runner.js';
import type { JobQueue } from '../../src/scheduler/job-queue.js';
import { tempDir, withTimeout } from '../helpers/daemon.js';

/** Takes one job, then fails as a bug would. */
class FailingDeliverer extends Deliverer {
  override async deliverHop(_route: Route, source: JobQueue<Job>, _opts: HopOptions): Promise<{ connections: number }> {
    await source.next();
    throw new Error('boom in the deliverer');
  }
}

test('a next hop whose delivery throws leaves no message locked: every message is deferred with the reason and the run ends', async () => {
  const dir = await tempDir();
  const log = pino({ level: 'silent' });
  try {
    const queue = new Queue(new FsStore(dir), { groups: [], log, now: Date.now });
    await queue.init();
    const newId = createIdGenerator();
    const ids = [];
    for (let i = 0; i < 30; i++) {
      const id = newId();
      const w = await queue.begin(id);
      const body = `Subject: ${i}\r\n\r\nbody\r\n`;
      await w.write(Buffer.from(body));
      await queue.commit(w, body.length, { sender: 'alice@office.example', recipients: [{ address: `r${i}@far.example` }], bodyType: '7BIT', smtputf8: false, dsn: {}, client: { via: 'smtp', ip: '127.0.0.1' } });
      ids.push(id);
    }
    const config = configSchema.parse({ hostname: 'gw.test.example', spool: dir, routes: [{ domain: 'far.example', relay: '[127.0.0.1]:9' }], queue: { minQueueAge: '0s' } });
    const table = buildRouteTable(config, [], new Map());
    const deliverer = new FailingDeliverer({
      hostname: config.hostname, timeouts: { ...config.timeout, command: config.timeout.mail }, authinfo: () => [],
      resolver: { resolveMx: async () => [], resolveAddresses: async () => [] }, log, readBody: (env) => queue.readBody(env.id, env.size),
    });
    const runner = new QueueRunner({
      queue, deliverer, config: () => config, table: () => table, log, now: Date.now, notify: async () => undefined,
      linkAvailable: () => true, permanentLink: () => true,
    });
    const summary = await withTimeout(runner.run({ trigger: { kind: 'flush', names: false } }), 20_000, 'the run to end');
    assert.equal(summary.deferred, 30);
    for (const id of ids) {
      const release = await withTimeout(queue.lock(id), 5000, `the lock of ${id}`);
      release();
      const loc = await queue.find(id);
      assert.equal(loc?.place.state, 'queued');
      assert.equal(loc?.env.attempts, 1);
      assert.match(loc?.env.recipients[0].lastReply ?? '', /^451 4\.3\.0 Internal error delivering to .*boom in the deliverer/);
    }
    await queue.close();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
