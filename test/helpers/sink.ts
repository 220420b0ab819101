/**
 * test/helpers/sink.ts — a next hop for delivery tests: a real smtp-server
 * on 127.0.0.1 (port 0) with scripted replies, counting connections and
 * keeping every message it accepted. Every wait is bounded.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { ROOT, withTimeout } from './daemon.js';

export interface SinkMessage {
  from: string;
  to: string[];
  body: string;
  user?: string;
  secure: boolean;
}

export interface SinkOptions {
  /** Reply for a recipient: null accepts; `{code, text}` refuses. */
  rcpt?: (address: string) => { code: number; text: string } | null;
  /** Refuse every connection with this greeting code (421, 554). */
  greeting?: number;
  tls?: boolean;
  /** Require AUTH (user/pass) before MAIL; without TLS, AUTH is offered in plaintext. */
  auth?: { user: string; pass: string };
  /** Listen address (default 127.0.0.1; 127.0.0.2 plays the WAN). */
  host?: string;
  /** Refuse the first N connections (closed at once), as a line still dialing would. */
  refuseFirst?: number;
  /** Answer DATA only once this promise resolves (a slow next hop). */
  holdData?: Promise<void>;
  /** Do not offer DSN (RFC 3461) in EHLO. */
  noDsn?: boolean;
}

export interface Sink {
  port: number;
  messages: SinkMessage[];
  connections: number;
  authAttempts: number;
  maxConcurrent: number;
  refused?: number;
  waitMessages(n: number, ms?: number): Promise<void>;
  close(): Promise<void>;
}

const FIX = path.join(ROOT, 'test', 'fixtures');

export async function startSink(o: SinkOptions = {}): Promise<Sink> {
  const waiters: Array<() => void> = [];
  let open = 0;
  const sink: Sink = {
    port: 0, messages: [], connections: 0, authAttempts: 0, maxConcurrent: 0,
    waitMessages: (n, ms = 20_000) => withTimeout(new Promise<void>((resolve) => {
      const check = () => (sink.messages.length >= n ? resolve() : waiters.push(check));
      check();
    }), ms, `${n} messages at the sink`),
    close: async () => undefined,
  };
  const server = new SMTPServer({
    ...(o.tls ? { key: fs.readFileSync(path.join(FIX, 'tls.key')), cert: fs.readFileSync(path.join(FIX, 'tls.crt')) } : { disabledCommands: o.auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'] }),
    ...(o.tls && !o.auth ? { disabledCommands: ['AUTH'] } : {}),
    name: 'sink.test',
    authOptional: true,
    allowInsecureAuth: true,
    disableReverseLookup: true,
    // replies carry the enhanced codes the test scripts, nothing added
    hideENHANCEDSTATUSCODES: true,
    hideDSN: Boolean(o.noDsn),
    logger: false,
    closeTimeout: 1000,
    onConnect(session, cb) {
      sink.connections++;
      open++;
      sink.maxConcurrent = Math.max(sink.maxConcurrent, open);
      if (o.greeting) return cb(Object.assign(new Error('Service not available'), { responseCode: o.greeting }));
      cb();
    },
    onClose() {
      open--;
    },
    onAuth(auth, _session, cb) {
      sink.authAttempts++;
      if (o.auth && auth.username === o.auth.user && auth.password === o.auth.pass) return cb(null, { user: auth.username });
      cb(Object.assign(new Error('5.7.8 Authentication failed'), { responseCode: 535 }));
    },
    onMailFrom(_a, session, cb) {
      if (o.auth && !session.user) return cb(Object.assign(new Error('4.7.0 Authentication required'), { responseCode: 451 }));
      cb();
    },
    onRcptTo(address, _session, cb) {
      const r = o.rcpt?.(address.address);
      if (r) return cb(Object.assign(new Error(r.text), { responseCode: r.code }));
      cb();
    },
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', async () => {
        if (o.holdData) await o.holdData;
        const env = session.envelope;
        sink.messages.push({
          from: env.mailFrom ? env.mailFrom.address : '',
          to: env.rcptTo.map((r) => r.address),
          body: Buffer.concat(chunks).toString(),
          user: session.user as string | undefined,
          secure: Boolean(session.secure),
        });
        for (const w of waiters.splice(0)) w();
        cb(null, '2.0.0 Ok: queued at the sink');
      });
    },
  });
  // "refused": the TCP connection is dropped before any greeting (a network error, not a reply)
  let refused = 0;
  server.server.prependListener('connection', (sock: net.Socket) => {
    if (o.refuseFirst && refused < o.refuseFirst) {
      refused++;
      sink.refused = refused;
      sock.destroy();
    }
  });
  // a client killed mid-session (the crash tests) resets its connection: not an error of the sink
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, o.host ?? '127.0.0.1', () => resolve()));
  sink.port = (server.server.address() as net.AddressInfo).port;
  sink.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return sink;
}

/** A loopback port with nothing listening (connection refused). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
