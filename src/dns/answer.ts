/**
 * dns/answer.ts — answers as they go out (pure). A `WireAnswer` keeps an
 * upstream response as wire bytes (header, question, the three sections;
 * the upstream's OPT record removed) with the offset and TTL of every
 * record and the byte ends of its RRsets. `render()` turns it into the
 * reply to one query by copying it and patching: the client's ID, flags
 * and question (its letter case), TTLs counted down (or 30 s when stale,
 * RFC 8767), whole RRsets up to the client's UDP size with TC when a
 * required one is left out (RFC 2181 §9), and an OPT record when the client
 * sent one (RFC 6891). RDATA is never decoded, so every type — HTTPS, SVCB,
 * RRSIG, TYPE65280 — passes unchanged. Local answers (the gateway's names,
 * dns.hosts) and error replies are built here too.
 */
import { EDNS_SIZE, FLAG, RCODE, TYPE, WireError, encodeName, type MessageIndex, type Query } from './wire.js';

/** Seconds a stale answer says it lives (RFC 8767 §4). */
export const STALE_TTL = 30;
/** The longest we keep anything, whatever the upstream says. */
export const MAX_TTL = 7 * 86_400;
/** TTL of local answers (and of their SOA's minimum). */
export const LOCAL_TTL = 300;

export interface WireAnswer {
  rcode: number;
  /** Header, question and records as they go out; ID, flags, question case, counts and TTLs are patched per reply. */
  msg: Buffer;
  qEnd: number;
  /** Records per section (answer, authority, additional). */
  counts: [number, number, number];
  /** Offset of each record's TTL field, and its TTL. */
  ttlAt: number[];
  ttls: number[];
  /** After each RRset: its byte end and how many records come before it. */
  cutAt: number[];
  cutN: number[];
  ad: boolean;
  aa: boolean;
  /** Seconds it is fresh: the shortest TTL, or the negative TTL (RFC 2308 §5). */
  ttl: number;
}

/** RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); without an SOA it is not cached (0). */
function negativeTtl(msg: Buffer, idx: MessageIndex): number {
  const soa = idx.records.find((r) => r.section === 1 && r.type === TYPE.SOA);
  return soa ? Math.min(soa.ttl, msg.readUInt32BE(soa.end - 4)) : 0;
}

/**
 * An upstream response made ready to cache. The OPT record goes; when it is
 * not the last record, the additional records after it go too (they are
 * optional, and moving bytes would break compression pointers).
 */
export function fromUpstream(resp: Buffer, idx: MessageIndex): WireAnswer {
  const records = idx.opt ? idx.records.filter((r) => r.start < idx.opt!.start) : idx.records;
  const end = records.length ? records[records.length - 1].end : idx.qEnd;
  const msg = Buffer.from(resp.subarray(0, end));
  const counts: [number, number, number] = [0, 0, 0];
  const cutAt: number[] = [];
  const cutN: number[] = [];
  records.forEach((r, i) => {
    counts[r.section]++;
    const next = records[i + 1];
    if (!next || next.section !== r.section || next.type !== r.type || next.owner !== r.owner) {
      cutAt.push(r.end);
      cutN.push(i + 1);
    }
  });
  const negative = idx.rcode === RCODE.NXDOMAIN || (idx.rcode === RCODE.NOERROR && counts[0] === 0);
  const shortest = records.reduce((m, r) => Math.min(m, r.ttl), MAX_TTL);
  return {
    rcode: idx.rcode, msg, qEnd: idx.qEnd, counts,
    ttlAt: records.map((r) => r.ttlAt), ttls: records.map((r) => r.ttl), cutAt, cutN,
    ad: (idx.flags & FLAG.AD) !== 0, aa: false,
    ttl: Math.min(negative ? negativeTtl(msg, idx) : shortest, MAX_TTL),
  };
}

/** The UDP size a reply to `q` may have: the client's EDNS size, at most ours, at least 512; 512 without EDNS. */
export function udpLimit(q: Query): number {
  return q.edns ? Math.min(Math.max(q.edns.size, 512), EDNS_SIZE) : 512;
}

function writeOpt(out: Buffer, off: number, q: Query, extRcode = 0): void {
  out[off] = 0;
  out.writeUInt16BE(TYPE.OPT, off + 1);
  out.writeUInt16BE(EDNS_SIZE, off + 3);
  out.writeUInt32BE(((extRcode << 24) | (q.edns?.do ? 0x8000 : 0)) >>> 0, off + 5);
  out.writeUInt16BE(0, off + 9);
}

/**
 * The reply to `q` from `a`, at most `limit` bytes. `age` is how many
 * seconds ago the answer was received; a stale answer says STALE_TTL.
 */
