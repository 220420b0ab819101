/**
 * The resolver with the link down, as dig and kdig (when installed) see it
 * on 127.0.0.15: no packet leaves for the upstream on 127.0.0.13; a miss is
 * SERVFAIL at once; what was cached answers stale (TTL 30 s, RFC 8767) —
 * negative answers with their SOA — until serveStale is over; the gateway's
 * own names and dns.hosts answer as ever (NODATA with an SOA for the types
 * they lack). The clock is the rig's test clock.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { dig, hasTool, type Tool } from './dig.js';
import { startRig, type Rig } from './rig.js';

const tools: Tool[] = hasTool('kdig') ? ['dig', 'kdig'] : ['dig'];
const SERVE_STALE_MS = 3_600_000;
let rig: Rig;
before(async () => {
  rig = await startRig({ serveStaleMs: SERVE_STALE_MS });
});
after(() => rig.stop());

const ask = (tool: Tool, name: string, type: string, ...opts: string[]) => dig(tool, rig.host, rig.port, name, type, '+bufsize=1232', ...opts);

test('with the link down: SERVFAIL at once for a miss, stale answers with TTL 30 (negative ones with their SOA), and not a packet upstream', async () => {
  for (const tool of tools) {
    rig.clock.link = true;
    const gone = `gone-${tool}.example.org`;
    assert.equal((await ask(tool, 'a.example.org', 'A')).answer.length, 2);
    assert.equal((await ask(tool, gone, 'A')).rcode, 'NXDOMAIN');
    assert.equal((await ask(tool, 'signed.example.org', 'A', '+dnssec')).answer.length, 2);
    rig.clock.t += 700_000; // past the answers' 600 s and the negative 300 s
    rig.clock.link = false;
    const n = rig.zone.seen.length;

    const t0 = performance.now();
    const miss = await ask(tool, `never-${tool}.example.org`, 'A');
    assert.equal(miss.rcode, 'SERVFAIL');
    assert.ok(performance.now() - t0 < 1500, 'at once, not after an upstream timeout');
    assert.equal(miss.edns?.udp, 1232, 'an error answers EDNS with EDNS too');

    const stale = await ask(tool, 'a.example.org', 'A');
    assert.equal(stale.rcode, 'NOERROR');
    assert.deepEqual(stale.answer.map((r) => r.ttl), [30, 30]);
    const staleNeg = await ask(tool, gone, 'A');
    assert.equal(staleNeg.rcode, 'NXDOMAIN');
    assert.deepEqual(staleNeg.authority.map((r) => [r.type, r.ttl]), [['SOA', 30]], 'the stale negative answer keeps its SOA');
    const staleSigned = await ask(tool, 'signed.example.org', 'A', '+dnssec');
    assert.deepEqual(staleSigned.answer.map((r) => r.type).sort(), ['A', 'RRSIG'], 'stale DNSSEC answers keep their RRSIGs');
    assert.equal((await ask(tool, 'signed.example.org', 'AAAA', '+dnssec')).rcode, 'SERVFAIL', 'a type never asked is a miss');
    assert.equal(rig.zone.seen.length, n, 'not a packet with the link down');

    rig.clock.t += SERVE_STALE_MS;
    assert.equal((await ask(tool, 'a.example.org', 'A')).rcode, 'SERVFAIL', 'not after serveStale');
    assert.equal(rig.zone.seen.length, n);

    rig.clock.link = true;
    const fresh = await ask(tool, 'a.example.org', 'A');
    assert.deepEqual(fresh.answer.map((r) => r.ttl), [600, 600], 'the link back: fresh from the upstream');
    assert.equal(rig.zone.seen.length, n + 1);
  }
});

test('local names (the gateway\'s own, dns.hosts) answer with the link down and never go upstream: NODATA with an SOA for a type they lack', async () => {
  rig.clock.link = false;
  const n = rig.zone.seen.length;
  for (const tool of tools) {
    const a = await ask(tool, 'printer.lan.test', 'A');
    assert.deepEqual(a.answer.map((r) => tool === 'dig' ? r.data : r.type), [tool === 'dig' ? '192.168.1.10' : 'A']);
    assert.ok(a.flags.includes('aa'), 'authoritative');
    const aaaa = await ask(tool, 'PRINTER.lan.test', 'AAAA');
    assert.equal(aaaa.answer.length, 1);
    const short = await ask(tool, 'printer', 'A');
    assert.equal(short.answer.length, 1, 'the alias');
    const mx = await ask(tool, 'printer.lan.test', 'MX');
    assert.equal(mx.rcode, 'NOERROR');
    assert.equal(mx.answer.length, 0);
    assert.deepEqual(mx.authority.map((r) => [r.name, r.type, r.ttl]), [['printer.lan.test.', 'SOA', 300]]);
    const own = await ask(tool, 'gw.lan.test', 'AAAA');
    assert.equal(own.answer.length, 1, 'the gateway\'s own name');
    const dnssec = await ask(tool, 'printer.lan.test', 'A', '+dnssec');
    assert.equal(dnssec.edns?.do, true);
  }
  rig.clock.link = true;
  assert.equal((await ask('dig', 'printer.lan.test', 'TXT')).authority.length, 1);
  assert.equal(rig.zone.seen.length, n, 'nothing about local names left the box');
});
