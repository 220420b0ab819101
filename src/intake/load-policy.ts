/**
 * intake/load-policy.ts — sendmail's QueueLA / RefuseLA / QueueFactor
 * (SPEC §9, reference seed 003).
 *
 * Above queueLA a message is queued instead of delivered at once when
 * `priority > queueFactor / (load - queueLA + 1)`: the bigger the message and
 * the more often it was tried, the sooner it waits. At or above refuseLA new
 * SMTP connections get 421 4.3.2. Left unset, queueLA is 8 × CPUs and
 * refuseLA 12 × CPUs; a value set in the configuration is absolute (sendmail
 * multiplies only its defaults by the CPU count).
 *
 * The decisions are pure; readLoadAverage() is the one place the load comes
 * from (the 1-minute figure of /proc/loadavg, as sendmail's CurrentLA).
 */
import fs from 'node:fs';
import os from 'node:os';

export interface LoadThresholds {
  queueLA: number;
  refuseLA: number;
  queueFactor: number;
}

export function loadThresholds(q: { queueLA?: number; refuseLA?: number; queueFactor: number }, cpus: number): LoadThresholds {
  const n = Math.max(1, cpus);
  return { queueLA: q.queueLA ?? 8 * n, refuseLA: q.refuseLA ?? 12 * n, queueFactor: q.queueFactor };
}

/** Why a message of this priority waits for a queue run at this load; null = deliver now. */
export function shouldQueue(load: number, priority: number, t: LoadThresholds): string | null {
  if (!(load > t.queueLA)) return null;
  const limit = t.queueFactor / (load - t.queueLA + 1);
  return priority > limit
    ? `load average ${load.toFixed(2)} > queueLA ${t.queueLA} and priority ${priority} > queueFactor / (load - queueLA + 1) = ${Math.round(limit)}`
    : null;
}

/** At or above refuseLA, new connections are refused. */
export function refusesConnections(load: number, t: LoadThresholds): boolean {
  return load >= t.refuseLA;
}

/**
 * The 1-minute load average. QUIETLINK_LOADAVG names a file in /proc/loadavg's
 * format to read instead (tests and drills set the load through it).
 */
export function readLoadAverage(): number {
  const file = process.env.QUIETLINK_LOADAVG;
  if (!file) return os.loadavg()[0];
  try {
    const v = Number(fs.readFileSync(file, 'utf8').trim().split(/\s+/)[0]);
    return Number.isFinite(v) ? v : os.loadavg()[0];
  } catch {
    return os.loadavg()[0];
  }
}
