/**
 * intake/submissions.ts — the delivery wish a `sendmail` carries for its own
 * message (-odi / -odb / -odq, SPEC §11) across the pickup: while pickup
 * requests wait, what the pickup queues is held here until its request
 * claims it and starts its attempt as asked; whatever no request claims
 * goes as deliveryMode says once the last request is answered.
 */
import type { Envelope } from '../queue/envelope.js';
import type { QueueId } from '../queue/queue-id.js';
import type { PickupResult } from './maildrop-pickup.js';

export type DeliveryWish = 'interactive' | 'background' | 'queue' | 'deferred';

export interface SubmissionsDeps {
  /** Runs the pickup (intake/maildrop-pickup.ts). */
  pickup: () => Promise<PickupResult>;
  /** What became of one maildrop file. */
  outcome: (name: string) => QueueId[] | null | undefined;
  /** deliveryMode's "at once" for these envelopes (the wish, or the configured mode). */
  afterIntake: (envs: Envelope[], mode?: DeliveryWish) => Promise<void> | undefined;
}

export class Submissions {
  private asking = 0;
  private readonly picked = new Map<QueueId, Envelope[]>();

  constructor(private readonly deps: SubmissionsDeps) {}

  /** What became of one maildrop file (for the request's answer). */
  outcome(name: string): QueueId[] | null | undefined {
    return this.deps.outcome(name);
  }

  /** The pickup's onQueued: straight on, unless a request may want to claim it. */
  onQueued(envs: Envelope[]): Promise<void> | undefined {
    if (this.asking === 0 || !envs.length) return this.deps.afterIntake(envs);
    this.picked.set(envs[0].id, envs);
    return undefined;
  }

  /** A `sendmail`'s request: picks up, starts its own message's attempt as wished; resolves once -odi's attempt is over. */
  async take(name: string | undefined, wish: DeliveryWish | undefined): Promise<PickupResult> {
    let attempt: Promise<void> | undefined;
    if (name) this.asking++;
    let result: PickupResult;
    try {
      result = await this.deps.pickup();
    } finally {
      if (name) this.asking--;
      const own = this.deps.outcome(name ?? '')?.[0];
      const envs = own === undefined ? undefined : this.picked.get(own);
      if (own !== undefined) this.picked.delete(own);
      if (envs) attempt = this.deps.afterIntake(envs, wish);
      if (this.asking === 0) {
        const rest = [...this.picked.values()];
        this.picked.clear();
        for (const e of rest) void this.deps.afterIntake(e);
      }
    }
    await attempt;
    return result;
  }
}
