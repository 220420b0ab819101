/**
 * cli/route.ts — `quietlink route ADDRESS...` and `sendmail -bt` (addresses
 * on stdin): where each address goes, computed from the configuration and
 * the classic files alone — no daemon, no DNS lookup: the mailertable entry
 * or smart host that matched, the mailer, the hosts in failover order,
 * link / expensive / holdUntilEtrn, the queue group, and whether relaying to
 * it is allowed from the LAN and from outside.
 */
import type { Config } from '../config/schema.js';
import type { ClassicMaps } from '../config/load.js';
import { EX, UsageError } from '../errors.js';
import { buildRouteTable, route } from '../routing/route.js';
import { groupFor } from '../queue/groups.js';
import { inDomainSet, openDomainsOf } from '../intake/relay-policy.js';
import { domainOf, isValidMailbox } from '../intake/address.js';
import { qualify } from '../intake/local-submission.js';
import { takeFlags } from './args.js';

export interface RouteReport {
  address: string;
  domain: string;
  via: string;
  key?: string;
  mailer: string;
  hosts: Array<{ host: string; port: number; mxLookup: boolean }>;
  link: boolean;
  expensive: boolean;
  holdUntilEtrn: boolean;
  queueGroup: string;
  relayFromLan: boolean;
  relayFromOutside: boolean;
}

/** Pure: the report for one address. */
export function routeReport(address: string, config: Config, maps: ClassicMaps): RouteReport {
  const table = buildRouteTable(config, maps.mailertable, maps.classes);
  const domain = domainOf(address);
  const r = route(domain, table);
  const open = openDomainsOf(config.smtp.localDomains, config.holdClasses, maps.classes);
  return {
    address, domain, via: r.via, key: r.key, mailer: r.mailer,
    hosts: r.hosts.map((h) => ({ host: h.host, port: h.port, mxLookup: h.mx })),
    link: config.link.mode === 'permanent' ? false : r.link, expensive: r.expensive, holdUntilEtrn: r.holdUntilEtrn,
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
    `  link: ${yn(r.link)}   expensive: ${yn(r.expensive)}   holdUntilEtrn: ${yn(r.holdUntilEtrn)}`,
    `  queue group:  ${r.queueGroup}`,
    `  relay:        from the LAN (mynetworks) ${r.relayFromLan ? 'allowed' : 'denied'}, from outside ${r.relayFromOutside ? 'allowed' : 'denied'}`,
  ].join('\n');
}

export function printRoutes(addresses: readonly string[], config: Config, maps: ClassicMaps, json: boolean): number {
  const reports: RouteReport[] = [];
  for (const raw of addresses) {
    const a = qualify(raw.trim().replace(/^<(.*)>$/, '$1'), config.hostname);
    if (!isValidMailbox(a)) throw new UsageError(`route: "${raw}" is not an address`);
    reports.push(routeReport(a, config, maps));
  }
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
