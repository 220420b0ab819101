import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyScanner } from '../../src/intake/body-scanner.js';
import { hasBareNewline } from '../../src/intake/smtp-extensions.js';
import { isValidMailbox } from '../../src/intake/address.js';
import { mayRelay, inDomainSet } from '../../src/intake/relay-policy.js';
import { NetworkList } from '../../src/config/cidr.js';
import { composeLocalSubmission, parseAddressList } from '../../src/intake/local-submission.js';
import { DataError, UsageError } from '../../src/errors.js';

function scan(chunks: string[]): BodyScanner {
  const s = new BodyScanner();
  for (const c of chunks) s.push(Buffer.from(c, 'latin1'));
  s.end();
  return s;
}

test('BodyScanner finds bare LF and bare CR, also across chunk boundaries', () => {
  const cases: Array<[string[], boolean]> = [
    [['a\r\nb\r\n'], false],
    [['a\r', '\nb\r\n'], false],
    [['a\nb\r\n'], true],
    [['a\r\n', '\nb\r\n'], true],
    [['a\rb\r\n'], true],
    [['a\r', 'b\r\n'], true],
    [['x\r\n\n.\r\n'], true],
    [['x\r\n.\r\r\n'], true],
    [['x\r\n.\r'], true],
    [['\n'], true],
  ];
  for (const [chunks, bare] of cases) assert.equal(scan(chunks).hasBareNewline, bare, JSON.stringify(chunks));
});

test('BodyScanner notices 8-bit bytes and counts the size', () => {
  const s = scan(['abc\r\n', 'd\xe9f\r\n']);
  assert.equal(s.hasEightBit, true);
  assert.equal(s.size, 10);
  assert.equal(scan(['plain\r\n']).hasEightBit, false);
});

test('hasBareNewline() on command chunks', () => {
  assert.deepEqual(hasBareNewline(Buffer.from('EHLO x\r\n'), false), { bare: false, pendingCR: false });
  assert.deepEqual(hasBareNewline(Buffer.from('EHLO x\r'), false), { bare: false, pendingCR: true });
  assert.equal(hasBareNewline(Buffer.from('\n'), true).bare, false);
  assert.equal(hasBareNewline(Buffer.from('RSET\nNOOP\r\n'), false).bare, true);
  assert.equal(hasBareNewline(Buffer.from('RSET\rNOOP\r\n'), false).bare, true);
});

test('isValidMailbox() follows RFC 5321 syntax', () => {
  for (const ok of ['a@b.example', 'first.last+tag@sub.example.com', '"odd name"@example.com', 'x@[127.0.0.1]', 'x@[IPv6:::1]']) assert.ok(isValidMailbox(ok), ok);
  for (const bad of ['', 'a', '@b.example', 'a@', 'a b@c.example', 'a@b..example', 'a@-b.example', 'a\r\n@b.example', 'a@[999.1.1.1]', '.a@b.example', 'ü@b.example']) {
    assert.ok(!isValidMailbox(bad), bad);
  }
  assert.ok(isValidMailbox('ü@b.example', true));
});

test('mayRelay(): mynetworks and authenticated send anywhere; others only to open domains (exact, or under a .dom entry)', () => {
  const policy = { mynetworks: new NetworkList(['127.0.0.0/8', '192.168.1.0/24']), openDomains: new Set(['office.example', 'cust1.dom', '.cust2.dom']) };
  const cases: Array<[string, boolean, string, boolean]> = [
    ['192.168.1.5', false, 'far.example', true],
    ['::ffff:192.168.1.5', false, 'far.example', true],
    ['203.0.113.9', false, 'far.example', false],
    ['203.0.113.9', true, 'far.example', true],
    ['203.0.113.9', false, 'office.example', true],
    ['203.0.113.9', false, 'cust1.dom', true],
    ['203.0.113.9', false, 'mail.cust1.dom', false],
    ['203.0.113.9', false, 'cust2.dom', true],
    ['203.0.113.9', false, 'mail.cust2.dom', true],
    ['203.0.113.9', false, 'cust1.dom.evil.example', false],
  ];
  for (const [ip, auth, domain, want] of cases) assert.equal(mayRelay({ clientIp: ip, authenticated: auth, recipientDomain: domain }, policy), want, `${ip} ${auth} ${domain}`);
  assert.ok(inDomainSet('A.B.Example', new Set(['.b.example'])));
  assert.ok(!inDomainSet('A.B.Example', new Set(['b.example'])));
});

test('parseAddressList() handles names, comments, quotes and groups', () => {
  assert.deepEqual(parseAddressList(' Bob <bob@x.example>, "Doe, Jane" <jane@y.example> , carl@z.example (Carl)'), ['bob@x.example', 'jane@y.example', 'carl@z.example']);
  assert.deepEqual(parseAddressList('undisclosed-recipients:;'), []);
  assert.deepEqual(parseAddressList('team: a@x.example, b@x.example;, c@x.example'), ['a@x.example', 'b@x.example', 'c@x.example']);
});

const submission = (raw: string, over: Partial<Parameters<typeof composeLocalSubmission>[0]> = {}) => composeLocalSubmission({
  raw: Buffer.from(raw, 'latin1'), ignoreDots: false, extractRecipients: false, recipients: [], sender: 'root@gw.example',
  hostname: 'gw.example', id: 'ID1', now: Date.UTC(2026, 10, 23, 8), ...over,
});

test('composeLocalSubmission() with -t takes To/Cc/Bcc, removes Bcc and adds missing headers', () => {
  const m = submission('To: a@x.example\nCc: B <b@x.example>\nBcc: c@x.example\nSubject: t\n\nbody\n', { extractRecipients: true, recipients: ['d@x.example'] });
  assert.deepEqual(m.recipients, ['d@x.example', 'a@x.example', 'b@x.example', 'c@x.example']);
  const text = m.body.toString();
  assert.ok(!/^Bcc:/m.test(text));
  assert.match(text, /^From: <root@gw\.example>\r$/m);
  assert.match(text, /^Date: Mon, 23 Nov 2026 08:00:00 \+0000\r$/m);
  assert.match(text, /^Message-ID: <ID1@gw\.example>\r$/m);
  assert.ok(text.endsWith('\r\n\r\nbody\r\n'));
  assert.ok(!/[^\r]\n/.test(text));
});

test('composeLocalSubmission(): a lone dot ends input unless -i; bare names are qualified', () => {
  assert.equal(submission('Subject: x\n\nA\n.\nB\n', { recipients: ['root'] }).body.toString().includes('B'), false);
  assert.equal(submission('Subject: x\n\nA\n.\nB\n', { recipients: ['root'], ignoreDots: true }).body.toString().includes('\r\nB\r\n'), true);
  assert.deepEqual(submission('x\n', { recipients: ['root'] }).recipients, ['root@gw.example']);
});

test('composeLocalSubmission() refuses what it cannot keep', () => {
  assert.throws(() => submission('Subject: x\n\nno rcpt\n'), UsageError);
  assert.throws(() => submission('Subject: x\n\n', { extractRecipients: true }), /No recipient addresses found in header/);
  assert.throws(() => submission('Subject: x\n\nbare\rcr\n', { recipients: ['a@b.example'] }), DataError);
  assert.throws(() => submission('Subject: x\n\n', { recipients: ['a b@c.example'] }), DataError);
});
