/**
 * intake/body-scanner.ts — checks message data as it streams in and hands
 * back what is to be stored (a pure state machine, fed chunk by chunk; no
 * I/O). Called by SMTP intake for every DATA chunk, after smtp-server has
 * taken the dot-stuffing off and found the end of data.
 *
 * - Bare LF (an LF without a CR before it) is a line end, as in Postfix 3.9
 *   (`smtpd_forbid_bare_newline = normalize`): push() returns the chunk with
 *   a CR put before it, so the stored message has CRLF lines only. Whether a
 *   message with bare LFs is kept at all is bareNewlineAction()'s answer.
 * - Bare CR (a CR without an LF after it) is recorded and never repaired:
 *   the message is refused (`\r.\r`, `\r\n.\r` are SMTP smuggling attempts).
 * - Only smtp-server's CRLF.CRLF ends the data, so a `\n.\n` or `\n.\r\n`
 *   inside it reaches push() as an ordinary line "." and is stored as such;
 *   the outbound client dot-stuffs it (`..`), so it can never end the next
 *   hop's DATA.
 * - 8-bit bytes are noted (the envelope is then 8BITMIME), the size counted.
 * - A NUL byte anywhere is recorded (hasNul): the message is refused
 *   (`554 5.6.0`), never stripped, as a NUL means nothing in a mail and is
 *   where parsers downstream disagree.
 * - `Received:` fields of the header section are counted (receivedCount,
 *   up to the first empty line): more than MAX_RECEIVED is a mail loop
 *   (`554 5.4.6 Too many hops`, RFC 5321 §6.3).
 *
 * Known limit: a chunk is copied only when it holds a bare LF.
 */
import { isAscii } from 'node:buffer';

const CR = Buffer.from('\r');
/** More `Received:` fields than this is a loop (Postfix's hopcount_limit is 50; RFC 5321 §6.3 suggests at least 100 for relays, a gateway sees fewer). */
export const MAX_RECEIVED = 30;
const RECEIVED = 'received:';

/** What intake does with a bare LF in DATA (SPEC §9, `smtp.bareNewline`). */
export type BareNewlineAction = 'normalize' | 'reject';

/** LAN clients (smtp.mynetworks) are always normalized, like Postfix's exclusion of mynetworks from `reject`. */
export function bareNewlineAction(setting: BareNewlineAction, isLanClient: boolean): BareNewlineAction {
  return isLanClient ? 'normalize' : setting;
}

export class BodyScanner {
  /** Bytes received (before normalization). */
  size = 0;
  /** Bytes returned by push() (after normalization). */
  storedSize = 0;
  hasBareLf = false;
  hasBareCr = false;
  hasEightBit = false;
  hasNul = false;
  /** `Received:` fields in the header section. */
  receivedCount = 0;
  private prevCR = false;
  private inHeader = true;
  /** The first bytes (lower case, up to RECEIVED's length) of the header line being read. */
  private linePrefix = '';

  /** More than MAX_RECEIVED `Received:` fields: a mail loop. */
  get hasTooManyHops(): boolean {
    return this.receivedCount > MAX_RECEIVED;
  }

  /** A bare LF or a bare CR was seen. */
  get hasBareNewline(): boolean {
    return this.hasBareLf || this.hasBareCr;
  }

  /** Scans a chunk and returns it with every bare LF turned into CRLF. */
  push(chunk: Buffer): Buffer {
    this.size += chunk.length;
    if (chunk.length === 0) return chunk;
    if (!this.hasEightBit && !isAscii(chunk)) this.hasEightBit = true;
    if (!this.hasNul && chunk.includes(0)) this.hasNul = true;
    // a CR that ended the previous chunk must be followed by LF
    if (this.prevCR && chunk[0] !== 0x0a) this.hasBareCr = true;
    if (!this.hasBareCr) {
      for (let j = chunk.indexOf(0x0d); j !== -1 && j < chunk.length - 1; j = chunk.indexOf(0x0d, j + 1)) {
        if (chunk[j + 1] !== 0x0a) {
          this.hasBareCr = true;
          break;
        }
      }
    }
    const pieces: Buffer[] = [];
    let from = 0;
    for (let i = chunk.indexOf(0x0a); i !== -1; i = chunk.indexOf(0x0a, i + 1)) {
      const afterCR = i === 0 ? this.prevCR : chunk[i - 1] === 0x0d;
      if (afterCR) continue;
      this.hasBareLf = true;
      pieces.push(chunk.subarray(from, i), CR);
      from = i;
    }
    this.prevCR = chunk[chunk.length - 1] === 0x0d;
    const out = pieces.length ? Buffer.concat([...pieces, chunk.subarray(from)]) : chunk;
    this.storedSize += out.length;
    if (this.inHeader) this.countHeaders(out);
    return out;
  }

  /** Counts `Received:` lines of the header section in stored (CRLF) data, across chunks. */
  private countHeaders(data: Buffer): void {
    let from = 0;
    while (this.inHeader && from < data.length) {
      const nl = data.indexOf(0x0a, from);
      const end = nl === -1 ? data.length : nl;
      if (this.linePrefix.length < RECEIVED.length) {
        this.linePrefix += data.toString('latin1', from, Math.min(end, from + RECEIVED.length - this.linePrefix.length)).toLowerCase();
      }
      if (nl === -1) return;
      if (this.linePrefix === '' || this.linePrefix === '\r') this.inHeader = false;
      else if (this.linePrefix === RECEIVED) this.receivedCount++;
      this.linePrefix = '';
      from = nl + 1;
    }
  }

  /** Call once the data has ended. */
  end(): void {
    if (this.prevCR) this.hasBareCr = true;
  }
}
