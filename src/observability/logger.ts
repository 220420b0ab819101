/**
 * observability/logger.ts — pino JSON logs, one line per event. The daemon
 * logs to stdout (asynchronously, flushed on exit); CLI commands log
 * warnings to stderr.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

/** JSON lines to stdout (the daemon), or to stderr (a daemonless run, whose stdout is the report). */
export function createDaemonLogger(level: string, dest: 1 | 2 = 1): Logger {
  return pino(
    { level, base: { svc: 'quietlink' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest, sync: false }),
  );
}

export function createCliLogger(level = 'warn'): Logger {
  return pino({ level, base: undefined, timestamp: false }, pino.destination({ dest: 2, sync: true }));
}
