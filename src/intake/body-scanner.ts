/**
 * intake/body-scanner.ts — checks message data as it streams in (pure state
 * machine, fed chunk by chunk): bare LF and bare CR (SMTP smuggling: `\n.\r\n`,
 * `\r.\r`, `\r\n.\r` must never end or split a message), 8-bit bytes (refused
 * without BODY=8BITMIME), and the size.
 */
import { isAscii } from 'node:buffer';

export class BodyScanner {
  size = 0;
  hasBareNewline = false;
  hasEightBit = false;
  private prevCR = false;

  push(chunk: Buffer): void {
    this.size += chunk.length;
    if (!this.hasEightBit && !isAscii(chunk)) this.hasEightBit = true;
    if (this.hasBareNewline) return;
    let i = chunk.indexOf(0x0a);
    let j = chunk.indexOf(0x0d);
    // a CR that ended the previous chunk must be followed by LF
    if (this.prevCR && chunk.length > 0 && chunk[0] !== 0x0a) {
      this.hasBareNewline = true;
      return;
    }
    while (i !== -1) {
      if (i === 0 ? !this.prevCR : chunk[i - 1] !== 0x0d) {
        this.hasBareNewline = true;
        return;
      }
      i = chunk.indexOf(0x0a, i + 1);
    }
    while (j !== -1) {
      if (j === chunk.length - 1) break;
      if (chunk[j + 1] !== 0x0a) {
        this.hasBareNewline = true;
        return;
      }
      j = chunk.indexOf(0x0d, j + 1);
    }
    if (chunk.length > 0) this.prevCR = chunk[chunk.length - 1] === 0x0d;
  }

  /** Call once the data has ended. */
  end(): void {
    if (this.prevCR) this.hasBareNewline = true;
  }
}
