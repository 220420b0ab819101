/**
 * Runs picked from the queue's in-memory index (scheduler/candidates.ts) on
 * a real spool: an ISP's scheduled run reads no envelope of its customers'
 * held mail, an ETRN-style run for one customer reads only that customer's;
 * and a next hop that answered on no address is remembered as dead until
 * its retry time (scheduler/destinations.ts), unless someone asks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import pino from 'pino';
import { FsStore } from '../../src/queue/fs-store.js';
import { Queue } from '../../src/queue/queue.js';
import { createIdGenerator, type QueueId } from '../../src/queue/queue-id.js';
import type { Place } from '../../src/queue/store.js';
import { configSchema } from '../../src/config/schema.js';
import { buildRouteTable } from '../../src/routing/route.js';
import { Deliverer } from '../../src/delivery/deliverer.js';
import { QueueRunner } from '../../src/scheduler/queue-runner.js';
import { DESTINATION_CONNECTIONS, DESTINATION_MAX, nextConcurrency } from '../../src/scheduler/destinations.js';
import { startSink } from '../helpers/sink.js';
import { tempDir, withTimeout } from '../helpers/daemon.js';

/** The spool, counting the envelopes read (a decorator over the real store, as journaled-store is). */
class CountingStore extends FsStore {
  reads: QueueId[] = [];
  override readEnvelope(id: QueueId, place: Place): Promise<Buffer> {
    this.reads.push(id);
    return super.readEnvelope(id, place);
  }
}

async function rig(hop: string, groups: Array<{ name: string; runners: number; match: string[] }> = []) {
  const dir = await tempDir();
  const log = pino({ level: 'silent' });
  const store = new CountingStore(dir);
  const queue = new Queue(store, { groups: configSchema.parse({ hostname: 'x.example', spool: dir, queue: { groups } }).queue.groups, log });
  await queue.init();
  await queue.recover(Date.now());
  const newId = createIdGenerator();
  const commit = async (to: string) => {
    const id = newId();
    const w = await queue.begin(id);
    await w.write(Buffer.from('Subject: x\r\n\r\nbody\r\n'));
    await queue.commit(w, 20, { sender: 'a@isp.example', recipients: [{ address: to }], bodyType: '7BIT', smtputf8: false, dsn: {}, client: { via: 'smtp', ip: '127.0.0.1' } });
    return id;
  };
  const config = configSchema.parse({ hostname: 'isp.test.example', spool: dir, smartHost: [hop], queue: { minQueueAge: '10m', groups } });
  const customers = new Map([['CustDoms', new Set(['cust1.dom', 'cust2.dom'])]]);
  const table = buildRouteTable(config, [{ key: 'cust1.dom', mailer: 'qsmtp', hosts: hop, line: 1 }, { key: 'cust2.dom', mailer: 'qsmtp', hosts: hop, line: 2 }], customers);
  const deliverer = new Deliverer({
    hostname: config.hostname, timeouts: { ...config.timeout, command: config.timeout.mail }, authinfo: () => [],
    resolver: { resolveMx: async () => [], resolveAddresses: async () => [] }, log, readBody: (env) => queue.readBody(env.id, env.size),
  });
  const runner = new QueueRunner({
    queue, deliverer, config: () => config, table: () => table, log, now: Date.now, notify: async () => undefined,
    linkAvailable: () => true, permanentLink: () => true,
  });
  return { dir, store, queue, commit, runner, done: async () => { await queue.close(); await fs.rm(dir, { recursive: true, force: true }); } };
}

test('a scheduled run reads no envelope of held customer mail; a run for one customer reads only its own', async () => {
  const sink = await startSink();
  const r = await rig(`[127.0.0.1]:${sink.port}`);
  try {
    const held1 = await Promise.all(Array.from({ length: 40 }, (_, i) => r.commit(`u${i}@cust1.dom`)));
    await Promise.all(Array.from({ length: 40 }, (_, i) => r.commit(`u${i}@cust2.dom`)));
    const due = await Promise.all(Array.from({ length: 5 }, (_, i) => r.commit(`v${i}@far.example`)));
    r.store.reads = [];
    const s = await withTimeout(r.runner.run({ trigger: { kind: 'interval' } }), 20_000, 'the interval run');
    assert.equal(s.delivered, 5);
    assert.deepEqual(new Set(r.store.reads), new Set(due), 'only the due messages were read');
    assert.equal(sink.messages.length, 5);
    r.store.reads = [];
    const e = await withTimeout(r.runner.run({ trigger: { kind: 'etrn' }, domainFilter: (d) => d === 'cust1.dom', recipientFilter: (a) => a.endsWith('@cust1.dom') }), 20_000, 'the ETRN run');
    assert.equal(e.delivered, 40);
    assert.deepEqual(new Set(r.store.reads), new Set(held1), 'only cust1.dom\'s envelopes were read');
    assert.equal(r.queue.index.pendingFor('cust1.dom'), 0);
    assert.equal(r.queue.index.pendingFor('cust2.dom'), 40);
  } finally {
    await r.done();
    await sink.close();
  }
});

