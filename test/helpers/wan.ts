/**
 * test/helpers/wan.ts — a fake WAN on loopback for the link tests: a
 * counting DNS server (dns2, UDP and TCP) with a tiny zone, and a scripted
 * ETRN relay (plain SMTP dialogue) that counts connections and records the
 * ETRN commands it got.
 */
import net from 'node:net';
import dns2 from 'dns2';

const { Packet } = dns2;

export interface CountingDns {
  port: number;
  queries: string[];
  close(): Promise<void>;
}

export interface ZoneEntry {
  mx?: Array<[number, string]>;
  a?: string[];
  ttl?: number;
  /** Over UDP answer with the TC bit and nothing else (the answer needs TCP). */
  truncate?: boolean;
}

/**
 * Answers MX and A from `zone`; NXDOMAIN with an SOA (TTL 300, minimum
 * `negativeMin`, default 60) otherwise. Records every query as "TYPE name"
 * (and "TCP TYPE name" over TCP).
 */
export async function startDns(host: string, zone: Record<string, ZoneEntry>, negativeMin = 60, opts: { dropFirstMs?: number } = {}): Promise<CountingDns & { dropped: number }> {
  const queries: string[] = [];
  let firstAt: number | null = null;
  const counts = { dropped: 0 };
  const server = dns2.createServer({
    udp: true,
    tcp: true,
    handle: (request: any, send: (r: any) => void, client: any) => {
      const response = Packet.createResponseFromRequest(request);
      const [q] = request.questions;
      const tcp = typeof client?.write === 'function';
      firstAt ??= Date.now();
      // a line still dialing: every query of the first dropFirstMs is lost
      if (opts.dropFirstMs && Date.now() - firstAt < opts.dropFirstMs) {
        counts.dropped++;
        return;
      }
      queries.push(`${tcp ? 'TCP ' : ''}${q.type === Packet.TYPE.MX ? 'MX' : q.type === Packet.TYPE.A ? 'A' : q.type === Packet.TYPE.AAAA ? 'AAAA' : q.type} ${q.name}`);
      const entry = zone[q.name.toLowerCase()];
      const ttl = entry?.ttl ?? 300;
      if (!entry) {
        response.header.rcode = 3;
        response.authorities.push({ name: 'example', type: Packet.TYPE.SOA, class: Packet.CLASS.IN, ttl: 300, primary: 'ns.example', admin: 'hostmaster.example', serial: 1, refresh: 3600, retry: 600, expiration: 86400, minimum: negativeMin });
      } else if (entry.truncate && !tcp) {
        response.header.tc = 1;
      } else if (q.type === Packet.TYPE.MX) for (const [priority, exchange] of entry.mx ?? []) response.answers.push({ name: q.name, type: Packet.TYPE.MX, class: Packet.CLASS.IN, ttl, priority, exchange });
      else if (q.type === Packet.TYPE.A) for (const address of entry.a ?? []) response.answers.push({ name: q.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl, address });
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
  return { port, queries, get dropped() { return counts.dropped; }, close: () => server.close() as unknown as Promise<void> };
}

export interface EtrnRelay {
  port: number;
  connections: number;
  etrn: string[];
  close(): Promise<void>;
}

/**
 * An SMTP server that offers ETRN; `reply(arg)` scripts each ETRN reply
 * (default 250); null says nothing at all (a relay that accepts the command
 * and then hangs). `onEtrn` is told after each reply (the ISP's push).
 */
export async function startEtrnRelay(host: string, reply: (arg: string) => string | null = () => '250 OK, queuing started', onEtrn?: (arg: string) => void): Promise<EtrnRelay> {
  const relay: EtrnRelay = { port: 0, connections: 0, etrn: [], close: async () => undefined };
  const open = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    relay.connections++;
    open.add(sock);
    sock.on('close', () => open.delete(sock));
    sock.on('error', () => undefined);
    sock.write('220 relay.test ESMTP\r\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const [verb, ...args] = line.split(' ');
        switch (verb.toUpperCase()) {
          case 'EHLO': sock.write('250-relay.test\r\n250-ETRN\r\n250 PIPELINING\r\n'); break;
          case 'ETRN': {
            relay.etrn.push(args.join(' '));
            const text = reply(args.join(' '));
            if (text !== null) sock.write(`${text}\r\n`);
            onEtrn?.(args.join(' '));
            break;
          }
          case 'QUIT': sock.end('221 bye\r\n'); break;
          default: sock.write('500 unknown\r\n');
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  relay.port = (server.address() as net.AddressInfo).port;
  relay.close = () => new Promise<void>((resolve) => {
    for (const sock of open) sock.destroy();
    server.close(() => resolve());
  });
  return relay;
}
