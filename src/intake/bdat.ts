/**
 * intake/bdat.ts — CHUNKING (RFC 3030 `BDAT <size> [LAST]`, no BINARYMIME)
 * on smtp-server's SMTPConnection and SMTPStream, which have no BDAT of
 * their own. Installed by installSmtpExtensions() (smtp-extensions.ts);
 * offered only by a server whose options say `chunking: true` (the SMTP
 * intake; not `sendmail -bs`, whose input is rewritten line by line).
 * The decisions are bdat-command.ts's; this file reads the octets and keeps
 * the transaction.
 *
 * - Reading a chunk: the parser is put in data mode, so smtp-server hands
 *   the rest of the socket chunk back to SMTPStream._write, where exactly
 *   `size` octets are taken as they come (no line parsing, no dot-unstuffing:
 *   `.` and `QUIT` lines are data); then it returns to command mode with
 *   whatever followed (pipelined commands, the next BDAT).
 * - The message: the first accepted chunk opens a stream and hands it to the
 *   server's onData, the same path DATA takes (message-intake.ts: size, bare
 *   CR/LF, NUL and header checks, the queue's commit before the 250); every
 *   chunk is written into it with back-pressure. A non-LAST chunk is answered
 *   `250 2.0.0 <n> octets received`; LAST ends the stream and is answered
 *   with onData's reply once it has called back; then the session is reset
 *   as after DATA. Until then the parser reads nothing more.
 * - Ending a transaction early: a refused BDAT (501, 552), DATA within it
 *   (503) and anything that resets the session (RSET, EHLO, HELO, STARTTLS)
 *   or closes the connection destroy the stream: message-intake.ts then
 *   aborts the queue's writer and nothing is kept. RCPT after the first
 *   chunk gets 503 and changes nothing. Once LAST is in, a connection that
 *   closes leaves the message to be committed, as after DATA.
 * - Limits (smtp-guards.ts): while a chunk is read the data rate counts from
 *   the transaction's first chunk over all its octets (thrown-away chunks
 *   too, from their own start); the session clock runs on and starts again
 *   at the final reply; between chunks the client owes a command
 *   (timeout.command); after LAST it is us the client waits for.
 *
 * Known limits: chunks are not binary (BINARYMIME is not offered), so the
 * same line rules as for DATA apply to the message (bare LF normalized or
 * refused by smtp.bareNewline, bare CR refused); a BDAT command line without
 * its CRLF at the very end of the input is never answered.
 */
import { PassThrough } from 'node:stream';
import { decideBdat } from './bdat-command.js';
import { guardChunk, guardTransactionEnd, type GuardedConnection } from './smtp-guards.js';

/** The chunk the parser is reading (SMTPStream._qlChunk). */
interface ChunkReader {
  left: number;
  /** Takes octets of the chunk; `done` when they may be followed by more. */
  take(part: Buffer, done: () => void): void;
  /** The chunk is complete; `resume` goes on with what followed it. */
  end(resume: () => void): void;
}

/** The members of SMTPStream read here (checked by test/intake/smtp-internals.test.ts). */
export interface ChunkParser {
  _dataMode: boolean;
  isClosed: boolean;
  _qlChunk?: ChunkReader;
  /** Command-mode bytes after a BDAT line, not yet checked for bare <CR>/<LF> (smtp-extensions.ts). */
  _qlTail?: Buffer;
  _write(chunk: Buffer, encoding: BufferEncoding, next: (err?: Error) => void): void;
}

type MessageStream = PassThrough & { sizeExceeded: boolean; byteLength: number; qlChunks: number };
type DataCallback = (err: (Error & { responseCode?: number }) | null | undefined, message?: unknown) => void;

interface BdatTransaction {
  stream: MessageStream;
  /** Octets of all chunks so far. */
  received: number;
  /** When the first chunk began (ms). */
  since: number;
  /** onData's answer, once it has called back. */
  result?: { err: (Error & { responseCode?: number }) | null; message?: unknown };
  /** Waits for the result (LAST is in). */
  onResult?: () => void;
}

