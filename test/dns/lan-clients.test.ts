/**
 * The resolver as a LAN's resolver, checked with the clients a LAN uses:
 * dig (bind9-dnsutils) and kdig (knot-dnsutils, when installed) against the
 * real DnsServer on 127.0.0.15 and a dns2 upstream on 127.0.0.13 serving
 * signed-looking data (test/dns/zone-upstream.ts). Every record type, EDNS,
 * DNSSEC records and the AD/CD bits, truncation, negative answers with their
 * SOA, and what left the box upstream for each.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { dig, hasTool, normalize, type Tool } from './dig.js';
import { startRig, type Rig } from './rig.js';

const tools: Tool[] = hasTool('kdig') ? ['dig', 'kdig'] : ['dig'];
let rig: Rig;
before(async () => {
  rig = await startRig();
});
after(() => rig.stop());

const ask = (tool: Tool, name: string, type: string, ...opts: string[]) => dig(tool, rig.host, rig.port, name, type, ...opts);
/** The upstream asked directly, from 127.0.0.16 (so that its log tells these from the resolver's queries). */
const direct = (tool: Tool, name: string, type: string, ...opts: string[]) => dig(tool, rig.zone.host, rig.zone.port, name, type, '-b', '127.0.0.16', ...opts);
/** What the resolver sent upstream. */
const sent = () => rig.zone.seen.filter((s) => s.from !== '127.0.0.16');
const types = (v: { answer: Array<{ type: string }> }) => v.answer.map((r) => r.type);

test('every record type is forwarded, cached and answered as the upstream sent it (HTTPS, SVCB, TYPE65280, DNSKEY, DS too)', async (t) => {
  if (tools.length === 1) t.diagnostic('kdig not installed (apt-get install knot-dnsutils): dig only');
  const cases: Array<[string, string]> = [
    ['a.example.org', 'A'], ['signed.example.org', 'AAAA'], ['example.org', 'MX'], ['example.org', 'NS'], ['example.org', 'SOA'],
    ['signed.example.org', 'TXT'], ['www.example.org', 'A'], ['example.org', 'DNSKEY'], ['child.example.org', 'DS'],
    ['svc.example.org', 'HTTPS'], ['svc.example.org', 'SVCB'], ['odd.example.org', 'TYPE65280'],
  ];
  for (const tool of tools) {
    for (const [name, type] of cases) {
      const upstream = normalize(await direct(tool, name, type));
      const n = sent().length;
      const first = await ask(tool, name, type);
      const again = await ask(tool, name, type);
      assert.ok(first.answer.length > 0, `${tool} ${name} ${type}: an answer`);
      assert.deepEqual(normalize(first), upstream, `${tool} ${name} ${type}: as the upstream answered`);
      assert.deepEqual(normalize(again), upstream, `${tool} ${name} ${type}: the same from the cache`);
      assert.ok(sent().length - n <= 1, `${tool} ${name} ${type}: at most one upstream query`);
    }
  }
  const asked = sent().map((s) => s.type);
  for (const type of [64, 65, 65280, 48, 43]) assert.ok(asked.includes(type), `type ${type} reached the upstream as itself`);
  assert.ok(!asked.includes(0), 'never TYPE0');
});

test('EDNS: an OPT record answers an EDNS query (size 1232, DO echoed), none answers a plain one; upstream is asked with EDNS 1232 and the client\'s DO', async () => {
  for (const tool of tools) {
    const plain = await ask(tool, 'a.example.org', 'A', '+noedns');
    assert.equal(plain.edns, null, `${tool}: no OPT without EDNS`);
    const edns = await ask(tool, 'a.example.org', 'A', '+bufsize=1232');
    assert.deepEqual(edns.edns, { version: 0, do: false, udp: 1232 });
    const withDo = await ask(tool, 'mail.example.org', 'A', '+dnssec');
    assert.deepEqual(withDo.edns, { version: 0, do: true, udp: 1232 });
  }
  const up = sent().filter((s) => s.name === 'mail.example.org');
  assert.ok(up.length >= 1 && up.every((s) => s.edns === 1232 && s.do), 'upstream asked with EDNS 1232 and DO');
  assert.ok(sent().filter((s) => s.name === 'a.example.org').every((s) => s.edns === 1232 && !s.do), 'and without DO for a client without it');
});

