/**
 * intake/session-limits.ts — how many sessions a client may hold, how slow
 * it may be and how long a session may go without finishing a transaction
 * (SPEC §9 "Abuse"), as pure decisions. No clock, no sockets: the callers
 * (smtp-intake.ts for connections, smtp-guards.ts for the timers) pass the
 * facts and the time in.
 *
 * - Connections: LAN clients (lanNetworks + smtp.mynetworks) are limited by
 *   smtp.maxConnections only; clients outside the LAN by
 *   smtp.maxConnectionsPerClient each and, all together, by maxConnections
 *   less smtp.lanReserve, so no outside client can lock the office out.
 * - Data rate (Postfix's smtpd_min_data_rate): after DATA_RATE_GRACE_MS, the
 *   data must have come at smtp.minDataRate bytes a second or faster; each
 *   byte buys 1/minDataRate seconds more.
 *
 * Known limit: the rate counts bytes the session has taken in; a spool that
 * cannot keep up slows the client down through back-pressure and counts
 * against it (at the default 500 bytes/s a disk has to be very slow).
 */
import { MailError } from '../errors.js';

/** "A few seconds" before the data rate counts: a client's first segment, TLS, a slow start. */
export const DATA_RATE_GRACE_MS = 5_000;

export type LanReserve = { percent: number } | { connections: number };

export interface ConnectionLimits {
  maxConnections: number;
  /** For each client outside the LAN. */
  maxConnectionsPerClient: number;
  lanReserve: LanReserve;
}

export interface ConnectionFacts {
  /** In lanNetworks or smtp.mynetworks. */
  isLan: boolean;
  /** Accepted sessions open now, all clients (this one not counted). */
  open: number;
  /** Accepted sessions this client holds now (this one not counted). */
  fromClient: number;
}

/** Connections of maxConnections that only LAN clients may use. */
export function reservedForLan(maxConnections: number, reserve: LanReserve): number {
  const n = 'percent' in reserve ? Math.floor((maxConnections * reserve.percent) / 100) : reserve.connections;
  return Math.min(Math.max(0, n), maxConnections);
}

/** null admits the connection; otherwise the 421 to greet it with. */
export function admitClient(f: ConnectionFacts, l: ConnectionLimits, ip: string): MailError | null {
  if (f.open >= l.maxConnections) return new MailError(421, '4.3.2', 'Too many connections, try again later');
  if (f.isLan) return null;
  if (f.open >= l.maxConnections - reservedForLan(l.maxConnections, l.lanReserve)) {
    return new MailError(421, '4.3.2', 'Too many connections from outside the LAN, try again later');
  }
  if (f.fromClient >= l.maxConnectionsPerClient) return new MailError(421, '4.7.0', `Too many connections from ${ip}, try again later`);
  return null;
}

/**
 * The time by which a DATA phase that started at `start` and has brought
 * `bytes` bytes falls below `minRate` bytes a second: `now` past it cuts.
 */
export function dataDeadline(start: number, bytes: number, minRate: number, grace = DATA_RATE_GRACE_MS): number {
  return start + grace + (bytes * 1000) / minRate;
}
