/**
 * test/dns/zone-upstream.ts — the upstream of the DNS conformance tests: a
 * real dns2 server (UDP and TCP) on a loopback address with a port of the
 * OS's choosing, serving example.org the way a validating recursive
 * resolver would: RRSIGs beside signed RRsets when the query has DO, the AD bit
 * for signed data when it has DO or AD, an OPT record in every answer to an EDNS query (size 1232, DO
 * echoed), NXDOMAIN and NODATA with the zone's SOA (and NSEC + RRSIG with
 * DO), big TXT sets that need TCP, HTTPS/SVCB and an unknown TYPE65280 as
 * raw RDATA. Every query is recorded (transport, ID, source port, DO, EDNS
 * size) so that tests can see exactly what left the resolver.
 */
import net from 'node:net';
import dns2 from 'dns2';

const { Packet } = dns2 as any;

export interface SeenQuery {
  name: string;
  type: number;
  tcp: boolean;
  id: number;
  port: number;
  /** The source address. */
  from: string;
  /** The EDNS UDP size asked with; null without EDNS. */
  edns: number | null;
  do: boolean;
  cd: boolean;
}

export interface ZoneUpstream {
  host: string;
  port: number;
  seen: SeenQuery[];
  /** Queries seen since `from` as "TYPE name" strings (TCP prefixed). */
  since(from: number): string[];
  close(): Promise<void>;
}

const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28, DS: 43, RRSIG: 46, NSEC: 47, DNSKEY: 48, SVCB: 64, HTTPS: 65, PRIVATE: 65280 };
const ZONE = 'example.org';
const SOA = { primary: 'ns1.example.org', admin: 'hostmaster.example.org', serial: 2026120101, refresh: 3600, retry: 600, expiration: 86400, minimum: 300 };

/** A name in wire form without compression (inside RDATA of newer types). */
function wireName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

/** RFC 4034 RRSIG RDATA that looks real: fixed times, a 64-byte "signature". */
function rrsig(covered: number, owner: string, ttl: number): Buffer {
  const fixed = Buffer.alloc(18);
  fixed.writeUInt16BE(covered, 0);
  fixed[2] = 13; // ECDSAP256SHA256
  fixed[3] = owner.split('.').length;
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt32BE(1_900_000_000, 8);
  fixed.writeUInt32BE(1_700_000_000, 12);
  fixed.writeUInt16BE(12345, 16);
  const sig = Buffer.alloc(64);
  for (let i = 0; i < 64; i++) sig[i] = (i * 37 + covered) & 0xff;
  return Buffer.concat([fixed, wireName(ZONE), sig]);
}

/** RFC 4034 NSEC RDATA: next name, window 0 bitmap without trailing zero octets (types below 256). */
function nsec(next: string, types: number[]): Buffer {
  const bits = Buffer.alloc(32);
  for (const t of types) if (t < 256) bits[t >> 3] |= 0x80 >> (t & 7);
  let len = 32;
  while (len > 1 && bits[len - 1] === 0) len--;
  return Buffer.concat([wireName(next), Buffer.from([0, len]), bits.subarray(0, len)]);
}

type Rec = Record<string, unknown> & { type: number; ttl?: number };
const txt = (n: number, size: number, seed: string) => Array.from({ length: n }, (_, i) => ({ type: T.TXT, data: [`${seed}${i}-`.padEnd(size, String.fromCharCode(97 + (i % 26)))] }));

/** name → records; a name here with no record of the asked type is NODATA. */
const DATA: Record<string, { signed?: boolean; recs: Rec[] }> = {
  'example.org': { signed: true, recs: [
    { type: T.SOA, ...SOA, ttl: 3600 },
    { type: T.NS, ns: 'ns1.example.org' },
    { type: T.MX, priority: 10, exchange: 'mail.example.org' },
    { type: T.DNSKEY, flags: 257, protocol: 3, algorithm: 13, key: Buffer.alloc(64, 7).toString('base64') },
  ] },
  'a.example.org': { recs: [{ type: T.A, address: '192.0.2.1' }, { type: T.A, address: '192.0.2.2' }] },
  'signed.example.org': { signed: true, recs: [{ type: T.A, address: '192.0.2.10' }, { type: T.AAAA, address: '2001:db8::10' }, { type: T.TXT, data: ['v=signed'] }] },
  'mail.example.org': { signed: true, recs: [{ type: T.A, address: '192.0.2.25' }] },
  'child.example.org': { signed: true, recs: [{ type: T.DS, raw: Buffer.concat([Buffer.from([0x30, 0x39, 13, 2]), Buffer.alloc(32, 9)]) }] },
  'bigtxt.example.org': { recs: txt(20, 200, 'big') },
  'midtxt.example.org': { recs: txt(4, 200, 'mid') },
  'largetxt.example.org': { recs: txt(8, 200, 'large') },
  'sigtxt.example.org': { signed: true, recs: txt(3, 150, 'sig') },
  'alias.example.org': { recs: [{ type: T.CNAME, domain: 'bigtxt.example.org' }] },
  'www.example.org': { recs: [{ type: T.CNAME, domain: 'a.example.org' }] },
  'svc.example.org': { recs: [
    // HTTPS 1 . alpn=h2 ; SVCB 1 svc-backend.example.org. (raw RDATA, never compressed)
    { type: T.HTTPS, raw: Buffer.from('0001000001000302683' + '2', 'hex') },
    { type: T.SVCB, raw: Buffer.concat([Buffer.from([0, 1]), wireName('svc-backend.example.org')]) },
  ] },
  'odd.example.org': { recs: [{ type: T.PRIVATE, raw: Buffer.from('quietlink opaque rdata \x00\xff', 'latin1') }] },
};

