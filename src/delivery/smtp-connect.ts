/**
 * delivery/smtp-connect.ts — the set-up of one outbound SMTP connection, on
 * nodemailer's SMTPConnection: connect (to an IP: it then does no DNS), the
 * greeting, EHLO with our hostname, opportunistic STARTTLS, AUTH from
 * authinfo only over TLS (unless the entry allows plaintext). Then
 * `connect()` takes nodemailer off the socket and hands the socket, the
 * bytes already read and the EHLO keywords to delivery/smtp-session.ts,
 * which runs the transactions.
 *
 * STARTTLS resumes the hop's TLS session when one is kept
 * (delivery/tls-sessions.ts): the session goes in nodemailer's `tls`
 * options, which it passes to `tls.connect`; the tickets the hop sends
 * (during the set-up or later) go back to the cache.
 *
 * Each step of the set-up has its own timeout (sendmail's Timeout.helo for
 * the greeting and EHLO, Timeout.command for STARTTLS and AUTH; the connect
 * itself Timeout.iconnect or Timeout.connect).
 *
 * Relies on nodemailer internals (NODEMAILER_INTERNALS, checked before the
 * connect, at the take-over and by
 * test/delivery/smtp-session-internals.test.ts) — written against
 * nodemailer 10.6.0.
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { AuthinfoEntry } from '../config/classic-files.js';
import type { Target } from './resolver.js';
import { formatDuration } from '../config/units.js';
import { hopKey, putBack, type TlsSessions } from './tls-sessions.js';

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

/**
 * The members of nodemailer's SMTPConnection (not public API) this module
 * uses, with their kinds: the set-up phase's timeouts wrap the first three,
 * the TLS session cache the fourth, the take-over reads the rest.
 */
