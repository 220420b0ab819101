/**
 * control/handlers.ts — what the daemon answers on its control socket (the
 * CLI's commands), and who may ask: reading the queue, flushing and
 * submitting are for everyone; commands that change the queue or the link
 * need root, the daemon's user or group quietlink-admin (control/commands.ts,
 * proven by control/credentials.ts). Each handler only calls
 * the module that owns the state it touches; commands wait until the queue
 * is ready.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { ConfigError, UsageError, type ConfigProblem } from '../errors.js';
import type { ControlDispatch } from './server.js';
import { COMMANDS, countByGroup, isCommandName, needsAdmin, type ArgsOf, type CommandName, type EventOf, type ReplyOf } from './commands.js';
import { credentialUid, PermissionError } from './credentials.js';
import { ADMIN_GROUP, mayAdminister } from './users.js';
import { summarize } from '../queue/summary.js';
import { listingOf, mailqPieces, type Listed } from '../queue/listing.js';
import type { Selection } from '../queue/select.js';
import type { QueueRunner } from '../scheduler/queue-runner.js';
import type { Windows } from '../scheduler/windows.js';
import type { LinkOwner } from '../link/link-owner.js';
import type { EtrnResult } from '../etrn/etrn-client.js';
import type { Submissions } from '../intake/submissions.js';
import type { Status } from '../observability/status.js';
import type { QueueAdmin, QueueRead } from '../queue/roles.js';

export interface HandlerDeps {
  config: () => Config;
  log: Logger;
  queue: QueueAdmin;
  runner: QueueRunner;
  windows: Windows;
  link: LinkOwner;
  submissions: Submissions;
  status: Status;
  /** `odmr` true: an ODMR pull whatever etrn.mode says; undefined: etrn.mode decides. */
  etrn: (relays: readonly string[], domains: readonly string[], odmr?: true) => Promise<EtrnResult | null>;
  /** Re-reads the configuration and the classic files: the problems, or null when it took. */
  reload: (reason: string) => Promise<ConfigProblem[] | null>;
  aliasCount: () => number;
  /** A daemonless run answers a flush only once its window is over. */
  standalone: boolean;
}

/** One handler per command, typed by control/commands.ts. */
export type ControlHandlers = {
  [N in CommandName]: (args: ArgsOf<N>, emit: (event: EventOf<N>) => Promise<void>) => Promise<ReplyOf<N>>;
};

/** The listing the queue keeps in memory (no file read); right after a start, the sweep's own listing is awaited. */
async function listed(queue: QueueRead, sel: Selection): Promise<readonly Listed[]> {
  return ((await queue.listingReady) && queue.listed(sel)) || (await queue.list(sel)).map((l) => listingOf(l.env, l.place.state));
}

export function controlHandlers(d: HandlerDeps): ControlHandlers {
  const { log, queue } = d;
  return {
    ping: async () => ({ pid: process.pid }),
    flush: async ({ selection, dryRun, wait, verbose }, emit) => {
      log.info({ cause: 'operator', selection: selection.selectors, dryRun }, 'flush');
      // what a window would send, and where, without touching the network
      if (dryRun) return d.runner.run({ trigger: { kind: 'flush', names: selection.selectors.length > 0 }, selection, dryRun: true, assumeLink: true });
      const window = d.windows.request({ cause: 'operator', selection, onEvent: verbose ? (e) => void emit(e) : undefined });
      if (wait || verbose || d.standalone) return window;
      window.catch((err) => log.error({ err }, 'flush failed'));
      return { started: true };
    },
    link: async ({ state, iface }) => ({ ...d.link.current, changed: d.link.report(state, 'operator', iface) }),
    etrn: async (args) => {
      const c = d.config();
      const domains = args.domains.length ? args.domains : c.etrn.domains;
      const relay = args.relay !== undefined ? [args.relay] : c.etrn.relay;
      if (!relay.length) throw new UsageError('etrn: no relay (set etrn.relay or give --relay HOST[:PORT])');
      if (!domains.length) throw new UsageError('etrn: no domains (set etrn.domains or name them)');
      return d.etrn(relay, domains, args.odmr ? true : undefined);
    },
    pickup: async ({ name, deliveryMode }) => {
      const result = await d.submissions.take(name, deliveryMode);
      const queued: Record<string, ReturnType<Submissions['outcome']> & object> = {};
      const refused: string[] = [];
      for (const [n, got] of name ? [[name, d.submissions.outcome(name)] as const] : result) {
        if (got) queued[n] = got;
        else if (got === null) refused.push(n);
      }
      return { picked: Object.keys(queued), queued, refused };
    },
    mailq: async ({ selection }) => (await queue.list(selection)).map(summarize),
    'mailq-text': async ({ selection }, emit) => {
      for (const text of mailqPieces(d.config().spool, await listed(queue, selection), selection.quarantined)) await emit({ text });
      return { streamed: true };
    },
    'queue-groups': async ({ selection }) => countByGroup(d.config().queue.groups.map((g) => g.name), await listed(queue, selection)),
    hold: async ({ ids, reason }) => ({ changed: (await Promise.all(ids.map((id) => queue.hold(id, reason)))).map((e) => e.id) }),
    release: async ({ ids }) => ({ changed: (await Promise.all(ids.map((id) => queue.release(id)))).map((e) => e.id) }),
    quarantine: async ({ reason, ids, selection }) => {
      const targets = selection ? (await queue.list(selection)).map((l) => l.env.id) : ids ?? [];
      for (const id of targets) await queue.quarantine(id, reason);
      return { changed: targets };
    },
    status: async () => d.status.report(),
    reload: async () => {
      const problems = await d.reload('newaliases');
      if (problems) throw new ConfigError(problems);
      return { reloaded: true, aliases: d.aliasCount() };
    },
  };
}

/** Opens once the queue is ready: commands wait for it (the socket is taken earlier, so a second daemon fails early). */
export class Readiness {
  private open!: () => void;
  readonly ready = new Promise<void>((resolve) => (this.open = resolve));
  markReady(): void {
    this.open();
  }
}

/**
 * The server's dispatch: the command named and its arguments checked
 * (control/commands.ts: a bad one is 64), the queue ready, an admin
 * command's caller proven (SPEC §11), then the handler.
 */
export function gated(handlers: ControlHandlers, readiness: Readiness, spool: string, now: () => number): ControlDispatch {
  return async (cmd, raw, emit) => {
    if (!isCommandName(cmd)) throw new UsageError(`Unknown control command ${JSON.stringify(cmd)}`);
    const args = COMMANDS[cmd].parse(raw) as ArgsOf<typeof cmd>;
    await readiness.ready;
    if (needsAdmin(cmd, args) && !(await mayAdminister(await credentialUid(spool, raw.cred, now())))) {
      throw new PermissionError(`Permission denied: "${cmd}${cmd === 'etrn' ? ' --relay' : ''}" needs root or the ${ADMIN_GROUP} group`);
    }
    const handler = handlers[cmd] as (a: typeof args, e: (event: unknown) => Promise<void>) => Promise<unknown>;
    return handler(args, emit);
  };
}
