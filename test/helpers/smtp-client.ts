/**
 * test/helpers/smtp-client.ts — a raw SMTP client that sends exactly the
 * bytes a test gives it (smuggling, bare LF, early talk) and reads whole
 * replies. Every read has a bounded timeout.
 */
import { strict as assertStrict } from 'node:assert';
import net from 'node:net';

export interface Reply {
  code: number;
  text: string;
}

export class RawSmtp {
  private buf = '';
  private waiting: (() => void) | null = null;
  closed = false;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d) => {
      this.buf += d.toString('latin1');
      this.waiting?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
    sock.on('error', () => undefined);
  }

  /** Connects to 127.0.0.1:port, from `localAddress` (another 127/8 address plays an outside client). */
  static connect(port: number, localAddress?: string): Promise<RawSmtp> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(new RawSmtp(sock)));
      sock.once('error', reject);
    });
  }

  /** Reads one complete (possibly multi-line) reply. */
  async reply(ms = 10_000): Promise<Reply> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*(\d{3})(?: ([^\r\n]*))?\r\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return { code: Number(m[1]), text: m[0].trimEnd() };
      }
      if (this.closed) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.buf)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no SMTP reply within ${ms} ms; have ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(t);
          this.waiting = null;
          resolve();
        };
      });
    }
  }

  /** Sends bytes as given (strings as latin1, so '\xe9' is one byte). */
  write(raw: string | Buffer): void {
    this.sock.write(typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw);
  }

  async cmd(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Waits until the server closes the connection. */
  async closedByServer(ms = 10_000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.waiting = () => {
          clearTimeout(t);
          this.waiting = null;
          resolve();
        };
      });
    }
    return this.closed;
  }

  close(): void {
    this.sock.destroy();
  }
}

/**
 * Mail from the Internet (127.0.0.2, outside smtp.mynetworks) to `to`, over
 * a raw session: every step's reply asserted, up to the 250 for the data.
 * `headers` (CRLF-terminated lines) go after the Subject.
 */
export async function fromOutside(port: number, to: string, subject: string, o: { headers?: string; body?: string } = {}): Promise<void> {
  const c = await RawSmtp.connect(port, '127.0.0.2');
  try {
    await c.reply();
    await c.cmd('EHLO mx.sender.test');
    assertStrict.equal((await c.cmd('MAIL FROM:<someone@sender.test>')).code, 250);
    assertStrict.equal((await c.cmd(`RCPT TO:<${to}>`)).code, 250);
    assertStrict.equal((await c.cmd('DATA')).code, 354);
    c.write(`Subject: ${subject}\r\n${o.headers ?? ''}\r\n${o.body ?? 'body'}\r\n.\r\n`);
    assertStrict.equal((await c.reply()).code, 250);
  } finally {
    c.close();
  }
}

/** Greeting, EHLO, MAIL, RCPTs, DATA with `data` (CRLF already), returning the final reply. */
export async function sendMail(port: number, from: string, to: string[], data: string, mailParams = ''): Promise<Reply> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    const mail = await c.cmd(`MAIL FROM:<${from}>${mailParams ? ` ${mailParams}` : ''}`);
    if (mail.code !== 250) return mail;
    for (const t of to) {
      const r = await c.cmd(`RCPT TO:<${t}>`);
      if (r.code !== 250) return r;
    }
    const d = await c.cmd('DATA');
    if (d.code !== 354) return d;
    c.write(`${data}.\r\n`);
    const final = await c.reply();
    await c.cmd('QUIT').catch(() => undefined);
    return final;
  } finally {
    c.close();
  }
}

