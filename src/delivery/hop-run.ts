/**
 * delivery/hop-run.ts — one run of delivery/deliverer.ts's deliverHop: the
 * jobs of one next hop, whose addresses are known, carried over up to
 * `connections` workers. Owns the hop's state for the run: the jobs taken
 * from the source and waiting for a connection (a few only, so the walk is
 * held back), the sessions open, whether the hop is unreachable, the link
 * seconds (first packet to last reply) and the results still being
 * recorded. Each worker takes a connection slot (HopOptions.acquire), opens
 * a session when it has a job, pipelines up to depthOf() messages on it and
 * lingers LINGER ms for more before it quits.
 *
 * Failures: a session that cannot be opened while others to the hop work
 * hands its job back to them; when no session can be opened at all the hop
 * is unreachable and every job left is deferred with that reason; a
 * transaction cut off without its final reply is deferred (451). The
 * decisions (how deep a pipeline, when another worker, when the walk waits,
 * the reply for an unreachable hop or a lost transaction) are the pure
 * functions below.
 */
import type { Logger } from 'pino';
import type { Envelope, Recipient } from '../queue/envelope.js';
import type { Route } from '../routing/route.js';
import type { AttemptResult } from '../scheduler/apply-results.js';
import type { JobQueue } from '../scheduler/job-queue.js';
import type { Target } from './resolver.js';
import type { SessionError, SessionEvent, SmtpSession } from './smtp-session.js';

export interface Job {
  env: Envelope;
  rcpts: Recipient[];
  /** The route's mailer, for the log. */
  mailer?: string;
  /** Milliseconds this attempt took (sendmail's xdelay), set by the deliverer. */
  xdelay?: number;
}

export interface HopOptions {
  /** At most this many sessions at once; read again before each new one (it may change during the run). */
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
  /** Each connection attempt's outcome, with the sessions then open to the hop (concurrency feedback). */
  onConnect?: (ok: boolean, alive: number) => void;
}

/** How long an idle connection waits for the run to bring more mail before it quits (ms). */
export const LINGER = 2000;
/**
 * Messages waiting per open connection before another connection is opened
 * (a handful of messages go down one connection), up to the hop's
 * concurrency (scheduler/destinations.ts: 4 at first, one more with each
 * connection it accepts, at most 20; queue.maxQueueChildren in all). Over
 * BDAT one connection fills a line; over DATA each message costs a round
 * trip on its connection, so a DATA-only hop on a long line wants more:
 * bench/wan, 100 messages of 2 KB on a 600 ms line to a DATA-only hop: 4
 * connections 3.66x the limit; with the growing concurrency 10, 2.19x; in a
 * copy with 32 connections (HANDFUL 2, both limits 32) 1.27x. A smaller
 * handful chosen by the measured set-up time was tried and dropped: on a
 * busy machine a LAN hop looked like a long line.
 */
export const HANDFUL = 8;

/**
 * Messages in flight on one connection (sent, final reply not in). Streaming
 * (BDAT over PIPELINING) nothing waits, and 32 small messages cover the
 * bandwidth-delay product of the lines in SPEC §14 (~38 KB on a satellite
 * line); with DATA each message waits for its 354, so one sent and the next
 * ready behind it are enough; without PIPELINING one at a time.
 */
export const depthOf = (s: { streams: boolean; pipelining: boolean }) => (s.streams ? 32 : s.pipelining ? 3 : 1);

/** Another worker starts when there is room for one and more than a handful of jobs wait per worker. */
export function needsAnotherWorker(workers: number, connections: number, pending: number): boolean {
  return workers < connections && pending > HANDFUL * workers;
}

/** The walk of the queue waits while a handful of jobs per connection wait here (and a worker will take them). */
export function isWalkHeldBack(pending: number, connections: number, workers: number): boolean {
  return pending >= connections * HANDFUL && workers > 0;
}

