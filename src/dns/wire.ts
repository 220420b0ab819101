/**
 * dns/wire.ts — DNS messages on the wire (pure; RFC 1035, RFC 6891): reads
 * a client's query (question, flags, EDNS) into a `Query` with its cache
 * key, and indexes an upstream answer (records, sections, RRsets, the OPT
 * record) without decoding RDATA, so that every record type — known or not
 * — travels as the upstream sent it. Throws WireError on a malformed
 * message; allocates only what it returns.
 */

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28, OPT: 41 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** Header flag bits (second 16-bit word). */
export const FLAG = { QR: 0x8000, AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080, AD: 0x0020, CD: 0x0010 } as const;
/** Our EDNS UDP size, both ways (DNS flag day 2020: no IP fragments). */
export const EDNS_SIZE = 1232;
/** RFC 6891 §6.1.3: the extended RCODE BADVERS (high bits 1, header RCODE 0). */
export const BADVERS = 16;

export class WireError extends Error {}

export interface Edns {
  size: number;
  do: boolean;
  version: number;
}

export interface Query {
  /** The whole query as received. */
  msg: Buffer;
  id: number;
  /** End of the question (name, type, class) that starts at offset 12. */
  qEnd: number;
  type: number;
  qclass: number;
  rd: boolean;
  cd: boolean;
  ad: boolean;
  edns: Edns | null;
  /** The question name in wire form, lower case (ASCII only), as latin1. */
  nameKey: string;
  /** Cache and coalescing key: name, type, class, DO, CD. */
  key: string;
}

/** The end of a (possibly compressed) name at `off`; throws when it runs out or loops. */
export function skipName(buf: Buffer, off: number): number {
  for (let hops = 0; hops < 128; hops++) {
    if (off >= buf.length) throw new WireError('Name runs past the message');
    const len = buf[off];
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) {
      if (off + 2 > buf.length) throw new WireError('Pointer runs past the message');
      return off + 2;
    }
    if (len & 0xc0) throw new WireError(`Bad label type 0x${len.toString(16)}`);
    off += len + 1;
  }
  throw new WireError('Name has too many labels');
}

/** The name at `off` in dotted form (pointers followed), and where it ends in place. */
export function readName(buf: Buffer, off: number): { name: string; end: number } {
  const labels: string[] = [];
  let end = -1;
  for (let hops = 0; hops < 128; hops++) {
    if (off >= buf.length) throw new WireError('Name runs past the message');
    const len = buf[off];
    if (len === 0) return { name: labels.join('.'), end: end < 0 ? off + 1 : end };
    if ((len & 0xc0) === 0xc0) {
      if (end < 0) end = off + 2;
      off = ((len & 0x3f) << 8) | buf[off + 1];
      continue;
    }
    if (len & 0xc0 || off + 1 + len > buf.length) throw new WireError('Bad label');
    labels.push(buf.toString('latin1', off + 1, off + 1 + len));
    off += len + 1;
  }
  throw new WireError('Name has too many labels or a pointer loop');
}

/** A dotted name in wire form, lower case, without compression. */
export function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  const out = Buffer.alloc(labels.reduce((n, l) => n + l.length + 1, 1));
  let off = 0;
  for (const l of labels) {
    if (l.length > 63) throw new WireError(`Label too long in ${name}`);
    out[off++] = l.length;
    off += out.write(l.toLowerCase(), off, 'latin1');
  }
  if (out.length > 255) throw new WireError(`Name too long: ${name}`);
  return out;
}

const scratch = Buffer.alloc(256);

/**
 * A client's query, or a number: the RCODE to answer with (FORMERR, NOTIMP,
 * BADVERS) when the header is readable but the rest is not acceptable; null
 * for something not worth an answer (a response, a runt).
 */
export function readQuery(msg: Buffer): Query | number | null {
  if (msg.length < 12 || msg[2] & 0x80) return null;
  if ((msg[2] >> 3) & 0x0f) return RCODE.NOTIMP;
  if (msg.readUInt16BE(4) !== 1 || msg.readUInt16BE(6) !== 0) return RCODE.FORMERR;
  let off = 12;
  let n = 0;
  for (;;) {
    if (off >= msg.length) return RCODE.FORMERR;
    const len = msg[off];
    if (len > 63 || n + len + 1 > 255 || off + len + 1 > msg.length) return RCODE.FORMERR;
    scratch[n++] = len;
    off++;
    for (let i = 0; i < len; i++) {
      const c = msg[off++];
      scratch[n++] = c >= 65 && c <= 90 ? c + 32 : c;
    }
    if (len === 0) break;
  }
  if (off + 4 > msg.length) return RCODE.FORMERR;
  const type = msg.readUInt16BE(off);
  const qclass = msg.readUInt16BE(off + 2);
  const qEnd = off + 4;
  if (type === TYPE.OPT) return RCODE.FORMERR;
  let edns: Edns | null = null;
  try {
    off = qEnd;
    for (let ar = msg.readUInt16BE(8) + msg.readUInt16BE(10); ar > 0; ar--) {
      off = skipName(msg, off);
      if (off + 10 > msg.length) return RCODE.FORMERR;
      const rtype = msg.readUInt16BE(off);
      if (rtype === TYPE.OPT) {
        if (edns) return RCODE.FORMERR; // RFC 6891 §6.1.1: more than one OPT
        edns = { size: Math.max(512, msg.readUInt16BE(off + 2)), version: msg[off + 5], do: (msg[off + 6] & 0x80) !== 0 };
      }
      off += 10 + msg.readUInt16BE(off + 8);
      if (off > msg.length) return RCODE.FORMERR;
    }
  } catch {
    return RCODE.FORMERR;
  }
  if (edns && edns.version > 0) return BADVERS;
  const flags = msg[3];
  const cd = (flags & 0x10) !== 0;
  const nameKey = scratch.toString('latin1', 0, n);
  return {
    msg, id: msg.readUInt16BE(0), qEnd, type, qclass, rd: (msg[2] & 0x01) !== 0, cd, ad: (flags & 0x20) !== 0, edns, nameKey,
    key: nameKey + String.fromCharCode(type >> 8, type & 0xff, qclass >> 8, qclass & 0xff, (edns?.do ? 2 : 0) | (cd ? 1 : 0)),
  };
}

