/**
 * daemon.ts — the composition root: builds the modules, connects them
 * through the small interfaces they take, starts them in order and stops
 * them in reverse; nothing else. `quietlink start` runs this in the
 * foreground (systemd style); `flush` without a daemon runs it standalone.
 *
 * Start: configuration (exit 78 on errors) → control socket (refuses a second
 * daemon) → queue folders, journal replay → SMTP intake → maildrop pickup →
 * "ready" → leftovers swept in the background, a first run for what
 * deliveryMode sends at once. SIGTERM/SIGINT: stop accepting, let sessions
 * in flight finish (bounded), settle the queue.
 *
 * Who owns what: config/live-config.ts the configuration in force and its
 * reload; queue/ a message's state; intake/cleanup.ts the path of new
 * messages; link/link-owner.ts the link; scheduler/ what goes now (windows,
 * triggers' timers, intake runs); control/ the commands. Two parts are
 * late-bound (late-bound.ts) because they are built after their callers.
 */
import os from 'node:os';
import fsp from 'node:fs/promises';
import type { Logger } from 'pino';
import { LiveConfig, type StandaloneOptions } from './config/live-config.js';
import { expandRecipient, localNames } from './config/aliases.js';
import { lateBound } from './late-bound.js';
import { Metrics, startMetricsServer } from './observability/metrics.js';
import { Status } from './observability/status.js';
import { createDaemonLogger, RecentProblems } from './observability/logger.js';
import { ControlServer } from './control/server.js';
import { controlHandlers, gated, Readiness } from './control/handlers.js';
import { userName } from './control/users.js';
import { spoolQueue } from './queue/spool.js';
import { createIdGenerator } from './queue/queue-id.js';
import type { Selection } from './queue/select.js';
import { Cleanup } from './intake/cleanup.js';
import { admission } from './intake/admission.js';
import { Submissions } from './intake/submissions.js';
import { SmtpIntake } from './intake/smtp-intake.js';
import { MaildropPickup } from './intake/maildrop-pickup.js';
import { selfIdentity } from './delivery/resolver.js';
import { Deliverer } from './delivery/deliverer.js';
import { Notices } from './delivery/notices.js';
import { CachingResolver } from './dns/caching-resolver.js';
import { Upstream } from './dns/upstream.js';
import { DnsServer } from './dns/dns-server.js';
import { systemNameservers } from './dns/system-nameservers.js';
import { QueueRunner, type RunEvent } from './scheduler/queue-runner.js';
import { Windows, type WindowRecord } from './scheduler/windows.js';
import { IntakeRuns } from './scheduler/intake-runs.js';
import { LinkOwner } from './link/link-owner.js';
import { Triggers } from './link/triggers.js';
import { WindowHistory } from './link/window-history.js';
import { EtrnServer } from './etrn/etrn-server.js';
import { EtrnRequests } from './etrn/etrn-requests.js';
import { startOdmrServer } from './odmr/server.js';
import { pullByOdmr } from './odmr/client.js';
import { runnerMetrics, windowRecorder } from './observability/gateway-metrics.js';

export type { StandaloneOptions };

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

/** The queue, the link, DNS and delivery: what every other part is built on. */
async function buildCore(live: LiveConfig, problems: RecentProblems, standalone: boolean) {
  const { config, log } = live;
  const now = Date.now;
  const metrics = new Metrics();
  await fsp.mkdir(config.spool, { recursive: true, mode: 0o750 });
  const queue = spoolQueue(config.spool, { groups: config.queue.groups, log, now, onJournalError: (err) => log.error({ err }, 'intake journal write failed') });
  // the link's one owner: state, dial/hangup, windows' link sessions, and every "may the link be used?"
  const link = new LinkOwner({ config: () => live.config, log, now, lan: () => live.lan, onDial: () => metrics.inc('quietlink_dials_total') });
  link.state.onChange((to, was) => log.info({ link: to.state, was: was.state, cause: to.cause, iface: to.iface }, 'link'));
  // the one DNS path of the gateway: the link-gated caching resolver (SPEC §6)
  const ownNames = new Set([config.hostname.toLowerCase(), 'localhost']);
  const resolver = new CachingResolver({
    upstream: new Upstream(config.dns.upstream.length ? config.dns.upstream : await systemNameservers(config.dns.listen)),
    mayForward: () => link.mayForwardDns(), dialRetry: (what) => link.dialRetry(what, 'dns'), now,
    serveStale: config.dns.serveStale, local: () => ({ names: ownNames, hosts: live.hosts }),
  });
  const bound: Array<{ host: string; port: number }> = [];
  const deliverer = new Deliverer({
    hostname: config.hostname, timeouts: { ...config.timeout, command: config.timeout.mail }, authinfo: () => live.authinfo, resolver, log,
    readBody: (env) => queue.readBody(env.id, env.size), self: () => selfIdentity(config.hostname, bound, os.networkInterfaces()),
  });
  const gates = admission({ config: () => live.config, metrics, cpus: os.availableParallelism() });
  // built after the runner that calls it: it needs the triggers' next window and the cleanup path
  const notices = lateBound<Notices>('notices');
  const runner = new QueueRunner({
    queue, deliverer, config: () => live.config, table: () => live.table, log, now,
    notify: (env, list, kind) => notices.get().queue(env, list, kind),
    linkAvailable: (trigger) => link.mayDeliver(trigger.kind === 'intake' ? 'intake' : 'window'),
    permanentLink: () => live.config.link.mode === 'permanent',
    loadGate: () => gates.loadGate(), ...runnerMetrics(metrics),
  });
  return { live, log, now, metrics, problems, queue, link, resolver, bound, runner, notices, gates, standalone, newId: createIdGenerator(now) };
}
type Core = Awaited<ReturnType<typeof buildCore>>;

