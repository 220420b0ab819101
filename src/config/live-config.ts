/**
 * config/live-config.ts — the configuration in force in a running gateway,
 * and the one owner of its change: the YAML and the classic files (routes,
 * classes, authinfo, aliases), dns.hosts, and what is built from them once
 * per configuration (the route table, the open domains, the recipient
 * lists, the LAN and DNS client lists). Everything else reads through the
 * getters, so it always sees the configuration of now.
 *
 * Changes: reload() on SIGHUP, on `newaliases` (the control socket), and
 * when a watched file changes (watch()). What may change now and what waits
 * for a restart is decided purely in config/reload.ts; a reload with any
 * problem keeps the old configuration whole and returns the problems.
 * Listeners of onReload() (the triggers' timers) hear of a reload that took.
 * A daemonless run (forStandalone) watches nothing and never reloads.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import type { Logger } from 'pino';
import { loadAll, type ClassicMaps } from './load.js';
import { mergeReload, type Reloaded } from './reload.js';
import type { Config } from './schema.js';
import { NetworkList } from './cidr.js';
import { formatProblem, type ConfigProblem } from '../errors.js';
import { buildRouteTable, parseHosts, type RouteTable } from '../routing/route.js';
import { openDomainsOf, recipientListsOf } from '../intake/relay-policy.js';
import { parseHosts as parseHostsFile, type HostsMap } from '../dns/hosts-file.js';

/** Daemonless use (SPEC §11 "No daemon at all", `flush --spool DIR`). */
export interface StandaloneOptions {
  spool?: string;
  logLevel?: string;
}

/** Pure: the configuration of a daemonless run — no listener at all, no timers, one window delivers. */
export function forStandalone(config: Config, opts: StandaloneOptions): Config {
  return {
    ...config,
    spool: opts.spool ?? config.spool,
    // the one window of the run delivers; maildrop pickup only queues
    deliveryMode: 'queue',
    smtp: { ...config.smtp, listen: [] },
    dns: { ...config.dns, listen: [] },
    // a run beside a daemon on the live spool must not clash with its ports
    metrics: { ...config.metrics, listen: undefined },
    flush: { ...config.flush, cron: [], interval: 0 },
    etrn: { ...config.etrn, poll: [] },
    queue: { ...config.queue, groups: config.queue.groups.map((g) => ({ ...g, interval: undefined })) },
  };
}

/** What is built from one configuration. */
interface Built {
  table: RouteTable;
  rcptLists: ReturnType<typeof recipientListsOf>;
  lan: NetworkList;
  dnsAllow: NetworkList;
}

const WATCH = { interval: 2000, persistent: false };

export class LiveConfig {
  /** localDomains plus the hold classes' domains: one set, updated in place (SMTP intake holds it). */
  readonly openDomains = new Set<string>();
  private hostsMap: HostsMap = new Map();
  private built!: Built;
  private readonly listeners: Array<(r: Reloaded) => void> = [];
  private watched: string[] = [];
  private readonly onHup = () => void this.reload('SIGHUP');

  private constructor(readonly file: string, private current: Config, private maps: ClassicMaps, readonly log: Logger) {
    this.rebuild();
  }

  /** Loads the file (ConfigError on problems) and, with `standalone`, makes it a daemonless run's. */
  static async load(file: string, log: (config: Config) => Logger, standalone?: StandaloneOptions): Promise<LiveConfig> {
    const { config, maps } = await loadAll(file);
    const c = standalone ? forStandalone(config, standalone) : config;
    const live = new LiveConfig(file, c, maps, log(c));
    await live.loadHosts();
    return live;
  }

  get config(): Config { return this.current; }
  get table(): RouteTable { return this.built.table; }
  get authinfo(): ClassicMaps['authinfo'] { return this.maps.authinfo; }
  get aliases(): ClassicMaps['aliases'] { return this.maps.aliases; }
  get classes(): ClassicMaps['classes'] { return this.maps.classes; }
  get recipientLists(): Built['rcptLists'] { return this.built.rcptLists; }
  /** dns.hosts names (the resolver answers them itself). */
  get hosts(): HostsMap { return this.hostsMap; }
  /** LAN clients: lanNetworks and smtp.mynetworks. */
  get lan(): NetworkList { return this.built.lan; }
  /** Who may ask the DNS server (dns.allow, or loopback and the LAN). */
  get dnsAllow(): NetworkList { return this.built.dnsAllow; }

