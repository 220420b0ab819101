/**
 * intake/smtp-extensions.ts — the few things smtp-server cannot be told by
 * options, added in one place because they reach into classes that are not
 * its public API (SMTPConnection, SMTPStream). Installed once by
 * installSmtpExtensions(); idempotent.
 *
 * - Enhanced status codes: a reply text that already starts with an RFC 3463
 *   code ("5.7.1 Relaying denied") is sent as is; smtp-server would otherwise
 *   put its own guessed code in front.
 * - Bare LF / bare CR in command lines (SMTP smuggling): smtp-server splits
 *   commands on /\r?\n/; a command line that ended in a bare LF or held a bare
 *   CR is answered `500 5.5.2 Bare <LF> or <CR> in command` and the client is
 *   disconnected (Postfix's smtpd_forbid_bare_newline).
 * - Early talkers: a client that talks before the greeting (during
 *   smtp.greetPause) gets `554 5.5.0` and is disconnected.
 * - AUTH is neither offered nor accepted before STARTTLS (smtp-server
 *   offers it in plaintext even when it would refuse it).
 * - ETRN (RFC 1985): advertised in EHLO and answered by the server option
 *   `onEtrn(argument, session, reply)` when one is given; refused before
 *   EHLO/HELO (503).
 * - No fixed 100 ms pause before every greeting: smtp-server waits 100 ms
 *   to catch early talkers, which caps a client that opens a connection per
 *   message at 10 messages a second per session. The pause is ours to set
 *   (smtp.greetPause, default 0 as in Postfix).
 * - `MAIL FROM:addr` / `RCPT TO:addr` without angle brackets (old printers,
 *   scripts): accepted as `<addr>` when the server option
 *   `mayOmitAngleBrackets(remoteAddress)` says so (LAN clients), otherwise
 *   `501 5.5.4` naming the syntax; smtp-server alone refuses them with a
 *   guessed "Bad sender address syntax".
 * - The bytes and parameters of MAIL/RCPT (command-check.ts), before
 *   smtp-server decodes them: a non-ASCII address without SMTPUTF8 or one
 *   that is not UTF-8 is refused (553), never rewritten to U+FFFD; an
 *   unknown parameter gets `555 5.5.4`.
 * - CHUNKING (RFC 3030 BDAT, bdat.ts): advertised in EHLO and taken when
 *   the server option `chunking` is true. The bare newline check stops at a
 *   BDAT line, whose chunk is data.
 * - The session limits and the half-close (smtp-guards.ts).
 *
 * Known limit: a bare newline check sees one socket chunk at a time and
 * carries the trailing CR across chunks; it runs only in command mode (the
 * bytes right after a DATA line in the same chunk are still checked as
 * commands: a client must wait for the 354).
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { checkAddressCommand } from './command-check.js';
import { commandTextEnd, isBdatLine } from './bdat-command.js';
import { installBdat, type BdatConnection, type ChunkParser } from './bdat.js';
import { installSmtpGuards, type GuardedConnection, type GuardOptions } from './smtp-guards.js';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
let installed = false;

/** The server side of ETRN: answers with a reply code and text (with its enhanced code where one applies). */
export type EtrnHandler = (argument: string, session: unknown, reply: (code: number, text: string) => void) => void;

/** The server options these extensions read, besides smtp-server's own. */
export interface ExtensionOptions {
  maxClients?: number;
  allowInsecureAuth?: boolean;
  onEtrn?: EtrnHandler;
  /** May this client leave out the angle brackets around a MAIL/RCPT address? */
  mayOmitAngleBrackets?: (remoteAddress: string) => boolean;
  /** Session timeout, data rate and error limits (smtp-guards.ts); none without it. */
  guard?: GuardOptions;
  /** Offer and take CHUNKING (BDAT, bdat.ts). */
  chunking?: boolean;
}

interface StreamInternals {
  _dataMode: boolean;
  _qlPendingCR?: boolean;
  _qlBareNewline?: boolean;
  /** The server takes BDAT: the check stops at a BDAT line. */
  _qlChunking?: boolean;
  /** The start of a command line the last chunk left unfinished. */
  _qlLineHead?: string;
  /** Unchecked bytes after a BDAT line (bdat.ts). */
  _qlTail?: Buffer;
  _write(chunk: Buffer, encoding: BufferEncoding, next: (err?: Error) => void): void;
}

