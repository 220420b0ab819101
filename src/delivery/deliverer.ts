/**
 * delivery/deliverer.ts — delivers a batch of messages to one next hop.
 *
 * The route's hosts are expanded to addresses (delivery/resolver.ts); each
 * of up to `connections` workers opens a session, trying the addresses in
 * order (a refused connection or a 4xx/5xx greeting moves to the next: the
 * mailertable's comma failover and MX preference), and sends message after
 * message over it without waiting for the replies to the ones before
 * (pipelined: up to depthOf() messages in flight, delivery/smtp-session.ts).
 * A connection that breaks is reopened for the next message; the messages
 * in flight on it without their final reply are deferred (never counted
 * delivered). When no address answers at all, every message of the hop not
 * yet sent is deferred with that reason. Results go to `onResult` as each
 * message finishes; the caller records them (scheduler/queue-runner.ts)
 * while the next messages are already on the wire.
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

/** How long an idle connection waits for the run to bring more mail before it quits (ms). */
const LINGER = 2000;
/**
 * Messages waiting per open connection before another connection is opened
 * (a handful of messages go down one connection). Over BDAT one connection
 * fills a line; over DATA each message costs a round trip on its connection,
 * so a DATA-only hop on a long line wants more: bench/wan, 100 messages of
 * 2 KB on a 600 ms line to a DATA-only hop, in a copy with the
 * per-destination limit (scheduler/queue-runner.ts) at 20: HANDFUL 8 opened
 * 12 connections, 1.84x the limit; 4 opened 16 (queue.maxQueueChildren caps
 * it), 1.61x; 32 connections (both limits 32, HANDFUL 2) 1.27x. With the
 * limit at 4 the handful changes nothing for a window of 100.
 */
const HANDFUL = 8;
/**
 * Messages in flight on one connection (sent, final reply not in). Streaming
 * (BDAT over PIPELINING) nothing waits, and 32 small messages cover the
 * bandwidth-delay product of the lines in SPEC §14 (~38 KB on a satellite
 * line); with DATA each message waits for its 354, so one sent and the next
 * ready behind it are enough; without PIPELINING one at a time.
 */
const depthOf = (s: SmtpSession) => (s.streams ? 32 : s.pipelining ? 3 : 1);

export interface Job {
  env: Envelope;
  rcpts: Recipient[];
  /** The route's mailer, for the log. */
  mailer?: string;
  /** Milliseconds this attempt took (sendmail's xdelay), set by the deliverer. */
  xdelay?: number;
}

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

export interface HopOptions {
  connections: number;
  /** DialDelay (link routes in a window): after a connection no host answered, true when it is worth one more try. */
  dialRetry?: (what: string) => Promise<boolean>;
  /** The hop's addresses, looked up by the caller (who merges hops that reach the same ones), or why they could not be. */
  resolved?: Target[] | Error;
  /** Asked before each new connection of a link route: false once the window has lost the link (or closed). */
  mayConnect?: () => boolean;
  /** Takes one of the global connection slots (queue.maxQueueChildren); returns its release. */
  acquire: () => Promise<() => void>;
  onResult: (job: Job, results: AttemptResult[]) => Promise<void>;
  onEvent?: (e: SessionEvent & { qid?: string }) => void;
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

