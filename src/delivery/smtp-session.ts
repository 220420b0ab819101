/**
 * delivery/smtp-session.ts — one outbound SMTP connection that carries many
 * messages. nodemailer's SMTPConnection sets the session up: connect (to an
 * IP: it then does no DNS), EHLO with our hostname, opportunistic STARTTLS,
 * AUTH from authinfo only over TLS (unless the entry allows plaintext).
 * Then this module takes the socket over and runs the transactions itself,
 * because nodemailer sends one transaction at a time and never BDAT:
 *
 * - pipelining across transactions (RFC 2920 §3.1): `send()` may be called
 *   again before the last one resolved; the next MAIL/RCPT/DATA leave right
 *   after the previous message's final dot, so a connection waits for at
 *   most the 354, once a message;
 * - `BDAT <n> LAST` when the next hop offers CHUNKING and PIPELINING
 *   (RFC 3030): a transaction is one write (RSET, MAIL, RCPT, BDAT and the
 *   bytes) and transactions stream back to back with no wait at all. RSET
 *   leads every transaction but the first: whether the previous one ended
 *   is not known when the next is written (a refused BDAT leaves it open);
 * - without PIPELINING, one command at a time.
 *
 * Replies are matched to commands in order, so results stay exact per
 * recipient: a 4xx/5xx to one transaction belongs to its recipients only.
 * A transaction whose final reply has not arrived when the connection
 * breaks (cut, timeout, 421 to another command) rejects with SessionError:
 * the caller defers it, never counts it delivered. Nothing here decides
 * what a reply means for the queue (delivery/classify.ts does).
 *
 * Timeouts (sendmail's Timeout.*): the socket's idle timer is set to the
 * timeout of the oldest unanswered command, `datablock` while message bytes
 * are still being written.
 *
 * Outbound encoding: line ends become CRLF (a bare CR or LF as CRLF) and,
 * over DATA, a line starting with "." leaves with the dot doubled, so
 * nothing inside a message can end the next hop's DATA. An 8BITMIME
 * message goes with BODY=8BITMIME where the next hop offers it and as is
 * where it does not (sendmail's EightBitMode=pass8; no quoted-printable
 * conversion): a note in the dialogue says so.
 *
 * Known limits: the body of a pipelined transaction leaves before the
 * replies to MAIL and RCPT are in (a refused message still costs its bytes);
 * relies on nodemailer internals (NODEMAILER_INTERNALS, checked at take-over
 * and by test/delivery/smtp-session-internals.test.ts) — written against
 * nodemailer 10.6.0.
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Socket } from 'node:net';
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

export interface SendEnvelope {
  from: string;
  to: string[];
  dsn?: { ret?: string; envid?: string; notify?: string[]; orcpt?: string };
  size: number;
  use8BitMime: boolean;
}

export class SessionError extends Error {
  constructor(message: string, readonly code: number, readonly reply: string, readonly stage: 'connect' | 'greeting' | 'auth' | 'transaction', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The members of nodemailer's SMTPConnection (not public API) this module
 * uses, with their kinds: the set-up phase's timeouts wrap the first three,
 * the take-over reads the rest.
 */
export const NODEMAILER_INTERNALS = {
  _sendCommand: 'function', _processResponse: 'function', _remainingSetupTime: 'function',
  _responseQueue: 'object', _remainder: 'string', _socket: 'object', _supportedExtensions: 'object', _supportedAuth: 'object',
  _onSocketData: 'function', _onSocketError: 'function', _onSocketClose: 'function', _onSocketEnd: 'function', _onSocketTimeout: 'function',
} as const;

/** The members of NODEMAILER_INTERNALS a connection lacks or has with another kind (empty when all is as expected). */
export function missingInternals(conn: object): string[] {
  const c = conn as Record<string, unknown>;
  return Object.entries(NODEMAILER_INTERNALS).filter(([k, kind]) => typeof c[k] !== kind || c[k] === null).map(([k]) => k);
}

