/**
 * delivery/smtp-session.ts — one outbound SMTP connection that carries many
 * messages. delivery/smtp-connect.ts sets it up on nodemailer's
 * SMTPConnection (connect, greeting, EHLO, STARTTLS, AUTH); then this module
 * takes the socket over and runs the transactions itself, because
 * nodemailer sends one transaction at a time and never BDAT:
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
 * what a reply means for the queue (delivery/classify.ts does); the wire
 * form of commands, bodies and results is delivery/smtp-wire.ts.
 *
 * Timeouts (sendmail's Timeout.*): the socket's idle timer is set to the
 * timeout of the oldest unanswered command, `datablock` while message bytes
 * are still being written.
 *
 * An 8-bit message to a next hop without 8BITMIME goes as is, with a note
 * in the dialogue.
 *
 * Known limit: the body of a pipelined transaction leaves before the
 * replies to MAIL and RCPT are in (a refused message still costs its bytes).
 */
import type { Socket } from 'node:net';
import type { Target } from './resolver.js';
import { connect, SessionError, type ConnectOptions, type Handover, type SessionEvent, type Timeouts } from './smtp-connect.js';
import { isOk, mailLine, rcptLine, results, wireBody, type RcptResult, type Reply, type SendEnvelope, type TxReplies } from './smtp-wire.js';

export { SessionError, type SessionEvent, type Timeouts } from './smtp-connect.js';
export type { RcptResult, SendEnvelope } from './smtp-wire.js';

/** One transaction: its replies as they come. */
interface Tx extends TxReplies {
  env: SendEnvelope;
  body: Buffer;
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
  /** The connection went through STARTTLS. */
  readonly secure: boolean;
  /** AUTH from authinfo succeeded. */
  readonly authenticated: boolean;
  private readonly ext: ReadonlySet<string>;
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
    h: Handover, readonly target: Target, private readonly timeouts: Timeouts, private readonly onEvent?: (e: SessionEvent) => void,
  ) {
    this.secure = h.secure;
    this.authenticated = h.authenticated;
    this.ext = h.extensions;
    this.supports8BitMime = this.ext.has('8BITMIME');
    this.supportsDsn = this.ext.has('DSN');
    this.pipelining = this.ext.has('PIPELINING');
    this.streams = this.pipelining && this.ext.has('CHUNKING');
    // the socket is ours now: nodemailer hears nothing more from it
    const s = (this.sock = h.socket);
    this.buf = h.buffered;
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

  /** Sets a connection up (delivery/smtp-connect.ts) and takes its socket over. */
  static open(target: Target, opts: ConnectOptions): Promise<SmtpSession> {
    return connect(target, opts, (h) => new SmtpSession(h, target, opts.timeouts, opts.onEvent));
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
    const mailRefused = () => Boolean(tx.mail && !isOk(tx.mail));
    steps.push({ line: mailLine(e, this.ext), phase: 'MAIL', timeout: t.mail, barrier: lockstep, tx, onReply: (r) => (tx.mail = r) });
    e.to.forEach((to, i) => steps.push({
      line: rcptLine(e, to, this.ext), phase: 'RCPT', timeout: t.rcpt, barrier: lockstep, skip: mailRefused, tx,
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
    steps.push(this.dataStep(tx, nobody));
    return steps;
  }

  /** DATA, skipped when nobody was accepted; its 354 lets the message and what follows it go in one write. */
  private dataStep(tx: Tx, nobody: () => boolean): Step {
    const t = this.timeouts;
    return { line: 'DATA', phase: 'DATA', timeout: t.datainit, barrier: true, tx, skip: () => {
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
    } };
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
    tx.resolve(results(tx.env.to, tx, closing));
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