test('a next hop that answered on no address is suspended until its retry time; a flush still tries it', async () => {
  // a port that was just closed: connections are refused at once
  const probe = net.createServer();
  await new Promise<void>((res) => probe.listen(0, '127.0.0.1', res));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((res) => probe.close(res));
  const r = await rig(`[127.0.0.1]:${port}`);
  try {
    const first = await r.commit('a@far.example');
    const s1 = await withTimeout(r.runner.run({ trigger: { kind: 'intake' }, ids: [first] }), 20_000, 'the first run');
    assert.equal(s1.deferred, 1);
    assert.equal(s1.connections, 0);
    const second = await r.commit('b@far.example');
    await withTimeout(r.runner.run({ trigger: { kind: 'intake' }, ids: [second] }), 20_000, 'the second run');
    const loc = await r.queue.find(second);
    assert.match(loc?.env.recipients[0].lastReply ?? '', /^451 4\.4\.1 delivery temporarily suspended until .*: no address of relay:\[127\.0\.0\.1\]/);
    await withTimeout(r.runner.run({ trigger: { kind: 'flush', names: false } }), 20_000, 'the flush');
    const again = await r.queue.find(second);
    assert.doesNotMatch(again?.env.recipients[0].lastReply ?? '', /suspended/, 'a flush tries the hop itself');
    assert.equal(again?.env.attempts, 2);
  } finally {
    await r.done();
  }
});

test('a queue group\'s own run uses its runners as connections per next hop (sendmail\'s parallel queue runners)', async () => {
  for (const runners of [1, 2]) {
    const sink = await startSink();
    const r = await rig(`[127.0.0.1]:${sink.port}`, [{ name: 'bulkq', runners, match: ['far.example'] }]);
    try {
      await Promise.all(Array.from({ length: 40 }, (_, i) => r.commit(`v${i}@far.example`)));
      const s = await withTimeout(r.runner.run({ trigger: { kind: 'interval' }, group: 'bulkq' }), 20_000, 'the group run');
      assert.equal(s.delivered, 40);
      assert.equal(sink.messages.length, 40);
      assert.equal(s.connections, runners, `runners ${runners}: that many connections`);
      assert.ok(sink.maxConcurrent <= runners);
    } finally {
      await r.done();
      await sink.close();
    }
  }
});

test('a next hop\'s concurrency grows while it answers, and learns the limit of one that refuses more', () => {
  assert.equal(nextConcurrency(4, true, 4), 5, 'a connection accepted with 4 open: one more');
  assert.equal(nextConcurrency(20, true, 20), 20, 'never over DESTINATION_MAX');
  assert.equal(nextConcurrency(9, false, 3), 3, 'refused with 3 open: the host takes 3');
  assert.equal(nextConcurrency(8, false, 0), 4, 'refused with none open: halved');
  assert.equal(nextConcurrency(1, false, 0), 1);
});

test('a DATA-only next hop gets more than the first 4 connections when there is mail for them, and never more than it accepts', async () => {
  const sink = await startSink();
  const r = await rig(`[127.0.0.1]:${sink.port}`);
  try {
    await Promise.all(Array.from({ length: 120 }, (_, i) => r.commit(`v${i}@far.example`)));
    const s = await withTimeout(r.runner.run({ trigger: { kind: 'interval' } }), 30_000, 'the run');
    assert.equal(s.delivered, 120);
    assert.equal(sink.messages.length, 120);
    assert.ok(s.connections > DESTINATION_CONNECTIONS, `${s.connections} connections`);
    assert.ok(sink.maxConcurrent <= DESTINATION_MAX);
  } finally {
    await r.done();
    await sink.close();
  }
});
