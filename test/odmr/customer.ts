/**
 * test/odmr/customer.ts — an ODMR customer for tests of quietlink's ODMR
 * server: a line client that can STARTTLS, AUTH (PLAIN, CRAM-MD5) and, after
 * `250` to ATRN, hand its connection to a recording smtp-server (the
 * customer's mail server), which then receives what quietlink delivers.
 * Every wait is bounded.
 */
import net from 'node:net';
import tls from 'node:tls';
import crypto from 'node:crypto';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { withTimeout } from '../helpers/daemon.js';

export interface Reply { code: number; text: string }

export interface Received { from: string; to: string[]; body: string }

/** The customer's mail server: keeps every message; `dropAt` cuts the connection at that message's end of data (1-based). */
export function customerServer(o: { dropAt?: number } = {}) {
  const messages: Received[] = [];
  const waiters: Array<() => void> = [];
  let seen = 0;
  const server = new SMTPServer({
    name: 'mail.cust1.dom', disabledCommands: ['STARTTLS', 'AUTH'], authOptional: true, disableReverseLookup: true, logger: false,
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        seen++;
        if (o.dropAt === seen) {
          dropped?.destroy();
          return;
        }
        messages.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), body: Buffer.concat(chunks).toString() });
        for (const w of waiters.splice(0)) w();
        cb(null, 'Ok: at the customer');
      });
    },
  });
  server.on('error', () => undefined);
  let dropped: net.Socket | null = null;
  return {
    server,
    messages,
    setSocket: (s: net.Socket) => (dropped = s),
    waitMessages: (n: number, ms = 20_000) => withTimeout(new Promise<void>((resolve) => {
      const check = () => (messages.length >= n ? resolve() : waiters.push(check));
      check();
    }), ms, `${n} messages at the customer`),
  };
}

export class Customer {
  private buf = '';
  private wake: (() => void) | null = null;
  closed = false;

  private constructor(private sock: net.Socket) {
    this.listen();
  }

  private listen(): void {
    this.sock.on('data', (b: Buffer) => {
      this.buf += b.toString('latin1');
      this.wake?.();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    this.sock.on('error', () => undefined);
  }

  static async connect(port: number): Promise<Customer> {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    return new Customer(sock);
  }

  async reply(ms = 10_000): Promise<Reply> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*(\d{3})(?: [^\r\n]*)?\r\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return { code: Number(m[1]), text: m[0].trimEnd() };
      }
      if (this.closed) throw new Error(`connection closed; unparsed ${JSON.stringify(this.buf)}`);
      if (Date.now() >= deadline) throw new Error(`no reply within ${ms} ms; have ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.wake = () => (clearTimeout(t), (this.wake = null), resolve());
      });
    }
  }

  cmd(line: string): Promise<Reply> {
    this.sock.write(`${line}\r\n`);
    return this.reply();
  }

  async startTls(): Promise<void> {
    const r = await this.cmd('STARTTLS');
    if (r.code !== 220) throw new Error(`STARTTLS refused: ${r.text}`);
    this.sock.removeAllListeners('data');
    this.sock.removeAllListeners('close');
    const secure = tls.connect({ socket: this.sock, rejectUnauthorized: false });
    await new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    this.sock = secure;
    this.listen();
  }

  authPlain(user: string, pass: string): Promise<Reply> {
    return this.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`);
  }

  async authCram(user: string, secret: string): Promise<Reply> {
    const c = await this.cmd('AUTH CRAM-MD5');
    if (c.code !== 334) return c;
    const challenge = Buffer.from(c.text.slice(4), 'base64').toString();
    const digest = crypto.createHmac('md5', secret).update(challenge).digest('hex');
    return this.cmd(Buffer.from(`${user} ${digest}`).toString('base64'));
  }

  /** After 250 to ATRN: the connection goes to the customer's mail server; resolves when it closes. */
  turn(s: ReturnType<typeof customerServer>): Promise<void> {
    this.sock.removeAllListeners('data');
    this.sock.removeAllListeners('close');
    const closed = new Promise<void>((resolve) => this.sock.once('close', () => resolve()));
    s.setSocket(this.sock);
    s.server.connect(this.sock, {});
    return closed;
  }

  close(): void {
    this.sock.destroy();
  }
}
