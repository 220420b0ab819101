/**
 * scheduler/tally.ts — what one attempt's results add up to: the sendmail-
 * style log line of each recipient's result, and the run's counts. Pure.
 */
import { enhancedCode, outcomeOf } from '../delivery/classify.js';
import type { Job } from '../delivery/deliverer.js';
import type { AttemptResult } from './apply-results.js';
import type { RunSummary } from './run-types.js';

/** The log line's fields for one recipient's result (sendmail's delay=, xdelay=, mailer=, relay=, dsn=, stat=). */
export function resultLogFields(job: Job, r: AttemptResult, now: number) {
  const outcome = outcomeOf(r.code);
  return {
    qid: job.env.id, to: r.address, delay: Math.round((now - Date.parse(job.env.arrivalTime)) / 1000),
    xdelay: job.xdelay !== undefined ? job.xdelay / 1000 : undefined, mailer: job.mailer,
    relay: r.relay, dsn: enhancedCode(r.code, r.text), stat: `${outcome === 'delivered' ? 'Sent' : outcome === 'failed' ? 'Failed' : 'Deferred'} (${r.code} ${r.text})`,
  };
}

/** Adds one message's results to the run's summary; returns its own delivered and waiting counts. */
export function tally(res: readonly AttemptResult[], summary: RunSummary): { delivered: number; waiting: number } {
  let delivered = 0;
  let waiting = 0;
  for (const r of res) {
    const o = outcomeOf(r.code);
    if (r.waitsForLink) {
      summary.waiting++;
      waiting++;
    } else if (o === 'delivered') {
      summary.delivered++;
      delivered++;
    } else if (o === 'failed') summary.failed++;
    else summary.deferred++;
  }
  return { delivered, waiting };
}
