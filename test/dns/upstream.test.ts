/**
 * The upstream client against real servers on loopback: the zone upstream
 * (dns2) for IDs, source ports and TCP, and scripted UDP servers on
 * 127.0.0.17 that send forged or unhelpful answers (wrong ID, name, type;
 * FORMERR to EDNS; SERVFAIL; silence) for the checks an answer must pass
 * and for the adaptive wait. Tables for the wait itself (RttTimeout).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dns2 from 'dns2';
import { Upstream, UpstreamError } from '../../src/dns/upstream.js';
import { RttTimeout } from '../../src/dns/rtt-timeout.js';
import { makeQuery } from '../../src/dns/wire.js';
import { startZoneUpstream, type ZoneUpstream } from './zone-upstream.js';

const { Packet } = dns2 as any;
let zone: ZoneUpstream;
before(async () => {
  zone = await startZoneUpstream('127.0.0.13');
});
after(() => zone.close());

/** A UDP server on 127.0.0.17 that answers each query with what `script` returns (each buffer a datagram). */
async function scripted(script: (query: any, raw: Buffer) => Buffer[]): Promise<{ server: string; queries: Buffer[]; close(): Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  const queries: Buffer[] = [];
  sock.on('message', (msg, rinfo) => {
    queries.push(msg);
    for (const b of script(Packet.parse(msg), msg)) sock.send(b, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.17', () => r()));
  return { server: `127.0.0.17:${sock.address().port}`, queries, close: () => new Promise((r) => sock.close(() => r())) };
}

function response(query: any, patch: (r: any) => void = () => undefined): Buffer {
  const r = Packet.createResponseFromRequest(query);
  r.header.ra = 1;
  const [q] = query.questions;
  r.answers.push({ name: q.name, type: 1, class: 1, ttl: 60, address: '192.0.2.99' });
  patch(r);
  return r.toBuffer();
}

test('every upstream query has a fresh random ID and its own source port; a truncated UDP answer is asked again over TCP with a new ID', async () => {
  const up = new Upstream([`127.0.0.13:${zone.port}`]);
  const from = zone.seen.length;
  for (let i = 0; i < 40; i++) await up.ask(makeQuery(`n${i}.example.org`, 1));
  const seen = zone.seen.slice(from);
  const ids = new Set(seen.map((s) => s.id));
  const ports = new Set(seen.map((s) => s.port));
  assert.ok(ids.size >= 37, `random IDs (${ids.size} distinct of 40)`);
  assert.ok(ports.size >= 30, `random source ports (${ports.size} distinct of 40)`);
  assert.ok(!seen.some((s) => s.id === 0) || ids.size > 1);
  const n = zone.seen.length;
  const big = await up.ask(makeQuery('bigtxt.example.org', 16));
  assert.equal(big.index.records.length, 20);
  const [udp, tcp] = zone.seen.slice(n);
  assert.deepEqual([udp.tcp, tcp.tcp], [false, true]);
  assert.notEqual(udp.id, tcp.id, 'the TCP query has an ID of its own');
  assert.notEqual(tcp.id, 0);
  assert.equal(tcp.edns, 1232, 'EDNS over TCP too');
});

test('answers that do not match the query (ID, name, type) are ignored; the matching one is taken', async () => {
  const forger = await scripted((q) => [
    response(q, (r) => { r.header.id = (q.header.id + 1) & 0xffff; r.answers[0].address = '6.6.6.1'; }),
    response(q, (r) => { r.questions = [{ name: 'evil.example.org', type: 1, class: 1 }]; r.answers[0].address = '6.6.6.2'; }),
    response(q, (r) => { r.questions = [{ ...q.questions[0], type: 28 }]; r.answers[0].address = '6.6.6.3'; }),
    response(q),
  ]);
  try {
    const r = await new Upstream([forger.server], 1000).ask(makeQuery('Victim.Example.org', 1));
    assert.equal(r.index.records.length, 1);
    assert.deepEqual([...r.msg.subarray(r.index.records[0].end - 4, r.index.records[0].end)], [192, 0, 2, 99]);
  } finally {
    await forger.close();
  }
});

test('only forged answers: no answer at all (the wait runs out), nothing taken', async () => {
  const forger = await scripted((q) => [response(q, (r) => { r.header.id = (q.header.id + 7) & 0xffff; })]);
  try {
    await assert.rejects(new Upstream([forger.server], { floorMs: 50, initialMs: 100, ceilingMs: 200 }).ask(makeQuery('victim.example.org', 1)), UpstreamError);
    assert.equal(forger.queries.length, 2, 'one server: asked twice, each time with a new ID');
    assert.notEqual(forger.queries[0].readUInt16BE(0), forger.queries[1].readUInt16BE(0));
  } finally {
    await forger.close();
  }
});

test('a server that answers FORMERR to EDNS is asked again without it (RFC 6891 §7)', async () => {
  const old = await scripted((q, raw) => [raw.readUInt16BE(10) > 0 ? response(q, (r) => { r.header.rcode = 1; r.answers = []; }) : response(q)]);
  try {
    const r = await new Upstream([old.server], 1000).ask(makeQuery('old.example.org', 1));
    assert.equal(r.index.rcode, 0);
    assert.deepEqual(old.queries.map((b) => b.readUInt16BE(10)), [1, 0], 'with OPT, then without');
  } finally {
    await old.close();
  }
});

test('SERVFAIL moves on to the next server; a silent first server costs one adaptive wait', async () => {
  const failing = await scripted((q) => [response(q, (r) => { r.header.rcode = 2; r.answers = []; })]);
  const silent = await scripted(() => []);
  try {
    const up = new Upstream([failing.server, `127.0.0.13:${zone.port}`]);
    assert.equal((await up.ask(makeQuery('a.example.org', 1))).index.rcode, 0);
    const bounds = { floorMs: 50, initialMs: 150, ceilingMs: 600 };
    const up2 = new Upstream([silent.server, `127.0.0.13:${zone.port}`], bounds);
    const t0 = performance.now();
    await up2.ask(makeQuery('a.example.org', 1));
    const waited = performance.now() - t0;
    assert.ok(waited >= 140 && waited < 1000, `waited the initial 150 ms for the silent server (${waited.toFixed(0)} ms)`);
    const waits = up2.timeouts();
    assert.equal(waits[silent.server], 300, 'its next wait is doubled');
    assert.equal(waits[`127.0.0.13:${zone.port}`], 50, 'a server that answers in a few ms gets the floor');
    const allFail = new Upstream([failing.server]);
    assert.equal((await allFail.ask(makeQuery('a.example.org', 1))).index.rcode, 2, 'when all say SERVFAIL, that is the answer');
  } finally {
    await failing.close();
    await silent.close();
  }
});

test('RttTimeout: the initial wait, then SRTT + 4·RTTVAR within floor and ceiling; a timeout doubles it until an answer', () => {
  const bounds = { floorMs: 300, ceilingMs: 3000, initialMs: 1000 };
  const cases: Array<{ steps: Array<number | 'timeout'>; wait: number }> = [
    { steps: [], wait: 1000 },
    { steps: [2], wait: 300 },
    { steps: [200], wait: 600 },
    { steps: [200, 200, 200, 200, 200, 200, 200, 200], wait: 300 },
    { steps: [5000], wait: 3000 },
    { steps: ['timeout'], wait: 2000 },
    { steps: ['timeout', 'timeout', 'timeout'], wait: 3000 },
    { steps: [2, 'timeout'], wait: 600 },
    { steps: [2, 'timeout', 'timeout', 2], wait: 300 },
  ];
  for (const { steps, wait } of cases) {
    const r = new RttTimeout(bounds);
    for (const s of steps) {
      if (s === 'timeout') r.timedOut();
      else r.answered(s);
    }
    assert.equal(r.timeoutMs, wait, `after ${JSON.stringify(steps)}`);
  }
});
