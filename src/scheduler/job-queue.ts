/**
 * scheduler/job-queue.ts — a bounded hand-over between the run that walks
 * the queue (producer) and the connections of one next hop (consumers), so
 * a hop keeps its connections open for the whole run while the walk goes
 * on, and the walk waits when the hops fall behind (memory stays bounded
 * however large the queue).
 */

export class JobQueue<T> {
  private items: T[] = [];
  private closed = false;
  private takers: Array<(v: T | null) => void> = [];
  private spaceWaiters: Array<() => void> = [];

  constructor(private readonly capacity: number) {}

  /** Adds a job; waits while the queue is full. */
  async push(item: T): Promise<void> {
    while (this.items.length >= this.capacity && this.takers.length === 0) {
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    const taker = this.takers.shift();
    if (taker) taker(item);
    else this.items.push(item);
  }

  /** The next job, or null once the producer is done and nothing is left. */
  next(): Promise<T | null> {
    const item = this.items.shift();
    if (item !== undefined) {
      this.spaceWaiters.shift()?.();
      return Promise.resolve(item);
    }
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => this.takers.push(resolve));
  }

  /** No more jobs will come. */
  close(): void {
    this.closed = true;
    for (const t of this.takers.splice(0)) t(null);
  }

  get length(): number {
    return this.items.length;
  }
}