/** The deferral for a job of a hop no address answered (or every address refused). */
export function unreachableReply(e: { code: number; reply: string }): { code: number; text: string } {
  const code = e.code >= 400 && e.code < 600 ? Math.min(e.code, 499) : 451;
  return { code, text: e.code ? `4.4.1 All hosts refused: ${e.reply}` : `4.4.1 No host answered: ${e.reply}` };
}

/** What the deliverer gives a run: opening sessions to the hop's addresses and sending one job over one. */
export interface HopConnector {
  log: Logger;
  open(targets: readonly Target[], opts: HopOptions, firstConnection: boolean): Promise<SmtpSession>;
  send(session: SmtpSession, job: Job): Promise<AttemptResult[]>;
}

/** One worker's connection: its session and the messages sent on it whose results are not in yet. */
interface Connection {
  session: SmtpSession | null;
  inflight: Set<Promise<void>>;
}

export interface HopRunResult {
  connections: number;
  firstPacket?: number;
  lastPacket?: number;
}

export class HopRun {
  /** SPEC §14 link-seconds: from the first packet toward the hop to the last reply from it. */
  private firstPacket: number | undefined;
  private lastPacket: number | undefined;
  private opened = 0;
  private unreachable: SessionError | null = null;
  /** Sessions open right now on this hop. */
  private alive = 0;
  /** Jobs taken from the source, waiting for a connection. */
  private readonly pending: Job[] = [];
  private wake: (() => void) | null = null;
  private producing = true;
  private readonly recording = new Set<Promise<void>>();
  private readonly workers = new Set<Promise<void>>();

  constructor(
    private readonly route: Route,
    private readonly targets: readonly Target[],
    private readonly opts: HopOptions,
    private readonly hop: HopConnector,
  ) {}

  /** Carries every job the source yields; resolves when every job has a result. */
  async run(source: JobQueue<Job>): Promise<HopRunResult> {
    for (let job = await source.next(); job; job = await source.next()) {
      this.pending.push(job);
      this.signal();
      this.addWorkers();
      // hold the walk back: never more than a handful of jobs per connection waiting here
      while (isWalkHeldBack(this.pending.length, this.opts.connections, this.workers.size)) await Promise.race([...this.workers, this.waitForJob(LINGER)]);
    }
    this.producing = false;
    this.signal();
    // the last workers may have gone idle and quit: whatever is left gets one more
    while (this.pending.length) {
      if (!this.workers.size) this.startWorker();
      await Promise.race(this.workers);
    }
    await Promise.all(this.workers);
    while (this.recording.size) await Promise.all([...this.recording]);
    return { connections: this.opened, firstPacket: this.firstPacket, lastPacket: this.lastPacket };
  }

  /** As many more workers as the waiting jobs want and the hop's limit (which may have grown) allows. */
  private addWorkers(): void {
    while (needsAnotherWorker(this.workers.size, this.opts.connections, this.pending.length)) this.startWorker();
  }

  private startWorker(): void {
    const w: Promise<void> = this.worker().finally(() => this.workers.delete(w));
    this.workers.add(w);
  }

