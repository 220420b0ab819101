/**
 * delivery/deliverer.ts — delivers a batch of messages to one next hop.
 *
 * The route's hosts are expanded to addresses (delivery/resolver.ts); each
 * of up to `connections` workers opens a session, trying the addresses in
 * order (a refused connection or a 4xx/5xx greeting moves to the next: the
 * mailertable's comma failover and MX preference), and sends message after
 * message over it without waiting for the replies to the ones before
 * (pipelined: up to depthOf() messages in flight, delivery/hop-run.ts and
 * delivery/smtp-session.ts).
 * A connection that breaks is reopened for the next message; the messages
 * in flight on it without their final reply are deferred (never counted
 * delivered). When no address answers at all, every message of the hop not
 * yet sent is deferred with that reason. Results go to `onResult` as each
 * message finishes; the caller records them (scheduler/queue-runner.ts)
 * while the next messages are already on the wire.
 *
 * The workers and their connections are delivery/hop-run.ts (one HopRun a
 * call); this class keeps what outlives a hop: the connection counter and
 * the TLS sessions, and turns a hop that cannot be looked up into results.
 *
 * Connections are sized to the work: a second connection opens only when
 * more than HANDFUL messages wait per open one (a handful of messages go
 * down one connection), never more than `connections`. Over BDAT one
 * connection fills a line by itself; over DATA each message costs a round
 * trip on its connection (the wait for 354), so a slow long line wants as
 * many connections as messages fit in its bandwidth-delay product. When the next hop's
 * name cannot be looked up because the link is down (LinkDownError), the
 * messages are reported as waiting for the link, not as attempts.
 */
import type { Logger } from 'pino';
import type { AuthinfoEntry } from '../config/classic-files.js';
import type { Envelope, Recipient } from '../queue/envelope.js';
import type { Route } from '../routing/route.js';
import type { AttemptResult } from '../scheduler/apply-results.js';
import { LinkDownError, MailError } from '../errors.js';
import { expandHosts, type Resolver, type SelfIdentity, type Target } from './resolver.js';
import { SessionError, SmtpSession, type SessionEvent, type Timeouts } from './smtp-session.js';
import { TlsSessions } from './tls-sessions.js';
import type { JobQueue } from '../scheduler/job-queue.js';
import { HopRun, type HopOptions, type Job } from './hop-run.js';

export type { HopOptions, Job } from './hop-run.js';

export interface DelivererDeps {
  hostname: string;
  timeouts: Timeouts;
  authinfo: () => readonly AuthinfoEntry[];
  resolver: Resolver;
  log: Logger;
  readBody: (env: Envelope) => Promise<Buffer>;
  /** The gateway's own names and addresses: MX records naming them are pruned (loops). */
  self?: () => SelfIdentity;
}

function authFor(entries: readonly AuthinfoEntry[], t: Target): AuthinfoEntry | undefined {
  const name = t.name.toLowerCase();
  return entries.find((e) => e.host === name) ?? entries.find((e) => e.host === t.ip) ?? entries.find((e) => e.host === '');
}

