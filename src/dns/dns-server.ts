/**
 * dns/dns-server.ts — the DNS server on dns.listen for the gateway itself
 * and the LAN, over UDP and TCP on the same port: clients outside
 * dns.allow (default: loopback and lanNetworks) get REFUSED; everything
 * else is answered by the caching resolver, which decides whether anything
 * leaves the box. Queries are read straight from the wire (wire.ts) and
 * answers rendered from cached wire bytes (answer.ts): a cache hit is
 * answered in the same turn of the event loop, without decoding a record.
 * UDP answers fit the client's size (512 without EDNS) with TC when they
 * do not; TCP answers are whole (RFC 7766: pipelined, answered as ready,
 * idle connections closed after 10 s, at most 64 open). A malformed query gets FORMERR, an
 * opcode other than QUERY NOTIMP, EDNS version > 0 BADVERS; a lookup that
 * throws is logged and answered SERVFAIL.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from 'pino';
import { NetworkList, parseHostPort } from '../config/cidr.js';
import { render, renderError, udpLimit } from './answer.js';
import type { CachingResolver, Reply } from './caching-resolver.js';
import { RCODE, readQuery, type Query } from './wire.js';

const TCP_IDLE_MS = 10_000;
/** Open TCP connections at most (dnsmasq allows 20 TCP children); more are closed at once. */
const TCP_MAX = 64;
const TCP_LIMIT = 65_535;

export class DnsServer {
  private closers: Array<() => Promise<void>> = [];
  /** dns.allow decisions by client address, for the list they were made with. */
  private allowed: { list: NetworkList; by: Map<string, boolean> } | null = null;

  constructor(private readonly resolver: CachingResolver, private readonly allow: () => NetworkList, private readonly log: Logger) {}

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

  private static reply(r: Reply, q: Query, limit: number): Buffer {
    return 'answer' in r ? render(r.answer, q, limit, r.age, r.stale) : renderError(r.rcode, q);
  }

  /**
   * Answers one message; `send` gets the reply (now, for a cache hit, or
   * later). Nothing is sent for something that is not a query.
   */
  private handle(msg: Buffer, from: string, limit: (q: Query) => number, send: (b: Buffer) => void): void {
    const q = readQuery(msg);
    if (q === null) return;
    if (typeof q === 'number') return send(renderError(q, null, msg));
    if (!this.isAllowed(from)) return send(renderError(RCODE.REFUSED, q));
    try {
      const hit = this.resolver.cached(q);
      if (hit) return send(DnsServer.reply(hit, q, limit(q)));
      this.resolver.resolve(q).then((r) => send(DnsServer.reply(r, q, limit(q))), (err) => this.failed(err, from, q, send));
    } catch (err) {
      this.failed(err, from, q, send);
    }
  }

  private failed(err: unknown, from: string, q: Query, send: (b: Buffer) => void): void {
    this.log.error({ err, from }, 'dns query failed');
    send(renderError(RCODE.SERVFAIL, q));
  }

  private startUdp(host: string, port: number): Promise<{ port: number; close: () => Promise<void> }> {
    // replies go to the address a query came from: no lookup (dgram's default defers every send by a tick)
    const family = net.isIP(host) === 6 ? 6 : 4;
    const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', lookup: (address, _o, cb) => cb(null, address, family) });
    sock.on('error', (err) => this.log.error({ err }, 'dns udp socket error'));
    sock.on('message', (msg, rinfo) => {
      this.handle(msg, rinfo.address, udpLimit, (b) => sock.send(b, rinfo.port, rinfo.address));
    });
    const close = () => new Promise<void>((r) => sock.close(() => r()));
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, host, () => {
        sock.off('error', reject);
        resolve({ port: sock.address().port, close });
      });
    });
  }

  private startTcp(host: string, port: number): Promise<void> {
    const open = new Set<net.Socket>();
    const server = net.createServer((conn) => {
      if (open.size >= TCP_MAX) {
        conn.destroy();
        return;
      }
      open.add(conn);
      conn.setTimeout(TCP_IDLE_MS, () => conn.destroy());
      conn.on('error', () => undefined);
      conn.on('close', () => open.delete(conn));
      const from = conn.remoteAddress ?? '';
      const send = (b: Buffer) => {
        if (conn.destroyed) return;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(b.length, 0);
        conn.write(Buffer.concat([len, b]));
      };
      let buf = Buffer.alloc(0);
      conn.on('data', (chunk) => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          this.handle(msg, from, () => TCP_LIMIT, send);
        }
      });
    });
    this.closers.push(() => new Promise<void>((r) => {
      for (const c of open) c.destroy();
      server.close(() => r());
    }));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  async start(listen: readonly string[]): Promise<Array<{ host: string; port: number }>> {
    const bound: Array<{ host: string; port: number }> = [];
    for (const l of listen) {
      const { host, port } = parseHostPort(l, 53);
      for (let attempt = 1; ; attempt++) {
        const udp = await this.startUdp(host, port);
        try {
          await this.startTcp(host, udp.port);
          this.closers.push(udp.close);
          bound.push({ host, port: udp.port });
          break;
        } catch (err) {
          await udp.close();
          // port 0: the port the OS gave UDP may be taken for TCP; ask for another
          if (port !== 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
        }
      }
    }
    return bound;
  }

  async stop(): Promise<void> {
    for (const close of this.closers) await close();
    this.closers = [];
  }
}