/** New messages: the cleanup path, SMTP intake with its ETRN server, the maildrop pickup and the submissions. */
function buildIntake(c: Core) {
  const { live, log, now, queue, link, metrics, runner, newId } = c;
  const intakeRuns = new IntakeRuns((ids, mode) => runner.run({ trigger: { kind: 'intake' }, ids, deliveryMode: mode })
    .then(() => undefined, (err) => log.error({ err }, 'delivery after intake failed')));
  const cleanup = new Cleanup({
    queue, log, now, hostname: live.config.hostname,
    // the first delivery decision: deliveryMode (or the message's own -od wish); messages of one turn share a run
    dispatch: (envs, mode = live.config.deliveryMode) => {
      metrics.inc('quietlink_messages_accepted_total', { via: envs[0]?.client?.via ?? 'smtp' });
      const ip = envs[0]?.client?.via === 'smtp' ? envs[0].client.ip : undefined;
      if (ip) link.inbound('message', ip);
      if (mode === 'queue') return undefined;
      const run = intakeRuns.wake(envs.map((e) => e.id), mode);
      return mode === 'interactive' ? run : undefined;
    },
  });
  // a sendmail's request carries its own message's delivery wish (-odi/-odb/-odq) across the pickup
  const submissions = lateBound<Submissions>('submissions');
  const pickup = new MaildropPickup({
    spool: live.config.spool, queue, cleanup, log, now, newId, userName: (uid) => userName(uid),
    onQueued: (envs) => submissions.get().onQueued(envs),
    // the message and its JSON header line
    maxBytes: () => live.config.smtp.maxMessageSize + 1_048_576,
  });
  submissions.bind(new Submissions({ pickup: () => pickup.run(), outcome: (n) => pickup.outcome(n), afterIntake: (envs, wish) => cleanup.dispatch(envs, wish) }));
  const etrnServer = new EtrnServer({ config: () => live.config, holdDomains: () => live.table.holdDomains, queue, runner, log, now });
  const intake = new SmtpIntake({
    config: live.config, openDomains: live.openDomains, queue, log, newId, now, onQueued: (envs) => cleanup.dispatch(envs),
    expandRecipient: (address) => expandRecipient(address, live.aliases, localNames(live.config)),
    onSession: (event, ip) => link.inbound(event, ip),
    recipientLists: () => live.recipientLists,
    onEtrn: (arg, session, reply) => etrnServer.handle(arg, session, (code, text) => {
      metrics.inc('quietlink_etrn_received_total', { code: String(code) });
      reply(code, text);
    }),
    admitConnection: () => c.gates.admitConnection(), admitMessage: (size) => c.gates.admitMessage(size),
  });
  return { cleanup, pickup, submissions: submissions.get(), etrnServer, intake };
}
type Intake = ReturnType<typeof buildIntake>;

/** What goes when: ETRN requests, windows, their history and triggers; then status and the control handlers. */
async function buildSchedule(c: Core, i: Intake) {
  const { live, log, now, metrics, runner, link, resolver, queue } = c;
  const etrn = new EtrnRequests({
    config: () => live.config, resolver, log, onSent: (n) => metrics.inc('quietlink_etrn_sent_total', undefined, n),
    pullByOdmr: (relays, domains) => pullByOdmr(relays, domains, {
      hostname: live.config.hostname, timeoutMs: live.config.timeout.etrn, resolver, authinfo: () => live.authinfo, serve: (s) => i.intake.serve(s), log, metrics,
    }),
  });
  const history = new WindowHistory(live.config.spool, { onError: (err) => log.error({ err }, 'cannot append to windows.log') });
  await history.load();
  const recorder = windowRecorder(metrics, history);
  const windows = new Windows({
    runner, config: () => live.config, link, log, now, etrn: () => etrn.send(), prefetch: (names) => resolver.prefetch(names),
    onWindow: (w) => recorder.onWindow(w), mayNeedDns: () => live.mayNeedDns(),
  });
  const triggers = new Triggers({
    config: () => live.config, log, now, link: link.state,
    window: (req) => windows.request(req), groupRun: (group) => runner.run({ trigger: { kind: 'run' }, group }),
  });
  live.onReload((r) => r.rescheduled && triggers.schedule());
  c.notices.bind(new Notices({ config: () => live.config, queue, cleanup: i.cleanup, now, newId: c.newId, nextWindow: () => triggers.nextWindow() }));
  const status = new Status({
    config: () => live.config, table: () => live.table, queue, metrics, problems: c.problems, link, windows: () => windows,
    recentWindows: () => history.recent(), dns: resolver.counters, lastEtrn: () => i.etrnServer.last, listen: () => c.bound,
    nextWindow: () => triggers.nextWindow(), now, startedAt: now(), cpus: os.availableParallelism(),
  });
  const handlers = controlHandlers({
    config: () => live.config, log, queue, runner, windows, link, submissions: i.submissions, status, standalone: c.standalone,
    etrn: (relays, domains, odmr) => etrn.send(relays, domains, odmr), reload: (why) => live.reload(why), aliasCount: () => live.aliases.size,
  });
  return { windows, triggers, recorder, status, handlers };
}