/** Groups recipients that can share one transaction (same NOTIFY and ORCPT, as RCPT carries them). */
function transactions(rcpts: readonly Recipient[]): Recipient[][] {
  const groups = new Map<string, Recipient[]>();
  for (const r of rcpts) {
    const key = `${(r.notify ?? []).join(',')}|${r.orcpt ?? ''}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  // recipients without ORCPT share the same empty key: the common case is one transaction
  return [...groups.values()];
}

/** The deferral for the jobs of a hop whose name could not be looked up (a MailError keeps its codes). */
export function unresolvedReply(err: unknown): { code: number; text: string } {
  const e = err instanceof MailError ? err : new MailError(451, '4.4.3', `Cannot resolve the next hop: ${(err as Error).message}`);
  return { code: e.code, text: `${e.enhanced} ${e.message}` };
}

export class Deliverer {
  /** Numbers every connection attempt, for the dialogue's `conn` label. */
  private connections = 0;
  /** TLS sessions per next hop, kept from one window to the next (STARTTLS resumes them). */
  private readonly tlsSessions = new TlsSessions();

  constructor(private readonly deps: DelivererDeps) {}

  private async open(targets: readonly Target[], opts: HopOptions, firstConnection = false): Promise<SmtpSession> {
    let last: SessionError | null = null;
    for (const t of targets) {
      const conn = `c${++this.connections} ${t.ip.includes(':') ? `[${t.ip}]` : t.ip}:${t.port}`;
      const onEvent = opts.onEvent && ((e: SessionEvent) => opts.onEvent!({ ...e, conn }));
      try {
        return await SmtpSession.open(t, {
          hostname: this.deps.hostname,
          timeouts: this.deps.timeouts,
          firstConnection,
          authinfo: authFor(this.deps.authinfo(), t),
          tlsSessions: this.tlsSessions,
          onEvent,
        });
      } catch (err) {
        last = err instanceof SessionError ? err : new SessionError(String(err), 0, String(err), 'connect');
        this.deps.log.info({ relay: `${t.name} [${t.ip}]:${t.port}`, err: last.reply }, 'cannot use host, trying the next');
        onEvent?.({ dir: 'note', line: `${t.name} [${t.ip}]:${t.port}: ${last.reply}` });
      }
    }
    throw last ?? new SessionError('No host to deliver to', 0, 'no host', 'connect');
  }

  /**
   * Sends one message over a session without waiting for the messages sent
   * before it (they are pipelined); resolves when its results are in. A
   * transaction without its final reply when the connection failed counts as
   * not sent: 451, the message stays queued.
   */
  private async sendJob(session: SmtpSession, job: Job): Promise<AttemptResult[]> {
    const relay = `${session.target.name} [${session.target.ip}]`;
    let body: Buffer;
    try {
      body = await this.deps.readBody(job.env);
    } catch (err) {
      return job.rcpts.map((r) => ({ address: r.address, code: 451, text: `4.3.0 Cannot read the message: ${(err as Error).message}`, relay }));
    }
    const groups = transactions(job.rcpts);
    const sent = await Promise.allSettled(groups.map((group) => session.send({
      from: job.env.sender,
      to: group.map((r) => r.address),
      dsn: { ret: job.env.dsn.ret, envid: job.env.dsn.envid, notify: group[0].notify, orcpt: group[0].orcpt?.replace(/^rfc822;\s*/i, '') },
      size: body.length,
      use8BitMime: job.env.bodyType === '8BITMIME',
    }, body)));
    const results: AttemptResult[] = [];
    sent.forEach((s, i) => {
      if (s.status === 'fulfilled') {
        results.push(...s.value.map((r) => ({ ...r, relay, dsnPassed: session.supportsDsn })));
        return;
      }
      // the connection broke or timed out before this transaction's final reply: it waits
      const err = s.reason as SessionError;
      const timedOut = ((err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: unknown }).code) === 'ETIMEDOUT';
      const text = timedOut ? `4.4.2 Timeout waiting for reply to ${session.phase} from ${relay}` : `4.4.2 Connection to ${relay} lost: ${err.message}`;
      for (const r of groups[i]) results.push({ address: r.address, code: 451, text, relay });
    });
    return results;
  }

  /** The addresses of a route's hosts, in the order they are tried. */
  resolve(route: Route): Promise<Target[]> {
    return expandHosts(route.hosts, this.deps.resolver, this.deps.self?.());
  }

  /**
   * What makes two next hops one: the same addresses and ports, and the same
   * AUTH identity (authinfo is chosen by the first host's name), so merging
   * never sends one route's mail with another's credentials.
   */
  hopKey(targets: readonly Target[]): string {
    const auth = targets[0] ? authFor(this.deps.authinfo(), targets[0]) : undefined;
    return `${targets.map((t) => `${t.ip}:${t.port}`).join(',')}|${auth ? `${auth.host}:${auth.user ?? ''}` : ''}`;
  }

  /**
   * The hop's addresses, or null when there are none to try: then every job
   * of the source already has its result (waiting for the link when the
   * name could not be looked up because the link is down, else deferred).
   */
  private async targetsFor(route: Route, source: JobQueue<Job>, opts: HopOptions): Promise<Target[] | null> {
    try {
      if (opts.resolved instanceof Error) throw opts.resolved;
      return opts.resolved ?? await this.resolve(route);
    } catch (err) {
      const reply = err instanceof LinkDownError
        ? { code: err.code, text: `${err.enhanced} ${err.message}`, waitsForLink: true }
        : unresolvedReply(err);
      for (let job = await source.next(); job; job = await source.next()) {
        await opts.onResult(job, job.rcpts.map((r) => ({ address: r.address, ...reply })));
      }
      return null;
    }
  }

  /**
   * Delivers every job the source yields to the route's next hop; resolves
   * when the source is exhausted and every job has a result.
   */
  async deliverHop(route: Route, source: JobQueue<Job>, opts: HopOptions): Promise<{ connections: number; firstPacket?: number; lastPacket?: number }> {
    const targets = await this.targetsFor(route, source, opts);
    if (!targets) return { connections: 0 };
    const run = new HopRun(route, targets, opts, {
      log: this.deps.log,
      open: (t, o, first) => this.open(t, o, first),
      send: (session, job) => this.sendJob(session, job),
    });
    return run.run(source);
  }
}
