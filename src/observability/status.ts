/**
 * observability/status.ts — what `quietlink status` and the metrics endpoint
 * show, gathered from the modules that own each fact (SPEC §13): the queue
 * (counts and its in-memory listing), the link, the windows, the resolver,
 * the ETRN server, the load and disk policies, the counters, and the last
 * few flush windows from the window history (link/window-history.ts), when
 * the daemon passes `recentWindows`. Read only.
 */
import type { Config } from '../config/schema.js';
import { route as routeOf, type RouteTable } from '../routing/route.js';
import { domainOf } from '../intake/address.js';
import { loadThresholds, readLoadAverage, refusesConnections, type LoadThresholds } from '../intake/load-policy.js';
import { hasRoom, spoolSpace, type Space } from '../intake/disk-policy.js';
import type { LinkSnapshot } from '../link/link-state.js';
import type { Windows } from '../scheduler/windows.js';
import type { ResolverCounters } from '../dns/caching-resolver.js';
import { gaugeFamilies, type Metrics } from './metrics.js';
import type { RecentProblems } from './logger.js';
import type { WindowRecord } from '../link/window-history.js';
import type { QueueRead } from '../queue/roles.js';

/** How many of the recent windows `status` shows. */
export const STATUS_WINDOWS = 5;

export interface StatusDeps {
  config: () => Config;
  table: () => RouteTable;
  queue: QueueRead;
  metrics: Metrics;
  problems: RecentProblems;
  /** The link's owner: its state, and dials / hangups since start. */
  link: { readonly current: LinkSnapshot; readonly dials?: number; readonly hangups?: number };
  windows: () => Windows;
  dns: ResolverCounters;
  lastEtrn: () => ReadonlyMap<string, { time: string; client: string; reply: string }>;
  listen: () => Array<{ host: string; port: number }>;
  nextWindow: () => Date | null;
  now: () => number;
  startedAt: number;
  cpus: number;
  /** The last windows from the window history, newest last (SPEC §4); absent: status shows none. */
  recentWindows?: () => readonly WindowRecord[];
}

export class Status {
  private byRoute: { at: number; counts: Map<string, number> } | null = null;

  constructor(private readonly d: StatusDeps) {}

  thresholds(): LoadThresholds {
    return loadThresholds(this.d.config().queue, this.d.cpus);
  }

  /** Free space on the spool's file system; null when statfs fails (then nothing is refused for it). */
  space(): Space | null {
    return spoolSpace(this.d.config().spool);
  }

  load() {
    const average = readLoadAverage();
    const t = this.thresholds();
    return {
      average, cpus: this.d.cpus, ...t, queueing: average > t.queueLA, refusing: refusesConnections(average, t),
      queuedForLoad: this.d.metrics.get('quietlink_load_queued_total'),
    };
  }

  disk() {
    const sp = this.space();
    const min = this.d.config().queue.minFreeBlocks;
    return {
      spool: this.d.config().spool,
      freeBytes: sp ? sp.bavail * sp.bsize : null,
      freeBlocks: sp?.bavail ?? null,
      blockSize: sp?.bsize ?? null,
      minFree: min,
      accepting: !sp || hasRoom(sp, min),
    };
  }

  /** The pending recipients of each queued message: from the queue's index once it is complete (no sort, no envelope read). */
  private async *queuedPending(): AsyncIterable<string[]> {
    const index = this.d.queue.index;
    if (index.complete) {
      for (const id of index.queuedFor(() => true)) yield index.get(id)?.listed.recipients.map((r) => r.address) ?? [];
      return;
    }
    for await (const { env } of this.d.queue.walk(['queued'])) yield env.recipients.filter((r) => r.state === 'pending').map((r) => r.address);
  }

  /** Messages held until ETRN, by customer domain. */
  async heldByDomain(): Promise<Record<string, number>> {
    const held: Record<string, number> = {};
    const table = this.d.table();
    for await (const rcpts of this.queuedPending()) {
      const domains = new Set(rcpts.map(domainOf).filter((dom) => routeOf(dom, table).holdUntilEtrn));
      for (const dom of domains) held[dom] = (held[dom] ?? 0) + 1;
    }
    return held;
  }

  /** Pending recipients by next hop, at most `maxAge` ms old. */
  async recipientsByRoute(maxAge: number): Promise<Map<string, number>> {
    if (this.byRoute && this.d.now() - this.byRoute.at < maxAge) return this.byRoute.counts;
    const counts = new Map<string, number>();
    const table = this.d.table();
    for await (const rcpts of this.queuedPending()) {
      for (const a of rcpts) {
        const hop = routeOf(domainOf(a), table).nexthop;
        counts.set(hop, (counts.get(hop) ?? 0) + 1);
      }
    }
    this.byRoute = { at: this.d.now(), counts };
    return counts;
  }

  /** The Prometheus text of one scrape. */
  async scrape(): Promise<string> {
    const windows = this.d.windows();
    return this.d.metrics.render(gaugeFamilies({
      queue: await this.d.queue.counts(), byRoute: await this.recipientsByRoute(30_000),
      linkUp: this.d.link.current.state === 'up', windowOpen: windows.isOpen,
      load: this.load(), freeBytes: this.disk().freeBytes, dns: this.d.dns,
    }));
  }

  /** `quietlink status --json`. */
  async report() {
    const config = this.d.config();
    const { metrics, link } = this.d;
    const windows = this.d.windows();
    return {
      pid: process.pid,
      startedAt: new Date(this.d.startedAt).toISOString(),
      hostname: config.hostname,
      spool: config.spool,
      deliveryMode: config.deliveryMode,
      listen: this.d.listen(),
      queue: await this.d.queue.counts(),
      /** Pending recipients by next hop (SPEC §11: queue counts by route). */
      byRoute: Object.fromEntries(await this.recipientsByRoute(0)),
      link: { mode: config.link.mode, ...link.current, since: new Date(link.current.since).toISOString(), dials: link.dials ?? 0, hangups: link.hangups ?? 0 },
      window: windows.isOpen ? 'open' : 'closed',
      nextWindow: this.d.nextWindow()?.toISOString() ?? null,
      lastWindow: windows.last,
      /** The last few flush windows as spool/windows.log keeps them, newest last. */
      recentWindows: this.d.recentWindows?.().slice(-STATUS_WINDOWS) ?? [],
      held: await this.heldByDomain(),
      dns: this.d.dns,
      lastEtrn: Object.fromEntries(this.d.lastEtrn()),
      load: this.load(),
      disk: this.disk(),
      counters: {
        accepted: metrics.get('quietlink_messages_accepted_total'),
        delivered: metrics.get('quietlink_recipients_delivered_total'),
        deferred: metrics.get('quietlink_recipients_deferred_total'),
        bounced: metrics.get('quietlink_recipients_bounced_total'),
        windows: metrics.get('quietlink_flush_windows_total'),
        // ODMR (RFC 2645): sessions served (ISP) / made (office), recipients delivered / messages received by it
        odmrServed: metrics.get('quietlink_odmr_sessions_served_total'),
        odmrMade: metrics.get('quietlink_odmr_sessions_made_total'),
        odmrDelivered: metrics.get('quietlink_odmr_messages_delivered_total'),
        odmrReceived: metrics.get('quietlink_odmr_messages_received_total'),
      },
      lastErrors: this.d.problems.list(),
    };
  }
}
