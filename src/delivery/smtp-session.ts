/**
 * delivery/smtp-session.ts — one outbound SMTP connection (nodemailer's
 * SMTPConnection) that carries many messages: connect (to an IP: nodemailer
 * then does no DNS), EHLO with our hostname, opportunistic STARTTLS, AUTH
 * from authinfo only over TLS (unless the entry allows plaintext), then
 * send() per message with RSET between, quit().
 *
 * Results are per recipient (reply code and text); nothing here decides
 * what a reply means for the queue (delivery/classify.ts does).
 *
 * Outbound encoding: the stored message goes out line by line with CRLF
 * and dot-stuffing (nodemailer's DataStream: a line "." leaves as "..", a
 * bare CR or LF would leave as CRLF), so nothing inside a message can end
 * the next hop's DATA. An 8BITMIME message goes with BODY=8BITMIME where
 * the next hop offers it and as is where it does not (sendmail's
 * EightBitMode=pass8, Exim's default; no quoted-printable conversion): a
 * note in the dialogue says so.
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Readable } from 'node:stream';
import type { AuthinfoEntry } from '../config/classic-files.js';
import type { Target } from './resolver.js';
import { formatDuration } from '../config/units.js';

/** sendmail's Timeout.* for outbound SMTP (SPEC §12 `timeout`), in ms. */
export interface Timeouts {
  iconnect: number;
  connect: number;
  helo: number;
  mail: number;
  rcpt: number;
  datainit: number;
  datablock: number;
  datafinal: number;
  /** Any other command (RSET, QUIT, STARTTLS, AUTH). */
  command: number;
}

export interface RcptResult {
  address: string;
  code: number;
  text: string;
}

export interface SessionEvent {
  dir: 'C' | 'S' | 'note';
  line: string;
  /** Which connection, e.g. `c3 127.0.0.2:25` (set by the deliverer): lines of parallel connections told apart. */
  conn?: string;
}

export class SessionError extends Error {
  constructor(message: string, readonly code: number, readonly reply: string, readonly stage: 'connect' | 'greeting' | 'auth' | 'transaction', options?: { cause?: unknown }) {
    super(message, options);
  }
}

type Conn = InstanceType<typeof SMTPConnection> & {
  secure: boolean;
  _socket?: { setTimeout(ms: number): void };
  _sendCommand(str: string, logStr?: string): void;
  _processResponse(): unknown;
  _responseQueue: unknown[];
  _createSendStream(cb: unknown): NodeJS.EventEmitter;
  /** What the connection waits for now, for the timeout's reason. */
  _qlPhase?: string;
  _remainingSetupTime(): number;
  _supportedAuth?: string[];
  _supportedExtensions?: string[];
  _envelope?: { accepted?: string[]; rejectedErrors?: Array<{ recipient?: string; responseCode?: number; response?: string }> };
};

/** How long an RSET after a failed transaction may take before the connection counts as broken. */
const RESET_TIMEOUT = 30_000;

/** A reply line without its basic code: `550 5.1.1 No such user` → `5.1.1 No such user`. */
const replyText = (response: string | undefined) => (response ?? '').replace(/^\d{3}[ -]/, '').trim();

function asSessionError(err: unknown, stage: SessionError['stage']): SessionError {
  const e = err as { responseCode?: number; response?: string; message?: string; code?: string };
  const code = e.responseCode ?? 0;
  return new SessionError(e.message ?? String(err), code, e.response ? replyText(e.response) : `${e.code ?? 'ERROR'} ${e.message ?? ''}`.trim(), stage, { cause: err });
}

export class SmtpSession {
  /** The connection cannot carry another message (closed, or a failed RSET). */
  broken = false;

  /** The server offers 8BITMIME (RFC 6152): 8-bit mail goes with BODY=8BITMIME. */
  get supports8BitMime(): boolean {
    return (this.conn._supportedExtensions ?? []).includes('8BITMIME');
  }

  /** The server offers DSN (RFC 3461): NOTIFY and ORCPT go on with the message. */
  get supportsDsn(): boolean {
    return (this.conn._supportedExtensions ?? []).includes('DSN');
  }

  private constructor(
    private readonly conn: Conn, readonly target: Target, readonly secure: boolean, readonly authenticated: boolean,
    private readonly onEvent?: (e: SessionEvent) => void,
  ) {}

  /** What the connection waited for when it timed out (MAIL, RCPT, DATA, the data, the end of data). */
  get phase(): string {
    return this.conn._qlPhase ?? 'the greeting';
  }

