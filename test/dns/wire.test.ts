/**
 * The pure wire layer in tables: reading a client's query (EDNS, flags, the
 * cache key, FORMERR/NOTIMP/BADVERS), indexing an upstream answer (its OPT
 * record removed), and rendering a reply (IDs, flags, AD, TTLs counted down
 * or stale, whole RRsets with TC under the client's size, OPT); local
 * answers. Messages are built with dns2's Packet, an independent encoder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dns2 from 'dns2';
import { BADVERS, FLAG, RCODE, indexMessage, readQuery, type Query } from '../../src/dns/wire.js';
import { MAX_TTL, fromUpstream, localAnswer, render, renderError, udpLimit } from '../../src/dns/answer.js';

const { Packet } = dns2 as any;

function query(name: string, type = 1, o: { edns?: number; do?: boolean; version?: number; cd?: boolean; ad?: boolean; id?: number } = {}): Buffer {
  const p = new Packet();
  p.header.id = o.id ?? 4242;
  p.header.rd = 1;
  p.header.cd = o.cd ? 1 : 0;
  p.header.ad = o.ad ? 1 : 0;
  p.questions.push({ name, type, class: 1 });
  if (o.edns) p.additionals.push({ name: '', type: 41, class: o.edns, ttl: ((o.version ?? 0) << 16) | (o.do ? 0x8000 : 0), rdata: [] });
  return p.toBuffer();
}
const q = (...a: Parameters<typeof query>) => readQuery(query(...a)) as Query;

test('readQuery(): question, flags and EDNS; one cache key for every letter case, another for DO, CD, type', () => {
  const plain = q('A.Example.ORG');
  assert.equal(plain.edns, null);
  assert.equal(plain.rd, true);
  assert.equal(plain.key, q('a.example.org').key);
  assert.notEqual(plain.key, q('a.example.org', 1, { edns: 1232, do: true }).key);
  assert.notEqual(plain.key, q('a.example.org', 1, { cd: true }).key);
  assert.notEqual(plain.key, q('a.example.org', 28).key);
  assert.equal(plain.key, q('a.example.org', 1, { edns: 4096 }).key, 'the UDP size is not part of the key');
  assert.deepEqual(q('x.example', 1, { edns: 4096, do: true }).edns, { size: 4096, do: true, version: 0 });
  assert.equal(q('x.example', 1, { edns: 100 }).edns?.size, 512, 'sizes below 512 count as 512');
  assert.equal(udpLimit(q('x.example')), 512);
  assert.equal(udpLimit(q('x.example', 1, { edns: 4096 })), 1232, 'never over our 1232 (no IP fragments)');
  assert.equal(udpLimit(q('x.example', 1, { edns: 700 })), 700);
});

test('readQuery(): what is not a plain query', () => {
  const good = query('a.example.org', 1, { edns: 1232 });
  const patched = (f: (b: Buffer) => void) => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  const cases: Array<[string, Buffer, number | null]> = [
    ['a runt', good.subarray(0, 11), null],
    ['a response', patched((b) => { b[2] |= 0x80; }), null],
    ['opcode STATUS', patched((b) => { b[2] |= 2 << 3; }), RCODE.NOTIMP],
    ['two questions', patched((b) => b.writeUInt16BE(2, 4)), RCODE.FORMERR],
    ['no question', patched((b) => b.writeUInt16BE(0, 4)), RCODE.FORMERR],
    ['a name cut short', good.subarray(0, 20), RCODE.FORMERR],
    ['a compressed question name', Buffer.concat([good.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]), RCODE.FORMERR],
    ['an additional count past the end', patched((b) => b.writeUInt16BE(2, 10)), RCODE.FORMERR],
    ['EDNS version 1', query('a.example.org', 1, { edns: 1232, version: 1 }), BADVERS],
    ['a question of type OPT', query('a.example.org', 41), RCODE.FORMERR],
  ];
  for (const [what, msg, want] of cases) assert.equal(readQuery(msg), want, what);
  const two = Buffer.concat([good, good.subarray(good.length - 11)]);
  two.writeUInt16BE(2, 10);
  assert.equal(readQuery(two), RCODE.FORMERR, 'two OPT records, both there');
});

/** An upstream answer: CNAME + 3 TXT (answer), NS (authority), 2 A glue + OPT + 1 A (additional). */
function upstreamAnswer(o: { rcode?: number; ad?: boolean; optLast?: boolean } = {}): Buffer {
  const p = new Packet();
  p.header = { ...p.header, id: 1, qr: 1, rd: 1, ra: 1, ad: o.ad ? 1 : 0, rcode: o.rcode ?? 0 };
  p.questions.push({ name: 'alias.example.org', type: 16, class: 1 });
  p.answers.push({ name: 'alias.example.org', type: 5, class: 1, ttl: 900, domain: 'txt.example.org' });
  for (let i = 0; i < 3; i++) p.answers.push({ name: 'txt.example.org', type: 16, class: 1, ttl: 600, data: [`t${i}`.padEnd(150, 'x')] });
  p.authorities.push({ name: 'example.org', type: 2, class: 1, ttl: 3600, ns: 'ns1.example.org' });
  const opt = { name: '', type: 41, class: 1232, ttl: 0, rdata: [] };
  p.additionals.push({ name: 'ns1.example.org', type: 1, class: 1, ttl: 3600, address: '192.0.2.53' });
  p.additionals.push({ name: 'ns1.example.org', type: 1, class: 1, ttl: 3600, address: '192.0.2.54' });
  if (!o.optLast) p.additionals.push(opt);
  p.additionals.push({ name: 'ns2.example.org', type: 1, class: 1, ttl: 3600, address: '192.0.2.55' });
  if (o.optLast) p.additionals.push(opt);
  return p.toBuffer();
}