interface ConnectionInternals {
  _ready: boolean;
  _parser: StreamInternals | false;
  _closing: boolean;
  send(code: number, data?: string | string[], context?: string | false): void;
  close(): void;
  name: string;
  _server: { options: ExtensionOptions & { authMethods: string[] }; connections: Set<unknown> };
  _setListeners(callback: () => void): void;
  _createParser(): StreamInternals;
  /** The handler of an exchange in progress (AUTH): the next line is its answer. */
  _nextHandler: unknown;
  connectionReady(next?: () => void): void;
  init(): void;
  secure: boolean;
  _isSupported(command: string): boolean;
  hostNameAppearsAs: string | false;
  session: { envelope?: { smtpUtf8?: boolean } };
  handler_EHLO(command: Buffer, callback: () => void): void;
  handler_ETRN?(command: Buffer, callback: () => void): void;
  handler_MAIL(command: Buffer, callback: () => void): void;
  handler_RCPT(command: Buffer, callback: () => void): void;
  remoteAddress: string;
  /** Keywords the next multi-line 250 (EHLO's) gets at its end. */
  _qlEhlo?: string[];
  _onCommand(command: Buffer, callback?: () => void): void;
  _parseAddressCommand(name: string, command: string): { address: string; args: unknown } | false;
}

/** True when a command-mode chunk holds an LF without CR before it, or a CR without LF after it. */
export function hasBareNewline(chunk: Buffer, pendingCR: boolean): { bare: boolean; pendingCR: boolean } {
  let prevCR = pendingCR;
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i];
    if (prevCR && b !== 0x0a) return { bare: true, pendingCR: false };
    if (b === 0x0a && !prevCR) return { bare: true, pendingCR: false };
    prevCR = b === 0x0d;
  }
  return { bare: false, pendingCR: prevCR };
}

/**
 * Pure: smtp-server turns an A-label domain (`xn--r8jz45g.jp`) into Unicode;
 * quietlink keeps addresses as the client wrote them (SPEC §9: never
 * rewritten), so an ASCII domain the client sent comes back as it was.
 */
export function keepAsciiDomain(command: string, parsed: string): string {
  if (!/[^\x00-\x7f]/.test(parsed)) return parsed;
  const raw = (/<([^>]*)>/.exec(command) ?? /:[ \t]*(\S+)/.exec(command))?.[1] ?? '';
  const domain = raw.slice(raw.lastIndexOf('@') + 1);
  if (raw.lastIndexOf('@') <= 0 || !/^[\x21-\x7e]+$/.test(domain)) return parsed;
  return `${parsed.slice(0, parsed.lastIndexOf('@') + 1)}${domain}`;
}

/**
 * `MAIL FROM:a@b SIZE=1` → `MAIL FROM:<a@b> SIZE=1` (pure); null when the
 * address has its brackets, or is missing, or is not one token.
 */
export function bracketAddress(command: string): string | null {
  const m = /^((?:MAIL|RCPT)[ \t]+(?:FROM|TO)[ \t]*:)[ \t]*([^\s<>]+)((?:[ \t].*)?)$/is.exec(command);
  return m ? `${m[1]}<${m[2]}>${m[3]}` : null;
}

export function installSmtpExtensions(): void {
  if (installed) return;
  installed = true;
  const conn = SMTPConnection.prototype as unknown as ConnectionInternals;
  const stream = SMTPStream.prototype as unknown as StreamInternals;
  installReplies(conn);
  installBareNewlineCheck(conn, stream);
  installEhloAndEtrn(conn);
  installAddressChecks(conn);
  installCommandGate(conn);
  installBdat(conn as unknown as BdatConnection, stream as unknown as ChunkParser);
  installSmtpGuards(conn as unknown as GuardedConnection);
}

/** Addresses kept as the client wrote them; replies with their own enhanced code sent as they are; no 100 ms greeting pause. */
function installReplies(conn: ConnectionInternals): void {
  const origParse = conn._parseAddressCommand;
  conn._parseAddressCommand = function (this: ConnectionInternals, name, command) {
    const parsed = origParse.call(this, name, command);
    if (parsed && typeof parsed.address === 'string') parsed.address = keepAsciiDomain(String(command), parsed.address);
    return parsed;
  };
  const origSend = conn.send;
  conn.send = function (this: ConnectionInternals, code, data, context) {
    if (typeof data === 'string' && ENHANCED.test(data)) context = false;
    if (this._qlEhlo && code === 250 && Array.isArray(data)) {
      data = [...data, ...this._qlEhlo];
      this._qlEhlo = undefined;
    }
    return origSend.call(this, code, data, context);
  };
  conn.init = function (this: ConnectionInternals) {
    this._setListeners(() => {
      const max = this._server.options.maxClients;
      if (max && this._server.connections.size > max) {
        this.send(421, '4.3.2 Too many connections, try again later');
        return this.close();
      }
      setImmediate(() => this.connectionReady());
    });
  };
}

/**
 * Marks a parser that saw a bare <LF> or <CR> in command text. Only command
 * text is checked: after a BDAT line the scan stops (its chunk is data) and
 * what follows the chunk comes back through _write in command mode. Should
 * the BDAT line not reach the BDAT handler (an AUTH exchange takes it as its
 * answer), _onCommand checks the rest (_qlTail) before it runs.
 */
