/**
 * The pure parts of liberal intake (SPEC §9 "Be liberal where Postfix is"),
 * as tables: bare LF normalized across chunk boundaries and bare CR kept as
 * a refusal, who gets `smtp.bareNewline: reject`, angle brackets put around
 * an unbracketed MAIL/RCPT address, the header section and the Date: /
 * Message-ID: fields added to it, and recipients after expandRecipient().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyScanner, bareNewlineAction } from '../../src/intake/body-scanner.js';
import { bracketAddress } from '../../src/intake/smtp-extensions.js';
import { addMissingHeaders, headerSection, missingHeaderFields } from '../../src/intake/missing-headers.js';
import { envelopeRecipients, type Rcpt } from '../../src/intake/recipient-expansion.js';

function normalize(chunks: string[]): { out: string; s: BodyScanner } {
  const s = new BodyScanner();
  const out = chunks.map((c) => s.push(Buffer.from(c, 'latin1')).toString('latin1')).join('');
  s.end();
  return { out, s };
}

test('BodyScanner.push() turns bare LF into CRLF, also across chunks; CRLF and CR-then-LF split over chunks stay as they are', () => {
  const cases: Array<[string[], string, boolean]> = [
    [['a\r\nb\r\n'], 'a\r\nb\r\n', false],
    [['a\nb\n'], 'a\r\nb\r\n', true],
    [['a\r', '\nb\r\n'], 'a\r\nb\r\n', false],
    [['a\r\n', '\nb\r\n'], 'a\r\n\r\nb\r\n', true],
    [['\n'], '\r\n', true],
    [['x\r\n\n.\r\n'], 'x\r\n\r\n.\r\n', true],
    [['x\n.\n', 'y\n'], 'x\r\n.\r\ny\r\n', true],
    [['caf\xe9\n'], 'caf\xe9\r\n', true],
  ];
  for (const [chunks, want, bareLf] of cases) {
    const { out, s } = normalize(chunks);
    assert.equal(out, want, JSON.stringify(chunks));
    assert.equal(s.hasBareLf, bareLf, JSON.stringify(chunks));
    assert.equal(s.hasBareCr, false, JSON.stringify(chunks));
    assert.equal(s.storedSize, want.length);
    assert.equal(s.size, chunks.join('').length);
  }
});

test('BodyScanner: a bare CR is never repaired, wherever it is (SMTP smuggling)', () => {
  for (const chunks of [['a\rb\r\n'], ['a\r', 'b\r\n'], ['x\r\n.\r\r\n'], ['x\r\n.\r'], ['x\r.\r'], ['a\nb\rc\r\n']]) {
    const { s } = normalize(chunks);
    assert.equal(s.hasBareCr, true, JSON.stringify(chunks));
    assert.equal(s.hasBareNewline, true);
  }
});

test('BodyScanner notes 8-bit bytes', () => {
  assert.equal(normalize(['abc\r\n', 'd\xe9f\r\n']).s.hasEightBit, true);
  assert.equal(normalize(['plain\r\n']).s.hasEightBit, false);
});

test('bareNewlineAction(): LAN clients are always normalized; others as smtp.bareNewline says', () => {
  const cases: Array<['normalize' | 'reject', boolean, 'normalize' | 'reject']> = [
    ['normalize', true, 'normalize'],
    ['normalize', false, 'normalize'],
    ['reject', true, 'normalize'],
    ['reject', false, 'reject'],
  ];
  for (const [setting, lan, want] of cases) assert.equal(bareNewlineAction(setting, lan), want, `${setting} ${lan}`);
});

test('bracketAddress() brackets one unbracketed address and keeps the parameters; anything else is left to smtp-server', () => {
  const cases: Array<[string, string | null]> = [
    ['MAIL FROM:a@b.example', 'MAIL FROM:<a@b.example>'],
    ['mail from: a@b.example SIZE=100 BODY=8BITMIME', 'mail from:<a@b.example> SIZE=100 BODY=8BITMIME'],
    ['RCPT TO:bob@office.example NOTIFY=NEVER', 'RCPT TO:<bob@office.example> NOTIFY=NEVER'],
    ['RCPT TO:postmaster', 'RCPT TO:<postmaster>'],
    ['MAIL FROM:<a@b.example>', null],
    ['MAIL FROM: <a@b.example>', null],
    ['MAIL FROM:<>', null],
    ['MAIL FROM:', null],
    ['MAIL FROM:a@b.example>', null],
    ['MAIL FROM:<a@b.example', null],
    ['EHLO a@b.example', null],
  ];
  for (const [command, want] of cases) assert.equal(bracketAddress(command), want, command);
});

const FACTS = { id: 'Q1', hostname: 'gw.example', now: Date.UTC(2026, 10, 23, 8) };
const DATE = 'Date: Mon, 23 Nov 2026 08:00:00 +0000';
const MID = 'Message-ID: <Q1@gw.example>';

test('missingHeaderFields() adds what is missing, in RFC 5322 form, with the queue id and our hostname', () => {
  assert.deepEqual(missingHeaderFields(() => false, FACTS), [DATE, MID]);
  assert.deepEqual(missingHeaderFields((n) => n === 'date', FACTS), [MID]);
  assert.deepEqual(missingHeaderFields(() => true, FACTS), []);
});

test('headerSection(): ends at the empty line, at the first line that is no field, or needs more data', () => {
  const cases: Array<[string, boolean, { end: number; names: string[]; hasSeparator: boolean } | null]> = [
    ['Subject: a\r\nDATE: x\r\n\r\nbody\r\n', false, { end: 21, names: ['subject', 'date'], hasSeparator: true }],
    ['Subject: a\r\n folded\r\n\r\n', false, { end: 21, names: ['subject'], hasSeparator: true }],
    ['Subject: a\r\nbody without separator\r\n', false, { end: 12, names: ['subject'], hasSeparator: false }],
    ['just a body\r\n', false, { end: 0, names: [], hasSeparator: false }],
    [' folded first\r\n', false, { end: 0, names: [], hasSeparator: false }],
    ['Subject: a\r\nMessage-ID: <x>\r\n', false, null],
    ['Subject: a\r\nMessage-', false, null],
    ['Subject: a\r\nMessage-ID: <x>\r\n', true, { end: 29, names: ['subject', 'message-id'], hasSeparator: false }],
    ['', true, { end: 0, names: [], hasSeparator: false }],
  ];
  for (const [text, isWhole, want] of cases) {
    const got = headerSection(text, isWhole);
    assert.deepEqual(got && { ...got, names: [...got.names] }, want, JSON.stringify(text));
  }
});

test('addMissingHeaders() puts the fields at the end of the header section, with an empty line where none was', () => {
  const cases: Array<[string, string]> = [
    ['Subject: a\r\n\r\nbody\r\n', `Subject: a\r\n${DATE}\r\n${MID}\r\n\r\nbody\r\n`],
    [`Subject: a\r\n${DATE}\r\n\r\nbody\r\n`, `Subject: a\r\n${DATE}\r\n${MID}\r\n\r\nbody\r\n`],
    [`${MID}\r\n${DATE}\r\n\r\nbody\r\n`, `${MID}\r\n${DATE}\r\n\r\nbody\r\n`],
    ['just a body\r\n', `${DATE}\r\n${MID}\r\n\r\njust a body\r\n`],
    ['Subject: only headers\r\n', `Subject: only headers\r\n${DATE}\r\n${MID}\r\n\r\n`],
    ['Subject: caf\xe9\r\n\r\n\xe9\r\n', `Subject: caf\xe9\r\n${DATE}\r\n${MID}\r\n\r\n\xe9\r\n`],
  ];
  for (const [text, want] of cases) {
    const block = Buffer.from(text, 'latin1');
    const got = addMissingHeaders(block, headerSection(text, true)!, FACTS);
    assert.equal(got.block.toString('latin1'), want, JSON.stringify(text));
  }
});

test('envelopeRecipients(): an expanded recipient is replaced by its list, with its NOTIFY and ORCPT; duplicates once', () => {
  const rcpt = (address: string, extra: Partial<Rcpt> = {}) => ({ address, args: false, ...extra }) as Rcpt;
  assert.deepEqual(envelopeRecipients([rcpt('a@x.example'), rcpt('B@x.example')]), [
    { address: 'a@x.example', orcpt: undefined, notify: undefined },
    { address: 'B@x.example', orcpt: undefined, notify: undefined },
  ]);
  assert.deepEqual(envelopeRecipients([
    rcpt('root@gw.example', { qlExpandedTo: ['admin@office.example', 'ops@office.example'], dsn: { notify: ['FAILURE'] } } as Partial<Rcpt>),
    rcpt('Admin@office.example'),
    rcpt('postmaster@gw.example', { qlExpandedTo: ['ops@office.example'], dsn: { orcpt: 'rfc822;pm@gw.example' } } as Partial<Rcpt>),
  ]), [
    { address: 'admin@office.example', orcpt: 'rfc822;root@gw.example', notify: ['FAILURE'] },
    { address: 'ops@office.example', orcpt: 'rfc822;root@gw.example', notify: ['FAILURE'] },
  ]);
});