  /**
   * Each step gets its own timeout (sendmail's Timeout.mail, .rcpt, .datainit,
   * .datablock, .datafinal): nodemailer knows one idle timeout, so it is set
   * anew before each command and around the data.
   */
  private static phaseTimeouts(conn: Conn, t: Timeouts): void {
    // commands waiting for their reply, oldest first: with PIPELINING, MAIL, RCPT and DATA go
    // out together and the one the server stalls on is the oldest unanswered
    // nodemailer cuts the greeting wait (and STARTTLS) short by what is left of the connect
    // timeout; sendmail waits Timeout.initial for a banner after a quick connect: timeout.helo here
    conn._remainingSetupTime = () => t.helo;
    const waiting: Array<[string, number]> = [];
    const arm = () => {
      const head = waiting[0];
      if (!head) return;
      conn._qlPhase = head[0];
      conn._socket?.setTimeout(head[1]);
    };
    const send = conn._sendCommand.bind(conn);
    conn._sendCommand = (str: string, logStr?: string) => {
      const verb = String(str).split(/[ :]/)[0].toUpperCase();
      waiting.push(verb === 'MAIL' ? ['MAIL', t.mail] : verb === 'RCPT' ? ['RCPT', t.rcpt] : verb === 'DATA' ? ['DATA', t.datainit]
        : verb === 'EHLO' || verb === 'HELO' ? [verb, t.helo] : [verb, t.command]);
      if (waiting.length === 1) arm();
      send(str, logStr);
    };
    const processResponse = conn._processResponse.bind(conn);
    conn._processResponse = () => {
      const before = conn._responseQueue.length;
      const r = processResponse();
      // a whole reply was taken off the queue: its command is answered
      if (conn._responseQueue.length < before && waiting.length) {
        waiting.shift();
        arm();
      }
      return r;
    };
    const stream = conn._createSendStream.bind(conn);
    conn._createSendStream = (cb: unknown) => {
      const s = stream(cb);
      waiting.length = 0;
      conn._qlPhase = 'the data';
      conn._socket?.setTimeout(t.datablock);
      s.once('end', () => {
        conn._qlPhase = 'the end of data';
        conn._socket?.setTimeout(t.datafinal);
      });
      return s;
    };
  }

  static open(target: Target, opts: { hostname: string; timeouts: Timeouts; firstConnection?: boolean; authinfo?: AuthinfoEntry; onEvent?: (e: SessionEvent) => void }): Promise<SmtpSession> {
    const conn = new SMTPConnection({
      host: target.ip,
      port: target.port,
      name: opts.hostname,
      servername: target.name !== target.ip ? target.name : undefined,
      secure: false,
      opportunisticTLS: true,
      tls: { rejectUnauthorized: false },
      connectionTimeout: opts.firstConnection ? opts.timeouts.iconnect : opts.timeouts.connect,
      greetingTimeout: opts.timeouts.helo,
      socketTimeout: opts.timeouts.command,
      allowInternalNetworkInterfaces: true,
      transactionLog: Boolean(opts.onEvent),
      debug: Boolean(opts.onEvent),
      logger: opts.onEvent ? dialogueLogger(opts.onEvent) : false,
    } as ConstructorParameters<typeof SMTPConnection>[0]) as Conn;
    SmtpSession.phaseTimeouts(conn, opts.timeouts);
    return new Promise((resolve, reject) => {
      let done = false;
      const fail = (err: unknown, stage: SessionError['stage']) => {
        if (done) return;
        done = true;
        conn.close();
        const e = asSessionError(err, stage);
        if ((err as { timeoutType?: string }).timeoutType === 'CONNECT_TIMEOUT') {
          // no answer to the SYN at all: say which of sendmail's two connect timeouts ran out
          const which = opts.firstConnection ? 'iconnect' : 'connect';
          reject(new SessionError(e.message, 0, `Timeout connecting to [${target.ip}]:${target.port} (timeout.${which} ${formatDuration(opts.timeouts[which])})`, stage, { cause: err }));
        } else if ((err as { code?: string }).code === 'ETIMEDOUT') {
          reject(new SessionError(e.message, 0, `Timeout waiting for reply to ${conn._qlPhase ?? 'the greeting'}`, stage, { cause: err }));
        } else reject(e);
      };
      conn.once('error', (err) => fail(err, 'connect'));
      conn.connect((err?: Error) => {
        // a host that closes before its greeting reports here, not as an 'error' event
        if (err) return fail(err, 'greeting');
        const a = opts.authinfo;
        if (a && !conn.secure && !a.allowPlaintext) {
          // we hold credentials for this host but cannot send them safely: without them the
          // host would likely refuse to relay and bounce the mail, so try the next host or wait
          opts.onEvent?.({ dir: 'note', line: 'credentials withheld: the connection is not encrypted' });
          return fail(Object.assign(new Error('4.7.0 Credentials withheld: the connection is not encrypted (no STARTTLS)'), {
            responseCode: 454, response: '454 4.7.0 Credentials withheld: the connection is not encrypted (no STARTTLS)',
          }), 'auth');
        }
        const offersAuth = (conn._supportedAuth ?? []).length > 0;
        if (!a || !offersAuth) {
          done = true;
          return resolve(new SmtpSession(conn, target, conn.secure, false, opts.onEvent));
        }
        const method = a.mechanisms.find((m) => (conn._supportedAuth ?? []).includes(m));
        conn.login({ user: a.user ?? a.authzid ?? '', pass: a.password ?? '', method } as Parameters<Conn['login']>[0], (err) => {
          if (err) return fail(err, 'auth');
          done = true;
          resolve(new SmtpSession(conn, target, conn.secure, true, opts.onEvent));
        });
      });
    });
  }

