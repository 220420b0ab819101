/**
 * intake/recipient-expansion.ts — the envelope recipients of an SMTP
 * transaction once IntakeDeps.expandRecipient (aliases) has had its say.
 * Pure. SMTP intake marks each accepted RCPT with what it expanded to and
 * calls envelopeRecipients() at DATA.
 *
 * An expanded recipient keeps the RCPT's NOTIFY, and its ORCPT or else
 * `rfc822;<address as given>`, so a DSN names the address the sender used
 * (as Postfix's original_recipient does). Duplicates (case-insensitive)
 * are recorded once, the first one kept.
 */
import type { SMTPServerAddress } from 'smtp-server';
import type { MessageDraft } from '../queue/queue.js';

/** A recipient as smtp-server keeps it, with what expandRecipient() made of it. */
export type Rcpt = SMTPServerAddress & { qlExpandedTo?: string[] };

export function envelopeRecipients(rcpts: readonly Rcpt[]): MessageDraft['recipients'] {
  const seen = new Set<string>();
  const out: MessageDraft['recipients'] = [];
  for (const r of rcpts) {
    const orcpt = r.dsn?.orcpt ?? (r.qlExpandedTo ? `rfc822;${r.address}` : undefined);
    for (const address of r.qlExpandedTo ?? [r.address]) {
      const key = address.toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ address, orcpt, notify: r.dsn?.notify });
    }
  }
  return out;
}
