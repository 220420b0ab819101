/**
 * odmr/reverse-delivery.ts — after `250 OK now reversing the connection`
 * (ISP side, RFC 2645 §5.3): the held mail for the taken domains goes down
 * the customer's own connection, through the same engine as every other
 * delivery — a QueueRunner run (locks, results folded into the envelopes,
 * DSNs, the per-recipient log lines `Sent`/`Deferred`/`Failed`) handing
 * its one next hop to a Deliverer (pipelining, BDAT, timeouts).
 *
 * The Deliverer opens its sessions with nodemailer by address and port; it
 * cannot be handed a socket. So the customer's connection is offered on a
 * one-shot loopback port (`bridge`): the first connection to it is spliced
 * to the customer's socket, byte for byte, and the port is closed at once.
 * The engine waits for the customer's 220 banner, says EHLO, delivers and
 * QUITs as with any next hop; STARTTLS is not needed (the customer's
 * connection is TLS already) and is only done if the customer offers it.
 *
 * Only one connection ever: the hop has one connection slot, and once it is
 * gone (the customer hung up, a timeout) every message not yet sent is
 * reported as waiting (`waitsForLink`: no attempt counted, still queued for
 * the next ATRN); a message whose final reply did not come is deferred by
 * the engine (451, still queued, never delivered). Nothing is lost.
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { Deliverer, type HopOptions, type Job } from '../delivery/deliverer.js';
import type { Resolver, Target } from '../delivery/resolver.js';
import type { Envelope } from '../queue/envelope.js';
import { domainOf } from '../intake/address.js';
import { QueueRunner, type RunSummary, type RunnerDeps } from '../scheduler/queue-runner.js';
import type { JobQueue } from '../scheduler/job-queue.js';
import type { Route } from '../routing/route.js';
import { takenBy } from './policy.js';

/** The customer's connection is given, never looked up. */
const NO_LOOKUPS: Resolver = {
  resolveMx: () => Promise.reject(new Error('no lookups in an ODMR session')),
  resolveAddresses: () => Promise.reject(new Error('no lookups in an ODMR session')),
};

/** What a reverse delivery is built from: the runner's own dependencies, minus the parts that differ. */
export type ReverseDeps = Omit<RunnerDeps, 'deliverer' | 'linkAvailable' | 'permanentLink' | 'loadGate' | 'onLoadQueued'> & {
  readBody: (env: Envelope) => Promise<Buffer>;
};

/**
 * Offers `socket` (with `leftover`, the bytes already read from it) on a
 * one-shot loopback port; resolves with the port. `gone` resolves when
 * either side has closed.
 */
export async function bridge(socket: Socket, leftover: Buffer, log: Logger): Promise<{ target: Target; gone: Promise<void>; close(): void }> {
  const server = net.createServer({ allowHalfOpen: false });
  let inner: Socket | null = null;
  let resolveGone!: () => void;
  const gone = new Promise<void>((resolve) => (resolveGone = resolve));
  const close = () => {
    server.close();
    inner?.destroy();
    socket.destroy();
    resolveGone();
  };
  server.on('connection', (c) => {
    if (inner) return void c.destroy();
    inner = c;
    server.close();
    c.on('error', (err) => log.debug({ err }, 'odmr: bridge closed'));
    c.on('close', close);
    socket.on('close', close);
    if (leftover.length) c.write(leftover);
    c.pipe(socket);
    socket.pipe(c);
    socket.resume();
  });
  socket.on('error', (err) => log.info({ err }, 'odmr: customer connection failed'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return { target: { name: 'odmr-customer', ip: '127.0.0.1', port }, gone, close };
}

/**
 * Delivers every queued message with a pending recipient in `domains` (as
 * `allowed` lets them match) down the customer's connection; resolves with
 * the run's summary once every result is written down and the connection
 * is closed.
 */
export async function deliverReversed(
  deps: ReverseDeps,
  c: { config: Config; socket: Socket; leftover: Buffer; domains: readonly string[]; allowed: ReadonlySet<string>; session: string },
): Promise<RunSummary> {
  const link = await bridge(c.socket, c.leftover, deps.log);
  const base = new Deliverer({
    hostname: c.config.hostname,
    timeouts: { ...c.config.timeout, command: c.config.timeout.mail },
    // the customer is not asked for credentials: it proved who it is by AUTH before ATRN
    authinfo: () => [],
    resolver: NO_LOOKUPS,
    log: deps.log,
    readBody: deps.readBody,
  });
  let connected = false;
  const deliverer = {
    resolve: async () => [link.target],
    hopKey: () => `odmr:${c.session}`,
    deliverHop: (rt: Route, source: JobQueue<Job>, opts: HopOptions) => base.deliverHop(rt, source, {
      ...opts,
      connections: 1,
      resolved: [link.target],
      dialRetry: undefined,
      // one connection: once it is gone, what is left waits for the next ATRN (no attempt counted)
      mayConnect: () => {
        const first = !connected;
        connected = true;
        return first;
      },
    }),
  } as unknown as Deliverer;
  const runner = new QueueRunner({ ...deps, deliverer, linkAvailable: () => true, permanentLink: () => false });
  try {
    return await runner.run({
      trigger: { kind: 'etrn' },
      domainFilter: (domain) => takenBy(domain, c.domains, c.allowed),
      recipientFilter: (address) => takenBy(domainOf(address), c.domains, c.allowed),
    });
  } finally {
    // QUIT has been sent (or the connection is gone): give the customer a moment to close, then close
    await Promise.race([link.gone, new Promise((r) => setTimeout(r, 2000).unref())]);
    link.close();
  }
}
