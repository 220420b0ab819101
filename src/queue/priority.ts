/**
 * queue/priority.ts — sendmail's message priority (a smaller number goes
 * first): size, minus the precedence class, plus recipients; every delivery
 * attempt adds RetryFactor. Pure.
 */

export const RECIPIENT_FACTOR = 30_000;
export const CLASS_FACTOR = 1_800;
export const RETRY_FACTOR = 90_000;

export function priority(input: { size: number; recipients: number; class: number; attempts: number }): number {
  return input.size - input.class * CLASS_FACTOR + input.recipients * RECIPIENT_FACTOR + input.attempts * RETRY_FACTOR;
}

/** sendmail's Precedence header values and their classes. */
const PRECEDENCE: Record<string, number> = { 'special-delivery': 100, 'first-class': 0, list: -30, bulk: -60, junk: -100 };

export function precedenceClass(header: string | undefined): number {
  return header === undefined ? 0 : (PRECEDENCE[header.trim().toLowerCase()] ?? 0);
}