  /**
   * Sends one message. Resolves with a result per recipient; rejects
   * (SessionError) only when the connection itself failed.
   */
  send(envelope: { from: string; to: string[]; dsn?: { ret?: string; envid?: string; notify?: string[]; orcpt?: string }; size: number; use8BitMime: boolean }, body: Buffer | Readable): Promise<RcptResult[]> {
    // nodemailer adds BODY=8BITMIME only where it is offered and otherwise sends the bytes unchanged
    if (envelope.use8BitMime && !this.supports8BitMime) this.onEvent?.({ dir: 'note', line: '8-bit message sent as is: the server does not offer 8BITMIME' });
    return new Promise((resolve, reject) => {
      this.conn.send(
        { from: envelope.from, to: envelope.to, dsn: envelope.dsn, size: envelope.size, use8BitMime: envelope.use8BitMime } as Parameters<Conn['send']>[0],
        body as Parameters<Conn['send']>[1],
        (err, info) => {
          if (err) {
            const e = err as Error & { code?: string; responseCode?: number; response?: string; rejectedErrors?: Array<{ recipient: string; responseCode: number; response: string }> };
            // the server refused the transaction (MAIL, every RCPT, or DATA): a reply for each recipient
            if (e.responseCode || e.code === 'EENVELOPE' || e.code === 'EMESSAGE') {
              // a recipient refused at RCPT keeps that reply; the others get the MAIL or DATA reply
              const rcptRejects = e.rejectedErrors ?? this.conn._envelope?.rejectedErrors ?? [];
              const byRcpt = new Map(rcptRejects.map((r) => [r.recipient, r]));
              const results = envelope.to.map((address) => {
                const r = byRcpt.get(address);
                return { address, code: r?.responseCode ?? e.responseCode ?? 451, text: replyText(r?.response ?? e.response ?? e.message) };
              });
              this.resetAfterFailure().then(() => resolve(results));
              return;
            }
            reject(asSessionError(err, 'transaction'));
            return;
          }
          const rejected = new Map((info.rejectedErrors ?? []).map((r) => [r.recipient ?? '', r]));
          const accepted = new Set(info.accepted as string[]);
          const results = envelope.to.map((address) => {
            const r = rejected.get(address);
            if (r) return { address, code: r.responseCode ?? 550, text: replyText(r.response) };
            return accepted.has(address) ? { address, code: 250, text: replyText(info.response) } : { address, code: 451, text: 'no reply for this recipient' };
          });
          resolve(results);
        },
      );
    });
  }

  /**
   * RSET after a failed transaction. Always resolves: a server that answers
   * 421 and hangs up, or never answers, leaves the session marked broken.
   */
  private resetAfterFailure(): Promise<void> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (broken: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.conn.removeListener('end', onEnd);
        this.conn.removeListener('error', onEnd);
        if (broken) this.broken = true;
        resolve();
      };
      const onEnd = () => finish(true);
      const timer = setTimeout(() => finish(true), RESET_TIMEOUT);
      this.conn.once('end', onEnd);
      this.conn.once('error', onEnd);
      try {
        this.conn.reset((err) => finish(Boolean(err)));
      } catch {
        finish(true);
      }
    });
  }

  quit(): void {
    this.conn.quit();
  }

  close(): void {
    this.conn.close();
  }
}

function dialogueLogger(onEvent: (e: SessionEvent) => void) {
  const emit = (meta: { tnx?: string } | undefined, msg: unknown, ...args: unknown[]) => {
    const tnx = meta?.tnx;
    if (tnx !== 'server' && tnx !== 'client') return;
    const text = String(msg).replace(/%[sd]/g, () => String(args.shift()));
    for (const line of text.split(/\r?\n/)) {
      if (!line) continue;
      // AUTH secrets never reach a log or a terminal
      const masked = tnx === 'client' && (/^AUTH /i.test(line) || masked334) ? line.replace(/^(AUTH \S+).*$/i, '$1 ***').replace(/^(?!AUTH ).*$/i, '***') : line;
      masked334 = tnx === 'server' && /^334/.test(line);
      onEvent({ dir: tnx === 'client' ? 'C' : 'S', line: masked });
    }
  };
  let masked334 = false;
  const none = () => undefined;
  return { info: emit, debug: emit, error: none, warn: none, trace: none, fatal: none, level: 'debug' };
}
