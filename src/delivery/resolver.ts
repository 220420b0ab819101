/**
 * delivery/resolver.ts — the one interface delivery resolves names through
 * (implemented by the link-gated caching resolver, dns/caching-resolver.ts),
 * and the expansion of a route's hosts into addresses. Used only by
 * delivery, never at intake. Errors say whether they are permanent
 * (NXDOMAIN, null MX, an MX list that loops back here: 554 5.4.6) or
 * temporary (timeouts, SERVFAIL).
 *
 * Loops (SPEC §9): given the gateway's SelfIdentity, MX records that name it
 * (its hostname, a listen address, a name resolving to one) and all records
 * of the same or a worse preference are pruned. `[host]` and IP routes are
 * the administrator's explicit choice and are not pruned.
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
 * The gateway itself, for loop detection: its own names (hostname, ...) and
 * the addresses it listens on. An address entry is an IP (every port) or
 * `ip:port` / `[ipv6]:port` (that port only: tests and appliances run
 * several MTAs on one address).
 */
export interface SelfIdentity {
  names: ReadonlySet<string>;
  addresses: ReadonlySet<string>;
}

/** `ip:port`, `[v6]:port`: the key of one listener in SelfIdentity.addresses. */
export function addressKey(ip: string, port: number): string {
  return net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/**
 * The gateway's SelfIdentity from its hostname and its bound SMTP listeners;
 * a wildcard listener (0.0.0.0, ::) stands for every address of
 * `interfaces` (os.networkInterfaces(), passed in: this stays pure).
 */
export function selfIdentity(
  hostname: string,
  listeners: ReadonlyArray<{ host: string; port: number }>,
  interfaces: Readonly<Record<string, ReadonlyArray<{ address: string }> | undefined>> = {},
): SelfIdentity {
  const every = Object.values(interfaces).flatMap((list) => (list ?? []).map((i) => i.address.replace(/%.*$/, '')));
  const addresses = new Set<string>();
  for (const l of listeners) {
    const ips = l.host === '0.0.0.0' || l.host === '::' || l.host === '' ? every : [l.host];
    for (const ip of ips) addresses.add(addressKey(ip, l.port));
  }
  return { names: new Set([hostname.toLowerCase().replace(/\.$/, '')]), addresses };
}

function isSelfAddress(ip: string, port: number, self: SelfIdentity): boolean {
  const plain = ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
  return self.addresses.has(plain) || self.addresses.has(addressKey(plain, port));
}

function isSelfName(name: string, self: SelfIdentity): boolean {
  return self.names.has(name.toLowerCase().replace(/\.$/, ''));
}

/**
 * One bare name's targets (RFC 5321 §5.1): its MX hosts by preference, or
 * its own addresses when it has no MX (an implicit MX). With `self`, the
 * first preference that names the gateway (by name or by an address it
 * resolves to) and every one after it are dropped, as sendmail and Postfix
 * do: only better MX hosts are tried. None left: 554 5.4.6, since mail for
 * this domain would come back here for ever.
 */
async function expandMx(domain: string, port: number, resolver: Resolver, self: SelfIdentity | undefined, note: (err: unknown) => void): Promise<Target[]> {
  const mx = await resolver.resolveMx(domain);
  if (mx.length === 1 && (mx[0].exchange === '' || mx[0].exchange === '.')) {
    throw new MailError(556, '5.1.10', `Domain ${domain} does not accept mail (null MX)`);
  }
  const records = mx.length ? [...mx].sort((a, b) => a.priority - b.priority || a.exchange.localeCompare(b.exchange)) : [{ exchange: domain, priority: 0 }];
  const out: Target[] = [];
  for (let i = 0; i < records.length;) {
    const preference = records[i].priority;
    const level: Target[] = [];
    let isSelf = false;
    for (; i < records.length && records[i].priority === preference; i++) {
      const name = records[i].exchange;
      if (self && isSelfName(name, self)) { isSelf = true; continue; }
      try {
        for (const ip of await resolver.resolveAddresses(name)) {
          if (self && isSelfAddress(ip, port, self)) isSelf = true;
          level.push({ name, ip, port });
        }
      } catch (err) {
        note(err);
      }
    }
    if (isSelf) {
      if (!out.length) throw new MailError(554, '5.4.6', `mail for ${domain} loops back to myself`);
      return out;
    }
    out.push(...level);
  }
  return out;
}

/**
 * The addresses to try for a route's hosts, in order (RFC 5321 §5.1): an IP
 * needs no lookup; `[name]` is its addresses; a bare name is its MX hosts by
 * preference (pruned at the gateway itself when `self` is given), or its own
 * addresses when it has no MX; a null MX is a permanent failure. A host that
 * fails to resolve is skipped while others remain; if none resolves, a
 * temporary error is thrown before a loop (5.4.6) and that before any other
 * permanent one: a better MX that cannot be looked up now defers the mail.
 */
export async function expandHosts(hosts: readonly HostSpec[], resolver: Resolver, self?: SelfIdentity): Promise<Target[]> {
  const out: Target[] = [];
  let firstErr: unknown = null;
  let tempErr: unknown = null;
  let loopErr: unknown = null;
  const note = (err: unknown) => {
    firstErr ??= err;
    if (!(err instanceof MailError) || err.isTemporary) tempErr ??= err;
    else if (err.enhanced === '5.4.6') loopErr ??= err;
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
      out.push(...await expandMx(h.host, h.port, resolver, self, note));
    } catch (err) {
      if (err instanceof MailError && err.enhanced === '5.1.10') throw err;
      note(err);
    }
  }
  // one temporary failure among the lookups means "try again later", not "no such host";
  // a better MX that does not resolve says less than "the rest is myself"
  if (!out.length) throw tempErr ?? loopErr ?? firstErr ?? new MailError(451, '4.4.4', 'No host to deliver to');
  return out;
}
