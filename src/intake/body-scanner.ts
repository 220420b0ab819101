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
 *
 * Known limit: a chunk is copied only when it holds a bare LF.
 */
import { isAscii } from 'node:buffer';

const CR = Buffer.from('\r');

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
  private prevCR = false;

  /** A bare LF or a bare CR was seen. */
  get hasBareNewline(): boolean {
    return this.hasBareLf || this.hasBareCr;
  }

  /** Scans a chunk and returns it with every bare LF turned into CRLF. */
  push(chunk: Buffer): Buffer {
    this.size += chunk.length;
    if (chunk.length === 0) return chunk;
    if (!this.hasEightBit && !isAscii(chunk)) this.hasEightBit = true;
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
    return out;
  }

  /** Call once the data has ended. */
  end(): void {
    if (this.prevCR) this.hasBareCr = true;
  }
}
