/**
 * test/helpers/messages.ts — deterministic test messages: the same seq always
 * gives the same bytes (CRLF, 7-bit, dot-safe), 1–20 KB.
 */
import crypto from 'node:crypto';

export function messageFor(seq: number): string {
  const lines = [`Subject: message ${seq}`, `X-Seq: ${seq}`, ''];
  const count = 16 + (seq * 37) % 240;
  let h = crypto.createHash('sha256').update(String(seq)).digest('hex');
  for (let i = 0; i < count; i++) {
    h = crypto.createHash('sha256').update(h).digest('hex');
    lines.push(`${i} ${h}${h.slice(0, 16)}`);
  }
  return `${lines.join('\r\n')}\r\n`;
}