  private signal(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits up to `ms` for a job to appear in `pending`. */
  private waitForJob(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      const prev = this.wake;
      this.wake = () => {
        clearTimeout(t);
        prev?.();
        resolve();
      };
    });
  }

  private fail(job: Job, code: number, text: string): Promise<void> {
    return this.opts.onResult(job, job.rcpts.map((r) => ({ address: r.address, code, text })));
  }

  private failUnreachable(job: Job, e: SessionError): Promise<void> {
    const { code, text } = unreachableReply(e);
    return this.fail(job, code, text);
  }

  /** The first network failure of a link route may only mean the line is still dialing (DialDelay). */
  private async open(): Promise<SmtpSession> {
    const first = this.firstPacket === undefined;
    this.firstPacket ??= Date.now();
    try {
      return await this.hop.open(this.targets, this.opts, first);
    } catch (err) {
      const e = err as SessionError;
      if (e.code !== 0 || !(await this.opts.dialRetry?.(`${this.route.nexthop}: ${e.reply}`))) throw err;
      return this.hop.open(this.targets, this.opts, false);
    }
  }

  private async worker(): Promise<void> {
    const conn: Connection = { session: null, inflight: new Set() };
    const release = await this.opts.acquire();
    try {
      for (let job = await this.nextJob(conn); job; job = await this.nextJob(conn)) {
        if (await this.carry(conn, job) === 'quit') break;
      }
    } finally {
      await this.drop(conn);
      release();
    }
  }

  /** The next job for a worker once its pipeline has room, or null when none came within the linger. */
  private async nextJob(conn: Connection): Promise<Job | null> {
    // a full pipeline: take the next job when one of the messages in flight is done
    while (conn.session && conn.inflight.size >= depthOf(conn.session)) await Promise.race(conn.inflight);
    // a wake-up is for everyone: keep waiting until a job is there or the linger is over
    const deadline = Date.now() + LINGER;
    while (!this.pending.length && this.producing && Date.now() < deadline) await this.waitForJob(deadline - Date.now());
    const job = this.pending.shift();
    if (!job) {
      this.hop.log.debug({ nexthop: this.route.nexthop }, 'connection idle: closing');
      return null;
    }
    this.signal();
    return job;
  }

  /** One job on a worker's connection: deferred, or sent (opening a session first when needed). */
  private async carry(conn: Connection, job: Job): Promise<'next' | 'quit'> {
    if (this.unreachable) {
      await this.failUnreachable(job, this.unreachable);
      return 'next';
    }
    if (conn.session?.broken) await this.drop(conn);
    if (!conn.session && this.opts.mayConnect && !this.opts.mayConnect()) {
      // the window closed or lost its line: this message waits for the next, no attempt
      await this.opts.onResult(job, job.rcpts.map((r) => ({ address: r.address, code: 451, text: '4.4.1 Waiting for the link', waitsForLink: true })));
      return 'next';
    }
    const session = conn.session ?? await this.connect(conn, job);
    if (typeof session === 'string') return session;
    this.send(conn, session, job);
    return 'next';
  }

  /** Opens the worker's session; on failure the job goes back to the others, or the hop is unreachable. */
  private async connect(conn: Connection, job: Job): Promise<SmtpSession | 'next' | 'quit'> {
    try {
      const session = await this.open();
      conn.session = session;
      this.opened++;
      this.alive++;
      this.opts.onConnect?.(true, this.alive);
      // the hop answered: its limit may have grown
      this.addWorkers();
      this.hop.log.debug({ relay: `${session.target.name} [${session.target.ip}]:${session.target.port}`, pending: this.pending.length, chunking: session.streams }, 'connected');
      return session;
    } catch (err) {
      this.opts.onConnect?.(false, this.alive);
      if (this.alive > 0) {
        // other connections to this hop work (the host may limit connections):
        // hand the job back and let them carry it
        this.pending.unshift(job);
        this.signal();
        return 'quit';
      }
      this.unreachable = err as SessionError;
      await this.failUnreachable(job, this.unreachable);
      return 'next';
    }
  }

  /** Puts a job on the wire; its results are recorded while the next messages go out. */
  private send(conn: Connection, session: SmtpSession, job: Job): void {
    const sentAt = Date.now();
    const sending: Promise<void> = this.hop.send(session, job).then((results) => {
      this.lastPacket = Date.now();
      job.xdelay = this.lastPacket - sentAt;
      const rec: Promise<void> = this.opts.onResult(job, results)
        .catch((err) => this.hop.log.error({ qid: job.env.id, err }, 'cannot record results'))
        .finally(() => this.recording.delete(rec));
      this.recording.add(rec);
    }).finally(() => conn.inflight.delete(sending));
    conn.inflight.add(sending);
  }

  /** Waits for the connection's messages to settle, then forgets its session. */
  private async drop(conn: Connection): Promise<void> {
    while (conn.inflight.size) await Promise.all([...conn.inflight]);
    if (!conn.session) return;
    if (conn.session.broken) this.hop.log.debug({ nexthop: this.route.nexthop }, 'connection lost');
    this.alive--;
    conn.session.quit();
    conn.session = null;
  }
}
