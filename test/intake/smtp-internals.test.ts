/**
 * smtp-extensions.ts, smtp-guards.ts and bdat.ts reach into smtp-server's
 * SMTPConnection and SMTPStream (not its public API). This test fails, naming
 * the member, when an smtp-server release renames or reshapes one of them:
 * then the patches must be looked at again before the version is moved on
 * (package.json pins the exact version). It reads the unpatched classes and
 * a live connection of a plain SMTPServer on 127.0.0.1 (port 0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Writable } from 'node:stream';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { withTimeout } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/smtp-client.js';

const CONNECTION_METHODS = [
  'send', 'close', 'init', 'connectionReady', '_setListeners', '_createParser', '_onClose', '_onCommand', '_isSupported',
  'handler_EHLO', 'handler_MAIL', 'handler_RCPT', 'handler_DATA', 'handler_AUTH', '_parseAddressCommand',
  // bdat.ts
  '_resetSession', 'handler_RSET',
];

test('SMTPConnection and SMTPStream still have every method the patches wrap', () => {
  const proto = SMTPConnection.prototype as unknown as Record<string, unknown>;
  for (const name of CONNECTION_METHODS) assert.equal(typeof proto[name], 'function', `SMTPConnection.prototype.${name} is gone or not a function`);
  assert.equal(typeof (SMTPStream.prototype as unknown as Record<string, unknown>)._write, 'function', 'SMTPStream.prototype._write is gone');
  assert.equal((SMTPConnection.prototype as unknown as { _onCommand: (...a: unknown[]) => void })._onCommand.length, 2, 'SMTPConnection.prototype._onCommand(command, callback) changed its arguments');
  // bdat.ts adds BDAT: smtp-server having one of its own would mean two readers of the same octets
  assert.equal((SMTPConnection.prototype as unknown as Record<string, unknown>).handler_BDAT, undefined, 'smtp-server has a handler_BDAT of its own now: look at bdat.ts again');
});

/** An SMTPStream whose own _write takes over once `_dataMode` is set (as bdat.ts's chunk reader does): what does it get? */
function dataModeProbe(asyncCallback: boolean): Promise<{ commands: string[]; handedOver: string }> {
  type Parser = Writable & { _dataMode: boolean; isClosed: boolean; oncommand: (c: Buffer, cb: () => void) => void; _write: Writable['_write'] };
  const parser = new SMTPStream() as unknown as Parser;
  const commands: string[] = [];
  let handedOver = '';
  const protoWrite = (SMTPStream.prototype as unknown as Parser)._write;
  parser._write = function (this: Parser, chunk: Buffer, enc: BufferEncoding, next: (err?: Error | null) => void) {
    if (!this._dataMode) return protoWrite.call(this, chunk, enc, next);
    handedOver += chunk.toString('latin1');
    next();
  };
  parser.oncommand = (line, cb) => {
    commands.push(line.toString());
    if (line.toString() !== 'X 5') return cb();
    parser._dataMode = true;
    if (asyncCallback) setImmediate(cb);
    else cb();
  };
  return new Promise((resolve) => parser.end(Buffer.from('A\r\nX 5\r\n.\r\nQUIT\r\nB\r\n', 'latin1'), () => resolve({ commands, handedOver })));
}

test('SMTPStream hands the rest of the input to _write once a command handler sets _dataMode (bdat.ts reads chunks so)', async () => {
  for (const asyncCallback of [false, true]) {
    const r = await withTimeout(dataModeProbe(asyncCallback), 5_000, 'the parser to take the input');
    assert.deepEqual(r, { commands: ['A', 'X 5'], handedOver: '.\r\nQUIT\r\nB\r\n' }, `handler calls back ${asyncCallback ? 'later' : 'at once'}: SMTPStream no longer hands the rest of a chunk to _write in data mode`);
  }
  const s = new SMTPStream() as unknown as { isClosed: unknown };
  assert.equal(typeof s.isClosed, 'boolean', 'SMTPStream.isClosed is gone');
});