test('DNSSEC: RRSIG and NSEC pass through unchanged with DO, none without; answers with and without DNSSEC records are cached apart', async () => {
  for (const tool of tools) {
    const upstreamSigned = normalize(await direct(tool, 'sigtxt.example.org', 'TXT', '+dnssec'));
    const n = sent().length;
    const name = `${tool}-unused.example.org`; // NXDOMAIN: SOA, and with DO its RRSIG and NSEC records
    const plain = await ask(tool, 'sigtxt.example.org', 'TXT', '+bufsize=1232');
    const signed = await ask(tool, 'sigtxt.example.org', 'TXT', '+dnssec');
    assert.deepEqual(types(plain), ['TXT', 'TXT', 'TXT']);
    assert.deepEqual(types(signed).sort(), ['RRSIG', 'TXT', 'TXT', 'TXT']);
    assert.deepEqual(normalize(signed), upstreamSigned, 'RRSIG unchanged');
    assert.deepEqual(types(await ask(tool, 'sigtxt.example.org', 'TXT', '+bufsize=1232')), ['TXT', 'TXT', 'TXT'], 'the plain answer stays plain');
    assert.deepEqual(types(await ask(tool, 'sigtxt.example.org', 'TXT', '+dnssec')).sort(), ['RRSIG', 'TXT', 'TXT', 'TXT'], 'the DNSSEC answer keeps its RRSIG');
    const neg = await ask(tool, name, 'A', '+dnssec');
    assert.deepEqual(neg.authority.map((r) => r.type).sort(), ['NSEC', 'RRSIG', 'RRSIG', 'SOA']);
    const negPlain = await ask(tool, name, 'A', '+bufsize=1232');
    assert.deepEqual(negPlain.authority.map((r) => r.type), ['SOA']);
    const asked = sent().slice(n).filter((s) => s.type === 16 || s.name === name);
    if (tool === 'dig') assert.equal(asked.length, 4, 'two upstream queries per name: one with DO, one without (the rest from the cache)');
  }
});

test('AD only as the upstream set it and the client asked (AD or DO); CD is passed upstream and echoed', async () => {
  const flags = async (...opts: string[]) => (await ask('dig', 'signed.example.org', 'A', ...opts)).flags;
  assert.ok(!(await flags('+noadflag')).includes('ad'), 'not asked: no AD');
  assert.ok((await flags('+adflag')).includes('ad'), 'AD asked');
  assert.ok((await flags('+noadflag', '+dnssec')).includes('ad'), 'DO asked');
  assert.ok(!(await ask('dig', 'a.example.org', 'A', '+dnssec', '+adflag')).flags.includes('ad'), 'never when the upstream did not set it');
  const cd = await ask('dig', 'sigtxt.example.org', 'TXT', '+cd', '+dnssec');
  assert.ok(cd.flags.includes('cd'));
  assert.ok(sent().some((s) => s.name === 'sigtxt.example.org' && s.cd), 'upstream asked with CD');
  assert.ok(!(await ask('dig', 'sigtxt.example.org', 'TXT', '+nocd', '+dnssec')).flags.includes('cd'));
  if (tools.includes('kdig')) {
    assert.ok(!(await ask('kdig', 'signed.example.org', 'A', '+noadflag')).flags.includes('ad'), 'kdig without AD');
    assert.ok((await ask('kdig', 'signed.example.org', 'A', '+adflag')).flags.includes('ad'), 'kdig with AD');
  }
});