function resource(name: string, r: Rec, ttl: number): Record<string, unknown> {
  const { raw, ...rest } = r as Rec & { raw?: Buffer };
  // types dns2 has no encoder for travel as `data` (its raw RDATA fallback)
  return raw ? { name, class: 1, ...rest, ttl, data: raw } : { name, class: 1, ...rest, ttl };
}

/** Fills `response` for one question as the zone says. */
function answer(q: { name: string; type: number }, dnssec: boolean, adWanted: boolean, response: any, ttl: number): void {
  const name = q.name.toLowerCase().replace(/\.$/, '');
  const node = DATA[name];
  const soa = () => {
    response.authorities.push(resource(ZONE, DATA[ZONE].recs[0], ttl * 12));
    if (dnssec) response.authorities.push(resource(ZONE, { type: T.RRSIG, raw: rrsig(T.SOA, ZONE, 3600) }, ttl * 12));
  };
  if (!node || !name.endsWith(ZONE)) {
    response.header.rcode = 3;
    soa();
    if (dnssec) {
      response.authorities.push(resource('a.example.org', { type: T.NSEC, raw: nsec('alias.example.org', [T.A, T.RRSIG, T.NSEC]) }, ttl));
      response.authorities.push(resource('a.example.org', { type: T.RRSIG, raw: rrsig(T.NSEC, 'a.example.org', ttl) }, ttl));
    }
    return;
  }
  const cname = node.recs.find((r) => r.type === T.CNAME);
  if (cname && q.type !== T.CNAME) {
    response.answers.push(resource(q.name, cname, ttl));
    const target = String(cname.domain);
    for (const r of DATA[target]?.recs.filter((x) => x.type === q.type) ?? []) response.answers.push(resource(target, r, ttl));
    return;
  }
  const recs = node.recs.filter((r) => r.type === q.type);
  if (!recs.length) {
    soa();
    if (dnssec && node.signed) {
      response.authorities.push(resource(name, { type: T.NSEC, raw: nsec(`z.${name}`, node.recs.map((r) => r.type).concat(T.RRSIG, T.NSEC)) }, ttl));
      response.authorities.push(resource(name, { type: T.RRSIG, raw: rrsig(T.NSEC, name, ttl) }, ttl));
    }
    return;
  }
  for (const r of recs) response.answers.push(resource(q.name, r, q.type === T.SOA ? 3600 : ttl));
  if (dnssec && node.signed) response.answers.push(resource(q.name, { type: T.RRSIG, raw: rrsig(q.type, name, ttl) }, ttl));
  // a validating resolver sets AD for signed data when the query had DO or AD (RFC 6840 §5.7)
  if (node.signed && adWanted) response.header.ad = 1;
}

/** Starts the zone on `host` (127.x); answers carry `ttl` (SOA: 12×, its minimum 300). */
export async function startZoneUpstream(host: string, ttl = 600): Promise<ZoneUpstream> {
  const seen: SeenQuery[] = [];
  const server = dns2.createServer({
    udp: true,
    tcp: true,
    handle: (request: any, send: (r: any) => void, client: any) => {
      const tcp = typeof client?.write === 'function';
      const [q] = request.questions;
      const opt = request.additionals.find((r: any) => r.type === 41);
      const dnssec = Boolean(opt?.doFlag);
      seen.push({ name: q.name, type: q.type, tcp, id: request.header.id, port: tcp ? client.remotePort : client.port, from: tcp ? client.remoteAddress : client.address, edns: opt ? opt.class : null, do: dnssec, cd: Boolean(request.header.cd) });
      const response = Packet.createResponseFromRequest(request);
      response.header.ra = 1;
      response.header.cd = request.header.cd;
      answer(q, dnssec, dnssec || Boolean(request.header.ad), response, ttl);
      if (opt) response.additionals.push({ name: '', type: 41, class: 1232, ttl: dnssec ? 0x8000 : 0, rdata: [] });
      send(response);
    },
  } as any);
  const port = await new Promise<number>((resolve, reject) => {
    const probe = net.createServer();
    probe.listen(0, host, () => {
      const p = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(p));
    });
    probe.on('error', reject);
  });
  await server.listen({ udp: { port, address: host, type: 'udp4' }, tcp: { port, address: host } } as any);
  const typeName = (t: number) => Object.keys(T).find((k) => (T as Record<string, number>)[k] === t) ?? `TYPE${t}`;
  return {
    host, port, seen,
    since: (from) => seen.slice(from).map((s) => `${s.tcp ? 'TCP ' : ''}${typeName(s.type)} ${s.name}`),
    close: () => server.close() as unknown as Promise<void>,
  };
}