export const NODEMAILER_INTERNALS = {
  _sendCommand: 'function', _processResponse: 'function', _remainingSetupTime: 'function', _upgradeConnection: 'function',
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
  _upgradeConnection(callback: (err: Error | null, secured?: boolean) => void): void;
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

/** What the set-up hands to the transaction phase. */
export interface Handover {
  /** The socket, nodemailer's listeners removed: nothing listens to it yet. */
  socket: Socket;
  /** Bytes read and not yet answered for (normally none). */
  buffered: string;
  /** The EHLO keywords, upper case. */
  extensions: Set<string>;
  secure: boolean;
  authenticated: boolean;
}

export interface ConnectOptions {
  hostname: string;
  timeouts: Timeouts;
  firstConnection?: boolean;
  authinfo?: AuthinfoEntry;
  /** The TLS sessions kept per hop: one is offered at STARTTLS, the hop's new ones are stored. */
  tlsSessions?: TlsSessions;
  onEvent?: (e: SessionEvent) => void;
}

const internalsChanged = (missing: string[]) => new SessionError(`nodemailer's SMTPConnection changed: no ${missing.join(', ')}`, 0, `nodemailer internals changed (${missing.join(', ')})`, 'connect');

/**
 * Each step of the set-up gets its own timeout (Timeout.helo for EHLO and
 * the greeting, Timeout.command for STARTTLS and AUTH): nodemailer knows
 * one idle timeout, so it is set anew before each command.
 */
function phaseTimeouts(conn: Conn, t: Timeouts): void {
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

/** What the TLS session cache did for one connection, told at the take-over. */
interface Resumption {
  hop: string;
  offered?: Buffer;
  /** A new session arrived on this connection. */
  gotNew: boolean;
}

/**
 * The hop's new sessions go to the cache: the TLS socket exists as soon as
 * nodemailer's STARTTLS upgrade has called tls.connect, before any byte of
 * the handshake is read, so no ticket goes by unseen.
 */
function keepSessions(conn: Conn, cache: TlsSessions, r: Resumption): void {
  const upgrade = conn._upgradeConnection.bind(conn);
  conn._upgradeConnection = (callback) => {
    upgrade(callback);
    const s = conn._socket;
    if (!(s instanceof TLSSocket)) return;
    s.on('session', (session: Buffer) => {
      r.gotNew = true;
      cache.put(r.hop, session, Date.now());
    });
  };
}

/** At the take-over: says whether an offered session was resumed; a TLS 1.2 one resumed goes back to the cache. */
function settleResumption(conn: Conn, r: Resumption, cache: TlsSessions | undefined, onEvent?: (e: SessionEvent) => void): void {
  const s = conn._socket;
  if (!r.offered || !cache || !(s instanceof TLSSocket)) return;
  const resumed = s.isSessionReused();
  onEvent?.({ dir: 'note', line: resumed ? 'TLS session resumed' : 'TLS session not resumed: full handshake' });
  const again = putBack(r.offered, resumed, s.getProtocol(), r.gotNew);
  if (again) cache.put(r.hop, again, Date.now());
}

/** nodemailer's socket, its listeners removed, with what it had read and the EHLO keywords. */
function takeOver(conn: Conn, authenticated: boolean): Handover {
  const s = conn._socket;
  // nodemailer may still report a late timer of its own: nobody listens to it any more
  conn.on('error', () => undefined);
  s.removeListener('data', conn._onSocketData);
  s.removeListener('error', conn._onSocketError);
  s.removeListener('close', conn._onSocketClose);
  s.removeListener('end', conn._onSocketEnd);
  s.removeListener('timeout', conn._onSocketTimeout);
  const ehlo = Array.isArray(conn._ehloLines) ? conn._ehloLines.map((l) => l.split(/\s+/)[0].toUpperCase()) : [];
  return {
    socket: s,
    buffered: conn._remainder + conn._responseQueue.map((l) => `${l}\r\n`).join(''),
    extensions: new Set([...(conn._supportedExtensions ?? []), ...ehlo]),
    secure: conn.secure,
    authenticated,
  };
}

function newConnection(target: Target, opts: ConnectOptions, session: Buffer | undefined): Conn {
  return new SMTPConnection({
    host: target.ip,
    port: target.port,
    name: opts.hostname,
    servername: target.name !== target.ip ? target.name : undefined,
    secure: false,
    opportunisticTLS: true,
    tls: { rejectUnauthorized: false, ...(session ? { session } : {}) },
    connectionTimeout: opts.firstConnection ? opts.timeouts.iconnect : opts.timeouts.connect,
    greetingTimeout: opts.timeouts.helo,
    socketTimeout: opts.timeouts.command,
    allowInternalNetworkInterfaces: true,
    transactionLog: Boolean(opts.onEvent),
    debug: Boolean(opts.onEvent),
    logger: opts.onEvent ? dialogueLogger(opts.onEvent) : false,
  } as ConstructorParameters<typeof SMTPConnection>[0]) as Conn;
}

/** The SessionError for a failed set-up, saying which timeout ran out where one did. */
function setupError(err: unknown, stage: SessionError['stage'], target: Target, opts: ConnectOptions, conn: Conn): SessionError {
  const e = asSessionError(err, stage);
  if ((err as { timeoutType?: string }).timeoutType === 'CONNECT_TIMEOUT') {
    // no answer to the SYN at all: say which of sendmail's two connect timeouts ran out
    const which = opts.firstConnection ? 'iconnect' : 'connect';
    return new SessionError(e.message, 0, `Timeout connecting to [${target.ip}]:${target.port} (timeout.${which} ${formatDuration(opts.timeouts[which])})`, stage, { cause: err });
  }
  if ((err as { code?: string }).code === 'ETIMEDOUT') {
    return new SessionError(e.message, 0, `Timeout waiting for reply to ${conn._qlPhase ?? 'the greeting'}`, stage, { cause: err });
  }
  return e;
}

/**
 * Sets a connection up to `target` and hands it to `use`, which takes the
 * socket over (synchronously, so that no event of the socket goes unheard).
 * Rejects with SessionError, its stage saying where the set-up failed.
 */
export function connect<T>(target: Target, opts: ConnectOptions, use: (h: Handover) => T): Promise<T> {
  const servername = target.name !== target.ip ? target.name : undefined;
  const cache = opts.tlsSessions;
  const r: Resumption = { hop: hopKey(target.ip, target.port, servername), gotNew: false };
  r.offered = cache?.take(r.hop, Date.now());
  const conn = newConnection(target, opts, r.offered);
  const missing = missingInternals(conn).filter((k) => k !== '_socket');
  if (missing.length) return Promise.reject(internalsChanged(missing));
  phaseTimeouts(conn, opts.timeouts);
  if (cache) keepSessions(conn, cache, r);
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (err: unknown, stage: SessionError['stage']) => {
      if (done) return;
      done = true;
      conn.close();
      reject(setupError(err, stage, target, opts, conn));
    };
    const ready = (authenticated: boolean) => {
      done = true;
      const missingNow = missingInternals(conn);
      if (missingNow.length) {
        conn.close();
        return reject(internalsChanged(missingNow));
      }
      settleResumption(conn, r, cache, opts.onEvent);
      resolve(use(takeOver(conn, authenticated)));
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
