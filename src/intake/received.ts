/**
 * intake/received.ts — the trace header quietlink adds to every message it
 * accepts (RFC 5321 §4.4), and RFC 5322 dates. Pure.
 */

export const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
export const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
export const pad = (n: number) => String(n).padStart(2, '0');

/** `Mon, 23 Nov 2026 18:00:00 +0000` (always UTC: no time-zone database needed). */
export function rfc5322Date(ms: number): string {
  const d = new Date(ms);
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}

export interface ReceivedFacts {
  hostname: string;
  id: string;
  now: number;
  /** SMTP: the client's HELO name and IP; local submission: the user. */
  helo?: string;
  ip?: string;
  user?: string;
  protocol: 'SMTP' | 'ESMTP' | 'ESMTPS' | 'ESMTPA' | 'ESMTPSA' | 'local';
  recipient?: string;
}

const clean = (s: string) => s.replace(/[^\x21-\x7e]/g, '?').slice(0, 200);

export function receivedHeader(f: ReceivedFacts): string {
  const from = f.ip !== undefined ? `from ${clean(f.helo ?? 'unknown')} ([${f.ip.replace(/^::ffff:/, '')}])\r\n\t` : f.user ? `from ${clean(f.user)}\r\n\t` : '';
  const forPart = f.recipient ? `\r\n\tfor <${clean(f.recipient)}>` : '';
  return `Received: ${from}by ${f.hostname} (quietlink) with ${f.protocol} id ${f.id}${forPart};\r\n\t${rfc5322Date(f.now)}\r\n`;
}