/** The members of SMTPConnection used here (checked by test/intake/smtp-internals.test.ts). */
export interface BdatConnection extends GuardedConnection {
  _server: GuardedConnection['_server'] & {
    options: GuardedConnection['_server']['options'] & { chunking?: boolean; size?: number };
    onData(stream: unknown, session: unknown, callback: DataCallback): void;
  };
  _parser: (GuardedConnection['_parser'] & ChunkParser) | false;
  session: GuardedConnection['session'] & { envelope: { mailFrom: unknown; rcptTo: unknown[] } };
  _transactionCounter: number;
  _unrecognizedCommands: number;
  _resetSession(): void;
  _isSupported(command: string): boolean;
  handler_BDAT?(command: Buffer, callback: () => void): void;
  handler_RCPT(command: Buffer, callback: () => void): void;
  _qlBdatTx?: BdatTransaction;
}

/** Puts the parser to reading `size` octets with `reader` (smtp-server then hands it the rest of the input). */
function readChunk(parser: ChunkParser, size: number, reader: Omit<ChunkReader, 'left'>): void {
  parser._qlTail = undefined;
  parser._qlChunk = { left: size, ...reader };
  parser._dataMode = true;
}

/** Destroys the transaction's stream unless LAST is in; message-intake.ts then keeps nothing. */
function abortTransaction(c: BdatConnection): void {
  const tx = c._qlBdatTx;
  if (!tx) return;
  c._qlBdatTx = undefined;
  if (!tx.stream.writableEnded) tx.stream.destroy(new Error('The BDAT transaction ended before BDAT LAST'));
}

function openTransaction(c: BdatConnection): BdatTransaction {
  const stream = Object.assign(new PassThrough(), { sizeExceeded: false, byteLength: 0, qlChunks: 0 });
  // a stream destroyed before onData's reader listens must not be an uncaught 'error'
  stream.on('error', () => undefined);
  const tx: BdatTransaction = { stream, received: 0, since: Date.now() };
  c._qlBdatTx = tx;
  c._server.onData(stream, c.session, (err, message) => {
    tx.result = { err: err ?? null, message };
    tx.onResult?.();
  });
  return tx;
}

/** Writes a chunk's octets into the message, waiting while the reader is behind; thrown away once onData has answered. */
function writeInto(tx: BdatTransaction, part: Buffer, done: () => void): void {
  const s = tx.stream;
  tx.received += part.length;
  s.byteLength = tx.received;
  if (tx.result || s.destroyed || !s.writable || s.write(part)) return done();
  const go = () => {
    s.off('drain', go);
    s.off('close', go);
    done();
  };
  s.once('drain', go);
  s.once('close', go);
}

/** LAST is in: the message ends, and its reply goes out once onData has answered; then the session is reset as after DATA. */
function finishTransaction(c: BdatConnection, tx: BdatTransaction, resume: () => void): void {
  tx.stream.end();
  // the client waits for us now: smtp-server's idle timeout and the session clock hold off
  c._dataStream = tx.stream;
  const reply = () => {
    c._dataStream = false;
    if (c._qlBdatTx === tx) c._qlBdatTx = undefined;
    const { err, message } = tx.result!;
    if (err) c.send(err.responseCode || 450, err.message);
    else c.send(250, typeof message === 'string' ? message : '2.0.0 Ok: queued');
    c._transactionCounter++;
    c._unrecognizedCommands = 0;
    c._resetSession();
    guardTransactionEnd(c);
    resume();
  };
  if (tx.result) reply();
  else tx.onResult = reply;
}

