/**
 * delivery/tls-sessions.ts — the TLS sessions (TLS 1.3 tickets, RFC 8446
 * §4.6.1; TLS 1.2 sessions too) kept per next hop, so the next connection
 * to the same hop, in this window or the next, resumes instead of a full
 * handshake: no certificate chain crosses the line again.
 *
 * A hop is the address and port connected to plus the name sent as SNI.
 * The cache lives in memory (a restart starts without tickets), is bounded
 * (HOPS hops, least recently stored dropped first; PER_HOP tickets a hop)
 * and is changed only here:
 *
 * - `put(hop, session, now)`: a ticket arrived (the TLS socket's 'session');
 * - `take(hop, now)`: a connection is about to start; the newest ticket
 *   still within MAX_AGE leaves the cache (RFC 8446 §C.4: a ticket is used
 *   once), the connection stores the ones it gets in turn.
 *
 * A ticket the server no longer accepts (restarted with other ticket keys,
 * expired) costs nothing but the full handshake it would have had anyway;
 * the new tickets from that handshake replace it.
 */

/** RFC 8446 §4.6.1: no ticket lives longer than 7 days. */
export const MAX_AGE = 7 * 24 * 3600 * 1000;
/** Next hops with tickets kept. */
export const HOPS = 256;
/** Tickets kept a hop: enough for the parallel connections of the next window. */
export const PER_HOP = 4;

export interface Ticket {
  session: Buffer;
  /** When it arrived (ms since the epoch). */
  at: number;
}

/** The key of a next hop: `127.0.0.2:25 mx.example` (the name sent as SNI, empty without). */
export function hopKey(ip: string, port: number, servername?: string): string {
  return `${ip.includes(':') ? `[${ip}]` : ip}:${port} ${servername ?? ''}`;
}

/** The tickets worth keeping, oldest first: those within `maxAge`, at most `perHop` of the newest (pure). */
export function keep(tickets: readonly Ticket[], now: number, perHop = PER_HOP, maxAge = MAX_AGE): Ticket[] {
  return tickets.filter((t) => now - t.at < maxAge).slice(-perHop);
}

/**
 * After a handshake that resumed `offered` and brought no new ticket: the
 * session worth putting back, if any (pure). A TLS 1.2 session may be
 * resumed again (RFC 5246 §7.3); a TLS 1.3 ticket is used once.
 */
export function putBack(offered: Buffer | undefined, resumed: boolean, protocol: string | null, gotNew: boolean): Buffer | undefined {
  return offered && resumed && !gotNew && protocol !== null && protocol !== 'TLSv1.3' ? offered : undefined;
}

export class TlsSessions {
  private readonly hops = new Map<string, Ticket[]>();

  constructor(private readonly limits: { hops: number; perHop: number; maxAge: number } = { hops: HOPS, perHop: PER_HOP, maxAge: MAX_AGE }) {}

  /** Keeps a session the hop gave us. */
  put(hop: string, session: Buffer, now: number): void {
    const tickets = keep([...(this.hops.get(hop) ?? []), { session, at: now }], now, this.limits.perHop, this.limits.maxAge);
    this.hops.delete(hop);
    this.hops.set(hop, tickets);
    for (const oldest of this.hops.keys()) {
      if (this.hops.size <= this.limits.hops) break;
      this.hops.delete(oldest);
    }
  }

  /** The newest usable session for the hop, taken out of the cache; undefined when there is none. */
  take(hop: string, now: number): Buffer | undefined {
    const tickets = keep(this.hops.get(hop) ?? [], now, this.limits.perHop, this.limits.maxAge);
    const newest = tickets.pop();
    if (tickets.length) this.hops.set(hop, tickets);
    else this.hops.delete(hop);
    return newest?.session;
  }

  /** Tickets kept for the hop (for status and tests). */
  count(hop: string): number {
    return this.hops.get(hop)?.length ?? 0;
  }
}
