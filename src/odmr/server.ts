/**
 * odmr/server.ts — the ODMR server (RFC 2645, SPEC §7), the ISP side: a
 * listener on every odmr.listen address; each connection is an
 * OdmrSession (odmr/server-session.ts); after a 250 to ATRN the held mail
 * for the taken domains goes down the customer's connection
 * (odmr/reverse-delivery.ts).
 *
 * State it owns: the domains being delivered by ODMR right now (a second
 * ATRN for one of them, or for one an ETRN flush is delivering, gets 450:
 * never two flushes of the same mail) and the counters for `status` and
 * metrics. Queue state changes stay with the queue runner.
 *
 * Who calls it: the daemon, startOdmrServer() at start and stop() at stop.
 * With no odmr.listen nothing listens and nothing else happens. A TLS
 * certificate that cannot be read stops the start (as on the SMTP
 * listener); the customers' file is read at every AUTH (454 if it cannot
 * be).
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Socket } from 'node:net';
import { parseHostPort } from '../config/cidr.js';
import type { Metrics } from '../observability/metrics.js';
import { OdmrSession } from './server-session.js';
import { parseOdmrUsers, type OdmrUser } from './policy.js';
import { deliverReversed, type ReverseDeps } from './reverse-delivery.js';
import { countQueued } from '../queue/count.js';

export interface OdmrServerDeps extends Omit<ReverseDeps, 'readBody'> {
  /** The classes as last loaded (a user without listed domains takes the class of its name). */
  classes: () => ReadonlyMap<string, ReadonlySet<string>>;
  /** Whether an ETRN flush is delivering this domain now. */
  etrnBusy?: (domain: string) => boolean;
  metrics?: Metrics;
}

export interface OdmrServerHandle {
  bound: Array<{ host: string; port: number }>;
  /** Whether an ODMR session is delivering this domain's mail now (ETRN asks too). */
  isFlushing(domain: string): boolean;
  stop(): Promise<void>;
}

async function readUsers(file: string | undefined): Promise<OdmrUser[]> {
  if (!file) return [];
  const { entries } = parseOdmrUsers(await fs.promises.readFile(file, 'utf8'), file);
  return entries;
}

/** Queued messages with a pending recipient `wanted` takes (from the index once complete); null if unreadable. */
async function countPending(deps: OdmrServerDeps, wanted: (address: string) => boolean): Promise<number | null> {
  try {
    return await countQueued(deps.queue, (domain) => wanted(`postmaster@${domain}`), (address) => wanted(address));
  } catch (err) {
    deps.log.error({ err }, 'odmr: cannot count the queued mail');
    return null;
  }
}

/** Listens on `host:port`; resolves with the port bound (port 0 picks one). */
async function listenOn(server: net.Server, listen: string, log: OdmrServerDeps['log']): Promise<{ host: string; port: number }> {
  const { host, port } = parseHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err, listen }, 'odmr: listener error'));
  return { host, port: (server.address() as net.AddressInfo).port };
}

export async function startOdmrServer(deps: OdmrServerDeps): Promise<OdmrServerHandle> {
  const c = deps.config();
  const flushing = new Set<string>();
  /** Open connections, and whether each has turned round (a stop lets those finish). */
  const sockets = new Map<Socket, { reversing: boolean }>();
  const sessions = new Set<Promise<void>>();
  const servers: net.Server[] = [];
  const bound: Array<{ host: string; port: number }> = [];
  if (c.odmr.listen.length && c.odmr.insecureAuth) deps.log.warn('odmr.insecureAuth: AUTH is taken without TLS (for tests only)');
  const secureContext = c.smtp.tls && c.odmr.listen.length
    ? tls.createSecureContext({ key: fs.readFileSync(c.smtp.tls.key), cert: fs.readFileSync(c.smtp.tls.cert), minVersion: 'TLSv1.2' })
    : null;
  const isBusy = (d: string) => [...flushing].some((f) => d === f || d.endsWith(`.${f}`) || f.endsWith(`.${d}`)) || Boolean(deps.etrnBusy?.(d));
  const pending = (wanted: (address: string) => boolean) => countPending(deps, wanted);
  const reverse: ConstructorParameters<typeof OdmrSession>[0]['reverse'] = async (r) => {
    for (const d of r.domains) flushing.add(d);
    deps.metrics?.inc('quietlink_odmr_sessions_served_total');
    deps.log.info({ sid: r.sid, user: r.user, domains: r.domains }, 'odmr: connection turned round, delivering');
    try {
      const s = await deliverReversed({ ...deps, readBody: (env) => deps.queue.readBody(env.id, env.size) }, {
        config: deps.config(), socket: r.socket, leftover: r.leftover, domains: r.domains, allowed: r.allowed, session: r.sid,
      });
      deps.metrics?.inc('quietlink_odmr_messages_delivered_total', undefined, s.delivered);
      deps.log.info({ sid: r.sid, user: r.user, domains: r.domains, messages: s.messages, delivered: s.delivered, deferred: s.deferred, failed: s.failed, waiting: s.waiting }, 'odmr: session done');
    } catch (err) {
      deps.log.error({ sid: r.sid, err }, 'odmr: delivery down the customer connection failed');
    } finally {
      for (const d of r.domains) flushing.delete(d);
    }
  };
  const sessionDeps = {
    config: deps.config, classes: deps.classes, tls: secureContext, log: deps.log, isBusy, pending, reverse,
    users: () => readUsers(deps.config().odmr.users),
  };
  for (const listen of c.odmr.listen) {
    const server = net.createServer((sock) => {
      const entry = { reversing: false };
      sockets.set(sock, entry);
      sock.on('error', () => undefined);
      const own = { ...sessionDeps, reverse: (r: Parameters<typeof reverse>[0]) => {
        entry.reversing = true;
        return reverse(r);
      } };
      const p: Promise<void> = new OdmrSession(own, sock).run()
        .catch((err) => deps.log.error({ err }, 'odmr: session failed'))
        .finally(() => {
          sockets.delete(sock);
          sessions.delete(p);
          if (!sock.destroyed) sock.end();
        });
      sessions.add(p);
    });
    bound.push(await listenOn(server, listen, deps.log));
    servers.push(server);
  }
  if (bound.length) deps.log.info({ listen: bound, tls: Boolean(secureContext) }, 'odmr: listening');
  return {
    bound,
    isFlushing: (d) => [...flushing].some((f) => d === f || d.endsWith(`.${f}`)),
    async stop() {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      // customers in the initial state are let go; a delivery in progress finishes (its results are written down)
      for (const [s, e] of sockets) if (!e.reversing) s.destroy();
      await Promise.race([Promise.allSettled([...sessions]), new Promise((r) => setTimeout(r, 30_000).unref())]);
      for (const s of sockets.keys()) s.destroy();
    },
  };
}
