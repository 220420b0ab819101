/**
 * scheduler/slots.ts — a counting semaphore for connection slots (per next
 * hop, and queue.maxQueueChildren in all): acquire() waits for a free slot
 * and returns its release, which is idempotent; waiters are served in order.
 */
export class Slots {
  private waiting: Array<() => void> = [];
  private readonly size: number;
  constructor(private free: number) {
    this.size = free;
  }

  get isIdle(): boolean {
    return this.free === this.size && this.waiting.length === 0;
  }

  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}