type Conn = InstanceType<typeof SMTPConnection> & {
  secure: boolean;
  _socket: Socket;
  _sendCommand(str: string, logStr?: string): void;
  _processResponse(): unknown;
  _responseQueue: string[];
  _remainder: string;
  /** What the connection waits for now, for the timeout's reason. */
  _qlPhase?: string;
  _remainingSetupTime(): number;
  _supportedAuth?: string[];
  _supportedExtensions?: string[];
  /** The EHLO keywords (absent after a HELO fallback). */
  _ehloLines?: string[];
  _onSocketData: (...a: unknown[]) => void;
  _onSocketError: (...a: unknown[]) => void;
  _onSocketClose: (...a: unknown[]) => void;
  _onSocketEnd: (...a: unknown[]) => void;
  _onSocketTimeout: (...a: unknown[]) => void;
};

interface Reply { code: number; text: string }

/** One transaction: its replies as they come. */
interface Tx {
  env: SendEnvelope;
  body: Buffer;
  mail?: Reply;
  rcpts: Reply[];
  /** The reply to DATA (354, or the refusal). */
  data?: Reply;
  /** The reply after the final dot, or to BDAT LAST. */
  final?: Reply;
  resolve(r: RcptResult[]): void;
  reject(e: SessionError): void;
}

/** A command written, waiting for its reply. */
interface Pending {
  phase: string;
  timeout: number;
  /** Writing goes on once the reply is handled (DATA's handler decides that itself). */
  release?: boolean;
  tx?: Tx;
  onReply(r: Reply): void;
}

/** A command not yet written. */
interface Step {
  line: string;
  /** Bytes that go right after the line (BDAT's chunk). */
  data?: Buffer;
  phase: string;
  timeout: number;
  /** Nothing more is written until this command's reply is in (without PIPELINING, and DATA). */
  barrier: boolean;
  /** Decided when the step's turn comes (without PIPELINING a refused MAIL skips the rest). */
  skip?: () => boolean;
  tx: Tx;
  onReply(r: Reply): void;
}

/** How long QUIT may wait for its 221 before the socket is destroyed. */
const QUIT_TIMEOUT = 5000;
/** A server reply longer than this (no line end) breaks the connection. */
const MAX_REPLY = 64 * 1024;

const isOk = (r: Reply | undefined) => Boolean(r && r.code >= 200 && r.code < 300);