/** Reads and throws away `size` octets, then sends the refusal. */
function discard(c: BdatConnection, parser: ChunkParser, size: number, code: number, text: string): void {
  let seen = 0;
  readChunk(parser, size, {
    take: (part, done) => {
      seen += part.length;
      done();
    },
    end: (resume) => {
      c.send(code, text);
      resume();
    },
  });
  if (size > 0) guardChunk(c, Date.now(), () => seen);
}

function handlerBdat(this: BdatConnection, command: Buffer, callback: () => void): void {
  const parser = this._parser;
  if (!parser) return callback();
  const env = this.session.envelope;
  const tx = this._qlBdatTx;
  const d = decideBdat({
    line: command.toString('latin1'),
    hasMail: Boolean(env.mailFrom),
    hasRcpt: env.rcptTo.length > 0,
    received: tx?.received ?? 0,
    maxSize: Number(this._server.options.size) || 0,
  });
  if (d.kind === 'refuse') {
    if (d.endsTransaction) this._resetSession();
    discard(this, parser, d.discard, d.code, d.text);
    return callback();
  }
  const t = tx ?? openTransaction(this);
  t.stream.qlChunks++;
  readChunk(parser, d.size, {
    take: (part, done) => writeInto(t, part, done),
    end: (resume) => {
      if (d.isLast) return finishTransaction(this, t, resume);
      this.send(250, `2.0.0 ${d.size} octets received`);
      resume();
    },
  });
  if (d.size > 0) guardChunk(this, t.since, () => t.received);
  callback();
}

/** The chunk reader in SMTPStream._write: takes the chunk's octets, then hands what follows back to command mode. */
function installChunkReader(stream: ChunkParser): void {
  const origWrite = stream._write;
  stream._write = function (this: ChunkParser, chunk, encoding, next) {
    const reader = this._qlChunk;
    if (!reader) return origWrite.call(this, chunk, encoding, next);
    if (this.isClosed) return next();
    const n = Math.min(reader.left, chunk.length);
    reader.left -= n;
    const rest = chunk.subarray(n);
    const after = () => {
      if (reader.left > 0) return next();
      this._qlChunk = undefined;
      this._dataMode = false;
      // what followed the chunk goes on from a fresh stack: many pipelined chunks in one segment do not nest
      reader.end(() => (rest.length ? setImmediate(() => this._write(rest, encoding, next)) : next()));
    };
    if (n > 0) reader.take(chunk.subarray(0, n), after);
    else after();
  };
}

/** Adds BDAT to SMTPConnection and the chunk reader to SMTPStream (their prototypes); call once. */
export function installBdat(conn: BdatConnection, stream: ChunkParser): void {
  installChunkReader(stream);
  conn.handler_BDAT = handlerBdat;

  const origIsSupported = conn._isSupported;
  conn._isSupported = function (this: BdatConnection, command) {
    if (/^\s*BDAT\s*$/i.test(command) && !this._server.options.chunking) return false;
    return origIsSupported.call(this, command);
  };

  const origReset = conn._resetSession;
  conn._resetSession = function (this: BdatConnection) {
    abortTransaction(this);
    return origReset.call(this);
  };

  const origData = conn.handler_DATA;
  conn.handler_DATA = function (this: BdatConnection, command, callback) {
    if (!this._qlBdatTx) return origData.call(this, command, callback);
    // RFC 3030 §3: DATA and BDAT never mix in one transaction; this one is over
    this._resetSession();
    this.send(503, '5.5.1 Bad sequence of commands: DATA after BDAT, the transaction is discarded');
    callback();
  };

  const origRcpt = conn.handler_RCPT;
  conn.handler_RCPT = function (this: BdatConnection, command, callback) {
    if (!this._qlBdatTx) return origRcpt.call(this, command, callback);
    this.send(503, '5.5.1 Bad sequence of commands: RCPT after BDAT');
    callback();
  };

  const origOnClose = conn._onClose;
  conn._onClose = function (this: BdatConnection) {
    abortTransaction(this);
    return origOnClose.call(this);
  };
}