/** The dotted form of a query's name (for logs and the gateway's own API). */
export function queryName(q: Query): string {
  return readName(q.msg, 12).name;
}

/** A query as the resolver sends it upstream: RD and AD set, CD and DO as the client's, EDNS unless `plain`. */
export function buildQuery(id: number, q: Query, plain = false): Buffer {
  const name = Buffer.from(q.nameKey, 'latin1');
  const out = Buffer.alloc(12 + name.length + 4 + (plain ? 0 : 11));
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(FLAG.RD | FLAG.AD | (q.cd ? FLAG.CD : 0), 2);
  out.writeUInt16BE(1, 4);
  name.copy(out, 12);
  let off = 12 + name.length;
  off = out.writeUInt16BE(q.type, off);
  off = out.writeUInt16BE(q.qclass, off);
  if (!plain) {
    out.writeUInt16BE(1, 10);
    off += 1; // root owner
    off = out.writeUInt16BE(TYPE.OPT, off);
    off = out.writeUInt16BE(EDNS_SIZE, off);
    out.writeUInt32BE(q.edns?.do ? 0x8000 : 0, off);
  }
  return out;
}

/** A query for the gateway's own lookups (no EDNS from a client: DO and CD clear). */
export function makeQuery(name: string, type: number): Query {
  const wire = encodeName(name);
  const msg = Buffer.alloc(12 + wire.length + 4);
  msg.writeUInt16BE(FLAG.RD, 2);
  msg.writeUInt16BE(1, 4);
  wire.copy(msg, 12);
  msg.writeUInt16BE(type, 12 + wire.length);
  msg.writeUInt16BE(1, 14 + wire.length);
  return readQuery(msg) as Query;
}

export interface RecordIndex {
  /** Offset of the record's first byte and of its TTL field. */
  start: number;
  ttlAt: number;
  end: number;
  type: number;
  ttl: number;
  /** 0 answer, 1 authority, 2 additional. */
  section: number;
  /** The owner name, dotted and lower case. */
  owner: string;
}

export interface MessageIndex {
  id: number;
  flags: number;
  rcode: number;
  qEnd: number;
  records: RecordIndex[];
  /** The OPT record, if any: where it starts and the upstream's EDNS. */
  opt: { start: number; end: number; extRcode: number } | null;
}

/** Walks a whole message (a response); throws WireError when it is malformed. */
export function indexMessage(msg: Buffer): MessageIndex {
  if (msg.length < 12) throw new WireError('Message shorter than a header');
  if (msg.readUInt16BE(4) !== 1) throw new WireError('Not one question');
  const qEnd = skipName(msg, 12) + 4;
  if (qEnd > msg.length) throw new WireError('Question runs past the message');
  const counts = [msg.readUInt16BE(6), msg.readUInt16BE(8), msg.readUInt16BE(10)];
  const records: RecordIndex[] = [];
  let opt: MessageIndex['opt'] = null;
  let off = qEnd;
  for (let section = 0; section < 3; section++) {
    for (let i = 0; i < counts[section]; i++) {
      const start = off;
      const { name, end } = readName(msg, off);
      off = end;
      if (off + 10 > msg.length) throw new WireError('Record header runs past the message');
      const type = msg.readUInt16BE(off);
      const rdEnd = off + 10 + msg.readUInt16BE(off + 8);
      if (rdEnd > msg.length) throw new WireError('RDATA runs past the message');
      if (type === TYPE.OPT) {
        if (section !== 2 || opt) throw new WireError('Misplaced OPT record');
        opt = { start, end: rdEnd, extRcode: msg[off + 4] };
      } else {
        // RFC 2181 §8: a TTL with the top bit set counts as 0
        const ttl = msg.readUInt32BE(off + 4);
        records.push({ start, ttlAt: off + 4, end: rdEnd, type, ttl: ttl > 0x7fffffff ? 0 : ttl, section, owner: name.toLowerCase() });
      }
      off = rdEnd;
    }
  }
  return { id: msg.readUInt16BE(0), flags: msg.readUInt16BE(2), rcode: msg[3] & 0x0f, qEnd, records, opt };
}

/** Whether a response answers this query: QR, opcode 0, the same question (name case-insensitive, type, class). */
export function answersQuery(resp: Buffer, q: Query): boolean {
  if (resp.length < q.qEnd || !(resp[2] & 0x80) || (resp[2] >> 3) & 0x0f || resp.readUInt16BE(4) !== 1) return false;
  const nameEnd = 12 + q.nameKey.length;
  for (let i = 12; i < nameEnd; i++) {
    const c = resp[i];
    if ((c >= 65 && c <= 90 ? c + 32 : c) !== q.nameKey.charCodeAt(i - 12)) return false;
  }
  return resp.readUInt16BE(nameEnd) === q.type && resp.readUInt16BE(nameEnd + 2) === q.qclass;
}
