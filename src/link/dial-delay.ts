/**
 * link/dial-delay.ts — DialDelay, at most once per window (SPEC §3, §6):
 * the first network failure of a link route inside a window (a connection,
 * or in demand mode an upstream DNS query) may only mean the line is still
 * dialing, so it waits `dialDelay` and is tried once more. Whoever fails
 * while that wait runs joins it; once it has run, later failures are real
 * and are not retried. One per window, shared by delivery and the resolver.
 */
export class DialDelay {
  private wait: Promise<void> | null = null;
  private over = false;

  constructor(private readonly ms: number, private readonly onStart?: (ms: number, what: string) => void) {}

  /** After a network failure: true once the delay has passed and the caller should try again. */
  async retry(what: string): Promise<boolean> {
    if (this.ms <= 0 || this.over) return false;
    if (!this.wait) {
      this.onStart?.(this.ms, what);
      this.wait = new Promise<void>((resolve) => setTimeout(resolve, this.ms)).then(() => {
        this.over = true;
      });
    }
    await this.wait;
    return true;
  }
}
