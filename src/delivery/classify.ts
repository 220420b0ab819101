/**
 * delivery/classify.ts — what an SMTP reply means for one recipient (pure):
 * 2xx delivered, 5xx failed, anything else (4xx, no reply, network error)
 * deferred; and the RFC 3463 code it carries (or the class default).
 */

export type Outcome = 'delivered' | 'failed' | 'deferred';

export function outcomeOf(code: number): Outcome {
  if (code >= 200 && code < 300) return 'delivered';
  if (code >= 500 && code < 600) return 'failed';
  return 'deferred';
}

export function enhancedCode(code: number, text: string): string {
  const m = /^\s*(?:\d{3}[ -])?([245]\.\d{1,3}\.\d{1,3})\b/.exec(text);
  if (m && m[1][0] === String(code)[0]) return m[1];
  return code >= 200 && code < 300 ? '2.0.0' : code >= 500 && code < 600 ? '5.0.0' : '4.0.0';
}
