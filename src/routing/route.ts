/**
 * routing/route.ts — recipient domain → route (SPEC §3), pure.
 *
 * Lookup for `user@a.b.c`: the keys `a.b.c`, `.b.c`, `.c`, `.` in that order;
 * for each key the inline `routes` list first, then the classic mailertable.
 * No match: `smartHost` (a list, tried in order), else the domain's MX.
 * Domains of the hold classes go through `qsmtp` with holdUntilEtrn, to the
 * host their own entry names or to their MX. A class entry `cust1.dom` holds
 * that domain only, `.cust1.dom` also its subdomains (sendmail's class
 * semantics, config/classic-files.ts matchesClass): an unlisted subdomain is
 * routed like any other domain (and intake refuses it from outside).
 *
 * Route properties: `link`, `expensive` (qsmtp, or set), `holdUntilEtrn`.
 * `link` is what an inline route sets; otherwise it is false only when every
 * host is reachable without the link: an IP literal inside lanNetworks, or a
 * name (bracketed or bare) that dns.hosts maps only to addresses inside
 * lanNetworks — the resolver answers such a name locally, and an MX query
 * for it gets no MX, so its own addresses are used (delivery/resolver.ts).
 * Any other name needs DNS over the link. `linkReason` says which rule
 * decided, in an administrator's words (`quietlink route` prints it).
 *
 * Callers: the queue runner and intake (through the daemon's table), and
 * `quietlink route`. The daemon rebuilds the table when the configuration,
 * a classic file or the dns.hosts file changes. A malformed host list
 * throws from parseHosts() when route() reaches it.
 */
import net from 'node:net';
import type { Config, MailerName } from '../config/schema.js';
import { classEntry, matchesClass, type MailertableEntry } from '../config/classic-files.js';
import { NetworkList } from '../config/cidr.js';
import type { HostsMap } from '../dns/hosts-file.js';

export interface HostSpec {
  /** Host name or IP address. */
  host: string;
  port: number;
  /** A bare host name: look up its MX (mailertable `host` without brackets). */
  mx: boolean;
}

export interface Route {
  domain: string;
  via: 'routes' | 'mailertable' | 'smartHost' | 'mx';
  /** The matching key (`a.b.c`, `.b.c`, `.`), when via routes or mailertable. */
  key?: string;
  mailer: MailerName;
  hosts: HostSpec[];
  link: boolean;
  /** Why `link` is what it is, e.g. "mailhost.office.example is 192.168.1.10 (dns.hosts), inside lanNetworks". */
  linkReason: string;
  expensive: boolean;
  holdUntilEtrn: boolean;
  /** One string per next hop: deliveries are grouped by it. */
  nexthop: string;
}

export interface RouteEntry {
  key: string;
  mailer: MailerName;
  hosts: string;
  link?: boolean;
  expensive?: boolean;
  holdUntilEtrn?: boolean;
}

export interface RouteTable {
  inline: ReadonlyMap<string, RouteEntry>;
  mailertable: ReadonlyMap<string, RouteEntry>;
  smartHost: readonly string[];
  lan: NetworkList;
  /** The dns.hosts names, which the resolver answers locally (no packet over the link). */
  lanHosts: HostsMap;
  /** Entries of the hold classes, as classEntry() writes them: `dom` (only dom) or `.dom` (dom and its subdomains). */
  holdDomains: ReadonlySet<string>;
}

const DEFAULT_PORT = 25;

/** `[a.example],[10.0.0.1]:587,mx.example` → host specs in failover order. */
export function parseHosts(list: string): HostSpec[] {
  return list.split(',').map((raw) => {
    const h = raw.trim();
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(h) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(h);
    if (!m) throw new Error(`Invalid host "${h}"`);
    const bracketed = h.startsWith('[');
    const host = m[1].replace(/^IPv6:/i, '');
    return { host, port: m[2] ? Number(m[2]) : DEFAULT_PORT, mx: !bracketed && net.isIP(host) === 0 };
  });
}

