/**
 * dns/upstream.ts — asks dns.upstream (in order, with failover): over UDP
 * with EDNS (1232 bytes, the client's DO and CD), over TCP when the UDP
 * answer is truncated, without EDNS when a server answers FORMERR to it
 * (RFC 6891 §7). Every query — UDP and TCP — gets a fresh random ID, every
 * UDP query a socket of its own (a random source port, connected so that
 * only the server's packets arrive and an ICMP refusal fails at once); an
 * answer counts only when its ID and question (name, type, class) match,
 * else it is ignored and the wait goes on. The wait per server adapts to its
 * measured round trips (rtt-timeout.ts). SERVFAIL, REFUSED or NOTIMP moves
 * on to the next server; when all say so, the last such answer is returned.
 * Knows nothing of the link: the resolver decides whether to ask.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { parseHostPort } from '../config/cidr.js';
import { RttTimeout, DEFAULT_RTT_BOUNDS, type RttBounds } from './rtt-timeout.js';
import { RCODE, answersQuery, buildQuery, indexMessage, type MessageIndex, type Query } from './wire.js';

export interface UpstreamReply {
  msg: Buffer;
  index: MessageIndex;
  server: string;
}

interface Server {
  name: string;
  host: string;
  port: number;
  rtt: RttTimeout;
}

export class UpstreamError extends Error {}

export class Upstream {
  private readonly servers: Server[];

  /** `bounds`: a number is the longest wait (as the old fixed timeout), else floor/ceiling/initial in ms. */
  constructor(servers: readonly string[], bounds: number | Partial<RttBounds> = {}) {
    const b: RttBounds = typeof bounds === 'number'
      ? { floorMs: Math.min(DEFAULT_RTT_BOUNDS.floorMs, bounds), ceilingMs: bounds, initialMs: bounds }
      : { ...DEFAULT_RTT_BOUNDS, ...bounds };
    this.servers = servers.map((s) => {
      const { host, port } = parseHostPort(s, 53);
      return { name: `${host}:${port}`, host, port, rtt: new RttTimeout(b) };
    });
  }

  get configured(): boolean {
    return this.servers.length > 0;
  }

  /** Each server's current wait in ms (status, tests). */
  timeouts(): Record<string, number> {
    return Object.fromEntries(this.servers.map((s) => [s.name, s.rtt.timeoutMs]));
  }

  /** The first usable answer; throws UpstreamError when no server answers. */
  async ask(q: Query): Promise<UpstreamReply> {
    let last: Error = new UpstreamError('No upstream DNS server configured');
    let refused: UpstreamReply | null = null;
    // a single server gets a second chance (with a doubled wait); a list is tried once each
    const plan = this.servers.length === 1 ? [this.servers[0], this.servers[0]] : this.servers;
    for (const s of plan) {
      try {
        const reply = await this.askServer(s, q);
        if (reply.index.rcode === RCODE.SERVFAIL || reply.index.rcode === RCODE.REFUSED || reply.index.rcode === RCODE.NOTIMP) {
          refused = reply;
          continue;
        }
        return reply;
      } catch (err) {
        last = err as Error;
      }
    }
    if (refused) return refused;
    throw last;
  }

  private async askServer(s: Server, q: Query): Promise<UpstreamReply> {
    const t0 = performance.now();
    let msg: Buffer;
    try {
      msg = await udpExchange(s, buildQuery(randomInt(0x10000), q), q, s.rtt.timeoutMs);
    } catch (err) {
      if (err instanceof TimeoutError) s.rtt.timedOut();
      throw err;
    }
    s.rtt.answered(performance.now() - t0);
    let index = indexMessage(msg);
    const plain = index.rcode === RCODE.FORMERR && !index.opt;
    if (plain) {
      // a server without EDNS (RFC 6891 §7): ask once more without it
      msg = await udpExchange(s, buildQuery(randomInt(0x10000), q, true), q, s.rtt.timeoutMs);
      index = indexMessage(msg);
    }
    if (msg[2] & 0x02) {
      msg = await tcpExchange(s, buildQuery(randomInt(0x10000), q, plain), q, s.rtt.bounds.ceilingMs);
      index = indexMessage(msg);
    }
    return { msg, index, server: s.name };
  }
}

class TimeoutError extends UpstreamError {}

function timeout(s: Server, ms: number, how: string): TimeoutError {
  return new TimeoutError(`No answer from DNS server ${s.name} over ${how} within ${ms} ms`);
}

/** One UDP exchange on a fresh connected socket; answers that do not match are ignored. */
function udpExchange(s: Server, query: Buffer, q: Query, ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(net.isIP(s.host) === 6 ? 'udp6' : 'udp4');
    const id = query.readUInt16BE(0);
    let finished = false;
    const done = (err: Error | null, msg?: Buffer) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.removeAllListeners('message');
      sock.on('error', () => undefined);
      sock.close();
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => done(timeout(s, ms, 'UDP')), ms);
    sock.on('error', (err) => done(new UpstreamError(`Cannot ask DNS server ${s.name}: ${err.message}`, { cause: err })));
    sock.on('message', (m) => {
      if (m.length >= 12 && m.readUInt16BE(0) === id && answersQuery(m, q)) done(null, m);
    });
    sock.connect(s.port, s.host, () => sock.send(query));
  });
}

/** One TCP exchange (RFC 1035 §4.2.2 framing); frames that do not match are ignored. */
function tcpExchange(s: Server, query: Buffer, q: Query, ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const id = query.readUInt16BE(0);
    const sock = net.connect({ host: s.host, port: s.port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, msg?: Buffer) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => done(timeout(s, ms, 'TCP')), ms);
    sock.on('error', (err) => done(new UpstreamError(`Cannot ask DNS server ${s.name} over TCP: ${err.message}`, { cause: err })));
    sock.on('connect', () => {
      const frame = Buffer.alloc(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      query.copy(frame, 2);
      sock.write(frame);
    });
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        if (m.length >= 12 && m.readUInt16BE(0) === id && answersQuery(m, q)) return done(null, Buffer.from(m));
      }
    });
    sock.on('end', () => done(new UpstreamError(`DNS server ${s.name} closed the TCP connection without an answer`)));
  });
}
