/**
 * scheduler/destinations.ts — what the runner remembers about each next hop
 * across runs (Postfix's qmgr idea): its connection slots, shared by every
 * run at once (an intake run, a window, an ETRN flush), and whether it is
 * dead — a hop that answered on no address, with nothing delivered, is
 * remembered as such until its retry time, so later runs defer its mail at
 * once instead of each waiting out the connect timeouts again (Postfix's
 * "delivery temporarily suspended"). Owns that state; the decisions are pure.
 */
import { Slots } from './slots.js';

/** Connections per next hop, across all runs at once. */
export const DESTINATION_CONNECTIONS = 4;

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

export class Destinations {
  private readonly slots = new Map<string, Slots>();
  private readonly dead = new Map<string, { until: number; why: string }>();
  private readonly all: Slots;

  constructor(maxChildren: number, private readonly now: () => number) {
    this.all = new Slots(maxChildren);
  }

  /** A connection slot for the hop, then one of the global ones (always in that order: no deadlock). */
  async acquire(key: string): Promise<() => void> {
    let hop = this.slots.get(key);
    if (!hop) this.slots.set(key, (hop = new Slots(DESTINATION_CONNECTIONS)));
    const releaseHop = await hop.acquire();
    const releaseAll = await this.all.acquire();
    return () => {
      releaseAll();
      releaseHop();
      if (hop!.isIdle && this.slots.get(key) === hop) this.slots.delete(key);
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
