/**
 * dns/dns-server.ts — the DNS server on dns.listen (UDP and TCP, dns2) for
 * the gateway itself and the LAN: clients outside dns.allow (default:
 * loopback and lanNetworks) get REFUSED; everything else is answered by the
 * caching resolver, which decides whether anything leaves the box.
 */
import net from 'node:net';
import dns2 from 'dns2';
import type { Logger } from 'pino';
import { NetworkList, parseHostPort } from '../config/cidr.js';
import { RCODE, type CachingResolver } from './caching-resolver.js';

const { Packet } = dns2 as unknown as { Packet: { createResponseFromRequest(r: unknown): { header: { rcode: number; aa: number; ra: number }; answers: unknown[] } } };

export class DnsServer {
  private servers: Array<{ close(): Promise<void> | void }> = [];

  constructor(private readonly resolver: CachingResolver, private readonly allow: () => NetworkList, private readonly log: Logger) {}

  async start(listen: readonly string[]): Promise<Array<{ host: string; port: number }>> {
    const bound: Array<{ host: string; port: number }> = [];
    for (const l of listen) {
      const { host, port } = parseHostPort(l, 53);
      const server = dns2.createServer({
        udp: true,
        tcp: true,
        handle: (request: { questions: Array<{ name: string; type: number }> }, send: (r: unknown) => void, client: { address?: string; remoteAddress?: string }) => {
          const response = Packet.createResponseFromRequest(request);
          response.header.ra = 1;
          const from = client.remoteAddress ?? client.address ?? '';
          const [q] = request.questions;
          if (!this.allow().has(from) || !q) {
            response.header.rcode = RCODE.REFUSED;
            send(response);
            return;
          }
          this.resolver.lookup(q.name, q.type).then((a) => {
            response.header.rcode = a.rcode;
            if (a.local) response.header.aa = 1;
            response.answers.push(...a.answers);
            send(response);
          }, (err) => {
            this.log.error({ q: q.name, err: (err as Error).message }, 'dns lookup failed');
            response.header.rcode = RCODE.SERVFAIL;
            send(response);
          });
        },
      } as never) as unknown as { listen(o: object): Promise<unknown>; close(): Promise<void>; addresses(): { udp?: { port: number } } };
      const family = net.isIP(host) === 6 ? 'udp6' : 'udp4';
      await server.listen({ udp: { port, address: host, type: family }, tcp: { port, address: host } });
      this.servers.push(server);
      bound.push({ host, port: server.addresses().udp?.port ?? port });
    }
    return bound;
  }

  async stop(): Promise<void> {
    for (const s of this.servers) await s.close();
    this.servers = [];
  }
}
