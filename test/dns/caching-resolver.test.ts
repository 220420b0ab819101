/**
 * The link-gated caching resolver against a real, counting DNS server on
 * 127.0.0.3 (dns2, real packets); the clock is a test clock.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import dns2 from 'dns2';
import pino from 'pino';
import { CachingResolver, RCODE } from '../../src/dns/caching-resolver.js';
import { Upstream } from '../../src/dns/upstream.js';
import { DnsServer } from '../../src/dns/dns-server.js';
import { parseHosts } from '../../src/dns/hosts-file.js';
import { NetworkList } from '../../src/config/cidr.js';
import { expandHosts } from '../../src/delivery/resolver.js';
import { parseHosts as parseRouteHosts } from '../../src/routing/route.js';
import { startDns, type CountingDns } from '../helpers/wan.js';
import { LinkDownError } from '../../src/errors.js';
import { closedPort } from '../helpers/sink.js';

const { Packet } = dns2 as any;
const A = Packet.TYPE.A;
const MX = Packet.TYPE.MX;

let up: CountingDns;
before(async () => {
  up = await startDns('127.0.0.3', {
    'mx.example': { mx: [[10, 'mail.mx.example']], ttl: 300 },
    'mail.mx.example': { a: ['127.0.0.20'], ttl: 300 },
    'short.example': { a: ['127.0.0.21'], ttl: 10 },
    'big.example': { a: ['127.0.0.22'], truncate: true },
    'nullmx.example': { mx: [[0, '']] },
  }, 60);
});
after(() => up.close());

function make(opts: { link?: boolean; servers?: string[]; hosts?: string } = {}) {
  const clock = { t: 1_000_000, link: opts.link ?? true };
  const r = new CachingResolver({
    upstream: new Upstream(opts.servers ?? [`127.0.0.3:${up.port}`], 300),
    mayForward: () => clock.link,
    now: () => clock.t,
    serveStale: 3_600_000,
    local: () => ({ names: new Set(['gw.office.example']), hosts: parseHosts(opts.hosts ?? '192.168.1.10 printer.office.example printer\n') }),
  });
  return { r, clock };
}

const sent = (from: number) => up.queries.slice(from);

test('a cache hit within the TTL sends nothing upstream; after the TTL it refetches', async () => {
  const { r, clock } = make();
  const n = up.queries.length;
  assert.equal((await r.lookup('short.example', A)).answers[0].address, '127.0.0.21');
  clock.t += 5_000;
  const hit = await r.lookup('short.example', A);
  assert.equal(hit.answers[0].ttl, 5, 'the TTL counts down');
  assert.deepEqual(sent(n), ['A short.example']);
  clock.t += 6_000;
  await r.lookup('short.example', A);
  assert.deepEqual(sent(n), ['A short.example', 'A short.example']);
  assert.equal(r.counters.hits, 1);
});

test('with the link down a miss sends nothing and fails at once; stale answers within serveStale only', async () => {
  const { r, clock } = make();
  await r.lookup('short.example', A);
  clock.link = false;
  const n = up.queries.length;
  const miss = await r.lookup('mx.example', MX);
  assert.equal(miss.rcode, RCODE.SERVFAIL);
  clock.t += 60_000;
  const stale = await r.lookup('short.example', A);
  assert.equal(stale.stale, true);
  assert.equal(stale.answers[0].ttl, 30);
  clock.t += 3_600_000;
  assert.equal((await r.lookup('short.example', A)).rcode, RCODE.SERVFAIL, 'not after serveStale');
  assert.deepEqual(sent(n), [], 'not a packet with the link down');
  assert.ok(r.counters.refusedForwards >= 3);
});

test('the gateway\'s own names and dns.hosts names are answered locally, never forwarded', async () => {
  const { r } = make();
  const n = up.queries.length;
  assert.equal((await r.lookup('printer.office.example', A)).answers[0].address, '192.168.1.10');
  assert.equal((await r.lookup('printer', A)).answers[0].address, '192.168.1.10');
  assert.equal((await r.lookup('gw.office.example', A)).local, true);
  assert.equal((await r.lookup('gw.office.example', MX)).answers.length, 0);
  assert.deepEqual(sent(n), []);
});

test('NXDOMAIN is cached by the SOA minimum (RFC 2308)', async () => {
  const { r, clock } = make();
  const n = up.queries.length;
  assert.equal((await r.lookup('nowhere.example', A)).rcode, RCODE.NXDOMAIN);
  clock.t += 59_000;
  assert.equal((await r.lookup('nowhere.example', A)).rcode, RCODE.NXDOMAIN);
  assert.deepEqual(sent(n), ['A nowhere.example'], 'cached for the SOA minimum (60 s), not the SOA TTL');
  clock.t += 2_000;
  await r.lookup('nowhere.example', A);
  assert.equal(sent(n).length, 2);
});

test('50 identical concurrent queries make one upstream query', async () => {
  const { r } = make();
  const n = up.queries.length;
  const answers = await Promise.all(Array.from({ length: 50 }, () => r.lookup('mail.mx.example', A)));
  assert.ok(answers.every((a) => a.answers[0]?.address === '127.0.0.20'));
  assert.deepEqual(sent(n), ['A mail.mx.example']);
});

test('upstream failover when the first server does not answer; TCP when UDP is truncated', async () => {
  const dead = await closedPort();
  const { r } = make({ servers: [`127.0.0.3:${dead}`, `127.0.0.3:${up.port}`] });
  assert.equal((await r.lookup('mx.example', MX)).answers[0].exchange, 'mail.mx.example');
  const n = up.queries.length;
  const big = await r.lookup('big.example', A);
  assert.equal(big.answers[0].address, '127.0.0.22');
  assert.deepEqual(sent(n), ['A big.example', 'TCP A big.example']);
});

test('the resolver interface: MX by preference, and a null MX is a permanent failure', async () => {
  const { r } = make();
  assert.deepEqual((await expandHosts(parseRouteHosts('mx.example'), r)).map((t) => t.ip), ['127.0.0.20']);
  await assert.rejects(expandHosts(parseRouteHosts('nullmx.example'), r), (e: { code: number; enhanced: string }) => e.code === 556 && e.enhanced === '5.1.10');
  await assert.rejects(r.resolveMx('nowhere.example'), (e: { code: number }) => e.code === 550);
});

test('the DNS server refuses clients outside dns.allow and answers the others', async () => {
  const { r } = make();
  const server = new DnsServer(r, () => new NetworkList(['127.0.0.1/32']), pino({ level: 'silent' }));
  const [bound] = await server.start(['127.0.0.4:0']);
  const ask = (from: string) => new Promise<any>((resolve, reject) => {
    const q = new Packet();
    q.header.id = 7;
    q.header.rd = 1;
    q.questions.push({ name: 'printer.office.example', type: A, class: 1 });
    const sock = dgram.createSocket('udp4');
    sock.once('message', (m) => {
      sock.close();
      resolve(Packet.parse(m));
    });
    sock.once('error', reject);
    sock.bind(0, from, () => sock.send(q.toBuffer(), bound.port, '127.0.0.4'));
  });
  try {
    assert.equal((await ask('127.0.0.5')).header.rcode, RCODE.REFUSED);
    const ok = await ask('127.0.0.1');
    assert.equal(ok.header.rcode, 0);
    assert.equal(ok.answers[0].address, '192.168.1.10');
  } finally {
    await server.stop();
  }
});

test('a lookup refused because the link is down fails with LinkDownError ("waiting for the link"), not a DNS error', async () => {
  const { r } = make({ link: false });
  const n = up.queries.length;
  await assert.rejects(r.resolveAddresses('nowhere-cached.example'), (err: Error) => err instanceof LinkDownError && /Waiting for the link/.test(err.message));
  await assert.rejects(r.resolveMx('nowhere-cached.example'), LinkDownError);
  assert.deepEqual(sent(n), [], 'and no packet left');
});

test('prefetch: MX and the exchangers\' addresses for a bare name, only A and AAAA for a [name] host', async () => {
  const { r } = make();
  const n = up.queries.length;
  await r.prefetch([{ name: 'mx.example', mx: true }, { name: 'short.example', mx: false }]);
  assert.deepEqual(sent(n).sort(), ['A mail.mx.example', 'A short.example', 'AAAA mail.mx.example', 'AAAA short.example', 'MX mx.example']);
  const m = up.queries.length;
  await r.lookup('short.example', A, true);
  await r.resolveMx('mx.example');
  assert.equal(up.queries.length, m, 'the window\'s lookups are then cache hits (this upstream\'s NODATA has no SOA: not cached, RFC 2308 §5)');
});

test('the DNS server: FORMERR, NOTIMP and BADVERS for what is not a plain query; pipelined TCP queries each answered', async () => {
  const { r } = make();
  const server = new DnsServer(r, () => new NetworkList(['127.0.0.0/8']), pino({ level: 'silent' }));
  const [bound] = await server.start(['127.0.0.4:0']);
  const query = (id: number, name: string, edns?: { version: number }) => {
    const q = new Packet();
    q.header.id = id;
    q.header.rd = 1;
    q.questions.push({ name, type: A, class: 1 });
    if (edns) q.additionals.push({ name: '', type: 41, class: 1232, ttl: edns.version << 16, rdata: [] });
    return q.toBuffer() as Buffer;
  };
  const udp = (msg: Buffer) => new Promise<Buffer>((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const timer = setTimeout(() => { sock.close(); reject(new Error('no answer within 2 s')); }, 2000);
    sock.once('message', (m) => { clearTimeout(timer); sock.close(); resolve(m); });
    sock.send(msg, bound.port, '127.0.0.4');
  });
  try {
    const two = query(1, 'mail.mx.example');
    two.writeUInt16BE(2, 4);
    assert.equal((await udp(two))[3] & 0x0f, RCODE.FORMERR);
    const status = query(2, 'mail.mx.example');
    status[2] |= 2 << 3;
    assert.equal((await udp(status))[3] & 0x0f, 4, 'NOTIMP');
    const badvers = await udp(query(3, 'mail.mx.example', { version: 1 }));
    assert.equal(badvers[3] & 0x0f, 0);
    assert.equal(badvers[badvers.length - 6], 1, 'BADVERS in the OPT record');
    const answers = await new Promise<number[]>((resolve, reject) => {
      const ids: number[] = [];
      const c = net.connect(bound.port, '127.0.0.4');
      const timer = setTimeout(() => { c.destroy(); reject(new Error('no TCP answers within 2 s')); }, 2000);
      let buf = Buffer.alloc(0);
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          ids.push(buf.readUInt16BE(2));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (ids.length === 2) { clearTimeout(timer); c.destroy(); resolve(ids.sort()); }
      });
      const frame = (m: Buffer) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]);
      c.write(Buffer.concat([frame(query(11, 'printer.office.example')), frame(query(12, 'mail.mx.example'))]));
    });
    assert.deepEqual(answers, [11, 12]);
  } finally {
    await server.stop();
  }
});
