/**
 * dns/dns-server.ts — the DNS server on dns.listen for the gateway itself
 * and the LAN: clients outside dns.allow (default: loopback and
 * lanNetworks) get REFUSED; everything else is answered by the caching
 * resolver, which decides whether anything leaves the box.
 *
 * TCP is dns2's server. UDP has a fast path of its own: the encoded answer
 * to a question is kept for up to a second (never past its TTL), and a
 * repeated question is answered by copying it with the new ID, without
 * decoding or encoding a packet; everything else goes through dns2's Packet.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dns2 from 'dns2';
import type { Logger } from 'pino';
import { NetworkList, parseHostPort } from '../config/cidr.js';
import { RCODE, type CachingResolver } from './caching-resolver.js';

interface PacketLike {
  header: { id: number; rcode: number; aa: number; ra: number; rd?: number };
  questions: Array<{ name: string; type: number }>;
  answers: unknown[];
  toBuffer(): Buffer;
}
const { Packet } = dns2 as unknown as { Packet: { parse(b: Buffer): PacketLike; createResponseFromRequest(r: unknown): PacketLike } };

/** How long an encoded UDP answer is reused (ms); its TTLs are at most this stale. */
const WIRE_REUSE = 1000;
const WIRE_MAX = 10_000;

/**
 * The question of a query, read straight from the wire (pure): its raw bytes
 * (name, type, class) serve as the key; null if it is not a plain
 * one-question query. (Another letter case is another key: a miss, not an error.)
 */
export function wireQuestion(msg: Buffer): { key: string; end: number } | null {
  if (msg.length < 17 || msg.readUInt16BE(4) !== 1 || (msg[2] & 0x80) !== 0) return null;
  const zero = msg.indexOf(0, 12);
  if (zero < 0 || zero + 5 > msg.length) return null;
  return { key: msg.toString('latin1', 12, zero + 5), end: zero + 5 };
}

export class DnsServer {
  private servers: Array<{ close(): Promise<void> | void }> = [];
  private readonly wire = new Map<string, { buf: Buffer; until: number }>();
  /** dns.allow decisions by client address, for the list they were made with. */
  private allowed: { list: NetworkList; by: Map<string, boolean> } | null = null;

  private isAllowed(address: string): boolean {
    const list = this.allow();
    if (this.allowed?.list !== list) this.allowed = { list, by: new Map() };
    let ok = this.allowed.by.get(address);
    if (ok === undefined) {
      ok = list.has(address);
      if (this.allowed.by.size < 4096) this.allowed.by.set(address, ok);
    }
    return ok;
  }

  constructor(private readonly resolver: CachingResolver, private readonly allow: () => NetworkList, private readonly log: Logger) {}

  /** Answers one decoded query (both transports). */
  private async answer(request: PacketLike, from: string): Promise<{ response: PacketLike; ttl: number | null }> {
    const response = Packet.createResponseFromRequest(request);
    response.header.ra = 1;
    const [q] = request.questions;
    if (!this.isAllowed(from) || !q) {
      response.header.rcode = RCODE.REFUSED;
      return { response, ttl: null };
    }
    try {
      const a = await this.resolver.lookup(q.name, q.type);
      response.header.rcode = a.rcode;
      if (a.local) response.header.aa = 1;
      response.answers.push(...a.answers);
      const ttl = a.stale || a.rcode !== RCODE.NOERROR || !a.answers.length ? null : Math.min(...a.answers.map((x) => x.ttl));
      return { response, ttl };
    } catch (err) {
      this.log.error({ q: q.name, err: (err as Error).message }, 'dns lookup failed');
      response.header.rcode = RCODE.SERVFAIL;
      return { response, ttl: null };
    }
  }

  private startUdp(host: string, port: number): Promise<number> {
    const sock = dgram.createSocket(net.isIP(host) === 6 ? 'udp6' : 'udp4');
    sock.on('error', (err) => this.log.error({ err: err.message }, 'dns udp socket error'));
    sock.on('message', (msg, rinfo) => {
      const q = wireQuestion(msg);
      if (q && this.isAllowed(rinfo.address)) {
        const hit = this.wire.get(q.key);
        if (hit && hit.until > Date.now()) {
          const out = Buffer.from(hit.buf);
          out.writeUInt16BE(msg.readUInt16BE(0), 0);
          out[2] = (out[2] & 0xfe) | (msg[2] & 0x01); // echo RD
          sock.send(out, rinfo.port, rinfo.address);
          return;
        }
      }
      let request: PacketLike;
      try {
        request = Packet.parse(msg);
      } catch {
        return;
      }
      void this.answer(request, rinfo.address).then(({ response, ttl }) => {
        const buf = response.toBuffer();
        if (q && ttl !== null && ttl > 0) {
          if (this.wire.size >= WIRE_MAX) this.wire.clear();
          this.wire.set(q.key, { buf, until: Date.now() + Math.min(WIRE_REUSE, ttl * 1000) });
        }
        sock.send(buf, rinfo.port, rinfo.address);
      });
    });
    this.servers.push({ close: () => new Promise<void>((r) => sock.close(() => r())) });
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, host, () => resolve(sock.address().port));
    });
  }

  async start(listen: readonly string[]): Promise<Array<{ host: string; port: number }>> {
    const bound: Array<{ host: string; port: number }> = [];
    for (const l of listen) {
      const { host, port } = parseHostPort(l, 53);
      const udpPort = await this.startUdp(host, port);
      const tcp = dns2.createServer({
        tcp: true,
        handle: (request: PacketLike, send: (r: PacketLike) => void, client: { remoteAddress?: string }) => {
          void this.answer(request, client.remoteAddress ?? '').then(({ response }) => send(response));
        },
      } as never) as unknown as { listen(o: object): Promise<unknown>; close(): Promise<void> };
      await tcp.listen({ tcp: { port: udpPort, address: host } });
      this.servers.push(tcp);
      bound.push({ host, port: udpPort });
    }
    return bound;
  }

  async stop(): Promise<void> {
    for (const s of this.servers) await s.close();
    this.servers = [];
  }
}
