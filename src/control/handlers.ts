/**
 * control/handlers.ts — what the daemon answers on its control socket (the
 * CLI's commands), and who may ask: reading the queue, flushing and
 * submitting are for everyone; commands that change the queue or the link
 * need root, the daemon's user or group quietlink-admin (control/protocol.ts
 * needsAdmin, proven by control/credentials.ts). Each handler only calls
 * the module that owns the state it touches; commands wait until the queue
 * is ready.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { ConfigError, UsageError, type ConfigProblem } from '../errors.js';
import type { ControlHandler } from './server.js';
import { needsAdmin } from './protocol.js';
import { credentialUid, PermissionError } from './credentials.js';
import { ADMIN_GROUP, mayAdminister } from './users.js';
import type { Queue } from '../queue/queue.js';
import { isQueueId, type QueueId } from '../queue/queue-id.js';
import { summarize } from '../queue/summary.js';
import { listingOf, mailqPieces } from '../queue/listing.js';
import type { Selection } from '../queue/select.js';
import type { QueueRunner, RunEvent } from '../scheduler/queue-runner.js';
import type { Windows } from '../scheduler/windows.js';
import type { LinkOwner } from '../link/link-owner.js';
import type { EtrnResult } from '../etrn/etrn-client.js';
import type { DeliveryWish, Submissions } from '../intake/submissions.js';
import type { Status } from '../observability/status.js';

export interface HandlerDeps {
  config: () => Config;
  log: Logger;
  now: () => number;
  queue: Queue;
  runner: QueueRunner;
  windows: Windows;
  link: LinkOwner;
  submissions: Submissions;
  status: Status;
  etrn: (relays: readonly string[], domains: readonly string[]) => Promise<EtrnResult | null>;
  /** Re-reads the configuration and the classic files: the problems, or null when it took. */
  reload: (reason: string) => Promise<ConfigProblem[] | null>;
  aliasCount: () => number;
  /** A daemonless run answers a flush only once its window is over. */
  standalone: boolean;
}

function ids(args: Record<string, unknown>) {
  if (!Array.isArray(args.ids)) throw new UsageError('No queue IDs given');
  const bad = args.ids.find((s) => !isQueueId(String(s)));
  if (bad !== undefined) throw new UsageError(`"${String(bad)}" is not a queue ID`);
  return args.ids.map((s) => String(s) as QueueId);
}

const WISHES: readonly DeliveryWish[] = ['interactive', 'background', 'queue', 'deferred'];

export function controlHandlers(d: HandlerDeps): Map<string, ControlHandler> {
  const { log, queue } = d;
  return new Map<string, ControlHandler>([
    ['ping', async () => ({ pid: process.pid })],
    ['flush', async (args, emit) => {
      const selection = (args.selection as Selection | undefined) ?? { selectors: [], quarantined: false };
      log.info({ cause: 'operator', selection: selection.selectors, dryRun: Boolean(args.dryRun) }, 'flush');
      if (args.dryRun) {
        // what a window would send, and where, without touching the network
        return d.runner.run({ trigger: { kind: 'flush', names: selection.selectors.length > 0 }, selection, dryRun: true, assumeLink: true });
      }
      const window = d.windows.request({ cause: 'operator', selection, onEvent: args.verbose ? (e: RunEvent) => emit(e) : undefined });
      if (!args.wait && !args.verbose && !d.standalone) {
        window.catch((err) => log.error({ err }, 'flush failed'));
        return { started: true };
      }
      return window;
    }],
    ['link', async (args) => {
      const state = args.state === 'up' ? 'up' : args.state === 'down' ? 'down' : null;
      if (!state) throw new UsageError('link: say up or down');
      const changed = d.link.report(state, 'operator', typeof args.iface === 'string' ? args.iface : undefined);
      return { ...d.link.current, changed };
    }],
    ['etrn', async (args) => {
      const c = d.config();
      const domains = Array.isArray(args.domains) && args.domains.length ? args.domains.map(String) : c.etrn.domains;
      const relay = typeof args.relay === 'string' ? [args.relay] : c.etrn.relay;
      if (!relay.length) throw new UsageError('etrn: no relay (set etrn.relay or give --relay HOST[:PORT])');
      if (!domains.length) throw new UsageError('etrn: no domains (set etrn.domains or name them)');
      return d.etrn(relay, domains);
    }],
    ['pickup', async (args) => {
      const name = typeof args.name === 'string' ? args.name : undefined;
      const result = await d.submissions.take(name, WISHES.find((m) => m === args.deliveryMode));
      const queued: Record<string, string[]> = {};
      const refused: string[] = [];
      for (const [n, got] of name ? [[name, d.submissions.outcome(name)] as const] : result) {
        if (got) queued[n] = got;
        else if (got === null) refused.push(n);
      }
      return { picked: Object.keys(queued), queued, refused };
    }],
    ['mailq', async (args, emit) => {
      const sel = args.selection as Selection;
      if (args.format !== 'text' && args.format !== 'groups') return (await queue.list(sel)).map(summarize);
      // the listing the queue keeps in memory: no file is read; right after a start the sweep is
      // still listing the queue: wait for it (seconds) rather than read every envelope twice
      const listed = ((await queue.listingReady) && queue.listed(sel)) || (await queue.list(sel)).map((l) => listingOf(l.env, l.place.state));
      if (args.format === 'groups') {
        // mailq -bP: entries per queue group
        const byGroup: Record<string, number> = {};
        for (const l of listed) byGroup[l.group] = (byGroup[l.group] ?? 0) + 1;
        return byGroup;
      }
      for (const text of mailqPieces(d.config().spool, listed, sel.quarantined)) await emit({ text });
      return { streamed: true };
    }],
    ['hold', async (args) => Promise.all(ids(args).map((id) => queue.hold(id, typeof args.reason === 'string' ? args.reason : undefined)))],
    ['release', async (args) => Promise.all(ids(args).map((id) => queue.release(id)))],
    ['quarantine', async (args) => {
      const reason = String(args.reason ?? '');
      const targets = args.selection ? (await queue.list(args.selection as Selection)).map((l) => l.env.id) : ids(args);
      for (const id of targets) await queue.quarantine(id, reason);
      return { changed: targets };
    }],
    ['status', async () => d.status.report()],
    // sendmail -bi / newaliases: the aliases (and every other classic file) now
    ['reload', async () => {
      const problems = await d.reload('newaliases');
      if (problems) throw new ConfigError(problems);
      return { reloaded: true, aliases: d.aliasCount() };
    }],
  ]);
}

/** Every handler waits for `ready`; admin commands first prove who asks (SPEC §11). */
export function gated(handlers: ReadonlyMap<string, ControlHandler>, ready: Promise<void>, spool: string, now: () => number): Map<string, ControlHandler> {
  return new Map([...handlers].map(([name, h]): [string, ControlHandler] => [name, async (args, emit) => {
    await ready;
    if (needsAdmin(name, args) && !(await mayAdminister(await credentialUid(spool, args.cred, now())))) {
      throw new PermissionError(`Permission denied: "${name}${name === 'etrn' ? ' --relay' : ''}" needs root or the ${ADMIN_GROUP} group`);
    }
    return h(args, emit);
  }]));
}
