/**
 * odmr/lines.ts — line-at-a-time reading of an SMTP connection for the
 * ODMR dialogue (both sides), that can let go of the socket at the
 * turnaround: detach() stops reading and returns every byte read but not
 * consumed, so the next owner of the connection (the delivery engine on
 * the ISP side, smtp-server on the office side) starts exactly where the
 * dialogue stopped. A line longer than `maxLine` ends the reader with an
 * error (the caller answers and closes). Lines end in CRLF; a bare LF is
 * taken as a line end (no DATA is ever read here: nothing to smuggle).
 */
import type { Socket } from 'node:net';

export interface Reply {
  code: number;
  /** The text of every line, without the codes, joined by a space. */
  text: string;
  /** The lines as received (for EHLO keywords). */
  lines: string[];
}

export class LineReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly ready: string[] = [];
  private waiter: ((l: string | Error) => void) | null = null;
  private failure: Error | null = null;
  private readonly onData = (d: Buffer) => this.push(d);
  private readonly onEnd = () => this.fail(new Error('connection closed by the peer'));
  private readonly onError = (err: Error) => this.fail(err);

  constructor(readonly socket: Socket, private readonly maxLine = 4096) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  private push(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (let nl = this.buf.indexOf(0x0a); nl >= 0; nl = this.buf.indexOf(0x0a)) {
      this.ready.push(this.buf.subarray(0, nl).toString('latin1').replace(/\r$/, ''));
      this.buf = this.buf.subarray(nl + 1);
    }
    if (this.buf.length > this.maxLine) this.fail(new Error('line too long'));
    this.deliver();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.deliver();
  }

  private deliver(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.ready.length) {
      this.waiter = null;
      w(this.ready.shift()!);
    } else if (this.failure) {
      this.waiter = null;
      w(this.failure);
    }
  }

  /** The next line; rejects when the connection ends or fails first. */
  line(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiter = (l) => (l instanceof Error ? reject(l) : resolve(l));
      this.deliver();
    });
  }

  /** The next whole reply (`250-...` lines up to `250 ...`). */
  async reply(): Promise<Reply> {
    const lines: string[] = [];
    for (;;) {
      const l = await this.line();
      lines.push(l);
      const m = /^(\d{3})([ -]|$)/.exec(l);
      if (!m) throw new Error(`not an SMTP reply: ${JSON.stringify(l.slice(0, 80))}`);
      if (m[2] !== '-') return { code: Number(m[1]), text: lines.map((x) => x.slice(4).trim()).join(' ').trim(), lines };
    }
  }

  /** Stops reading; returns the bytes read but not consumed (whole lines first, as they came). */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    this.socket.pause();
    const rest = Buffer.concat([...this.ready.map((l) => Buffer.from(`${l}\r\n`, 'latin1')), this.buf]);
    this.ready.length = 0;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
