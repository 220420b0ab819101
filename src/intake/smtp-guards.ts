/**
 * intake/smtp-guards.ts — the limits of SPEC §9 "Abuse" inside smtp-server's
 * connections, and the replies owed to a client that half-closes. Installed
 * by installSmtpExtensions() (smtp-extensions.ts) on SMTPConnection's
 * prototype; active on a server whose options carry `guard` (GuardOptions)
 * and, for the half-close, `allowHalfOpen`. The decisions are pure
 * (error-limits.ts, session-limits.ts); this file keeps the timers and
 * carries the decisions out.
 *
 * - Session clock: started when the connection is accepted and again at the
 *   final reply of every DATA; when it runs out (guard.sessionTimeout) the
 *   client gets `421 4.4.2 Session timeout` and is closed. So a transaction
 *   (MAIL to the final reply of DATA) finishes within timeout.session, and a
 *   session that completes none is cut after it. Never while the client
 *   waits for us (a handler, the queue's commit): then it looks again in 1 s.
 * - Data rate: during DATA, dataDeadline() from the bytes received; below
 *   guard.minDataRate after the grace, `421 4.4.2 Data rate too low`. The
 *   message is not kept (smtp-server destroys the data stream on close).
 *   BDAT (bdat.ts) tells guardChunk() when a chunk is read: the rate counts
 *   from the transaction's first chunk over all its octets, and is checked
 *   while a chunk is being read; guardTransactionEnd() at its final reply
 *   starts the session clock again.
 * - Errors: every 4xx/5xx reply but 421 counts (GuardState.errors, kept on
 *   the session object across RSET and STARTTLS); each command after the
 *   soft limit waits errorDelay(); at the hard limit `421 4.7.0 Too many
 *   errors` and close.
 * - Half-close: with allowHalfOpen, a client's FIN no longer ends our side
 *   of the socket, so the replies to what it sent before (the final 250 of
 *   DATA, 221) can still reach it. smtp-server writes a reply only to a
 *   socket whose readyState is 'open', and a half-closed one is 'writeOnly':
 *   send() lets such a socket count as open for the one synchronous write.
 *   Once the parser has read everything and no reply is owed, the
 *   connection is closed.
 *
 * Every timer is cleared when the connection closes. Known limit: a delay
 * applies to the command after an error, not to the error reply itself
 * (that one is written by smtp-server at once).
 */
import { HARD_ERROR_LIMIT, errorDelay, isCountedError } from './error-limits.js';
import { dataDeadline } from './session-limits.js';

/** The server option `guard`. */
export interface GuardOptions {
  /** ms; 0 = no session clock. */
  sessionTimeout: number;
  /** bytes a second during DATA; 0 = no minimum. */
  minDataRate: number;
  /** A limit cut a session (for the log). */
  onGuardEvent?: (session: unknown, event: GuardEvent) => void;
}

export type GuardEvent =
  | { kind: 'session timeout'; ms: number }
  | { kind: 'data rate too low'; bytes: number; ms: number }
  | { kind: 'too many errors'; errors: number };

/** A session's counters, on the session object smtp-server hands to every callback. */
export interface GuardState {
  errors: number;
  authFailures: number;
}

/** Re-checks of a clock that ran out while the client waited for us. */
const RECHECK_MS = 1_000;

/** The part of the socket send() looks at. */
interface SocketLike {
  readyState: string;
  writable: boolean;
  destroyed: boolean;
}

interface ParserInternals {
  _dataMode: boolean;
  dataBytes: number;
  once(event: 'finish', listener: () => void): unknown;
}

/** The members of SMTPConnection these guards use (checked by test/intake/smtp-internals.test.ts). */
export interface GuardedConnection {
  _server: { options: { guard?: GuardOptions; allowHalfOpen?: boolean } };
  session: { qlGuard?: GuardState };
  _socket: SocketLike;
  _upgrading: boolean;
  _parser: ParserInternals | false;
  _dataStream: unknown;
  _handlerPending: boolean;
  _closing: boolean;
  _closed: boolean;
  send(code: number, data?: string | string[], context?: string | false): void;
  close(): void;
  _onCommand(command: Buffer, callback?: () => void): void;
  _setListeners(callback: () => void): void;
  _createParser(): ParserInternals;
  _onClose(): void;
  handler_DATA(command: Buffer, callback: () => void): void;
  _qlTimers?: { session?: NodeJS.Timeout; rate?: NodeJS.Timeout; delay?: NodeJS.Timeout };
  _qlAwaitingDataReply?: boolean;
  _qlHalfClosed?: boolean;
}

export function guardStateOf(session: { qlGuard?: GuardState }): GuardState {
  return (session.qlGuard ??= { errors: 0, authFailures: 0 });
}

function timersOf(c: GuardedConnection): NonNullable<GuardedConnection['_qlTimers']> {
  return (c._qlTimers ??= {});
}

function later(fn: () => void, ms: number): NodeJS.Timeout {
  const t = setTimeout(fn, ms);
  t.unref();
  return t;
}

/** The client has said its part and waits for a reply from us (a handler, the queue). */
function isWaitingOnUs(c: GuardedConnection): boolean {
  return c._handlerPending || Boolean(c._dataStream && c._parser && !c._parser._dataMode);
}