test('a live connection has the fields the patches read, with the meaning they assume', async () => {
  type Conn = Record<string, unknown> & { _parser: Record<string, unknown>; _server: Record<string, unknown>; session: Record<string, unknown> };
  const seen: Record<string, unknown> = {};
  let conn: Conn | undefined;
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS', 'AUTH'], authOptional: true, disableReverseLookup: true, logger: false, allowHalfOpen: true,
    onData(stream, _session, cb) {
      // the data is in: the parser has left data mode, the connection still holds the stream
      stream.on('data', () => undefined);
      stream.on('end', () => {
        seen.dataModeAfterEnd = conn!._parser._dataMode;
        seen.dataStreamAfterEnd = Boolean(conn!._dataStream);
        seen.dataBytes = conn!._parser.dataBytes;
        cb(null, 'ok');
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as net.AddressInfo).port;
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    conn = [...(server as unknown as { connections: Set<Conn> }).connections][0];
    assert.ok(conn, 'SMTPServer.connections (a Set of SMTPConnection) is gone');
    assert.ok((server as unknown as { connections: unknown }).connections instanceof Set, 'SMTPServer.connections is no longer a Set');
    for (const [field, type] of [['_ready', 'boolean'], ['_closing', 'boolean'], ['_closed', 'boolean'], ['_handlerPending', 'boolean'], ['_upgrading', 'boolean'], ['remoteAddress', 'string'], ['secure', 'boolean'],
      ['_transactionCounter', 'number'], ['_unrecognizedCommands', 'number']] as const) {
      assert.equal(typeof conn[field], type, `SMTPConnection.${field} is no longer a ${type}`);
    }
    assert.equal(conn._ready, true, 'SMTPConnection._ready is not true after the greeting');
    assert.ok(conn._socket instanceof net.Socket, 'SMTPConnection._socket is no longer the socket');
    assert.ok(conn._parser instanceof SMTPStream, 'SMTPConnection._parser is no longer the SMTPStream');
    assert.equal(conn._parser._dataMode, false, 'SMTPStream._dataMode is gone');
    assert.equal(typeof conn._parser.dataBytes, 'number', 'SMTPStream.dataBytes is gone');
    assert.equal(typeof (conn._server as { options: unknown }).options, 'object', 'SMTPConnection._server.options is gone');
    assert.equal((conn._server as { options: { allowHalfOpen?: boolean } }).options.allowHalfOpen, true, 'server options are no longer kept as given');
    assert.equal(conn._dataStream, false, 'SMTPConnection._dataStream is not false outside DATA');
    assert.equal(conn._nextHandler, false, 'SMTPConnection._nextHandler (the AUTH exchange in progress) is gone');
    assert.equal(typeof (conn._server as { onData?: unknown }).onData, 'function', 'SMTPConnection._server.onData (what DATA hands the stream to) is gone');
    await c.cmd('EHLO client.test');
    assert.equal(conn.hostNameAppearsAs, 'client.test', 'SMTPConnection.hostNameAppearsAs is gone');
    await c.cmd('MAIL FROM:<a@b.example> SMTPUTF8');
    assert.equal((conn.session.envelope as { smtpUtf8: boolean }).smtpUtf8, true, 'session.envelope.smtpUtf8 is gone');
    // RSET goes through _resetSession(), which gives the session a new, empty envelope (bdat.ts ends a BDAT transaction there)
    let resets = 0;
    const protoReset = (SMTPConnection.prototype as unknown as { _resetSession: () => void })._resetSession;
    conn._resetSession = function (this: unknown) {
      resets++;
      return protoReset.call(this);
    };
    assert.equal((await c.cmd('RSET')).code, 250);
    assert.equal(resets, 1, 'RSET no longer calls SMTPConnection._resetSession()');
    assert.deepEqual([(conn.session.envelope as { mailFrom: unknown }).mailFrom, (conn.session.envelope as { rcptTo: unknown[] }).rcptTo], [false, []], 'session.envelope.mailFrom/rcptTo are not reset to false/[]');
    await c.cmd('MAIL FROM:<a@b.example>');
    assert.ok((conn.session.envelope as { mailFrom: unknown }).mailFrom, 'session.envelope.mailFrom is not set by MAIL');
    await c.cmd('RCPT TO:<c@d.example>');
    assert.equal((conn.session.envelope as { rcptTo: unknown[] }).rcptTo.length, 1, 'session.envelope.rcptTo is not the list of accepted recipients');
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal(conn._parser._dataMode, true, 'SMTPStream._dataMode is not true during DATA');
    assert.ok(conn._dataStream, 'SMTPConnection._dataStream is not set during DATA');
    assert.equal(conn._handlerPending, false, 'SMTPConnection._handlerPending stays true during DATA');
    c.write('Subject: x\r\n\r\nhello\r\n.\r\n');
    assert.equal((await c.reply()).code, 250);
    assert.deepEqual(seen, { dataModeAfterEnd: false, dataStreamAfterEnd: true, dataBytes: 21 });
    assert.equal(resets, 2, 'the end of DATA no longer resets the session through _resetSession()');
    assert.equal(conn._transactionCounter, 1, 'SMTPConnection._transactionCounter does not count finished transactions');
    // a QUIT closes: _closing set, the parser is taken off the socket
    assert.equal((await c.cmd('QUIT')).code, 221);
    assert.equal(conn._closing || conn._closed, true, 'SMTPConnection._closing/_closed are not set by close()');
    assert.equal(await c.closedByServer(), true);
  } finally {
    c.close();
    await withTimeout(new Promise<void>((resolve) => server.close(() => resolve())), 10_000, 'server close');
  }
});
