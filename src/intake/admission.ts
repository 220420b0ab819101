/**
 * intake/admission.ts — the load and disk gates as the daemon applies them
 * (SPEC §9): sendmail's RefuseLA for new SMTP connections, MinFreeBlocks for
 * new messages, and QueueLA's per-message decision for a run. The decisions
 * are pure (load-policy.ts, disk-policy.ts); this reads the facts (load
 * average, the spool's free space) and counts refusals. Owns no state.
 */
import { MailError } from '../errors.js';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../observability/metrics.js';
import { loadThresholds, readLoadAverage, refusesConnections, shouldQueue } from './load-policy.js';
import { hasRoom, insufficientStorage, spoolSpace } from './disk-policy.js';

export interface AdmissionDeps {
  config: () => Config;
  metrics: Metrics;
  cpus: number;
}

export function admission(d: AdmissionDeps) {
  return {
    /** sendmail's RefuseLA: at or above it, new connections are turned away. */
    admitConnection(): MailError | null {
      const load = readLoadAverage();
      const t = loadThresholds(d.config().queue, d.cpus);
      if (!refusesConnections(load, t)) return null;
      d.metrics.inc('quietlink_smtp_refused_total', { reason: 'load' });
      return new MailError(421, '4.3.2', `${d.config().hostname} Too busy (load average ${load.toFixed(2)} >= refuseLA ${t.refuseLA}), try again later`);
    },
    /** sendmail's MinFreeBlocks: keep a reserve on the spool's file system. */
    admitMessage(size: number): MailError | null {
      const sp = spoolSpace(d.config().spool);
      if (!sp || hasRoom(sp, d.config().queue.minFreeBlocks, size)) return null;
      d.metrics.inc('quietlink_smtp_refused_total', { reason: 'disk' });
      return insufficientStorage();
    },
    /** QueueLA: above it, a run asks per message whether it waits (null: below, nothing waits). */
    loadGate(): ((priority: number) => string | null) | null {
      const load = readLoadAverage();
      const t = loadThresholds(d.config().queue, d.cpus);
      if (!(load > t.queueLA)) return null;
      return (priority) => shouldQueue(load, priority, t);
    },
  };
}
