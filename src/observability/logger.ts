/**
 * observability/logger.ts — pino JSON logs, one line per event. The daemon
 * logs to stdout (asynchronously, flushed on exit); CLI commands log
 * warnings to stderr.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

/** The last few warnings and errors the daemon logged, for `quietlink status`. */
export class RecentProblems {
  private readonly items: Array<{ time: string; level: 'warn' | 'error' | 'fatal'; msg: string; qid?: string }> = [];
  constructor(private readonly size: number) {}

  add(level: number, args: unknown[]): void {
    const [first, second] = args;
    const fields = typeof first === 'object' && first !== null ? first as Record<string, unknown> : {};
    const text = typeof first === 'string' ? first : typeof second === 'string' ? second : '';
    // `err` is the Error itself (pino's serializer keeps its stack and cause); older callers gave its message
    const err = fields.err instanceof Error ? fields.err.message : fields.err;
    const detail = typeof err === 'string' ? `: ${err}` : typeof fields.reason === 'string' ? `: ${fields.reason}` : '';
    this.items.push({
      time: new Date().toISOString(), level: level >= 60 ? 'fatal' : level >= 50 ? 'error' : 'warn',
      msg: `${text}${detail}`, ...(typeof fields.qid === 'string' ? { qid: fields.qid } : {}),
    });
    if (this.items.length > this.size) this.items.shift();
  }

  list() {
    return [...this.items];
  }
}

/** JSON lines to stdout (the daemon), or to stderr (a daemonless run, whose stdout is the report). */
export function createDaemonLogger(level: string, dest: 1 | 2 = 1, recent?: RecentProblems): Logger {
  return pino(
    {
      level, base: { svc: 'quietlink' }, timestamp: pino.stdTimeFunctions.isoTime,
      hooks: recent ? {
        logMethod(args, method, lvl) {
          if (lvl >= 40) recent.add(lvl, args);
          return method.apply(this, args);
        },
      } : undefined,
    },
    pino.destination({ dest, sync: false }),
  );
}

export function createCliLogger(level = 'warn'): Logger {
  return pino({ level, base: undefined, timestamp: false }, pino.destination({ dest: 2, sync: true }));
}