export async function startDaemon(configFile: string, standalone?: StandaloneOptions): Promise<DaemonHandle> {
  const problems = new RecentProblems(10);
  const live = await LiveConfig.load(configFile, (cfg) => createDaemonLogger(standalone ? standalone.logLevel ?? 'warn' : cfg.log.level, standalone ? 2 : 1, problems), standalone);
  const core = await buildCore(live, problems, Boolean(standalone));
  const intake = buildIntake(core);
  const s = await buildSchedule(core, intake);
  const { log } = live;
  const { queue } = core;
  const { config } = live;
  // the socket is taken at once (a second daemon must fail early), but commands wait for the queue
  const readiness = new Readiness();
  const control = new ControlServer(config.spool, gated(s.handlers, readiness, config.spool, core.now), log);
  await control.start();
  try {
    // a journaled queue replays its journal here, before anything else touches the queue
    await queue.init();
    core.bound.push(...await intake.intake.start());
    readiness.markReady();
    await intake.pickup.run();
  } catch (err) {
    await intake.intake.stop().catch(() => undefined);
    await control.stop().catch(() => undefined);
    throw err;
  }
  const startedAt = core.now();
  const dnsServer = new DnsServer(core.resolver, () => live.dnsAllow, log);
  const dnsBound = await dnsServer.start(config.dns.listen);
  const odmrServer = standalone ? null : await startOdmrServer({
    queue, config: () => live.config, table: () => live.table, classes: () => live.classes, log, now: core.now,
    notify: (env, list, kind) => core.notices.get().queue(env, list, kind), metrics: core.metrics, etrnBusy: (d) => intake.etrnServer.isFlushing(d),
  });
  const metricsServer = config.metrics.listen ? await startMetricsServer(config.metrics.listen, () => s.status.scrape(), log) : null;
  // a daemonless run is over in a moment: it keeps the settings it was started with, and no timer runs
  if (!standalone) {
    live.watch();
    s.triggers.schedule();
    intake.pickup.startScan();
  }
  core.link.start();
  log.info({
    listen: core.bound, dns: dnsBound, metrics: metricsServer && { host: metricsServer.host, port: metricsServer.port },
    spool: config.spool, pid: process.pid, link: core.link.current.state,
  }, 'ready');
  // leftovers of writes a crash interrupted: swept in the background (a big queue must not delay the start)
  void queue.recover(startedAt).then((swept) => log.info({ files: swept }, 'leftovers swept'), (err) => log.error({ err }, 'sweeping leftovers failed'));
  // what was waiting for deliveryMode's "at once" when the daemon stopped goes now
  if (!standalone) void core.runner.run({ trigger: { kind: 'intake' } }).catch((err) => log.error({ err }, 'start-up run failed'));
  const stop = async () => {
    log.info('stopping: no new connections, finishing sessions in flight');
    s.triggers.stop();
    intake.pickup.stopScan();
    core.link.stop();
    // an open window ends now: no linger, no dial wait; its hangup still runs
    const windowClosed = s.windows.stop();
    await dnsServer.stop();
    await metricsServer?.close();
    live.unwatch();
    await intake.intake.stop();
    await odmrServer?.stop();
    // deliveries in flight finish and are written down (bounded: a hung next hop times out)
    await Promise.race([Promise.all([core.runner.stop(), windowClosed]), new Promise((r) => setTimeout(r, STOP_GRACE).unref())]);
    // a window still open after the grace: its line is hung up all the same (bounded by the hangup's own timeout)
    await core.link.close().catch(() => undefined);
    await s.recorder.written();
    await control.stop();
    await queue.close();
    log.info('stopped');
  };
  return {
    log, stop,
    flush: (selection, onEvent) => s.windows.request({ cause: 'operator', selection, onEvent }),
    remaining: async () => {
      const n = await queue.counts();
      return n.queued + n.held + n.quarantined;
    },
  };
}