const header = (b: Buffer) => ({ id: b.readUInt16BE(0), flags: b.readUInt16BE(2), counts: [b.readUInt16BE(6), b.readUInt16BE(8), b.readUInt16BE(10)] });

test('fromUpstream(): the OPT record goes (and, when it is not last, the additional records after it); TTL the shortest', () => {
  const last = fromUpstream(upstreamAnswer({ optLast: true }), indexMessage(upstreamAnswer({ optLast: true })));
  assert.deepEqual(last.counts, [4, 1, 3]);
  assert.equal(last.ttl, 600);
  assert.deepEqual(last.cutN, [1, 4, 5, 7, 8], 'RRset ends: CNAME, TXT set, NS, ns1 glue, ns2 glue');
  const middle = fromUpstream(upstreamAnswer(), indexMessage(upstreamAnswer()));
  assert.deepEqual(middle.counts, [4, 1, 2]);
  assert.equal(middle.msg.length, last.cutAt[3]);
});

test('fromUpstream(): a negative answer lives min(SOA TTL, SOA minimum), none without an SOA; nothing longer than MAX_TTL', () => {
  const neg = (soaTtl: number, minimum: number | null, rcode = 3) => {
    const p = new Packet();
    p.header = { ...p.header, qr: 1, rcode };
    p.questions.push({ name: 'nx.example.org', type: 1, class: 1 });
    if (minimum !== null) p.authorities.push({ name: 'example.org', type: 6, class: 1, ttl: soaTtl, primary: 'ns1.example.org', admin: 'h.example.org', serial: 1, refresh: 2, retry: 3, expiration: 4, minimum });
    const b = p.toBuffer();
    return fromUpstream(b, indexMessage(b)).ttl;
  };
  assert.equal(neg(7200, 300), 300);
  assert.equal(neg(60, 300), 60);
  assert.equal(neg(7200, 300, 0), 300, 'NODATA too');
  assert.equal(neg(7200, null), 0);
  const p = new Packet();
  p.header = { ...p.header, qr: 1 };
  p.questions.push({ name: 'long.example.org', type: 1, class: 1 });
  p.answers.push({ name: 'long.example.org', type: 1, class: 1, ttl: 0x7fffffff, address: '192.0.2.1' });
  const b = p.toBuffer();
  assert.equal(fromUpstream(b, indexMessage(b)).ttl, MAX_TTL);
});

