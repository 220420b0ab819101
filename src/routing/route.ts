/**
 * routing/route.ts — recipient domain → route (SPEC §3), pure.
 *
 * Lookup for `user@a.b.c`: the keys `a.b.c`, `.b.c`, `.c`, `.` in that order;
 * for each key the inline `routes` list first, then the classic mailertable.
 * No match: `smartHost` (a list, tried in order), else the domain's MX.
 * Domains of the hold classes (and their subdomains) go through `qsmtp`
 * with holdUntilEtrn, to the host their own entry names or to their MX.
 *
 * Route properties: `link` (default: some host is outside lanNetworks, or
 * needs DNS), `expensive` (qsmtp, or set), `holdUntilEtrn`.
 */
import net from 'node:net';
import type { Config, MailerName } from '../config/schema.js';
import type { MailertableEntry } from '../config/classic-files.js';
import { NetworkList } from '../config/cidr.js';

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
  /** Domains of the hold classes (a leading dot not needed: subdomains are included). */
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

export function buildRouteTable(config: Config, mailertable: readonly MailertableEntry[], classes: ReadonlyMap<string, ReadonlySet<string>>): RouteTable {
  const inline = new Map<string, RouteEntry>();
  for (const r of config.routes) {
    const mailer = (['relay', 'esmtp', 'smtp', 'qsmtp'] as const).find((m) => r[m] !== undefined)!;
    const key = r.domain.toLowerCase();
    if (!inline.has(key)) inline.set(key, { key, mailer, hosts: r[mailer]!, link: r.link, expensive: r.expensive, holdUntilEtrn: r.holdUntilEtrn });
  }
  const file = new Map<string, RouteEntry>();
  for (const e of mailertable) if (!file.has(e.key)) file.set(e.key, { key: e.key, mailer: e.mailer, hosts: e.hosts });
  const holdDomains = new Set<string>();
  for (const cls of config.holdClasses) for (const d of classes.get(cls) ?? []) holdDomains.add(d.replace(/^\./, ''));
  return { inline, mailertable: file, smartHost: config.smartHost, lan: new NetworkList(config.lanNetworks), holdDomains };
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

function isHeld(domain: string, holdDomains: ReadonlySet<string>): boolean {
  for (const key of lookupKeys(domain)) if (key !== '.' && holdDomains.has(key.replace(/^\./, ''))) return true;
  return false;
}

/** Whether reaching these hosts needs the link: any host that is a name, or an IP outside lanNetworks. */
function needsLink(hosts: readonly HostSpec[], lan: NetworkList): boolean {
  return hosts.some((h) => net.isIP(h.host) === 0 || !lan.has(h.host));
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
  const link = entry?.link ?? needsLink(hosts, table.lan);
  const expensive = entry?.expensive ?? mailer === 'qsmtp';
  const holdUntilEtrn = held || (entry?.holdUntilEtrn ?? false);
  const nexthop = `${mailer}:${hosts.map((h) => `${h.mx ? '' : '['}${h.host}${h.mx ? '' : ']'}:${h.port}`).join(',')}`;
  return { domain: d, via, key: entry?.key, mailer, hosts, link, expensive, holdUntilEtrn, nexthop };
}
