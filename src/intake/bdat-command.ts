/**
 * intake/bdat-command.ts — what intake does with a `BDAT <size> [LAST]`
 * command (RFC 3030 CHUNKING), as pure decisions; bdat.ts carries them out
 * on smtp-server's connection. No I/O, no clock.
 *
 * - Syntax: `BDAT` SP 1*DIGIT [SP `LAST`] (RFC 3030 §4; LAST in any case,
 *   extra spaces tolerated). Anything else (a sign, a hex or exponent form,
 *   more than 20 digits, another argument) is `501 5.5.4`: the size is not
 *   known, so nothing can be read as the chunk and the bytes that follow are
 *   commands again.
 * - Outside a transaction (no MAIL, or no accepted RCPT): `503 5.5.1`, and the
 *   chunk's octets are still read and thrown away, so the session stays in
 *   step with a client that pipelined them (RFC 3030 §2: "MUST accept and
 *   discard the associated message data").
 * - Over the size limit (smtp.maxMessageSize, counted over every chunk of the
 *   transaction): `552 5.3.4`, the chunk read and thrown away.
 * - Otherwise the chunk is taken: `250 2.0.0 <n> octets received`, or with
 *   LAST the reply to the whole message (the same as DATA's).
 *
 * A refused BDAT ends its transaction (refusal.endsTransaction): nothing of
 * it is kept and a pipelined `BDAT ... LAST` that follows finds no
 * transaction (503), so a message that lost a chunk can never be queued.
 */

export interface BdatCommand {
  /** Octets in the chunk. */
  size: number;
  isLast: boolean;
}

export interface BdatFacts {
  /** The command line as received (without its CRLF). */
  line: string;
  hasMail: boolean;
  /** At least one RCPT was accepted. */
  hasRcpt: boolean;
  /** Octets of the transaction's earlier chunks. */
  received: number;
  /** smtp.maxMessageSize; 0 = no limit. */
  maxSize: number;
}

export type BdatDecision =
  | { kind: 'chunk'; size: number; isLast: boolean }
  | { kind: 'refuse'; code: number; text: string; /** Octets to read and throw away before the reply. */ discard: number; endsTransaction: boolean };

/** `BDAT 1000 LAST` → { size: 1000, isLast: true }; null when it is not that shape (pure). */
export function parseBdat(line: string): BdatCommand | null {
  const m = /^BDAT +(\d{1,20})(?: +(LAST))? *$/i.exec(line);
  if (!m) return null;
  // beyond 2^53 the count is not exact, but no client sends 9 petabytes to find out
  return { size: Number(m[1]), isLast: m[2] !== undefined };
}

export function decideBdat(f: BdatFacts): BdatDecision {
  const cmd = parseBdat(f.line);
  if (!cmd) return { kind: 'refuse', code: 501, text: '5.5.4 Syntax: BDAT <size> [LAST]', discard: 0, endsTransaction: true };
  if (!f.hasMail) return { kind: 'refuse', code: 503, text: '5.5.1 Bad sequence of commands: MAIL first', discard: cmd.size, endsTransaction: false };
  if (!f.hasRcpt) return { kind: 'refuse', code: 503, text: '5.5.1 Bad sequence of commands: no valid recipients', discard: cmd.size, endsTransaction: false };
  if (f.maxSize > 0 && f.received + cmd.size > f.maxSize) {
    return { kind: 'refuse', code: 552, text: `5.3.4 Message size exceeds fixed limit of ${f.maxSize} bytes`, discard: cmd.size, endsTransaction: true };
  }
  return { kind: 'chunk', size: cmd.size, isLast: cmd.isLast };
}

/** Does this command line go to the BDAT handler (smtp-server takes the verb up to the first space)? */
export function isBdatLine(line: string): boolean {
  return /^BDAT /i.test(line);
}

/**
 * Pure: how much of a command-mode socket chunk is command text, for the
 * bare <CR>/<LF> check (smtp-extensions.ts): everything up to and including
 * the line end of the first BDAT command, whose chunk follows (message data,
 * never checked as commands), or the whole chunk. `head` is the start (up to
 * 5 bytes) of the line the previous chunk left unfinished; the returned head
 * is the one this chunk leaves.
 */
export function commandTextEnd(chunk: Buffer, head: string): { end: number; head: string } {
  let from = 0;
  let h = head;
  while (from < chunk.length) {
    const nl = chunk.indexOf(0x0a, from);
    const lineEnd = nl === -1 ? chunk.length : nl;
    if (h.length < 5) h += chunk.toString('latin1', from, Math.min(lineEnd, from + 5 - h.length));
    if (nl === -1) return { end: chunk.length, head: h };
    if (isBdatLine(h)) return { end: nl + 1, head: '' };
    h = '';
    from = nl + 1;
  }
  return { end: chunk.length, head: h };
}
