/**
 * dns/rtt-timeout.ts — how long to wait for one upstream server (pure): the
 * RFC 6298 estimator over measured round trips (SRTT + 4·RTTVAR), bounded
 * by a floor (a recursive upstream may need a few hundred ms for a name it
 * has not cached, even when its cached answers come back in 1 ms) and a
 * ceiling (a LAN client gives up after a few seconds). Before the first
 * measurement the initial value is used; each timeout doubles the wait up
 * to the ceiling until an answer is measured again. Owned by one Upstream
 * per server; the caller passes the measured milliseconds.
 */

export interface RttBounds {
  floorMs: number;
  ceilingMs: number;
  initialMs: number;
}

export const DEFAULT_RTT_BOUNDS: RttBounds = { floorMs: 300, ceilingMs: 3000, initialMs: 1000 };

export class RttTimeout {
  private srtt: number | null = null;
  private rttvar = 0;
  private backoff = 1;

  constructor(readonly bounds: RttBounds = DEFAULT_RTT_BOUNDS) {}

  /** Milliseconds to wait for the next answer from this server. */
  get timeoutMs(): number {
    const { floorMs, ceilingMs, initialMs } = this.bounds;
    const base = this.srtt === null ? initialMs : this.srtt + 4 * this.rttvar;
    return Math.round(Math.min(ceilingMs, Math.max(floorMs, base) * this.backoff));
  }

  /** An answer came after `ms`. */
  answered(ms: number): void {
    this.backoff = 1;
    if (this.srtt === null) {
      this.srtt = ms;
      this.rttvar = ms / 2;
      return;
    }
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
    this.srtt = 0.875 * this.srtt + 0.125 * ms;
  }

  /** No answer within timeoutMs. */
  timedOut(): void {
    this.backoff = Math.min(this.backoff * 2, 64);
  }
}
