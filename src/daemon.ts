/**
 * daemon.ts — wires the modules together; nothing else. `quietlink start`
 * runs this in the foreground (systemd style).
 *
 * Start: configuration (exit 78 on errors) → control socket (refuses a second
 * daemon) → queue folders, journal replay, recovery of interrupted writes →
 * SMTP intake → maildrop pickup → "ready" log line → a first run for what
 * deliveryMode sends at once. SIGHUP, `newaliases` and a changed mailertable,
 * class, authinfo or aliases file reload the routes and the aliases. SIGTERM/SIGINT: stop accepting, let
 * sessions in flight finish, settle the queue, exit 0.
 */
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import fsp from 'node:fs/promises';
import type { Logger } from 'pino';
import { loadAll } from './config/load.js';
import { mergeReload } from './config/reload.js';
import type { Config } from './config/schema.js';
import { formatProblem, MailError, type ConfigProblem } from './errors.js';
import { expandRecipient, localNames } from './config/aliases.js';
import { readLoadAverage, refusesConnections, shouldQueue } from './intake/load-policy.js';
import { hasRoom, insufficientStorage } from './intake/disk-policy.js';
import { Metrics, startMetricsServer } from './observability/metrics.js';
import { Status } from './observability/status.js';
import { ControlServer } from './control/server.js';
import { controlHandlers, gated } from './control/handlers.js';
import { userName } from './control/users.js';
import { Submissions } from './intake/submissions.js';
import { FsStore } from './queue/fs-store.js';
import { Queue } from './queue/queue.js';
import { IntakeJournal } from './queue/journal.js';
import { createIdGenerator } from './queue/queue-id.js';
import type { Envelope } from './queue/envelope.js';
import type { Selection } from './queue/select.js';
import { SmtpIntake } from './intake/smtp-intake.js';
import { openDomainsOf, recipientListsOf } from './intake/relay-policy.js';
import { selfIdentity } from './delivery/resolver.js';
import { MaildropPickup } from './intake/maildrop-pickup.js';
import { buildRouteTable, type RouteTable } from './routing/route.js';
import { CachingResolver } from './dns/caching-resolver.js';
import { Upstream } from './dns/upstream.js';
import { DnsServer } from './dns/dns-server.js';
import { parseHosts as parseHostsFile, type HostsMap } from './dns/hosts-file.js';
import { NetworkList } from './config/cidr.js';
import { Deliverer } from './delivery/deliverer.js';
import { queueNotice } from './delivery/notices.js';
import { QueueRunner, type RunEvent } from './scheduler/queue-runner.js';
import type { Notice, NoticeKind } from './scheduler/apply-results.js';
import { LinkOwner } from './link/link-owner.js';
import { Triggers } from './link/triggers.js';
import { WindowHistory } from './link/window-history.js';
import { Windows, type WindowRecord } from './scheduler/windows.js';
import { IntakeRuns } from './scheduler/intake-runs.js';
import { sendEtrnToRelays, type EtrnResult } from './etrn/etrn-client.js';
import { EtrnServer } from './etrn/etrn-server.js';
import { startOdmrServer } from './odmr/server.js';
import { pullByOdmr } from './odmr/client.js';
import { parseHosts } from './routing/route.js';
import { createDaemonLogger, RecentProblems } from './observability/logger.js';

/** How long a stop waits for deliveries in flight (ms). */
const STOP_GRACE = 30_000;

export interface DaemonHandle {
  log: Logger;
  stop(): Promise<void>;
  /** One operator window, as `quietlink flush --wait` would ask for. */
  flush(selection: Selection, onEvent?: (e: RunEvent) => void): Promise<WindowRecord>;
  /** Messages left in the queue (every state but corrupt). */
  remaining(): Promise<number>;
}

/**
 * Daemonless use (SPEC §11 "No daemon at all", `flush --spool DIR`): the same
 * gateway without listeners, timers or a start-up run; its control socket in
 * the spool is the lock that keeps two runs apart. Logs go to stderr.
 */
export interface StandaloneOptions {
  spool?: string;
  logLevel?: string;
}

/** Nameservers of /etc/resolv.conf, when dns.upstream is empty (never our own listeners). */
async function systemNameservers(ownListen: readonly string[]): Promise<string[]> {
  const text = await fsp.readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const own = new Set(ownListen.map((l) => l.replace(/:\d+$/, '')));
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]).filter((ip) => !own.has(ip));
}