function installBareNewlineCheck(conn: ConnectionInternals, stream: StreamInternals): void {
  const origWrite = stream._write;
  stream._write = function (this: StreamInternals, chunk, encoding, next) {
    if (!this._dataMode && chunk && chunk.length) {
      const cut = this._qlChunking ? commandTextEnd(chunk, this._qlLineHead ?? '') : { end: chunk.length, head: '' };
      this._qlLineHead = cut.head;
      const r = hasBareNewline(cut.end < chunk.length ? chunk.subarray(0, cut.end) : chunk, this._qlPendingCR ?? false);
      this._qlPendingCR = r.pendingCR;
      this._qlTail = cut.end < chunk.length ? chunk.subarray(cut.end) : undefined;
      if (r.bare) this._qlBareNewline = true;
    } else {
      this._qlPendingCR = false;
    }
    return origWrite.call(this, chunk, encoding, next);
  };
  const origCreateParser = conn._createParser;
  conn._createParser = function (this: ConnectionInternals) {
    const parser = origCreateParser.call(this);
    parser._qlChunking = Boolean(this._server.options.chunking);
    return parser;
  };
}

function installEhloAndEtrn(conn: ConnectionInternals): void {
  const origEhlo = conn.handler_EHLO;
  conn.handler_EHLO = function (this: ConnectionInternals, command, callback) {
    const o = this._server.options;
    // RFC 3030 CHUNKING, never BINARYMIME: a message is lines, as with DATA
    this._qlEhlo = [...(o.onEtrn ? ['ETRN'] : []), ...(o.chunking ? ['CHUNKING'] : [])];
    return origEhlo.call(this, command, callback);
  };
  conn.handler_ETRN = function (this: ConnectionInternals, command, callback) {
    const onEtrn = this._server.options.onEtrn;
    if (!onEtrn) {
      this.send(502, '5.5.1 ETRN not available here');
      return callback();
    }
    if (!this.hostNameAppearsAs) {
      this.send(503, '5.5.1 Send EHLO or HELO first');
      return callback();
    }
    const arg = command.toString().trim().replace(/^ETRN\s*/i, '');
    onEtrn(arg, this.session, (code, text) => {
      // RFC 1985 replies carry no enhanced code of their own: none is added
      this.send(code, text, false);
      callback();
    });
  };
}

function installAddressChecks(conn: ConnectionInternals): void {
  const withBrackets = (verb: 'MAIL FROM' | 'RCPT TO', orig: (command: Buffer, callback: () => void) => void) =>
    function (this: ConnectionInternals, command: Buffer, callback: () => void) {
      const fixed = bracketAddress(command.toString('binary'));
      if (fixed !== null && !this._server.options.mayOmitAngleBrackets?.(this.remoteAddress)) {
        this.send(501, `5.5.4 Syntax: ${verb}:<address> (angle brackets are required)`);
        return callback();
      }
      const line = fixed === null ? command : Buffer.from(fixed, 'binary');
      const refusal = checkAddressCommand(line, {
        smtpUtf8: Boolean(this.session.envelope?.smtpUtf8),
        isAuthOffered: this._isSupported('AUTH') && this._server.options.authMethods.length > 0,
      });
      if (refusal) {
        this.send(refusal.code, refusal.text);
        return callback();
      }
      return orig.call(this, line, callback);
    };
  conn.handler_MAIL = withBrackets('MAIL FROM', conn.handler_MAIL);
  conn.handler_RCPT = withBrackets('RCPT TO', conn.handler_RCPT);
}

/** AUTH only after STARTTLS; early talkers and bare newlines in commands end the session. */
function installCommandGate(conn: ConnectionInternals): void {
  const origIsSupported = conn._isSupported;
  conn._isSupported = function (this: ConnectionInternals, command) {
    if (/^\s*AUTH\s*$/i.test(command) && !this.secure && !this._server.options.allowInsecureAuth) return false;
    return origIsSupported.call(this, command);
  };
  const origOnCommand = conn._onCommand;
  conn._onCommand = function (this: ConnectionInternals, command, callback) {
    if (this._closing) return callback?.();
    if (!this._ready) {
      this.send(554, '5.5.0 Protocol error: client talked before the greeting');
      return this.close();
    }
    const parser = this._parser;
    // a BDAT line taken as an AUTH answer: the bytes after it are commands, check them now
    if (parser && parser._qlTail && this._nextHandler && isBdatLine(command.toString('latin1'))) {
      const r = hasBareNewline(parser._qlTail, false);
      parser._qlTail = undefined;
      parser._qlPendingCR = r.pendingCR;
      if (r.bare) parser._qlBareNewline = true;
    }
    if (parser && parser._qlBareNewline) {
      this.send(500, '5.5.2 Protocol error: bare <LF> or <CR> in command');
      return this.close();
    }
    return origOnCommand.call(this, command, callback);
  };
}
