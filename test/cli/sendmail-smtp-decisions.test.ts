/**
 * The pure parts of `sendmail -bs` (cli/sendmail-smtp.ts, cli/stdio-socket.ts):
 * the LF → CRLF repair of the input across pieces, and the reply (and exit
 * status) for a message that could not be kept. The whole session is tested
 * in cli.test.ts (-bs) and interop/sendmail-callers.test.ts (swaks --pipe).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toCrlf } from '../../src/cli/stdio-socket.js';
import { replyForFailure } from '../../src/cli/sendmail-smtp.js';
import { DataError, MailError, TempFailError, UsageError } from '../../src/errors.js';

test('toCrlf() turns bare LF into CRLF and joins a CR and an LF split across pieces', () => {
  const cases: Array<[string, boolean, string, boolean]> = [
    ['HELO a\n', false, 'HELO a\r\n', false],
    ['HELO a\r\nMAIL\n', false, 'HELO a\r\nMAIL\r\n', false],
    ['HELO a\r', false, 'HELO a\r', true],
    ['\nMAIL\n', true, '\nMAIL\r\n', false], // the CR went out with the last piece
    ['\nMAIL\n', false, '\r\nMAIL\r\n', false],
    ['', true, '', false],
    ['x\r\r\n', false, 'x\r\r\n', false],
  ];
  for (const [text, lastCR, fixed, after] of cases) {
    assert.deepEqual(toCrlf(text, lastCR), { fixed, lastCR: after }, JSON.stringify([text, lastCR]));
  }
});

test('replyForFailure(): a mail error keeps its codes, bad data is 554 5.6.0, anything else 451 4.3.0 and exit 75', () => {
  const cases: Array<[unknown, number, string, boolean]> = [
    [new TempFailError(452, '4.3.1', 'Insufficient system storage'), 452, '4.3.1 Insufficient system storage', true],
    [new MailError(550, '5.7.1', 'Refused'), 550, '5.7.1 Refused', false],
    [new DataError('Header too long'), 554, '5.6.0 Header too long', false],
    [new UsageError('No recipients'), 554, '5.6.0 No recipients', false],
    [new Error('EIO'), 451, '4.3.0 Local error in processing: EIO', true],
  ];
  for (const [err, code, message, isTemporary] of cases) {
    const r = replyForFailure(err);
    assert.equal((r.reply as Error & { responseCode: number }).responseCode, code);
    assert.equal(r.reply.message, message);
    assert.equal(r.isTemporary, isTemporary);
  }
});
