/**
 * intake/error-limits.ts — what a session's errors cost the client (SPEC §9
 * "Abuse"), as pure decisions after Postfix's smtpd_soft_error_limit,
 * smtpd_hard_error_limit and smtpd_error_sleep_time.
 *
 * - Every 4xx/5xx reply to a command (459, 501, 535, 550, 555, a refused
 *   DATA ...) is an error; 421 is not counted, it ends the session anyway.
 * - From the SOFT_ERROR_LIMIT-th error on, each further command waits
 *   errorDelay() before it is read, growing by ERROR_DELAY_STEP_MS up to
 *   ERROR_DELAY_MAX_MS: a flood of bad commands slows down, a client that
 *   made one typo does not notice.
 * - At HARD_ERROR_LIMIT errors the session gets `421 4.7.0 Too many errors`
 *   and is closed (smtp-guards.ts).
 * - ErrorTally keeps the log short: each kind of error is logged
 *   LOGGED_PER_KIND times a session, the rest is counted and summed up once
 *   when the session closes.
 */

export const SOFT_ERROR_LIMIT = 3;
export const HARD_ERROR_LIMIT = 20;
export const ERROR_DELAY_STEP_MS = 250;
export const ERROR_DELAY_MAX_MS = 1_000;
export const LOGGED_PER_KIND = 5;

/** Is this reply an error that counts against the session? */
export function isCountedError(code: number): boolean {
  return code >= 400 && code !== 421;
}

/** How long the next command waits when the session has made `errors` errors (ms). */
export function errorDelay(errors: number): number {
  if (errors < SOFT_ERROR_LIMIT) return 0;
  return Math.min((errors - SOFT_ERROR_LIMIT + 1) * ERROR_DELAY_STEP_MS, ERROR_DELAY_MAX_MS);
}

/** Counts a session's errors by kind and says which ones still go to the log. */
export class ErrorTally {
  private readonly counts = new Map<string, number>();

  /** Records one error of `kind`; true while this kind should still be logged. */
  record(kind: string): boolean {
    const n = (this.counts.get(kind) ?? 0) + 1;
    this.counts.set(kind, n);
    return n <= LOGGED_PER_KIND;
  }

  /** Errors recorded but not logged, by kind; null when every one was logged. */
  unlogged(): Record<string, number> | null {
    let out: Record<string, number> | null = null;
    for (const [kind, n] of this.counts) if (n > LOGGED_PER_KIND) (out ??= {})[kind] = n - LOGGED_PER_KIND;
    return out;
  }
}