export function buildRouteTable(
  config: Config,
  mailertable: readonly MailertableEntry[],
  classes: ReadonlyMap<string, ReadonlySet<string>>,
  hostsMap: HostsMap = new Map(),
): RouteTable {
  const inline = new Map<string, RouteEntry>();
  for (const r of config.routes) {
    const mailer = (['relay', 'esmtp', 'smtp', 'qsmtp'] as const).find((m) => r[m] !== undefined)!;
    const key = r.domain.toLowerCase();
    if (!inline.has(key)) inline.set(key, { key, mailer, hosts: r[mailer]!, link: r.link, expensive: r.expensive, holdUntilEtrn: r.holdUntilEtrn });
  }
  const file = new Map<string, RouteEntry>();
  for (const e of mailertable) if (!file.has(e.key)) file.set(e.key, { key: e.key, mailer: e.mailer, hosts: e.hosts });
  const holdDomains = new Set<string>();
  for (const cls of config.holdClasses) for (const d of classes.get(cls) ?? []) holdDomains.add(classEntry(d));
  return { inline, mailertable: file, smartHost: config.smartHost, lan: new NetworkList(config.lanNetworks), lanHosts: hostsMap, holdDomains };
}

/** `a.b.c`, `.b.c`, `.c`, `.` */
export function lookupKeys(domain: string): string[] {
  const d = domain.toLowerCase().replace(/\.$/, '');
  const keys = [d];
  const labels = d.split('.');
  for (let i = 1; i < labels.length; i++) keys.push(`.${labels.slice(i).join('.')}`);
  keys.push('.');
  return keys;
}

/** Whether mail for `domain` is held until ETRN: it is in a hold class (exactly, or under a `.dom` entry). */
export function isHeld(domain: string, holdDomains: ReadonlySet<string>): boolean {
  return matchesClass(domain, holdDomains);
}

/** Whether one host needs the link, and why. */
function hostNeedsLink(h: HostSpec, table: RouteTable): { link: boolean; reason: string } {
  if (net.isIP(h.host) !== 0) {
    return { link: !table.lan.has(h.host), reason: `[${h.host}] is ${table.lan.has(h.host) ? 'inside' : 'outside'} lanNetworks` };
  }
  const entry = table.lanHosts.get(h.host.toLowerCase().replace(/\.$/, ''));
  const addresses = entry ? [...entry.a, ...entry.aaaa] : [];
  if (!addresses.length) return { link: true, reason: `${h.host} needs ${h.mx ? 'an MX' : 'a DNS'} lookup over the link` };
  const outside = addresses.filter((ip) => !table.lan.has(ip));
  const is = `${h.host} is ${addresses.join(' and ')} (dns.hosts)`;
  if (!outside.length) return { link: false, reason: `${is}, inside lanNetworks` };
  return { link: true, reason: `${is}, ${outside.join(' and ')} ${outside.length > 1 ? 'are' : 'is'} outside lanNetworks` };
}

/**
 * The link default of a route: needed when some host needs it (the reason
 * names the first such host); not needed when no host does (the reason
 * names every host, since each one had to qualify).
 */
function linkOf(hosts: readonly HostSpec[], table: RouteTable): { link: boolean; reason: string } {
  const verdicts = hosts.map((h) => hostNeedsLink(h, table));
  return verdicts.find((v) => v.link) ?? { link: false, reason: verdicts.map((v) => v.reason).join('; ') };
}

export function route(domain: string, table: RouteTable): Route {
  const d = domain.toLowerCase();
  const held = isHeld(d, table.holdDomains);
  let entry: RouteEntry | undefined;
  let via: Route['via'] = 'mx';
  for (const key of lookupKeys(d)) {
    // the catch-all "." does not apply to a held customer: its own entry or its MX
    if (held && key === '.') break;
    entry = table.inline.get(key);
    if (entry) { via = 'routes'; break; }
    entry = table.mailertable.get(key);
    if (entry) { via = 'mailertable'; break; }
  }
  let hosts: HostSpec[];
  let mailer: MailerName;
  if (entry) {
    hosts = parseHosts(entry.hosts);
    mailer = entry.mailer;
  } else if (!held && table.smartHost.length) {
    via = 'smartHost';
    hosts = table.smartHost.flatMap(parseHosts);
    mailer = 'relay';
  } else {
    via = 'mx';
    hosts = [{ host: d, port: DEFAULT_PORT, mx: true }];
    mailer = 'esmtp';
  }
  if (held) mailer = 'qsmtp';
  const { link, reason: linkReason } = entry?.link !== undefined
    ? { link: entry.link, reason: `set by the route (link: ${entry.link})` }
    : linkOf(hosts, table);
  const expensive = entry?.expensive ?? mailer === 'qsmtp';
  const holdUntilEtrn = held || (entry?.holdUntilEtrn ?? false);
  const nexthop = `${mailer}:${hosts.map((h) => `${h.mx ? '' : '['}${h.host}${h.mx ? '' : ']'}:${h.port}`).join(',')}`;
  return { domain: d, via, key: entry?.key, mailer, hosts, link, linkReason, expensive, holdUntilEtrn, nexthop };
}
