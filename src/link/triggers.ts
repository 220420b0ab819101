/**
 * link/triggers.ts — every wake-up that opens a flush window goes through
 * here (SPEC §4): `flush.cron` and `flush.interval` (send windows),
 * `etrn.poll` (poll windows), the link coming up (`flush.onLinkUp`), the
 * operator (the control socket calls `window()`), and the queue groups' own
 * interval runs. Windows merge what overlaps: a trigger while a window is
 * open joins it (scheduler/windows.ts), so asking twice does no harm.
 * `schedule()` (re)starts the timers of the configuration in force (start
 * and SIGHUP); `nextWindow()` is the next scheduled one (delay warnings).
 */
import cron from 'node-cron';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { LinkState } from './link-state.js';
import type { WindowRecord, WindowRequest } from '../scheduler/windows.js';

export interface TriggerDeps {
  config: () => Config;
  log: Logger;
  now: () => number;
  link: LinkState;
  window: (req: WindowRequest) => Promise<WindowRecord>;
  /** A queue group's own interval run (not a window: it never gets the link by itself). */
  groupRun: (group: string) => Promise<unknown>;
}

type Task = ReturnType<typeof cron.schedule>;

export class Triggers {
  private timers: NodeJS.Timeout[] = [];
  private tasks: Task[] = [];
  private offLink: (() => void) | null = null;
  /** Each queue group's interval run in progress. */
  private readonly groupRuns = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: TriggerDeps) {}

  /** Opens (or joins) a window; failures are logged, never thrown at a timer. */
  fire(req: WindowRequest): void {
    this.deps.window(req).catch((err) => this.deps.log.error({ cause: req.cause, err }, 'window failed'));
  }

  schedule(): void {
    this.stop();
    const c = this.deps.config();
    const cronOptions = (name: string) => ({ timezone: c.flush.timezone, noOverlap: true, name }) as Parameters<typeof cron.schedule>[2];
    if (c.flush.interval > 0) this.timers.push(setInterval(() => this.fire({ cause: 'interval' }), c.flush.interval));
    for (const g of c.queue.groups) {
      if (g.interval && g.runners > 0) {
        this.timers.push(setInterval(() => {
          // a group's run still going: the next tick is merged into it, not started beside it
          if (this.groupRuns.has(g.name)) return;
          const run = this.deps.groupRun(g.name)
            .catch((err) => this.deps.log.error({ err, group: g.name }, 'queue run failed'))
            .finally(() => this.groupRuns.delete(g.name));
          this.groupRuns.set(g.name, run);
        }, g.interval));
      }
    }
    for (const expr of c.flush.cron) this.tasks.push(cron.schedule(expr, () => this.fire({ cause: `cron ${expr}` }), cronOptions(`flush ${expr}`)));
    for (const expr of c.etrn.poll) this.tasks.push(cron.schedule(expr, () => this.fire({ cause: `poll ${expr}`, poll: true }), cronOptions(`poll ${expr}`)));
    this.offLink = this.deps.link.onChange((now) => {
      const cfg = this.deps.config();
      if (now.state === 'up' && cfg.flush.onLinkUp && cfg.link.mode !== 'permanent') this.fire({ cause: 'link-up' });
    });
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    for (const t of this.tasks) t.stop();
    this.offLink?.();
    this.timers = [];
    this.tasks = [];
    this.offLink = null;
  }

  /** The next scheduled send or poll window, if any. */
  nextWindow(): Date | null {
    const runs = this.tasks.map((t) => (t as unknown as { getNextRun?: () => Date | null }).getNextRun?.() ?? null).filter((d): d is Date => d !== null);
    const c = this.deps.config();
    if (c.flush.interval > 0) runs.push(new Date(this.deps.now() + c.flush.interval));
    return runs.sort((a, b) => a.getTime() - b.getTime())[0] ?? null;
  }
}
