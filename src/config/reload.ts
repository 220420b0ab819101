/**
 * config/reload.ts — what a reload (SIGHUP, a changed file, newaliases) may
 * change, decided purely: settings bound, opened or built at start (spool,
 * listeners, hostname, timeouts, queue groups, the watched interface, the
 * resolver's sockets) stay until a restart and are named, so the log can
 * say so rather than pretend; everything else takes effect now.
 */
import type { Config } from './schema.js';

/** The settings a reload cannot change. */
function restartOnly(c: Config) {
  return {
    spool: c.spool, smtp: c.smtp, dns: c.dns, metrics: c.metrics, hostname: c.hostname,
    timeout: c.timeout, 'queue.groups': c.queue.groups, 'link.interface': c.link.interface,
  };
}

export interface Reloaded {
  config: Config;
  /** Keys whose change waits for a restart. */
  fixed: string[];
  /** Flush windows, poll windows or their time zone changed: the timers are set anew. */
  rescheduled: boolean;
}

export function mergeReload(current: Config, next: Config): Reloaded {
  const atStart = restartOnly(current);
  const fresh = restartOnly(next);
  const fixed = (Object.keys(atStart) as Array<keyof typeof atStart>).filter((k) => JSON.stringify(fresh[k]) !== JSON.stringify(atStart[k]));
  const rescheduled = JSON.stringify([next.flush, next.etrn.poll]) !== JSON.stringify([current.flush, current.etrn.poll]);
  const config: Config = {
    ...next,
    spool: current.spool,
    metrics: current.metrics,
    smtp: current.smtp,
    hostname: current.hostname,
    timeout: current.timeout,
    queue: { ...next.queue, groups: current.queue.groups },
    link: { ...next.link, interface: current.link.interface },
    dns: { ...next.dns, listen: current.dns.listen, upstream: current.dns.upstream },
  };
  return { config, fixed, rescheduled };
}
