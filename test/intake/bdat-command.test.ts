/**
 * The BDAT decisions (intake/bdat-command.ts) as tables: the command's
 * syntax, the reply to a BDAT in each state of the transaction, and where the
 * command text of a socket chunk ends for the bare newline check.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandTextEnd, decideBdat, parseBdat, type BdatFacts } from '../../src/intake/bdat-command.js';

test('parseBdat() takes BDAT <decimal> [LAST] and nothing else', () => {
  const cases: Array<[string, ReturnType<typeof parseBdat>]> = [
    ['BDAT 0 LAST', { size: 0, isLast: true }],
    ['BDAT 1000', { size: 1000, isLast: false }],
    ['bdat 12 last', { size: 12, isLast: true }],
    ['BDAT  7   LAST  ', { size: 7, isLast: true }],
    ['BDAT 007', { size: 7, isLast: false }],
    ['BDAT 12345678901234567890', { size: 12345678901234567890, isLast: false }],
    ['BDAT 123456789012345678901', null],
    ['BDAT', null],
    ['BDAT LAST', null],
    ['BDAT +5', null],
    ['BDAT -1', null],
    ['BDAT 1e3', null],
    ['BDAT 0x10', null],
    ['BDAT 1.5', null],
    ['BDAT 5 MORE', null],
    ['BDAT 5 LAST LAST', null],
    ['BDAT\t5', null],
  ];
  for (const [line, want] of cases) assert.deepEqual(parseBdat(line), want, line);
});

test('decideBdat(): 501 for bad syntax, 503 outside a transaction (octets discarded), 552 over the limit, else the chunk', () => {
  const base: BdatFacts = { line: 'BDAT 100', hasMail: true, hasRcpt: true, received: 0, maxSize: 1000 };
  const cases: Array<[Partial<BdatFacts>, string]> = [
    [{}, 'chunk 100'],
    [{ line: 'BDAT 0 LAST' }, 'chunk 0 LAST'],
    [{ received: 900 }, 'chunk 100'],
    [{ received: 901 }, '552 5.3.4 discard 100 ends'],
    [{ line: 'BDAT 1001 LAST' }, '552 5.3.4 discard 1001 ends'],
    [{ line: 'BDAT 1001', maxSize: 0 }, 'chunk 1001'],
    [{ hasMail: false, hasRcpt: false }, '503 5.5.1 discard 100 keeps'],
    [{ hasRcpt: false }, '503 5.5.1 discard 100 keeps'],
    [{ line: 'BDAT x', hasMail: false }, '501 5.5.4 discard 0 ends'],
    [{ line: 'BDAT 1e3' }, '501 5.5.4 discard 0 ends'],
  ];
  for (const [over, want] of cases) {
    const d = decideBdat({ ...base, ...over });
    const got = d.kind === 'chunk'
      ? `chunk ${d.size}${d.isLast ? ' LAST' : ''}`
      : `${d.code} ${d.text.split(' ')[0]} discard ${d.discard} ${d.endsTransaction ? 'ends' : 'keeps'}`;
    assert.equal(got, want, JSON.stringify(over));
  }
});

test('commandTextEnd() stops after the first BDAT line, across chunk boundaries too', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  const cases: Array<[string, string, { end: number; head: string }]> = [
    ['NOOP\r\nQUIT\r\n', '', { end: 12, head: '' }],
    ['NOOP\r\nBDAT 5\r\nhel\nlo', '', { end: 14, head: '' }],
    ['BDAT 5 LAST\r\nx\ny', '', { end: 13, head: '' }],
    ['bdat 1\r\nz', '', { end: 8, head: '' }],
    ['NOOP\r\nBDA', '', { end: 9, head: 'BDA' }],
    ['T 5\r\nabc', 'BDA', { end: 5, head: '' }],
    ['\nabc', 'BDAT 5\r', { end: 1, head: '' }],
    ['BDAT\r\nQUIT\r\n', '', { end: 12, head: '' }],
    ['XBDAT 5\r\nQUIT\r\n', '', { end: 15, head: '' }],
    ['', 'BD', { end: 0, head: 'BD' }],
  ];
  for (const [chunk, head, want] of cases) assert.deepEqual(commandTextEnd(b(chunk), head), want, JSON.stringify([chunk, head]));
});