test('truncation: a UDP answer over the client\'s size (512 without EDNS) has TC and whole RRsets only; over TCP it is whole', async () => {
  for (const tool of tools) {
    const noedns = await ask(tool, 'midtxt.example.org', 'TXT', '+noedns', '+ignore');
    assert.ok(noedns.flags.includes('tc') && noedns.size <= 512, `${tool}: TC within 512 bytes without EDNS`);
    assert.equal(noedns.answer.length, 0, 'no partial RRset');
    const small = await ask(tool, 'bigtxt.example.org', 'TXT', '+bufsize=512', '+ignore');
    assert.ok(small.flags.includes('tc') && small.size <= 512 && small.edns?.udp === 1232, `${tool}: TC within the client's 512, with OPT`);
    const alias = await ask(tool, 'alias.example.org', 'TXT', '+noedns', '+ignore');
    assert.ok(alias.flags.includes('tc'));
    assert.deepEqual(types(alias), ['CNAME'], 'the CNAME RRset fits, the TXT RRset does not: none of it');
    const large = await ask(tool, 'largetxt.example.org', 'TXT', '+bufsize=4096', '+ignore');
    assert.ok(large.flags.includes('tc') && large.size <= 1232, `${tool}: never more than our 1232 bytes over UDP (no fragments)`);
    const fits = await ask(tool, 'midtxt.example.org', 'TXT', '+bufsize=1232');
    assert.ok(!fits.flags.includes('tc') && fits.answer.length === 4, 'what fits is sent whole, without TC');
    const retried = await ask(tool, 'bigtxt.example.org', 'TXT', '+bufsize=512');
    assert.equal(retried.answer.length, 20, `${tool} retries over TCP and gets all 20 records`);
    assert.ok(!retried.flags.includes('tc'));
    if (tool === 'dig') assert.equal(retried.tcp, true);
    const tcp = await ask(tool, 'alias.example.org', 'TXT', '+tcp');
    assert.deepEqual(types(tcp), ['CNAME', ...Array(20).fill('TXT')]);
    assert.ok(tcp.size > 4000);
  }
  assert.ok(sent().some((s) => s.name === 'bigtxt.example.org' && s.tcp), 'the resolver itself went to TCP for the upstream\'s truncated answer');
});

test('negative answers carry the upstream\'s SOA with its TTL bounded by the SOA minimum (RFC 2308); they are cached and count down', async () => {
  for (const tool of tools) {
    const nx = await ask(tool, `gone-${tool}.example.org`, 'A', '+bufsize=1232');
    assert.equal(nx.rcode, 'NXDOMAIN');
    assert.deepEqual(nx.authority.map((r) => [r.name, r.type]), [['example.org.', 'SOA']]);
    const upstreamSoa = (await direct(tool, `gone-${tool}.example.org`, 'A')).authority[0];
    assert.equal(upstreamSoa.ttl, 7200, 'the upstream says 7200');
    assert.equal(nx.authority[0].ttl, 300, 'bounded by the SOA minimum');
    const nodata = await ask(tool, 'a.example.org', 'MX', '+bufsize=1232');
    assert.equal(nodata.rcode, 'NOERROR');
    assert.equal(nodata.answer.length, 0);
    assert.deepEqual(nodata.authority.map((r) => r.type), ['SOA']);
    assert.equal(nodata.authority[0].data, upstreamSoa.data);
  }
  const n = sent().length;
  rig.clock.t += 100_000;
  const later = await ask('dig', 'gone-dig.example.org', 'A', '+bufsize=1232');
  assert.equal(later.authority[0].ttl, 200, 'counted down');
  assert.equal(sent().length, n, 'from the cache');
  rig.clock.t += 201_000;
  await ask('dig', 'gone-dig.example.org', 'A', '+bufsize=1232');
  assert.equal(sent().length, n + 1, 'asked again once the negative TTL is over');
});

test('the question comes back as asked (letter case); answers to different cases share one cache entry', async () => {
  const n = sent().length;
  const v = await ask('dig', 'MiXeD.Example.ORG', 'A');
  const w = await ask('dig', 'mixed.example.org', 'A');
  assert.match(v.question, /^MiXeD\.Example\.ORG\. IN A$/);
  assert.equal(v.rcode, 'NXDOMAIN');
  assert.equal(w.rcode, 'NXDOMAIN');
  assert.equal(sent().length, n + 1);
});