  private async failUnreachable(job: Job, e: SessionError, fail: (job: Job, code: number, text: string) => Promise<void>): Promise<void> {
    const code = e.code >= 400 && e.code < 600 ? Math.min(e.code, 499) : 451;
    await fail(job, code, e.code ? `4.4.1 All hosts refused: ${e.reply}` : `4.4.1 No host answered: ${e.reply}`);
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
   * Delivers every job the source yields to the route's next hop; resolves
   * when the source is exhausted and every job has a result.
   */
  async deliverHop(route: Route, source: JobQueue<Job>, opts: HopOptions): Promise<{ connections: number; firstPacket?: number; lastPacket?: number }> {
    let firstPacket: number | undefined;
    let lastPacket: number | undefined;
    const fail = async (job: Job, code: number, text: string, relay?: string) =>
      opts.onResult(job, job.rcpts.map((r) => ({ address: r.address, code, text, relay })));
    const failAll = async (code: number, text: string) => {
      for (let job = await source.next(); job; job = await source.next()) await fail(job, code, text);
    };
    let targets: Target[];
    try {
      if (opts.resolved instanceof Error) throw opts.resolved;
      targets = opts.resolved ?? await this.resolve(route);
    } catch (err) {
      if (err instanceof LinkDownError) {
        for (let job = await source.next(); job; job = await source.next()) {
          await opts.onResult(job, job.rcpts.map((r) => ({ address: r.address, code: err.code, text: `${err.enhanced} ${err.message}`, waitsForLink: true })));
        }
        return { connections: 0 };
      }
      const e = err instanceof MailError ? err : new MailError(451, '4.4.3', `Cannot resolve the next hop: ${(err as Error).message}`);
      await failAll(e.code, `${e.enhanced} ${e.message}`);
      return { connections: 0 };
    }
    let opened = 0;
    // SPEC §14 link-seconds: from the first packet toward the hop to the last reply from it
    let unreachable: SessionError | null = null;
    /** Sessions open right now on this hop. */
    let alive = 0;
    /** The first network failure of a link route may only mean the line is still dialing (DialDelay). */
    const open = async (): Promise<SmtpSession> => {
      const first = firstPacket === undefined;
      firstPacket ??= Date.now();
      try {
        return await this.open(targets, opts, first);
      } catch (err) {
        const e = err as SessionError;
        if (e.code !== 0 || !(await opts.dialRetry?.(`${route.nexthop}: ${e.reply}`))) throw err;
        return this.open(targets, opts);
      }
    };
    // jobs taken from the source, waiting for a connection; a few only, so the walk is held back
    const pending: Job[] = [];
    let wake: (() => void) | null = null;
    const signal = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    /** Waits up to `ms` for a job to appear in `pending`. */
    const waitForJob = (ms: number) => new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      const prev = wake;
      wake = () => {
        clearTimeout(t);
        prev?.();
        resolve();
      };
    });
    let producing = true;
    const recording = new Set<Promise<void>>();
    const worker = async () => {
      let session: SmtpSession | null = null;
      /** Messages sent on `session` whose results are not in yet. */
      const inflight = new Set<Promise<void>>();
      /** Waits for the session's messages to settle, then forgets it. */
      const drop = async () => {
        while (inflight.size) await Promise.all([...inflight]);
        if (!session) return;
        if (session.broken) this.deps.log.debug({ nexthop: route.nexthop }, 'connection lost');
        alive--;
        session.quit();
        session = null;
      };
      const release = await opts.acquire();
      try {
        for (;;) {
          // a full pipeline: take the next job when one of the messages in flight is done
          while (session && inflight.size >= depthOf(session)) await Promise.race(inflight);
          // a wake-up is for everyone: keep waiting until a job is there or the linger is over
          const deadline = Date.now() + LINGER;
          while (!pending.length && producing && Date.now() < deadline) await waitForJob(deadline - Date.now());
          const job = pending.shift();
          if (!job) {
            this.deps.log.debug({ nexthop: route.nexthop }, 'connection idle: closing');
            break;
          }
          signal();
          if (unreachable) {
            await this.failUnreachable(job, unreachable, fail);
            continue;
          }
          if (session?.broken) await drop();
          if (!session && opts.mayConnect && !opts.mayConnect()) {
            // the window closed or lost its line: this message waits for the next, no attempt
            await opts.onResult(job, job.rcpts.map((r) => ({ address: r.address, code: 451, text: '4.4.1 Waiting for the link', waitsForLink: true })));
            continue;
          }
          if (!session) {
            try {
              session = await open();
              opened++;
              alive++;
              this.deps.log.debug({ relay: `${session.target.name} [${session.target.ip}]:${session.target.port}`, pending: pending.length, chunking: session.streams }, 'connected');
            } catch (err) {
              if (alive > 0) {
                // other connections to this hop work (the host may limit connections):
                // hand the job back and let them carry it
                pending.unshift(job);
                signal();
                break;
              }
              unreachable = err as SessionError;
              await this.failUnreachable(job, unreachable, fail);
              continue;
            }
          }
          const sentAt = Date.now();
          const sending: Promise<void> = this.sendJob(session, job).then((results) => {
            lastPacket = Date.now();
            job.xdelay = lastPacket - sentAt;
            // the next messages go out while this one's results are written down
            const rec: Promise<void> = opts.onResult(job, results)
              .catch((err) => this.deps.log.error({ qid: job.env.id, err }, 'cannot record results'))
              .finally(() => recording.delete(rec));
            recording.add(rec);
          }).finally(() => inflight.delete(sending));
          inflight.add(sending);
        }
      } finally {
        await drop();
        release();
      }
    };
    const workers = new Set<Promise<void>>();
    for (let job = await source.next(); job; job = await source.next()) {
      pending.push(job);
      signal();
      if (workers.size < opts.connections && pending.length > HANDFUL * workers.size) {
        const w: Promise<void> = worker().finally(() => workers.delete(w));
        workers.add(w);
      }
      // hold the walk back: never more than a handful of jobs per connection waiting here
      while (pending.length >= opts.connections * HANDFUL && workers.size) await Promise.race([...workers, waitForJob(LINGER)]);
    }
    producing = false;
    signal();
    // the last workers may have gone idle and quit: whatever is left gets one more
    while (pending.length) {
      if (!workers.size) {
        const w: Promise<void> = worker().finally(() => workers.delete(w));
        workers.add(w);
      }
      await Promise.race(workers);
    }
    await Promise.all(workers);
    while (recording.size) await Promise.all([...recording]);
    return { connections: opened, firstPacket, lastPacket };
  }
}
