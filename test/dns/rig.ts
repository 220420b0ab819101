/**
 * test/dns/rig.ts — quietlink's resolver as a LAN sees it, for the DNS
 * conformance tests: the zone upstream (zone-upstream.ts) on 127.0.0.13,
 * the real CachingResolver and DnsServer on 127.0.0.15 (ports of the OS's
 * choosing), a test clock and a link switch, and dns.hosts with
 * printer.lan.test. `stop()` closes everything it started.
 */
import pino from 'pino';
import { CachingResolver } from '../../src/dns/caching-resolver.js';
import { Upstream } from '../../src/dns/upstream.js';
import { DnsServer } from '../../src/dns/dns-server.js';
import { parseHosts } from '../../src/dns/hosts-file.js';
import { NetworkList } from '../../src/config/cidr.js';
import { startZoneUpstream, type ZoneUpstream } from './zone-upstream.js';

export const LAN_HOSTS = '192.168.1.10 printer.lan.test printer\n2001:db8::10 printer.lan.test\n';

export interface Rig {
  zone: ZoneUpstream;
  resolver: CachingResolver;
  host: string;
  port: number;
  clock: { t: number; link: boolean };
  stop(): Promise<void>;
}

export async function startRig(opts: { serveStaleMs?: number } = {}): Promise<Rig> {
  const zone = await startZoneUpstream('127.0.0.13');
  const clock = { t: 1_900_000_000_000, link: true };
  const hosts = parseHosts(LAN_HOSTS);
  const names = new Set(['gw.lan.test']);
  const allow = new NetworkList(['127.0.0.0/8']);
  const resolver = new CachingResolver({
    upstream: new Upstream([`127.0.0.13:${zone.port}`]),
    mayForward: () => clock.link,
    now: () => clock.t,
    serveStale: opts.serveStaleMs ?? 86_400_000,
    local: () => ({ names, hosts }),
  });
  const server = new DnsServer(resolver, () => allow, pino({ level: 'silent' }));
  const [bound] = await server.start(['127.0.0.15:0']);
  return {
    zone, resolver, clock, host: '127.0.0.15', port: bound.port,
    async stop() {
      await server.stop();
      await zone.close();
    },
  };
}