/** RFC 3461 xtext: '+', '=', controls and non-ASCII as +HH. */
const xtext = (s: string) => [...Buffer.from(s)].map((c) => (c < 0x21 || c > 0x7e || c === 0x2b || c === 0x3d ? `+${c.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(c))).join('');

/**
 * The message as it goes on the wire: CRLF line ends (a bare CR or LF
 * becomes CRLF) and a final CRLF; for DATA ('data') also a dot doubled at
 * the start of every line (a dot after a bare CR too) and the ending
 * ".\r\n". Pure; returns `body` itself when nothing changes (BDAT).
 */
export function wireBody(body: Buffer, mode: 'data' | 'bdat'): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  let prev = -1;
  for (let i = 0; i < body.length; i++) {
    const b = body[i];
    let insert: string | null = null;
    if (prev === 0x0d && b !== 0x0a) insert = mode === 'data' && b === 0x2e ? '\n.' : '\n';
    else if (b === 0x0a && prev !== 0x0d) insert = '\r';
    else if (mode === 'data' && b === 0x2e && (prev === 0x0a || prev === -1)) insert = '.';
    if (insert !== null) {
      parts.push(body.subarray(from, i), Buffer.from(insert, 'latin1'));
      from = i;
    }
    prev = b;
  }
  const last = body.length ? body[body.length - 1] : -1;
  const end = (last === 0x0a ? '' : last === 0x0d ? '\n' : body.length ? '\r\n' : '') + (mode === 'data' ? '.\r\n' : '');
  if (!parts.length && !end) return body;
  parts.push(body.subarray(from), Buffer.from(end, 'latin1'));
  return Buffer.concat(parts);
}

/** The result for each recipient of a finished (or cut short by `closing`) transaction. */
function results(tx: Tx, closing?: Reply): RcptResult[] {
  const mail = tx.mail ?? closing;
  return tx.env.to.map((address, i) => {
    const rcpt = tx.rcpts[i] ?? closing;
    // a refused MAIL is every recipient's reply; a refused RCPT its own
    const own = !isOk(mail) ? mail : !isOk(rcpt) ? rcpt : tx.data && tx.data.code >= 400 ? tx.data : tx.final ?? closing;
    return own ? { address, code: own.code, text: own.text } : { address, code: 451, text: 'no reply for this recipient' };
  });
}

export class SmtpSession {
  /** The connection cannot carry another message (closed, cut, timed out or refused a RSET). */
  broken = false;
  /** The server offers 8BITMIME (RFC 6152): 8-bit mail goes with BODY=8BITMIME. */
  readonly supports8BitMime: boolean;
  /** The server offers DSN (RFC 3461): NOTIFY and ORCPT go on with the message. */
  readonly supportsDsn: boolean;
  /** PIPELINING: commands go out without waiting for replies. */
  readonly pipelining: boolean;
  /** CHUNKING with PIPELINING: messages go as BDAT LAST, back to back, with no wait at all. */
  readonly streams: boolean;
  private readonly ext: Set<string>;
  private readonly sock: Socket;
  private readonly queue: Tx[] = [];
  private readonly open = new Set<Tx>();
  private steps: Step[] = [];
  private readonly pending: Pending[] = [];
  /** Written bodies not yet flushed to the kernel (the 'the data' phase). */
  private writing = 0;
  private blocked = false;
  /** The previous transaction may have been left open: RSET before the next MAIL. */
  private needsReset = false;
  private buf = '';
  private lines: string[] = [];
  private failedPhase: string | null = null;

  private constructor(
    conn: Conn, readonly target: Target, readonly secure: boolean, readonly authenticated: boolean,
    private readonly timeouts: Timeouts, private readonly onEvent?: (e: SessionEvent) => void,
  ) {
    this.ext = new Set([...(conn._supportedExtensions ?? []), ...(Array.isArray(conn._ehloLines) ? conn._ehloLines.map((l) => l.split(/\s+/)[0].toUpperCase()) : [])]);
    this.supports8BitMime = this.ext.has('8BITMIME');
    this.supportsDsn = this.ext.has('DSN');
    this.pipelining = this.ext.has('PIPELINING');
    this.streams = this.pipelining && this.ext.has('CHUNKING');
    // take the socket over: nodemailer hears nothing more from it
    const s = (this.sock = conn._socket);
    // nodemailer may still report a late timer of its own: nobody listens to it any more
    conn.on('error', () => undefined);
    s.removeListener('data', conn._onSocketData);
    s.removeListener('error', conn._onSocketError);
    s.removeListener('close', conn._onSocketClose);
    s.removeListener('end', conn._onSocketEnd);
    s.removeListener('timeout', conn._onSocketTimeout);
    this.buf = conn._remainder + conn._responseQueue.map((l) => `${l}\r\n`).join('');
    s.on('data', (d: Buffer) => this.onData(d));
    s.on('error', (err: Error) => this.fail(err));
    s.on('close', () => this.fail(Object.assign(new Error('Connection closed'), { code: 'ECONNECTION' })));
    s.on('timeout', () => this.fail(Object.assign(new Error(`Timeout waiting for reply to ${this.phase}`), { code: 'ETIMEDOUT' })));
    // closed between the end of the set-up and the take-over: its 'close' has been and gone
    if (s.destroyed || !s.writable) this.broken = true;
    this.arm();
  }

  /** What the connection waits for (or waited for when it failed): MAIL, RCPT, DATA, the data, the end of data. */
  get phase(): string {
    return this.failedPhase ?? (this.writing ? 'the data' : this.pending[0]?.phase ?? 'a command');
  }

  /**
   * Each step of the set-up gets its own timeout (Timeout.helo for EHLO and
   * the greeting, Timeout.command for STARTTLS and AUTH): nodemailer knows
   * one idle timeout, so it is set anew before each command.
   */
  private static phaseTimeouts(conn: Conn, t: Timeouts): void {
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
      waiting.push(verb === 'EHLO' || verb === 'HELO' ? [verb, t.helo] : [verb, t.command]);
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
    const missing = missingInternals(conn).filter((k) => k !== '_socket');
    if (missing.length) {
      return Promise.reject(new SessionError(`nodemailer's SMTPConnection changed: no ${missing.join(', ')}`, 0, `nodemailer internals changed (${missing.join(', ')})`, 'connect'));
    }
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
      const ready = (authenticated: boolean) => {
        done = true;
        const missingNow = missingInternals(conn);
        if (missingNow.length) {
          conn.close();
          return reject(new SessionError(`nodemailer's SMTPConnection changed: no ${missingNow.join(', ')}`, 0, `nodemailer internals changed (${missingNow.join(', ')})`, 'connect'));
        }
        resolve(new SmtpSession(conn, target, conn.secure, authenticated, opts.timeouts, opts.onEvent));
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
        if (!a || !offersAuth) return ready(false);
        const method = a.mechanisms.find((m) => (conn._supportedAuth ?? []).includes(m));
        conn.login({ user: a.user ?? a.authzid ?? '', pass: a.password ?? '', method } as Parameters<Conn['login']>[0], (err) => {
          if (err) return fail(err, 'auth');
          ready(true);
        });
      });
    });
  }

  /**
   * Sends one message; may be called again before it resolves (the
   * transactions are pipelined). Resolves with a result per recipient;
   * rejects (SessionError) when the connection failed before the final
   * reply, and then the message must count as not sent.
   */
  send(envelope: SendEnvelope, body: Buffer): Promise<RcptResult[]> {
    if (envelope.use8BitMime && !this.supports8BitMime) this.onEvent?.({ dir: 'note', line: '8-bit message sent as is: the server does not offer 8BITMIME' });
    return new Promise((resolve, reject) => {
      const bad = [envelope.from, ...envelope.to].find((a) => /[\r\n<>]/.test(a));
      if (bad !== undefined) return resolve(envelope.to.map((address) => ({ address, code: 451, text: `Invalid address ${JSON.stringify(bad)}` })));
      if (this.broken) return reject(this.lostError());
      this.queue.push({ env: envelope, body, rcpts: [], resolve, reject });
      this.pump();
    });
  }

  /** The commands of one transaction, RSET first when the previous one may still be open. */
  private stepsFor(tx: Tx): Step[] {
    const t = this.timeouts;
    const e = tx.env;
    const steps: Step[] = [];
    const lockstep = !this.pipelining;
    if (this.needsReset) {
      this.needsReset = false;
      steps.push({ line: 'RSET', phase: 'RSET', timeout: t.command, barrier: lockstep, tx, onReply: (r) => {
        // a server that will not reset cannot be trusted with the next message
        if (!isOk(r)) this.fail(Object.assign(new Error(`RSET refused: ${r.code} ${r.text}`), { code: 'EPROTOCOL' }));
      } });
    }
    const params = [
      /[^\x00-\x7f]/.test([e.from, ...e.to].join('')) && this.ext.has('SMTPUTF8') ? 'SMTPUTF8' : '',
      e.use8BitMime && this.supports8BitMime ? 'BODY=8BITMIME' : '',
      e.size > 0 && this.ext.has('SIZE') ? `SIZE=${e.size}` : '',
      this.supportsDsn && e.dsn?.ret ? `RET=${xtext(e.dsn.ret.toUpperCase())}` : '',
      this.supportsDsn && e.dsn?.envid ? `ENVID=${xtext(e.dsn.envid)}` : '',
    ].filter(Boolean);
    const mailRefused = () => Boolean(tx.mail && !isOk(tx.mail));
    steps.push({ line: `MAIL FROM:<${e.from}>${params.length ? ` ${params.join(' ')}` : ''}`, phase: 'MAIL', timeout: t.mail, barrier: lockstep, tx, onReply: (r) => (tx.mail = r) });
    const notify = this.supportsDsn && e.dsn?.notify?.length ? ` NOTIFY=${xtext(e.dsn.notify.map((n) => n.toUpperCase()).join(','))}` : '';
    const orcpt = this.supportsDsn && e.dsn?.orcpt ? ` ORCPT=${xtext(e.dsn.orcpt.includes(';') ? e.dsn.orcpt : `rfc822;${e.dsn.orcpt}`)}` : '';
    e.to.forEach((to, i) => steps.push({
      line: `RCPT TO:<${to}>${notify}${orcpt}`, phase: 'RCPT', timeout: t.rcpt, barrier: lockstep, skip: mailRefused, tx,
      onReply: (r) => (tx.rcpts[i] = r),
    }));
    // without PIPELINING the replies are in by now: nobody accepted, no DATA (and the MAIL must be reset)
    const nobody = () => mailRefused() || (tx.rcpts.length === e.to.length && !tx.rcpts.some(isOk));
    if (this.streams) {
      const chunk = wireBody(tx.body, 'bdat');
      steps.push({ line: `BDAT ${chunk.length} LAST`, data: chunk, phase: 'the end of data', timeout: t.datafinal, barrier: false, tx, onReply: (r) => {
        tx.final = r;
        this.finish(tx);
      } });
      // a refused transaction stays open (RFC 3030 §2); its outcome is not known when the next is written
      this.needsReset = true;
      return steps;
    }
    steps.push({ line: 'DATA', phase: 'DATA', timeout: t.datainit, barrier: true, tx, skip: () => {
      if (!nobody()) return false;
      if (isOk(tx.mail)) this.needsReset = true;
      this.finish(tx);
      return true;
    }, onReply: (r) => {
      tx.data = r;
      // 354, or 250 from the servers that say that instead (nodemailer takes it too)
      if (r.code >= 200 && r.code < 400) {
        // the data, its final dot and (pipelined) the next transaction's commands in one write;
        // a server that said 354 with nobody accepted gets an empty message to end the DATA
        const bytes = tx.rcpts.some(isOk) ? wireBody(tx.body, 'data') : Buffer.from('.\r\n');
        this.pending.push({ phase: 'the end of data', timeout: t.datafinal, tx, onReply: (f) => {
          tx.final = f;
          this.finish(tx);
        } });
        this.sock.cork();
        this.writeBody(bytes);
        this.blocked = false;
        this.pump();
        this.sock.uncork();
        return;
      }
      // DATA refused: the transaction (if MAIL was accepted) is still open
      if (isOk(tx.mail)) this.needsReset = true;
      this.finish(tx);
      this.blocked = false;
      this.pump();
    } });
    return steps;
  }

  /** Writes what may be written now: whole transactions until a command whose reply must come first. */
  private pump(): void {
    if (this.broken) return;
    this.sock.cork();
    try {
      while (!this.blocked && !this.broken) {
        if (!this.steps.length) {
          const tx = this.queue.shift();
          if (!tx) break;
          this.open.add(tx);
          this.steps = this.stepsFor(tx);
          continue;
        }
        const step = this.steps.shift()!;
        if (step.skip?.()) continue;
        this.pending.push({ phase: step.phase, timeout: step.timeout, tx: step.tx, release: step.barrier && step.phase !== 'DATA', onReply: step.onReply });
        this.onEvent?.({ dir: 'C', line: step.line });
        this.sock.write(`${step.line}\r\n`, 'utf8');
        if (step.data) this.writeBody(step.data);
        if (step.barrier) this.blocked = true;
      }
    } finally {
      this.sock.uncork();
    }
    this.arm();
  }

  private writeBody(bytes: Buffer): void {
    this.writing++;
    this.sock.write(bytes, () => {
      this.writing--;
      this.arm();
    });
  }

  /** The socket's idle timer: the oldest unanswered command's timeout, datablock while bytes are being written. */
  private arm(): void {
    if (this.broken) return;
    const t = this.timeouts;
    this.sock.setTimeout(this.writing ? t.datablock : this.pending[0]?.timeout ?? t.command);
  }

  private onData(d: Buffer): void {
    this.buf += d.toString('latin1');
    for (let nl = this.buf.indexOf('\n'); nl >= 0 && !this.broken; nl = this.buf.indexOf('\n')) {
      const raw = Buffer.from(this.buf.slice(0, nl).replace(/\r$/, ''), 'latin1').toString('utf8');
      this.buf = this.buf.slice(nl + 1);
      this.onEvent?.({ dir: 'S', line: raw });
      this.lines.push(raw);
      const m = /^(\d{3})(-?)/.exec(raw);
      if (!m || m[2] === '-') {
        if (this.lines.join('').length > MAX_REPLY) this.fail(Object.assign(new Error('Reply too long'), { code: 'EPROTOCOL' }));
        continue;
      }
      const reply = { code: Number(m[1]), text: this.lines.map((l) => l.slice(4).trim()).join(' ').trim() };
      this.lines = [];
      this.onReply(reply);
    }
    if (this.buf.length > MAX_REPLY) this.fail(Object.assign(new Error('Reply too long'), { code: 'EPROTOCOL' }));
  }

  private onReply(r: Reply): void {
    const p = this.pending.shift();
    if (!p) {
      // RFC 5321 §4.2: a 421 may come at any time, announcing the close
      return this.fail(Object.assign(new Error(`Unexpected reply: ${r.code} ${r.text}`), { code: r.code === 421 ? 'ECONNECTION' : 'EPROTOCOL' }));
    }
    p.onReply(r);
    if (r.code === 421) {
      // the server closes: the transaction it answered ends with this reply, the rest are not sent
      if (p.tx) this.finish(p.tx, r);
      return this.fail(Object.assign(new Error(`Server closing: ${r.code} ${r.text}`), { code: 'ECONNECTION' }));
    }
    if (p.release && !this.broken) {
      this.blocked = false;
      this.pump();
    }
    this.arm();
  }

  private finish(tx: Tx, closing?: Reply): void {
    if (!this.open.delete(tx)) return;
    tx.resolve(results(tx, closing));
  }

  private lostError(cause?: unknown): SessionError {
    const c = cause as { code?: string; message?: string } | undefined;
    return new SessionError(c?.message ?? 'Connection lost', 0, `${c?.code ?? 'ECONNECTION'} ${c?.message ?? 'Connection lost'}`, 'transaction', { cause });
  }

  /** The connection is gone: every transaction without its final reply is rejected (not sent). */
  private fail(err: Error & { code?: string }): void {
    if (this.broken) return;
    if (err.code === 'ETIMEDOUT') this.failedPhase = this.phase;
    this.broken = true;
    this.sock.setTimeout(0);
    this.sock.destroy();
    const e = this.lostError(err);
    const waiting = [...this.open, ...this.queue];
    this.open.clear();
    this.queue.length = 0;
    this.pending.length = 0;
    this.steps = [];
    for (const tx of waiting) tx.reject(e);
  }

  /** QUIT, then close; transactions still open are given up (rejected). */
  quit(): void {
    if (this.broken) return;
    this.pending.push({ phase: 'QUIT', timeout: QUIT_TIMEOUT, onReply: () => this.close() });
    this.onEvent?.({ dir: 'C', line: 'QUIT' });
    this.sock.write('QUIT\r\n');
    this.sock.end();
    this.arm();
  }

  close(): void {
    this.fail(Object.assign(new Error('Connection closed by us'), { code: 'ECONNECTION' }));
  }
}

/** A reply line without its basic code: `550 5.1.1 No such user` → `5.1.1 No such user`. */
const replyText = (response: string | undefined) => (response ?? '').replace(/^\d{3}[ -]/, '').trim();

function asSessionError(err: unknown, stage: SessionError['stage']): SessionError {
  const e = err as { responseCode?: number; response?: string; message?: string; code?: string };
  const code = e.responseCode ?? 0;
  return new SessionError(e.message ?? String(err), code, e.response ? replyText(e.response) : `${e.code ?? 'ERROR'} ${e.message ?? ''}`.trim(), stage, { cause: err });
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