  /** With a smart host and IP addresses everywhere, no route of a window needs DNS. */
  mayNeedDns(): boolean {
    const t = this.built.table;
    return t.smartHost.length === 0
      || [...t.smartHost, ...[...t.inline.values(), ...t.mailertable.values()].map((e) => e.hosts)]
        .some((list) => parseHosts(list).some((h) => net.isIP(h.host) === 0));
  }

  onReload(listener: (r: Reloaded) => void): void {
    this.listeners.push(listener);
  }

  /** Re-reads the configuration and the classic files; on any problem the old ones stay (and the problems are returned). */
  async reload(reason: string): Promise<ConfigProblem[] | null> {
    try {
      const next = await loadAll(this.file);
      // what is bound or opened at start stays until a restart; say so rather than pretend
      const merged = mergeReload(this.current, next.config);
      if (merged.fixed.length) this.log.warn({ keys: merged.fixed }, 'reload: changes to these take effect at the next restart (of dns, allow and hosts follow now)');
      this.current = merged.config;
      this.maps = next.maps;
      this.rebuild();
      for (const l of this.listeners) l(merged);
      this.log.info({ reason, routes: this.table.inline.size + this.table.mailertable.size, aliases: this.maps.aliases.size }, 'routes reloaded');
      return null;
    } catch (err) {
      const problems = (err as { problems?: ConfigProblem[] }).problems;
      if (problems) for (const p of problems) this.log.error({ reason }, `reload refused: ${formatProblem(p)}`);
      else this.log.error({ reason, err }, 'reload refused');
      return problems ?? [{ file: this.file, line: 0, message: (err as Error).message }];
    }
  }

  /** Reloads on SIGHUP and when the configuration, a classic file or dns.hosts changes. */
  watch(): void {
    const c = this.current;
    this.watched = [this.file, c.mailertable, c.authinfo, c.aliases, ...Object.values(c.classes).flatMap((k) => [k.file, k.recipients])]
      .filter((f): f is string => Boolean(f));
    for (const f of this.watched) fs.watchFile(f, WATCH, (cur, prev) => {
      if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino) void this.reload(`${f} changed`);
    });
    if (c.dns.hosts) fs.watchFile(c.dns.hosts, WATCH, () => void this.loadHosts());
    process.on('SIGHUP', this.onHup);
  }

  unwatch(): void {
    for (const f of this.watched) fs.unwatchFile(f);
    if (this.current.dns.hosts) fs.unwatchFile(this.current.dns.hosts);
    this.watched = [];
    process.off('SIGHUP', this.onHup);
  }

  /** dns.hosts: a name mapped into lanNetworks is a LAN route, so the routes are rebuilt with it. */
  private async loadHosts(): Promise<void> {
    const file = this.current.dns.hosts;
    if (!file) return;
    try {
      this.hostsMap = parseHostsFile(await fsp.readFile(file, 'utf8'));
      this.rebuild();
      this.log.info({ file, names: this.hostsMap.size }, 'dns.hosts loaded, routes rebuilt');
    } catch (err) {
      this.log.warn({ file, err }, 'cannot read dns.hosts');
    }
  }

  private rebuild(): void {
    const c = this.current;
    this.built = {
      table: buildRouteTable(c, this.maps.mailertable, this.maps.classes, this.hostsMap),
      rcptLists: recipientListsOf(this.maps.classes, this.maps.recipients),
      lan: new NetworkList([...c.lanNetworks, ...c.smtp.mynetworks]),
      dnsAllow: new NetworkList(c.dns.allow ?? ['127.0.0.0/8', '::1/128', ...c.lanNetworks]),
    };
    this.openDomains.clear();
    for (const d of openDomainsOf(c.smtp.localDomains, c.holdClasses, this.maps.classes)) this.openDomains.add(d);
  }
}
