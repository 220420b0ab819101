/**
 * cli/route.ts — `quietlink route ADDRESS...` and `sendmail -bt` (addresses
 * on stdin): where each address goes, computed from the configuration and
 * the classic files alone — no daemon, no DNS lookup: the mailertable entry
 * or smart host that matched, the mailer, the hosts in failover order,
 * link (and why) / expensive / holdUntilEtrn, the queue group, and whether
 * relaying to it is allowed from the LAN and from outside.
 *
 * The dns.hosts file (`dns.hosts`) is read as the daemon reads it, since a
 * name it maps into lanNetworks makes a LAN route; a file that cannot be
 * read is a warning on stderr and the routes are shown without it, as the
 * daemon would route them.
 */
import fs from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import type { ClassicMaps } from '../config/load.js';
import { EX, UsageError } from '../errors.js';
import { buildRouteTable, route } from '../routing/route.js';
import { groupFor } from '../queue/groups.js';
import { inDomainSet, openDomainsOf } from '../intake/relay-policy.js';
import { domainOf, isValidMailbox } from '../intake/address.js';
import { qualify } from '../intake/local-submission.js';
import { takeFlags } from './args.js';
import { parseHosts as parseHostsFile, type HostsMap } from '../dns/hosts-file.js';

export interface RouteReport {
  address: string;
  domain: string;
  via: string;
  key?: string;
  mailer: string;
  hosts: Array<{ host: string; port: number; mxLookup: boolean }>;
  link: boolean;
  /** Why link is yes or no, e.g. "[192.168.1.10] is inside lanNetworks". */
  linkReason: string;
  expensive: boolean;
  holdUntilEtrn: boolean;
  queueGroup: string;
  relayFromLan: boolean;
  relayFromOutside: boolean;
}

/** Pure: the report for one address. */
export function routeReport(address: string, config: Config, maps: ClassicMaps, hostsMap: HostsMap = new Map()): RouteReport {
  const table = buildRouteTable(config, maps.mailertable, maps.classes, hostsMap);
  const domain = domainOf(address);
  const r = route(domain, table);
  const open = openDomainsOf(config.smtp.localDomains, config.holdClasses, maps.classes);
  return {
    address, domain, via: r.via, key: r.key, mailer: r.mailer,
    hosts: r.hosts.map((h) => ({ host: h.host, port: h.port, mxLookup: h.mx })),
    ...(config.link.mode === 'permanent' ? { link: false, linkReason: 'link.mode permanent' } : { link: r.link, linkReason: r.linkReason }),
    expensive: r.expensive, holdUntilEtrn: r.holdUntilEtrn,
    queueGroup: groupFor(address, config.queue.groups),
    relayFromLan: true,
    relayFromOutside: inDomainSet(domain, open),
  };
}

function human(r: RouteReport): string {
  const matched = r.via === 'mailertable' || r.via === 'routes' ? `${r.via} entry "${r.key}"` : r.via === 'smartHost' ? 'smartHost' : `MX of ${r.domain} (no route matched)`;
  const hosts = r.hosts.map((h) => (h.mxLookup ? `${h.host} (MX lookup):${h.port}` : `[${h.host}]:${h.port}`)).join(', then ');
  const yn = (b: boolean) => (b ? 'yes' : 'no');
  return [
    `${r.address}`,
    `  matched:      ${matched}`,
    `  mailer:       ${r.mailer}`,
    `  hosts:        ${hosts}`,
    `  link: ${yn(r.link)} (${r.linkReason})   expensive: ${yn(r.expensive)}   holdUntilEtrn: ${yn(r.holdUntilEtrn)}`,
    `  queue group:  ${r.queueGroup}`,
    `  relay:        from the LAN (mynetworks) ${r.relayFromLan ? 'allowed' : 'denied'}, from outside ${r.relayFromOutside ? 'allowed' : 'denied'}`,
  ].join('\n');
}

/** The dns.hosts names, as the daemon loads them; unreadable is a warning, not a failure. */
export async function readHostsMap(config: Config): Promise<HostsMap> {
  if (!config.dns.hosts) return new Map();
  try {
    return parseHostsFile(await fs.readFile(config.dns.hosts, 'utf8'));
  } catch (err) {
    process.stderr.write(`quietlink: warning: cannot read dns.hosts ${config.dns.hosts}: ${(err as Error).message}; routes are shown without it\n`);
    return new Map();
  }
}

export async function printRoutes(addresses: readonly string[], config: Config, maps: ClassicMaps, json: boolean): Promise<number> {
  const valid = addresses.map((raw) => {
    const a = qualify(raw.trim().replace(/^<(.*)>$/, '$1'), config.hostname);
    if (!isValidMailbox(a)) throw new UsageError(`route: "${raw}" is not an address`);
    return a;
  });
  const hostsMap = await readHostsMap(config);
  const reports = valid.map((a) => routeReport(a, config, maps, hostsMap));
  process.stdout.write(json ? `${JSON.stringify(reports, null, 2)}\n` : `${reports.map(human).join('\n\n')}\n`);
  return EX.OK;
}

export async function runRoute(config: Config, argv: string[], maps: ClassicMaps): Promise<number> {
  const { '--json': json } = takeFlags(argv, ['--json']);
  if (!argv.length) throw new UsageError('route: give one or more addresses');
  return printRoutes(argv, config, maps, json);
}

/** `sendmail -bt`: addresses on stdin, one a line (a leading ruleset list such as "3,0" is skipped). */
export async function runAddressTest(config: Config, maps: ClassicMaps): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  const addresses = Buffer.concat(chunks).toString().split(/\r?\n/)
    .map((l) => l.trim().replace(/^[\d,]+\s+/, ''))
    .filter((l) => l && !l.startsWith('#') && !l.startsWith('/'));
  return printRoutes(addresses, config, maps, false);
}