test('render(): whole RRsets up to the limit; TC only when an answer or authority RRset is left out; OPT for an EDNS client', () => {
  const a = fromUpstream(upstreamAnswer({ optLast: true }), indexMessage(upstreamAnswer({ optLast: true })));
  const full = a.msg.length;
  const cases: Array<{ limit: number; edns?: number; tc: boolean; counts: number[] }> = [
    { limit: 65_535, tc: false, counts: [4, 1, 3] },
    { limit: full - 1, tc: false, counts: [4, 1, 2] },
    { limit: a.cutAt[2], tc: false, counts: [4, 1, 0] },
    { limit: a.cutAt[2] - 1, tc: true, counts: [4, 0, 0] },
    { limit: a.cutAt[1] - 1, tc: true, counts: [1, 0, 0] },
    { limit: a.cutAt[0] - 1, tc: true, counts: [0, 0, 0] },
    { limit: a.cutAt[2] + 10, edns: 1232, tc: true, counts: [4, 0, 1] },
  ];
  for (const c of cases) {
    const cq = q('ALIAS.example.org', 16, { edns: c.edns, id: 77 });
    const out = render(a, cq, c.limit, 0);
    const h = header(out);
    assert.ok(out.length <= c.limit, `limit ${c.limit}: ${out.length} bytes`);
    assert.equal(Boolean(h.flags & FLAG.TC), c.tc, `limit ${c.limit}: TC`);
    assert.deepEqual(h.counts, c.counts, `limit ${c.limit}: counts`);
    assert.equal(h.id, 77);
    assert.equal(out.toString('latin1', 13, 18), 'ALIAS', 'the question as asked');
    const idx = indexMessage(out);
    assert.equal(Boolean(idx.opt), Boolean(c.edns), 'OPT only for EDNS');
  }
});

test('render(): AD only when the upstream set it and the client asked (AD or DO); RD and CD echoed; TTLs counted down, 30 when stale', () => {
  const table: Array<[boolean, { ad?: boolean; do?: boolean }, boolean]> = [
    [true, {}, false], [true, { ad: true }, true], [true, { do: true }, true], [false, { ad: true, do: true }, false],
  ];
  for (const [upAd, client, want] of table) {
    const a = fromUpstream(upstreamAnswer({ ad: upAd }), indexMessage(upstreamAnswer({ ad: upAd })));
    const out = render(a, q('alias.example.org', 16, { ...client, edns: client.do ? 1232 : undefined }), 65_535, 0);
    assert.equal(Boolean(header(out).flags & FLAG.AD), want, `upstream AD ${upAd}, client ${JSON.stringify(client)}`);
  }
  const a = fromUpstream(upstreamAnswer(), indexMessage(upstreamAnswer()));
  const cd = render(a, q('alias.example.org', 16, { cd: true }), 65_535, 0);
  assert.equal(header(cd).flags & (FLAG.CD | FLAG.RD | FLAG.QR | FLAG.RA), FLAG.CD | FLAG.RD | FLAG.QR | FLAG.RA);
  const ttls = (b: Buffer) => indexMessage(b).records.map((r) => r.ttl);
  assert.deepEqual(ttls(render(a, q('alias.example.org', 16), 65_535, 100)), [500, 500, 500, 500, 500, 500, 500], 'none above the answer\'s 600 s, minus 100');
  assert.deepEqual(ttls(render(a, q('alias.example.org', 16), 65_535, 700)), [0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(ttls(render(a, q('alias.example.org', 16), 65_535, 5000, true)), [30, 30, 30, 30, 30, 30, 30]);
});

test('localAnswer(): addresses of the asked type, authoritative; NODATA with an SOA for the name itself', () => {
  const ips = { a: ['192.168.1.10'], aaaa: ['2001:db8::10', '::ffff:192.0.2.1'] };
  const aaaa = render(localAnswer(q('printer.lan', 28), ips), q('printer.lan', 28), 512, 0);
  const idx = indexMessage(aaaa);
  assert.ok(header(aaaa).flags & FLAG.AA);
  assert.deepEqual(idx.records.map((r) => aaaa.subarray(r.end - 16, r.end).toString('hex')), ['20010db8000000000000000000000010', '00000000000000000000ffffc0000201']);
  const mx = render(localAnswer(q('printer.lan', 15), ips), q('printer.lan', 15), 512, 0);
  const m = indexMessage(mx);
  assert.deepEqual(m.records.map((r) => [r.section, r.type, r.owner, r.ttl]), [[1, 6, 'printer.lan', 300]]);
  const err = renderError(RCODE.SERVFAIL, q('x.example', 1, { edns: 1232, do: true, id: 9 }));
  assert.deepEqual(header(err), { id: 9, flags: FLAG.QR | FLAG.RA | FLAG.RD | RCODE.SERVFAIL, counts: [0, 0, 1] });
  const bad = renderError(BADVERS, null, query('x.example', 1, { edns: 1232, version: 1 }));
  assert.equal(bad[3] & 0x0f, 0);
  assert.equal(bad[bad.length - 6], 1, 'the extended RCODE in the OPT record says BADVERS');
});
