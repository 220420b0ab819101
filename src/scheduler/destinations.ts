/**
 * scheduler/destinations.ts — what the runner remembers about each next hop
 * across runs (Postfix's qmgr idea):
 *   - its concurrency: how many connections it may have at once, across all
 *     runs (an intake run, a window, an ETRN flush). It starts at
 *     DESTINATION_CONNECTIONS and grows by one with each connection the hop
 *     accepts, up to DESTINATION_MAX (Postfix's initial 5 and limit 20); a
 *     connection refused while others are open sets it to those that are
 *     (the host limits its clients), one refused with none open halves it;
 *   - whether it is dead: a hop that answered on no address, with nothing
 *     delivered, is remembered until its retry time, so later runs defer
 *     its mail at once instead of each waiting out the connect timeouts
 *     again (Postfix's "delivery temporarily suspended").
 * Owns that state; the decisions are the pure functions below.
 */
import { Slots } from './slots.js';

/** A next hop's concurrency at first (connections at once, across all runs). */
export const DESTINATION_CONNECTIONS = 4;
/** …and at most, however well it answers. */
export const DESTINATION_MAX = 20;

/** How long a dead hop is remembered at least (ms), when queue.minQueueAge is shorter. */
const DEAD_MIN = 60_000;

export interface HopOutcome {
  connections: number;
  delivered: number;
  attempted: number;
}

/** A hop is dead when it was tried and no connection opened (pure). */
export function isDead(o: HopOutcome): boolean {
  return o.attempted > 0 && o.connections === 0 && o.delivered === 0;
}

/** The concurrency after a connection attempt (pure). */
export function nextConcurrency(limit: number, ok: boolean, alive: number): number {
  if (ok) return Math.min(DESTINATION_MAX, limit + 1);
  if (alive > 0) return Math.max(1, alive);
  return Math.max(1, Math.floor(limit / 2));
}

interface Hop {
  limit: number;
  inUse: number;
  waiting: Array<() => void>;
}

export class Destinations {
  private readonly hops = new Map<string, Hop>();
  private readonly dead = new Map<string, { until: number; why: string }>();
  private readonly all: Slots;

  constructor(maxChildren: number, private readonly now: () => number) {
    this.all = new Slots(maxChildren);
  }

  private hop(key: string): Hop {
    let h = this.hops.get(key);
    if (!h) this.hops.set(key, (h = { limit: DESTINATION_CONNECTIONS, inUse: 0, waiting: [] }));
    return h;
  }

  /** The hop's concurrency now. */
  limit(key: string): number {
    return this.hops.get(key)?.limit ?? DESTINATION_CONNECTIONS;
  }

  /** A connection attempt's outcome: the concurrency follows it (nextConcurrency). */
  feedback(key: string, ok: boolean, alive: number): void {
    const h = this.hop(key);
    h.limit = nextConcurrency(h.limit, ok, alive);
    this.wake(h);
  }

  private wake(h: Hop): void {
    while (h.waiting.length && h.inUse < h.limit) {
      h.inUse++;
      h.waiting.shift()!();
    }
  }

  /** A connection slot for the hop, then one of the global ones (always in that order: no deadlock). */
  async acquire(key: string): Promise<() => void> {
    const h = this.hop(key);
    if (h.inUse < h.limit) h.inUse++;
    else await new Promise<void>((resolve) => h.waiting.push(resolve));
    const releaseAll = await this.all.acquire();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      releaseAll();
      h.inUse--;
      this.wake(h);
    };
  }

  /** Why the hop is not tried now, or null. */
  suspended(key: string): string | null {
    const d = this.dead.get(key);
    if (!d) return null;
    if (d.until > this.now()) return d.why;
    this.dead.delete(key);
    return null;
  }

  /** What a run's attempt at the hop came to. */
  record(key: string, o: HopOutcome, retryAfter: number, why: string): void {
    if (!isDead(o)) {
      this.dead.delete(key);
      return;
    }
    const until = this.now() + Math.max(retryAfter, DEAD_MIN);
    this.dead.set(key, { until, why: `delivery temporarily suspended until ${new Date(until).toISOString()}: ${why}` });
  }
}