function restartSessionClock(c: GuardedConnection, guard: GuardOptions): void {
  const t = timersOf(c);
  clearTimeout(t.session);
  if (!guard.sessionTimeout) return;
  const fire = () => {
    t.session = undefined;
    if (c._closing || c._closed) return;
    if (isWaitingOnUs(c)) {
      t.session = later(fire, RECHECK_MS);
      return;
    }
    guard.onGuardEvent?.(c.session, { kind: 'session timeout', ms: guard.sessionTimeout });
    c.send(421, '4.4.2 Session timeout, closing connection');
  };
  t.session = later(fire, guard.sessionTimeout);
}

/** Cuts a client that sends slower than guard.minDataRate: `bytes()` since `start`, checked while the parser reads data. */
function watchDataRate(c: GuardedConnection, guard: GuardOptions, start = Date.now(), bytes = () => (c._parser ? c._parser.dataBytes : 0)): void {
  if (!guard.minDataRate) return;
  const t = timersOf(c);
  const check = () => {
    t.rate = undefined;
    const parser = c._parser;
    // once the data is in, the pace is ours (the queue's commit), not the client's
    if (c._closing || !parser || !parser._dataMode) return;
    const now = Date.now();
    const deadline = dataDeadline(start, bytes(), guard.minDataRate);
    if (now < deadline) {
      t.rate = later(check, Math.max(deadline - now, 100));
      return;
    }
    guard.onGuardEvent?.(c.session, { kind: 'data rate too low', bytes: bytes(), ms: now - start });
    c.send(421, '4.4.2 Data rate too low, closing connection');
  };
  clearTimeout(t.rate);
  t.rate = later(check, Math.max(dataDeadline(start, bytes(), guard.minDataRate) - Date.now(), 100));
}

/** BDAT (bdat.ts): a chunk is being read; the rate counts from `since` over `bytes()`. */
export function guardChunk(c: GuardedConnection, since: number, bytes: () => number): void {
  const guard = c._server.options.guard;
  if (guard) watchDataRate(c, guard, since, bytes);
}

/** BDAT: the transaction's final reply went out; the session clock starts again. */
export function guardTransactionEnd(c: GuardedConnection): void {
  const guard = c._server.options.guard;
  if (!guard) return;
  clearTimeout(timersOf(c).rate);
  restartSessionClock(c, guard);
}

/** Runs smtp-server's send() so that it also writes to a socket the client has half-closed. */
function sendEvenHalfClosed(c: GuardedConnection, send: () => void): void {
  const sock = c._socket;
  if (!c._server.options.allowHalfOpen || !sock || c._upgrading || sock.destroyed || !sock.writable || sock.readyState !== 'writeOnly') return send();
  Object.defineProperty(sock, 'readyState', { value: 'open', configurable: true });
  try {
    send();
  } finally {
    delete (sock as Partial<SocketLike>).readyState;
  }
}

/** After a half-close: closes once no reply is owed any more. */
function closeWhenAnswered(c: GuardedConnection): void {
  if (c._closing || c._closed) return;
  if (c._handlerPending || c._dataStream) {
    c._qlHalfClosed = true;
    return;
  }
  c.close();
}

export function installSmtpGuards(conn: GuardedConnection): void {
  const origSend = conn.send;
  conn.send = function (this: GuardedConnection, code, data, context) {
    const result = sendEvenHalfClosed(this, () => origSend.call(this, code, data, context));
    if (this._qlHalfClosed) setImmediate(() => closeWhenAnswered(this));
    const guard = this._server.options.guard;
    if (!guard) return result;
    if (this._qlAwaitingDataReply && code !== 354) {
      // the final reply of DATA: the transaction is over
      this._qlAwaitingDataReply = false;
      clearTimeout(timersOf(this).rate);
      restartSessionClock(this, guard);
    }
    if (isCountedError(code) && !this._closing) {
      const state = guardStateOf(this.session);
      state.errors++;
      if (state.errors >= HARD_ERROR_LIMIT) {
        guard.onGuardEvent?.(this.session, { kind: 'too many errors', errors: state.errors });
        this.send(421, '4.7.0 Too many errors, closing connection');
      }
    }
    return result;
  };

  const origOnCommand = conn._onCommand;
  conn._onCommand = function (this: GuardedConnection, command, callback) {
    const wait = this._server.options.guard && !this._closing ? errorDelay(guardStateOf(this.session).errors) : 0;
    if (wait <= 0) return origOnCommand.call(this, command, callback);
    const t = timersOf(this);
    t.delay = later(() => {
      t.delay = undefined;
      origOnCommand.call(this, command, callback);
    }, wait);
  };

  const origSetListeners = conn._setListeners;
  conn._setListeners = function (this: GuardedConnection, callback) {
    const guard = this._server.options.guard;
    if (guard) restartSessionClock(this, guard);
    return origSetListeners.call(this, callback);
  };

  const origData = conn.handler_DATA;
  conn.handler_DATA = function (this: GuardedConnection, command, callback) {
    const result = origData.call(this, command, callback);
    const guard = this._server.options.guard;
    if (guard && this._dataStream) {
      this._qlAwaitingDataReply = true;
      watchDataRate(this, guard);
    }
    return result;
  };

  const origCreateParser = conn._createParser;
  conn._createParser = function (this: GuardedConnection) {
    const parser = origCreateParser.call(this);
    // the client's FIN ended the parser's input and every command has been handled
    if (this._server.options.allowHalfOpen) parser.once('finish', () => this._parser === parser && closeWhenAnswered(this));
    return parser;
  };

  const origOnClose = conn._onClose;
  conn._onClose = function (this: GuardedConnection) {
    const t = this._qlTimers;
    if (t) {
      clearTimeout(t.session);
      clearTimeout(t.rate);
      clearTimeout(t.delay);
    }
    return origOnClose.call(this);
  };
}
