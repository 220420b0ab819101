/**
 * delivery/resolver.ts — the one interface delivery resolves names through,
 * and the plain implementation over Node's dns module (until the built-in
 * link-gated resolver of SPEC §6 implements it). Used only by delivery,
 * never at intake. Errors say whether they are permanent (NXDOMAIN, null MX)
 * or temporary (timeouts, SERVFAIL).
 */
import dns from 'node:dns';
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

const PERMANENT = new Set(['ENOTFOUND', 'NXDOMAIN']);
const NODATA = new Set(['ENODATA', 'ENOTFOUND']);

export class NodeDnsResolver implements Resolver {
  private readonly r = new dns.promises.Resolver({ timeout: 10_000, tries: 2 });

  /** `upstream`: dns.upstream (host or host:port); empty: the system's resolv.conf. */
  constructor(upstream: readonly string[] = []) {
    if (upstream.length) this.r.setServers([...upstream]);
  }

  async resolveMx(domain: string) {
    try {
      return await this.r.resolveMx(domain);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'ENODATA') return [];
      if (PERMANENT.has(code)) throw new MailError(550, '5.1.2', `Host or domain name not found: ${domain}`, { cause: err });
      throw new MailError(451, '4.4.3', `Cannot look up MX of ${domain}: ${code}`, { cause: err });
    }
  }

  async resolveAddresses(host: string) {
    const out: string[] = [];
    let lastErr: unknown = null;
    for (const fn of [(h: string) => this.r.resolve4(h), (h: string) => this.r.resolve6(h)]) {
      try {
        out.push(...(await fn(host)));
      } catch (err) {
        if (!NODATA.has((err as NodeJS.ErrnoException).code ?? '')) lastErr = err;
      }
    }
    if (out.length) return out;
    if (lastErr) throw new MailError(451, '4.4.3', `Cannot look up ${host}: ${(lastErr as NodeJS.ErrnoException).code}`, { cause: lastErr });
    throw new MailError(550, '5.1.2', `Host or domain name not found: ${host}`);
  }
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
