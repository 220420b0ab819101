/**
 * queue/locks.ts — per-message locks and change counts. Delivery holds a
 * message's lock from reading its envelope to writing its results back;
 * admin commands wait for it. A lock is a scope (`withLock`): no error path
 * can keep one. `acquire` is for a scope that spans callbacks (a delivery
 * run), whose owner releases it in a `finally`.
 */
import type { QueueId } from './queue-id.js';

export class Locks {
  private readonly held = new Map<QueueId, Promise<void>>();
  private readonly changes = new Map<QueueId, number>();

  /** Waits for the message's lock; resolves with the release. */
  async acquire(id: QueueId): Promise<() => void> {
    for (let h = this.held.get(id); h; h = this.held.get(id)) await h;
    let release!: () => void;
    const p = new Promise<void>((resolve) => (release = resolve));
    this.held.set(id, p);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (this.held.get(id) === p) this.held.delete(id);
      release();
    };
  }

  async withLock<T>(id: QueueId, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(id);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Messages locked now. */
  get size(): number {
    return this.held.size;
  }

  /**
   * How often this process changed the message since it started: every
   * change goes through the queue, so a reader that saw version N and still
   * sees N after taking the lock has the current envelope.
   */
  version(id: QueueId): number {
    return this.changes.get(id) ?? 0;
  }

  changed(id: QueueId): void {
    this.changes.set(id, this.version(id) + 1);
  }
}