export async function startDaemon(configFile: string, standalone?: StandaloneOptions): Promise<DaemonHandle> {
  let { config, maps } = await loadAll(configFile);
  if (standalone) {
    config = {
      ...config,
      spool: standalone.spool ?? config.spool,
      // the one window of the run delivers; maildrop pickup only queues
      deliveryMode: 'queue',
      smtp: { ...config.smtp, listen: [] },
      dns: { ...config.dns, listen: [] },
      // no listener at all: a run beside a daemon on the live spool must not clash with its ports
      metrics: { ...config.metrics, listen: undefined },
      flush: { ...config.flush, cron: [], interval: 0 },
      etrn: { ...config.etrn, poll: [] },
      queue: { ...config.queue, groups: config.queue.groups.map((g) => ({ ...g, interval: undefined })) },
    };
  }
  const problems = new RecentProblems(10);
  const log = createDaemonLogger(standalone ? standalone.logLevel ?? 'warn' : config.log.level, standalone ? 2 : 1, problems);
  const metrics = new Metrics();

  const now = Date.now;
  const newId = createIdGenerator(now);
  await fsp.mkdir(config.spool, { recursive: true, mode: 0o750 });
  const journal = new IntakeJournal(config.spool, {
    onError: (err) => log.error({ err }, 'intake journal write failed'),
  });
  const queue = new Queue(new FsStore(config.spool), { groups: config.queue.groups, log, now, journal });
  const startedAt = now();
  // rebuilt with the dns.hosts names by loadHosts() below: a name mapped into lanNetworks is a LAN route
  let table: RouteTable = buildRouteTable(config, maps.mailertable, maps.classes);
  const openDomains = openDomainsOf(config.smtp.localDomains, config.holdClasses, maps.classes);
  let rcptLists = recipientListsOf(maps.classes, maps.recipients);
  let bound: Array<{ host: string; port: number }> = [];

  // the one DNS path of the gateway: the link-gated caching resolver (SPEC §6)
  let hostsMap: HostsMap = new Map();
  const loadHosts = async () => {
    if (!config.dns.hosts) return;
    try {
      hostsMap = parseHostsFile(await fsp.readFile(config.dns.hosts, 'utf8'));
      table = buildRouteTable(config, maps.mailertable, maps.classes, hostsMap);
      log.info({ file: config.dns.hosts, names: hostsMap.size }, 'dns.hosts loaded, routes rebuilt');
    } catch (err) {
      log.warn({ file: config.dns.hosts, err }, 'cannot read dns.hosts');
    }
  };
  await loadHosts();
  const ownNames = new Set([config.hostname.toLowerCase(), 'localhost']);
  // the link's one owner: state, dial/hangup, windows' link sessions, and every "may the link be used?"
  let lanClients: { of: Config; list: NetworkList } | null = null;
  const link = new LinkOwner({
    config: () => config, log, now,
    lan: () => {
      if (lanClients?.of !== config) lanClients = { of: config, list: new NetworkList([...config.lanNetworks, ...config.smtp.mynetworks]) };
      return lanClients.list;
    },
    onDial: () => metrics.inc('quietlink_dials_total'),
  });
  const resolver = new CachingResolver({
    upstream: new Upstream(config.dns.upstream.length ? config.dns.upstream : await systemNameservers(config.dns.listen)),
    mayForward: () => link.mayForwardDns(),
    dialRetry: (what) => link.dialRetry(what, 'dns'),
    now,
    serveStale: config.dns.serveStale,
    local: () => ({ names: ownNames, hosts: hostsMap }),
  });
  const deliverer = new Deliverer({
    hostname: config.hostname,
    timeouts: { ...config.timeout, command: config.timeout.mail },
    authinfo: () => maps.authinfo,
    resolver,
    log,
    readBody: (env) => queue.readBody(env.id, env.size),
    self: () => selfIdentity(config.hostname, bound, os.networkInterfaces()),
  });

  // notices (RFC 3464 DSNs) are queued like any message and sent as intake would
  const notify = (env: Envelope, notices: Notice[], kind: NoticeKind) => queueNotice({
    config, queue, log, now, newId, nextWindow: () => triggers.nextWindow(), afterIntake: (envs) => void afterIntake(envs),
  }, env, notices, kind);

  let windows!: Windows;
  const runner = new QueueRunner({
    queue, deliverer, config: () => config, table: () => table, log, now, notify,
    linkAvailable: (trigger) => windows.mayUseLink(trigger),
    permanentLink: () => config.link.mode === 'permanent',
    loadGate: () => {
      const load = readLoadAverage();
      const t = status.thresholds();
      if (!(load > t.queueLA)) return null;
      return (priority) => shouldQueue(load, priority, t);
    },
    onLoadQueued: () => metrics.inc('quietlink_load_queued_total'),
    onOutcomes: (n) => {
      metrics.inc('quietlink_recipients_delivered_total', undefined, n.delivered);
      metrics.inc('quietlink_recipients_deferred_total', undefined, n.deferred);
      metrics.inc('quietlink_recipients_bounced_total', undefined, n.bounced);
    },
  });

  /** ETRN for the given domains (default etrn.domains) to the given relay (default etrn.relay). */
  const etrn = async (relays: readonly string[] = config.etrn.relay, domains: readonly string[] = config.etrn.domains, odmr = config.etrn.mode === 'odmr'): Promise<EtrnResult | null> => {
    if (!relays.length || !domains.length) return null;
    const result = odmr
      ? await pullByOdmr(relays, domains, { hostname: config.hostname, timeoutMs: config.timeout.etrn, resolver, authinfo: () => maps.authinfo, serve: (s) => intake.serve(s), log, metrics })
      : await sendEtrnToRelays(relays, domains, config.hostname, config.timeout.etrn, resolver);
    if (result.replies.length) metrics.inc('quietlink_etrn_sent_total', undefined, result.replies.length);
    log.info({ relay: result.relay, replies: result.replies, offersEtrn: result.offersEtrn, error: result.error }, 'etrn sent');
    return result;
  };
  /** History lines still being written (a stop waits for them). */
  const appending = new Set<Promise<void>>();
  const history = new WindowHistory(config.spool, { onError: (err) => log.error({ err }, 'cannot append to windows.log') });
  await history.load();
  windows = new Windows({
    runner, config: () => config, link, log, now, etrn: () => etrn(),
    prefetch: (names) => resolver.prefetch(names),
    onWindow: (w) => {
      metrics.inc('quietlink_flush_windows_total', { cause: w.cause.replace(/^(cron|poll) .*/, '$1') });
      metrics.inc('quietlink_link_seconds_total', undefined, w.linkSeconds);
      if (w.dialed || (w.linkOpen && (w.connections > 0 || w.etrn))) metrics.inc('quietlink_link_wakeups_total');
      const appended: Promise<void> = history.append(w).finally(() => appending.delete(appended));
      appending.add(appended);
    },
    // with a smart host and IP addresses everywhere, no route of a window needs DNS
    mayNeedDns: () => table.smartHost.length === 0
      || [...table.smartHost, ...[...table.inline.values(), ...table.mailertable.values()].map((e) => e.hosts)]
        .some((list) => parseHosts(list).some((h) => net.isIP(h.host) === 0)),
  });
  link.state.onChange((nowState, before) => {
    log.info({ link: nowState.state, was: before.state, cause: nowState.cause, iface: nowState.iface }, 'link');
  });
  const triggers = new Triggers({
    config: () => config, log, now, link: link.state,
    window: (req) => windows.request(req),
    groupRun: (group) => runner.run({ trigger: { kind: 'run' }, group }),
  });

  /** What deliveryMode (or the message's own, sendmail -od) sends right after intake; interactive callers wait for it. */
  const afterIntake = (envs: Envelope[], mode: Config['deliveryMode'] = config.deliveryMode): Promise<void> | undefined => {
    metrics.inc('quietlink_messages_accepted_total', { via: envs[0]?.client?.via ?? 'smtp' });
    const ip = envs[0]?.client?.via === 'smtp' ? envs[0].client.ip : undefined;
    if (ip) link.inbound('message', ip);
    if (mode === 'queue') return undefined;
    const run = intakeRuns.wake(envs.map((e) => e.id), mode);
    return mode === 'interactive' ? run : undefined;
  };
  // messages of one turn of the event loop share one run (and its connections)
  const intakeRuns = new IntakeRuns((ids, mode) => runner.run({ trigger: { kind: 'intake' }, ids, deliveryMode: mode })
    .then(() => undefined, (err) => log.error({ err }, 'delivery after intake failed')));
  // a sendmail's request carries its own message's delivery wish (-odi/-odb/-odq) across the pickup
  let submissions!: Submissions;
  const pickup = new MaildropPickup({
    spool: config.spool, hostname: config.hostname, queue, log, now, newId, userName: (uid) => userName(uid),
    onQueued: (envs) => submissions.onQueued(envs),
    // the message and its JSON header line
    maxBytes: () => config.smtp.maxMessageSize + 1_048_576,
  });
  submissions = new Submissions({ pickup: () => pickup.run(), outcome: (n) => pickup.outcome(n), afterIntake });
  // the route table already holds the hold classes' domains (reloaded with it)
  const etrnServer = new EtrnServer({ config: () => config, holdDomains: () => table.holdDomains, queue, runner, log, now });
  const intake = new SmtpIntake({
    config, openDomains, queue, log, newId, now, onQueued: afterIntake,
    // aliases for local recipients (SPEC §11), as reloaded
    expandRecipient: (address) => expandRecipient(address, maps.aliases, localNames(config)),
    onSession: (event, ip) => link.inbound(event, ip),
    // classes.NAME.recipients (Postfix's relay_recipient_maps): 550 5.1.1 at RCPT
    recipientLists: () => rcptLists,
    onEtrn: (arg, session, reply) => etrnServer.handle(arg, session, (code, text) => {
      metrics.inc('quietlink_etrn_received_total', { code: String(code) });
      reply(code, text);
    }),
    // sendmail's RefuseLA: at or above it, new connections are turned away
    admitConnection: () => {
      const load = readLoadAverage();
      const t = status.thresholds();
      if (!refusesConnections(load, t)) return null;
      metrics.inc('quietlink_smtp_refused_total', { reason: 'load' });
      return new MailError(421, '4.3.2', `${config.hostname} Too busy (load average ${load.toFixed(2)} >= refuseLA ${t.refuseLA}), try again later`);
    },
    // sendmail's MinFreeBlocks: keep a reserve on the spool's file system
    admitMessage: (size) => {
      const sp = status.space();
      if (!sp || hasRoom(sp, config.queue.minFreeBlocks, size)) return null;
      metrics.inc('quietlink_smtp_refused_total', { reason: 'disk' });
      return insufficientStorage();
    },
  });

  /** Re-reads the configuration's routes and the classic files; on any problem the old ones stay (and are returned). */
  const reload = async (reason: string): Promise<ConfigProblem[] | null> => {
    try {
      const next = await loadAll(configFile);
      // what is bound or opened at start stays until a restart; say so rather than pretend
      const merged = mergeReload(config, next.config);
      if (merged.fixed.length) log.warn({ keys: merged.fixed }, 'reload: changes to these take effect at the next restart (of dns, allow and hosts follow now)');
      config = merged.config;
      maps = next.maps;
      table = buildRouteTable(config, maps.mailertable, maps.classes, hostsMap);
      openDomains.clear();
      for (const d of openDomainsOf(config.smtp.localDomains, config.holdClasses, maps.classes)) openDomains.add(d);
      rcptLists = recipientListsOf(maps.classes, maps.recipients);
      if (merged.rescheduled) triggers.schedule();
      log.info({ reason, routes: table.inline.size + table.mailertable.size, aliases: maps.aliases.size }, 'routes reloaded');
      return null;
    } catch (err) {
      const problems = (err as { problems?: ConfigProblem[] }).problems;
      if (problems) for (const p of problems) log.error({ reason }, `reload refused: ${formatProblem(p)}`);
      else log.error({ reason, err }, 'reload refused');
      return problems ?? [{ file: configFile, line: 0, message: (err as Error).message }];
    }
  };
  const watched = standalone ? [] : [configFile, config.mailertable, config.authinfo, config.aliases, ...Object.values(config.classes).flatMap((c) => [c.file, c.recipients])].filter((f): f is string => Boolean(f));
  for (const f of watched) fs.watchFile(f, { interval: 2000, persistent: false }, (cur, prev) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino) void reload(`${f} changed`);
  });
  const onHup = () => void reload('SIGHUP');
  // a daemonless run is over in a moment and keeps the settings it was started with
  if (!standalone) process.on('SIGHUP', onHup);

  triggers.schedule();

  const status = new Status({
    config: () => config, table: () => table, queue, metrics, problems, link, windows: () => windows, recentWindows: () => history.recent(), dns: resolver.counters,
    lastEtrn: () => etrnServer.last, listen: () => bound, nextWindow: () => triggers.nextWindow(), now, startedAt, cpus: os.availableParallelism(),
  });
  // the socket is taken at once (a second daemon must fail early), but commands wait for the queue
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const handlers = controlHandlers({
    config: () => config, log, now, queue, runner, windows, link, submissions, status, standalone: Boolean(standalone),
    etrn: (relays, domains) => etrn(relays, domains), reload, aliasCount: () => maps.aliases.size,
  });
  const control = new ControlServer(config.spool, gated(handlers, ready, config.spool, now), log);
  await control.start();
  try {
    await queue.init();
    await queue.replayJournal();
    bound = await intake.start();
    markReady();
    await pickup.run();
  } catch (err) {
    await intake.stop().catch(() => undefined);
    await control.stop().catch(() => undefined);
    throw err;
  }
  // built once per configuration, not per packet
  let dnsAllow: { of: Config; list: NetworkList } | null = null;
  const dnsAllowList = () => {
    if (dnsAllow?.of !== config) dnsAllow = { of: config, list: new NetworkList(config.dns.allow ?? ['127.0.0.0/8', '::1/128', ...config.lanNetworks]) };
    return dnsAllow.list;
  };
  const dnsServer = new DnsServer(resolver, dnsAllowList, log);
  const dnsBound = await dnsServer.start(config.dns.listen);
  const odmrServer = standalone ? null : await startOdmrServer({ queue, config: () => config, table: () => table, classes: () => maps.classes, log, now, notify, metrics, etrnBusy: (d) => etrnServer.isFlushing(d) });
  const metricsServer = config.metrics.listen ? await startMetricsServer(config.metrics.listen, () => status.scrape(), log) : null;
  if (config.dns.hosts) fs.watchFile(config.dns.hosts, { interval: 2000, persistent: false }, () => void loadHosts());
  link.start();
  if (!standalone) pickup.startScan();
  log.info({
    listen: bound, dns: dnsBound, metrics: metricsServer && { host: metricsServer.host, port: metricsServer.port },
    spool: config.spool, pid: process.pid, link: link.current.state,
  }, 'ready');
  // leftovers of writes a crash interrupted: swept in the background (a big queue must not delay the start)
  void queue.recover(startedAt).then(
    (swept) => log.info({ files: swept }, 'leftovers swept'),
    (err) => log.error({ err }, 'sweeping leftovers failed'),
  );
  // what was waiting for deliveryMode's "at once" when the daemon stopped goes now
  if (!standalone) void runner.run({ trigger: { kind: 'intake' } }).catch((err) => log.error({ err }, 'start-up run failed'));

  return {
    log,
    flush: (selection, onEvent) => windows.request({ cause: 'operator', selection, onEvent }),
    async remaining() {
      const c = await queue.counts();
      return c.queued + c.held + c.quarantined;
    },
    async stop() {
      log.info('stopping: no new connections, finishing sessions in flight');
      triggers.stop();
      pickup.stopScan();
      link.stop();
      // an open window ends now: no linger, no dial wait; its hangup still runs
      const windowClosed = windows.stop();
      await dnsServer.stop();
      await metricsServer?.close();
      if (config.dns.hosts) fs.unwatchFile(config.dns.hosts);
      for (const f of watched) fs.unwatchFile(f);
      process.off('SIGHUP', onHup);
      await intake.stop();
      await odmrServer?.stop();
      // deliveries in flight finish and are written down (bounded: a hung next hop times out)
      await Promise.race([Promise.all([runner.stop(), windowClosed]), new Promise((r) => setTimeout(r, STOP_GRACE).unref())]);
      // a window still open after the grace: its line is hung up all the same (bounded by the hangup's own timeout)
      await link.close().catch(() => undefined);
      await Promise.all([...appending]);
      await control.stop();
      await queue.close();
      await journal.close();
      log.info('stopped');
    },
  };
}
