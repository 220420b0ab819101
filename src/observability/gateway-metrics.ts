/**
 * observability/gateway-metrics.ts — what the runner and the windows report
 * to the counters (and each window to its history line): the hooks
 * daemon.ts hands them. Owns the set of history lines still being written,
 * which a stop waits for.
 */
import type { Metrics } from './metrics.js';
import type { WindowHistory, WindowRecord } from '../link/window-history.js';

/** The runner's counters: recipients by outcome, messages held back by the load. */
export function runnerMetrics(metrics: Metrics) {
  return {
    onLoadQueued: () => metrics.inc('quietlink_load_queued_total'),
    onOutcomes: (n: { delivered: number; deferred: number; bounced: number }) => {
      metrics.inc('quietlink_recipients_delivered_total', undefined, n.delivered);
      metrics.inc('quietlink_recipients_deferred_total', undefined, n.deferred);
      metrics.inc('quietlink_recipients_bounced_total', undefined, n.bounced);
    },
  };
}

/** Every window when it ends: counted, and appended to windows.log. */
export function windowRecorder(metrics: Metrics, history: WindowHistory) {
  const appending = new Set<Promise<void>>();
  return {
    onWindow(w: WindowRecord): void {
      metrics.inc('quietlink_flush_windows_total', { cause: w.cause.replace(/^(cron|poll) .*/, '$1') });
      metrics.inc('quietlink_link_seconds_total', undefined, w.linkSeconds);
      if (w.dialed || (w.linkOpen && (w.connections > 0 || w.etrn))) metrics.inc('quietlink_link_wakeups_total');
      const appended: Promise<void> = history.append(w).finally(() => appending.delete(appended));
      appending.add(appended);
    },
    /** Resolves once the history lines of ended windows are written. */
    async written(): Promise<void> {
      await Promise.all([...appending]);
    },
  };
}