export function render(a: WireAnswer, q: Query, limit: number, age: number, stale = false): Buffer {
  const optLen = q.edns ? 11 : 0;
  let end = a.msg.length;
  let n = a.ttlAt.length;
  let tc = false;
  if (end + optLen > limit) {
    let i = a.cutAt.length - 1;
    while (i >= 0 && a.cutAt[i] + optLen > limit) i--;
    end = i >= 0 ? a.cutAt[i] : a.qEnd;
    n = i >= 0 ? a.cutN[i] : 0;
    // only a required RRset left out sets TC: additional data may go silently (RFC 2181 §9)
    tc = n < a.counts[0] + a.counts[1];
  }
  const out = Buffer.allocUnsafe(end + optLen);
  a.msg.copy(out, 0, 0, end);
  q.msg.copy(out, 12, 12, a.qEnd);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(FLAG.QR | FLAG.RA | (a.aa ? FLAG.AA : 0) | (tc ? FLAG.TC : 0) | (q.rd ? FLAG.RD : 0)
    | (a.ad && (q.ad || q.edns?.do) ? FLAG.AD : 0) | (q.cd ? FLAG.CD : 0) | a.rcode, 2);
  const an = Math.min(n, a.counts[0]);
  const ns = Math.min(n - an, a.counts[1]);
  out.writeUInt16BE(an, 6);
  out.writeUInt16BE(ns, 8);
  out.writeUInt16BE(n - an - ns + (optLen ? 1 : 0), 10);
  for (let i = 0; i < n; i++) {
    const t = stale ? STALE_TTL : Math.min(a.ttls[i], a.ttl) - age;
    out.writeUInt32BE(t > 0 ? t : 0, a.ttlAt[i]);
  }
  if (optLen) writeOpt(out, end, q);
  return out;
}

/**
 * A reply with no records: an error (FORMERR, SERVFAIL, REFUSED, NOTIMP,
 * BADVERS) with the question when there is one, and an OPT record when the
 * client sent EDNS (or when the error is BADVERS).
 */
export function renderError(rcode: number, q: Query | null, msg?: Buffer): Buffer {
  const src = q?.msg ?? msg;
  const qEnd = q?.qEnd ?? 12;
  const withOpt = Boolean(q?.edns) || rcode >= 16;
  const out = Buffer.alloc(qEnd + (withOpt ? 11 : 0));
  if (src && src.length >= 12) src.copy(out, 0, 0, qEnd);
  out.writeUInt16BE(FLAG.QR | FLAG.RA | (src && src.length > 2 ? (src[2] & 0x79) << 8 : 0) | (q?.cd ? FLAG.CD : 0) | (rcode & 0x0f), 2);
  out.writeUInt16BE(q ? 1 : 0, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(withOpt ? 1 : 0, 10);
  if (withOpt && q) writeOpt(out, qEnd, q, rcode >> 4);
  else if (withOpt) {
    out[qEnd] = 0;
    out.writeUInt16BE(TYPE.OPT, qEnd + 1);
    out.writeUInt16BE(EDNS_SIZE, qEnd + 3);
    out.writeUInt32BE((rcode >> 4) << 24, qEnd + 5);
  }
  return out;
}

const NOBODY = encodeName('nobody.invalid');

/**
 * A local answer (the gateway's own names, dns.hosts; authoritative): the
 * addresses of the asked type, or NODATA with an SOA for the name itself
 * (RFC 6303 style: we own exactly that name), so that clients may cache it.
 */
export function localAnswer(q: Query, addresses: { a: readonly string[]; aaaa: readonly string[] }): WireAnswer {
  const recs: Buffer[] = [];
  const want = (t: number) => q.qclass === 1 && (q.type === t || q.type === 255);
  for (const ip of want(TYPE.A) ? addresses.a : []) recs.push(record(TYPE.A, Buffer.from(ip.split('.').map(Number))));
  for (const ip of want(TYPE.AAAA) ? addresses.aaaa : []) recs.push(record(TYPE.AAAA, ipv6(ip)));
  const negative = recs.length === 0;
  if (negative) {
    const fixed = Buffer.alloc(20);
    [1, 3600, 1200, 604_800, LOCAL_TTL].forEach((v, i) => fixed.writeUInt32BE(v, i * 4));
    recs.push(record(TYPE.SOA, Buffer.concat([Buffer.from([0xc0, 0x0c]), NOBODY, fixed])));
  }
  const head = q.msg.subarray(0, q.qEnd);
  const msg = Buffer.concat([head, ...recs]);
  const ttlAt: number[] = [];
  let off = q.qEnd;
  for (const r of recs) {
    ttlAt.push(off + 6);
    off += r.length;
  }
  return {
    rcode: RCODE.NOERROR, msg, qEnd: q.qEnd, counts: negative ? [0, 1, 0] : [recs.length, 0, 0],
    ttlAt, ttls: recs.map(() => LOCAL_TTL), cutAt: [msg.length], cutN: [recs.length], ad: false, aa: true, ttl: LOCAL_TTL,
  };
}

/** One record owned by the question's name (a pointer to offset 12), class IN, TTL LOCAL_TTL. */
function record(type: number, rdata: Buffer): Buffer {
  const r = Buffer.alloc(12 + rdata.length);
  r.writeUInt16BE(0xc00c, 0);
  r.writeUInt16BE(type, 2);
  r.writeUInt16BE(1, 4);
  r.writeUInt32BE(LOCAL_TTL, 6);
  r.writeUInt16BE(rdata.length, 10);
  rdata.copy(r, 12);
  return r;
}

function ipv6(text: string): Buffer {
  // a dotted IPv4 tail (::ffff:192.0.2.1) is two groups
  const ip = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) => `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`);
  const [head, tail = ''] = ip.split('::');
  const parse = (s: string) => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const h = parse(head);
  const t = parse(tail);
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill(0), ...t] : h;
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) throw new WireError(`Bad IPv6 address ${ip}`);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}
