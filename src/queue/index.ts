/**
 * queue/index.ts — the queue in memory, fed by the queue's change events
 * (queue/queue.ts) and by the start-up walk: for every message its state,
 * group, priority, next attempt, pending recipient domains and mailq's
 * listing. It answers mailq, status, metrics, ETRN counts ("how many for
 * @cust1.dom") and "what may be due now" without reading an envelope; a run
 * reads envelopes only for the messages it is about to deliver.
 *
 * `complete` is false until the start-up walk has listed every message
 * that was stored before this process began; until then callers fall back
 * to walking the store.
 */
import type { Envelope } from './envelope.js';
import { listingOf, type Listed } from './listing.js';
import type { QueueId } from './queue-id.js';
import { matches, type Selection } from './select.js';
import type { QueueState } from './store.js';

/** What a change event says: the message now at `state`, or gone (removed, corrupt). */
export type QueueChange = { id: QueueId; env: Envelope; state: Exclude<QueueState, 'corrupt'> } | { id: QueueId; gone: true };

export interface IndexEntry {
  listed: Listed;
  priority: number;
  /** As the envelope has it (null: at once). */
  nextAttempt: string | null;
  attempts: number;
  /** Domains of pending recipients, lower case, each once. */
  domains: readonly string[];
}

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

export class QueueIndex {
  private readonly entries = new Map<QueueId, IndexEntry>();
  /** Queued (not held, not quarantined) messages by pending recipient domain. */
  private readonly byDomain = new Map<string, Set<QueueId>>();
  private completeNow = false;
  private settleReady!: (complete: boolean) => void;
  /** Resolves once the start-up walk has ended: true when the index is complete. */
  readonly ready = new Promise<boolean>((resolve) => (this.settleReady = resolve));

  get complete(): boolean {
    return this.completeNow;
  }

  /** The start-up walk is over (complete: it listed everything). */
  walked(complete: boolean): void {
    this.completeNow = complete;
    this.settleReady(complete);
  }

  has(id: QueueId): boolean {
    return this.entries.has(id);
  }

  get(id: QueueId): IndexEntry | undefined {
    return this.entries.get(id);
  }

  get size(): number {
    return this.entries.size;
  }

  apply(change: QueueChange): void {
    this.drop(change.id);
    if ('gone' in change) return;
    const { env, state } = change;
    const listed = listingOf(env, state);
    const domains = [...new Set(listed.recipients.map((r) => domainOf(r.address)))];
    this.entries.set(change.id, {
      listed, priority: env.priority, attempts: env.attempts, domains,
      nextAttempt: env.nextAttempt,
    });
    if (state !== 'queued') return;
    for (const d of domains) {
      let ids = this.byDomain.get(d);
      if (!ids) this.byDomain.set(d, (ids = new Set()));
      ids.add(change.id);
    }
  }

  private drop(id: QueueId): void {
    const old = this.entries.get(id);
    if (!old) return;
    this.entries.delete(id);
    if (old.listed.state !== 'queued') return;
    for (const d of old.domains) {
      const ids = this.byDomain.get(d);
      ids?.delete(id);
      if (ids?.size === 0) this.byDomain.delete(d);
    }
  }

  /** mailq's view of the messages matching a selection, oldest first; null until complete. */
  listed(sel: Selection): Listed[] | null {
    if (!this.completeNow) return null;
    const out: Listed[] = [];
    for (const e of this.entries.values()) if (matches(sel, e.listed)) out.push(e.listed);
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  counts(): Record<'queued' | 'held' | 'quarantined', number> {
    const c = { queued: 0, held: 0, quarantined: 0 };
    for (const e of this.entries.values()) if (e.listed.state !== 'corrupt') c[e.listed.state]++;
    return c;
  }

  /** Queued messages with a pending recipient at `domain` (and, with `subdomains`, below it). */
  pendingFor(domain: string, subdomains = false): number {
    const d = domain.toLowerCase();
    return this.queuedFor((name) => name === d || (subdomains && name.endsWith(`.${d}`))).size;
  }

  /**
   * Queued messages with a pending recipient at a wanted domain: the work
   * of one question is proportional to the domains and to what they hold,
   * never to the whole queue.
   */
  queuedFor(wanted: (domain: string) => boolean): Set<QueueId> {
    const out = new Set<QueueId>();
    for (const [domain, ids] of this.byDomain) if (wanted(domain)) for (const id of ids) out.add(id);
    return out;
  }
}
