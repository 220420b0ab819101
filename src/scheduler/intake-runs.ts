/**
 * scheduler/intake-runs.ts — deliveryMode's "at once" after intake, merged:
 * messages committed in the same turn of the event loop (a burst of SMTP
 * sessions, a pipelined client, a maildrop sweep) go in one run, so they
 * share connections, instead of one run per message. Interactive callers
 * get the promise of the run that carries their message.
 */
import type { QueueId } from '../queue/queue-id.js';

export type IntakeMode = 'interactive' | 'background' | 'queue' | 'deferred';

interface Batch {
  ids: QueueId[];
  done: Promise<void>;
}

export class IntakeRuns {
  private readonly batches = new Map<IntakeMode, Batch>();

  /** `run` carries out one merged run for these IDs in this mode. */
  constructor(private readonly run: (ids: QueueId[], mode: IntakeMode) => Promise<void>) {}

  /** Adds messages to the run about to start for this mode; resolves when that run is over. */
  wake(ids: readonly QueueId[], mode: IntakeMode): Promise<void> {
    let batch = this.batches.get(mode);
    if (!batch) {
      const fresh: Batch = { ids: [], done: Promise.resolve() };
      fresh.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.batches.delete(mode);
        return this.run(fresh.ids, mode);
      });
      this.batches.set(mode, (batch = fresh));
    }
    batch.ids.push(...ids);
    return batch.done;
  }
}
