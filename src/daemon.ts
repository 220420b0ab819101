/**
 * daemon.ts — wires the modules together; nothing else. `quietlink start`
 * runs this in the foreground (systemd style).
 *
 * Start: configuration (exit 78 on errors) → control socket (refuses a second
 * daemon) → queue folders and recovery of interrupted writes → SMTP intake →
 * maildrop pickup → "ready" log line. SIGTERM/SIGINT: stop accepting, let
 * sessions in flight finish, exit 0.
 */
import fs from 'node:fs/promises';
import type { Logger } from 'pino';
import { loadAll } from './config/load.js';
import { ControlServer, type ControlHandler } from './control/server.js';
import { FsStore } from './queue/fs-store.js';
import { Queue } from './queue/queue.js';
import { IntakeJournal } from './queue/journal.js';
import { createIdGenerator, asQueueId } from './queue/queue-id.js';
import { summarize } from './queue/summary.js';
import type { Selection } from './queue/select.js';
import { SmtpIntake } from './intake/smtp-intake.js';
import { MaildropPickup } from './intake/maildrop-pickup.js';
import { createDaemonLogger } from './observability/logger.js';
import { UsageError } from './errors.js';

export interface DaemonHandle {
  log: Logger;
  stop(): Promise<void>;
}

function ids(args: Record<string, unknown>) {
  if (!Array.isArray(args.ids)) throw new UsageError('No queue IDs given');
  return args.ids.map((s) => asQueueId(String(s)));
}

export async function startDaemon(configFile: string): Promise<DaemonHandle> {
  const { config, maps } = await loadAll(configFile);
  const log = createDaemonLogger(config.log.level);
  const now = Date.now;
  const newId = createIdGenerator(now);
  await fs.mkdir(config.spool, { recursive: true, mode: 0o750 });
  const journal = new IntakeJournal(config.spool, {
    onError: (err) => log.error({ err: (err as Error).message }, 'intake journal write failed'),
  });
  const queue = new Queue(new FsStore(config.spool), { groups: config.queue.groups, log, now, journal });
  const pickup = new MaildropPickup({ spool: config.spool, hostname: config.hostname, queue, log, now });
  const startedAt = now();

  const openDomains = new Set<string>(config.smtp.localDomains);
  for (const cls of config.holdClasses) for (const d of maps.classes.get(cls) ?? []) openDomains.add(d);
  const intake = new SmtpIntake({ config, openDomains, queue, log, newId, now });

  const select = async (sel: Selection) => (await queue.list(sel)).map(summarize);
  const handlers = new Map<string, ControlHandler>([
    ['ping', async () => ({ pid: process.pid })],
    ['flush', async () => {
      log.info({ cause: 'operator' }, 'flush requested (the delivery engine is not built yet: mail stays queued)');
      return { started: false };
    }],
    ['pickup', async () => ({ picked: [...(await pickup.run()).keys()] })],
    ['mailq', async (args) => select(args.selection as Selection)],
    ['hold', async (args) => Promise.all(ids(args).map((id) => queue.hold(id, typeof args.reason === 'string' ? args.reason : undefined)))],
    ['release', async (args) => Promise.all(ids(args).map((id) => queue.release(id)))],
    ['quarantine', async (args) => {
      const reason = String(args.reason ?? '');
      const targets = args.selection ? (await queue.list(args.selection as Selection)).map((l) => l.env.id) : ids(args);
      for (const id of targets) await queue.quarantine(id, reason);
      return { changed: targets };
    }],
    ['status', async () => ({
      pid: process.pid,
      startedAt: new Date(startedAt).toISOString(),
      hostname: config.hostname,
      spool: config.spool,
      deliveryMode: config.deliveryMode,
      listen: bound,
      queue: await queue.counts(),
    })],
  ]);
  const control = new ControlServer(config.spool, handlers, log);
  await control.start();
  let bound: Array<{ host: string; port: number }> = [];
  try {
    await queue.init();
    await queue.replayJournal();
    const swept = await queue.recover();
    if (swept) log.info({ files: swept }, 'removed leftovers of interrupted writes');
    bound = await intake.start();
    await pickup.run();
  } catch (err) {
    await intake.stop().catch(() => undefined);
    await control.stop().catch(() => undefined);
    throw err;
  }
  log.info({ listen: bound, spool: config.spool, pid: process.pid }, 'ready');

  return {
    log,
    async stop() {
      log.info('stopping: no new connections, finishing sessions in flight');
      await intake.stop();
      await control.stop();
      await queue.close();
      await journal.close();
      log.info('stopped');
    },
  };
}
