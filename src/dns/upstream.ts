/**
 * dns/upstream.ts — asks dns.upstream (in order, with failover and a
 * timeout) over UDP, and over TCP when the UDP answer is truncated (dns2's
 * clients). Knows nothing of the link: the resolver decides whether to ask.
 */
import dns2 from 'dns2';
import { parseHostPort } from '../config/cidr.js';
import type { DnsRecord } from './cache.js';

export interface UpstreamAnswer {
  rcode: number;
  answers: DnsRecord[];
  authorities: DnsRecord[];
  server: string;
}

type Client = (name: string, type: string) => Promise<{ header: { rcode: number }; answers: DnsRecord[]; authorities: DnsRecord[] }>;

export class Upstream {
  private readonly clients: Array<{ server: string; ask: Client }>;

  constructor(servers: readonly string[], timeoutMs = 2000) {
    this.clients = servers.map((s) => {
      const { host, port } = parseHostPort(s, 53);
      return { server: `${host}:${port}`, ask: (dns2 as unknown as { UDPClient: (o: object) => Client }).UDPClient({ dns: host, port, timeout: timeoutMs }) };
    });
  }

  get configured(): boolean {
    return this.clients.length > 0;
  }

  /** The first server that answers; throws when none does. */
  async query(name: string, type: string): Promise<UpstreamAnswer> {
    let last: unknown = new Error('no upstream DNS server configured');
    for (const c of this.clients) {
      try {
        const r = await c.ask(name, type);
        return { rcode: r.header.rcode, answers: r.answers ?? [], authorities: r.authorities ?? [], server: c.server };
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }
}
