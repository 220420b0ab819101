/**
 * test/helpers/messages.ts — deterministic test messages: the same seq always
 * gives the same bytes (CRLF, 7-bit, dot-safe), 1–20 KB.
 */
import crypto from 'node:crypto';

export function messageFor(seq: number): string {
  // complete headers: the gateway adds none to a LAN client's message, so the bytes stay comparable
  const lines = [`Subject: message ${seq}`, `X-Seq: ${seq}`, 'Date: Wed, 02 Dec 2026 08:00:00 +0000', `Message-ID: <seq${seq}@test.example>`, ''];
  const count = 16 + (seq * 37) % 240;
  let h = crypto.createHash('sha256').update(String(seq)).digest('hex');
  for (let i = 0; i < count; i++) {
    h = crypto.createHash('sha256').update(h).digest('hex');
    lines.push(`${i} ${h}${h.slice(0, 16)}`);
  }
  return `${lines.join('\r\n')}\r\n`;
}
