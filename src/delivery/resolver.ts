/**
 * delivery/resolver.ts — the one interface delivery resolves names through
 * (implemented by the link-gated caching resolver, dns/caching-resolver.ts),
 * and the expansion of a route's hosts into addresses. Used only by
 * delivery, never at intake. Errors say whether they are permanent
 * (NXDOMAIN, null MX) or temporary (timeouts, SERVFAIL).
 */
import net from 'node:net';
import { MailError } from '../errors.js';
import type { HostSpec } from '../routing/route.js';

export interface Resolver {
  /** MX records, any order; [] when the domain has none (then its own address is used). */
  resolveMx(domain: string): Promise<Array<{ exchange: string; priority: number }>>;
  /** IPv4 and IPv6 addresses of a host. */
  resolveAddresses(host: string): Promise<string[]>;
}

export interface Target {
  /** The name the host was known by (for logs, TLS SNI, authinfo). */
  name: string;
  ip: string;
  port: number;
}

/**
 * The addresses to try for a route's hosts, in order (RFC 5321 §5.1): an IP
 * needs no lookup; `[name]` is its addresses; a bare name is its MX hosts by
 * preference, or its own addresses when it has no MX; a null MX is a
 * permanent failure. A host that fails to resolve is skipped while others
 * remain; if none resolves, the first error is thrown.
 */
export async function expandHosts(hosts: readonly HostSpec[], resolver: Resolver): Promise<Target[]> {
  const out: Target[] = [];
  let firstErr: unknown = null;
  let tempErr: unknown = null;
  const note = (err: unknown) => {
    firstErr ??= err;
    if (!(err instanceof MailError) || err.isTemporary) tempErr ??= err;
  };
  for (const h of hosts) {
    try {
      if (net.isIP(h.host)) {
        out.push({ name: h.host, ip: h.host, port: h.port });
        continue;
      }
      if (!h.mx) {
        for (const ip of await resolver.resolveAddresses(h.host)) out.push({ name: h.host, ip, port: h.port });
        continue;
      }
      const mx = await resolver.resolveMx(h.host);
      if (mx.length === 1 && (mx[0].exchange === '' || mx[0].exchange === '.')) {
        throw new MailError(556, '5.1.10', `Domain ${h.host} does not accept mail (null MX)`);
      }
      const names = mx.length ? [...mx].sort((a, b) => a.priority - b.priority || a.exchange.localeCompare(b.exchange)).map((m) => m.exchange) : [h.host];
      for (const name of names) {
        try {
          for (const ip of await resolver.resolveAddresses(name)) out.push({ name, ip, port: h.port });
        } catch (err) {
          note(err);
        }
      }
    } catch (err) {
      if (err instanceof MailError && err.enhanced === '5.1.10') throw err;
      note(err);
    }
  }
  // one temporary failure among the lookups means "try again later", not "no such host"
  if (!out.length) throw tempErr ?? firstErr ?? new MailError(451, '4.4.4', 'No host to deliver to');
  return out;
}
