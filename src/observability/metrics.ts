/**
 * observability/metrics.ts — Prometheus text exposition (format 0.0.4) on
 * `metrics.listen` (SPEC §13). Counters are kept here and bumped by the
 * daemon's wiring; gauges (queue size, load, disk, DNS cache figures) are
 * read from their owners at scrape time. No client library: the format is a
 * few lines of text.
 */
import http from 'node:http';
import type { Logger } from 'pino';
import { parseHostPort } from '../config/cidr.js';

export type Labels = Record<string, string>;

export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: Array<{ labels?: Labels; value: number }>;
}

const COUNTERS = {
  quietlink_messages_accepted_total: 'Messages accepted into the queue, by how they came (smtp, sendmail, dsn)',
  quietlink_recipients_delivered_total: 'Recipients delivered (2xx from the next hop)',
  quietlink_recipients_deferred_total: 'Recipient attempts deferred (4xx or no connection)',
  quietlink_recipients_bounced_total: 'Recipients returned to the sender (5xx, or undelivered after queueReturn)',
  quietlink_flush_windows_total: 'Flush windows opened, by cause',
  quietlink_link_seconds_total: 'Seconds from the first to the last WAN packet of each window',
  quietlink_link_wakeups_total: 'Windows that sent traffic over the link or dialed it',
  quietlink_dials_total: 'Times link.dial was run (windows that wanted the link while it was down)',
  quietlink_etrn_sent_total: 'ETRN commands sent to the relay',
  quietlink_etrn_received_total: 'ETRN commands received from customers, by reply code',
  quietlink_odmr_sessions_served_total: 'ODMR sessions served (ISP side): connections turned round after ATRN',
  quietlink_odmr_sessions_made_total: 'ODMR sessions made (office side): ATRN sent to the relay',
  quietlink_odmr_messages_delivered_total: 'Recipients delivered down customers\' ODMR connections',
  quietlink_odmr_messages_received_total: 'Messages received from the relay over ODMR',
  quietlink_load_queued_total: 'Messages left for a later run because the load average was above queueLA',
  quietlink_smtp_refused_total: 'SMTP connections (load: 421 4.3.2) or messages (disk: 452 4.3.1) refused by policy, by reason',
} as const;

export type CounterName = keyof typeof COUNTERS;

const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelKey = (labels: Labels = {}) => Object.keys(labels).sort().map((k) => `${k}="${escape(labels[k])}"`).join(',');

export class Metrics {
  private readonly values = new Map<CounterName, Map<string, number>>();

  inc(name: CounterName, labels?: Labels, by = 1): void {
    if (by === 0) return;
    const m = this.values.get(name) ?? new Map<string, number>();
    const key = labelKey(labels);
    m.set(key, (m.get(key) ?? 0) + by);
    this.values.set(name, m);
  }

  /** Current value of a counter (summed over its labels). */
  get(name: CounterName): number {
    return [...(this.values.get(name)?.values() ?? [])].reduce((a, b) => a + b, 0);
  }

  render(gauges: Family[]): string {
    const out: string[] = [];
    for (const name of Object.keys(COUNTERS) as CounterName[]) {
      out.push(`# HELP ${name} ${COUNTERS[name]}`, `# TYPE ${name} counter`);
      const m = this.values.get(name);
      if (!m?.size) out.push(`${name} 0`);
      else for (const [key, v] of m) out.push(`${name}${key ? `{${key}}` : ''} ${v}`);
    }
    for (const f of gauges) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      for (const s of f.samples) {
        const key = labelKey(s.labels);
        out.push(`${f.name}${key ? `{${key}}` : ''} ${Number.isFinite(s.value) ? s.value : 0}`);
      }
    }
    return `${out.join('\n')}\n`;
  }
}

/** What the gauges are made of, gathered by the daemon at scrape time. */
export interface GaugeFacts {
  queue: Record<string, number>;
  /** Pending recipients by next hop. */
  byRoute: ReadonlyMap<string, number>;
  linkUp: boolean;
  windowOpen: boolean;
  load: { average: number; queueLA: number; refuseLA: number };
  freeBytes: number | null;
  dns: { hits: number; misses: number; stale: number; refusedForwards: number };
}

/** The gauge families (and the resolver's own counters) of one scrape. Pure. */
export function gaugeFamilies(f: GaugeFacts): Family[] {
  const one = (name: string, help: string, value: number, type: Family['type'] = 'gauge'): Family => ({ name, help, type, samples: [{ value }] });
  return [
    { name: 'quietlink_queue_messages', help: 'Messages in the queue, by state', type: 'gauge', samples: Object.entries(f.queue).map(([state, value]) => ({ labels: { state }, value })) },
    { name: 'quietlink_queue_recipients', help: 'Pending recipients of queued messages, by next hop (refreshed at most every 30 s)', type: 'gauge', samples: [...f.byRoute].map(([route, value]) => ({ labels: { route }, value })) },
    one('quietlink_link_up', '1 when the link is up', f.linkUp ? 1 : 0),
    one('quietlink_flush_window_open', '1 while a flush window is open', f.windowOpen ? 1 : 0),
    one('quietlink_load_average', '1-minute load average', f.load.average),
    one('quietlink_load_queue_threshold', 'queueLA in force', f.load.queueLA),
    one('quietlink_load_refuse_threshold', 'refuseLA in force', f.load.refuseLA),
    one('quietlink_spool_free_bytes', 'Bytes free on the spool file system', f.freeBytes ?? 0),
    one('quietlink_dns_cache_hits_total', 'DNS answers from the cache', f.dns.hits, 'counter'),
    one('quietlink_dns_cache_misses_total', 'DNS questions not in the cache', f.dns.misses, 'counter'),
    one('quietlink_dns_stale_answers_total', 'Expired DNS answers served while the link was down (serveStale)', f.dns.stale, 'counter'),
    one('quietlink_dns_refused_forwards_total', 'DNS questions not forwarded because the link was down', f.dns.refusedForwards, 'counter'),
  ];
}

/** Serves GET /metrics on `listen`; resolves with the bound address. */
export async function startMetricsServer(listen: string, body: () => Promise<string>, log: Logger): Promise<{ host: string; port: number; close(): Promise<void> }> {
  const { host, port } = parseHostPort(listen);
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('quietlink: metrics are at /metrics\n');
      return;
    }
    body().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      (err) => {
        log.error({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
      },
    );
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as { address: string; port: number };
  return {
    host: a.address,
    port: a.port,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
