/**
 * scheduler/next-attempt.ts — retry timing (pure). The first retry comes
 * after queue.minQueueAge, each later one after twice the previous wait,
 * capped at four hours (or minQueueAge when larger); RFC 5321 §4.5.4.1.
 */

const CAP = 4 * 3_600_000;

export function retryDelay(attempts: number, minQueueAge: number): number {
  if (minQueueAge <= 0) return 0;
  const exp = Math.min(attempts - 1, 20);
  return Math.min(minQueueAge * 2 ** Math.max(0, exp), Math.max(CAP, minQueueAge));
}

export function isDue(nextAttempt: string | null, now: number): boolean {
  return nextAttempt === null || Date.parse(nextAttempt) <= now;
}
