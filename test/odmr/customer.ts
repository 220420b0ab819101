/**
 * test/odmr/customer.ts — an ODMR customer for tests of quietlink's ODMR
 * server: a line client that can STARTTLS, AUTH (PLAIN, CRAM-MD5) and, after
 * `250` to ATRN, hand its connection to a recording smtp-server (the
 * customer's mail server), which then receives what quietlink delivers.
 * Every wait is bounded.
 */
import net from 'node:net';
import crypto from 'node:crypto';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { withTimeout } from '../helpers/daemon.js';
import { TlsSmtp } from '../helpers/security.js';
import type { Reply } from '../helpers/smtp-client.js';

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

/** The line client of test/helpers/security.ts (reader, STARTTLS), with AUTH and the turn after ATRN. */
export class Customer extends TlsSmtp {
  static override async connect(port: number): Promise<Customer> {
    return new Customer(await TlsSmtp.open(port, '127.0.0.2'));
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
    const sock = this.sock as net.Socket;
    sock.removeAllListeners('data');
    sock.removeAllListeners('close');
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    s.setSocket(sock);
    s.server.connect(sock, {});
    return closed;
  }
}
