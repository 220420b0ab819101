/**
 * The pure decisions behind SPEC §9 "Abuse" and "Bad input", as tables:
 * connection admission (per outside client, the LAN reserve), the data-rate
 * deadline, the error limits and their delays, the AUTH limits, the bytes
 * and parameters of MAIL/RCPT, NUL and Received: counting in the data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { admitClient, dataDeadline, reservedForLan, DATA_RATE_GRACE_MS, type ConnectionLimits } from '../../src/intake/session-limits.js';
import { ErrorTally, HARD_ERROR_LIMIT, LOGGED_PER_KIND, errorDelay, isCountedError } from '../../src/intake/error-limits.js';
import { authFailureDelay, isAuthLocked, verifyUser } from '../../src/intake/auth-guard.js';
import { checkAddressCommand } from '../../src/intake/command-check.js';
import { BodyScanner, MAX_RECEIVED } from '../../src/intake/body-scanner.js';
import { refusalOf } from '../../src/intake/message-intake.js';
import { ROOT, tempDir } from '../helpers/daemon.js';

const LIMITS: ConnectionLimits = { maxConnections: 100, maxConnectionsPerClient: 10, lanReserve: { percent: 20 } };

test('admitClient: outside clients get 10 each and 80 together, LAN clients up to maxConnections', () => {
  const cases: Array<[isLan: boolean, open: number, fromClient: number, refused: string | null]> = [
    [false, 0, 0, null],
    [false, 9, 9, null],
    [false, 10, 10, '421 4.7.0'], // the 11th from one outside address
    [false, 79, 0, null],
    [false, 80, 0, '421 4.3.2'], // the reserve: 100 - 20% for the LAN
    [false, 80, 10, '421 4.3.2'],
    [true, 80, 50, null], // LAN: no per-client limit, may use the reserve
    [true, 99, 99, null],
    [true, 100, 0, '421 4.3.2'],
    [false, 100, 0, '421 4.3.2'],
  ];
  for (const [isLan, open, fromClient, refused] of cases) {
    const r = admitClient({ isLan, open, fromClient }, LIMITS, '192.0.2.7');
    assert.equal(r ? `${r.code} ${r.enhanced}` : null, refused, JSON.stringify({ isLan, open, fromClient }));
  }
  assert.match(admitClient({ isLan: false, open: 3, fromClient: 10 }, LIMITS, '192.0.2.7')!.message, /192\.0\.2\.7/);
});

test('reservedForLan: a percentage of maxConnections (rounded down) or a count, never more than all', () => {
  const cases: Array<[max: number, reserve: Parameters<typeof reservedForLan>[1], n: number]> = [
    [100, { percent: 20 }, 20], [10, { percent: 20 }, 2], [7, { percent: 20 }, 1], [3, { percent: 20 }, 0],
    [100, { percent: 0 }, 0], [100, { connections: 5 }, 5], [4, { connections: 5 }, 4], [50, { percent: 100 }, 50],
  ];
  for (const [max, reserve, n] of cases) assert.equal(reservedForLan(max, reserve), n, JSON.stringify({ max, reserve }));
});

test('dataDeadline: a grace, then one second per minDataRate bytes', () => {
  const cases: Array<[bytes: number, rate: number, deadline: number]> = [
    [0, 500, 1000 + DATA_RATE_GRACE_MS],
    [500, 500, 2000 + DATA_RATE_GRACE_MS],
    [5000, 500, 11_000 + DATA_RATE_GRACE_MS],
    [100, 1000, 1100 + DATA_RATE_GRACE_MS],
  ];
  for (const [bytes, rate, deadline] of cases) assert.equal(dataDeadline(1000, bytes, rate), deadline);
  assert.equal(dataDeadline(0, 10, 10, 0), 1000);
});

test('errors: 4xx/5xx count but 421; no delay for the first errors, then growing to a cap', () => {
  assert.deepEqual([250, 354, 421, 450, 459, 501, 535, 550, 555].map(isCountedError), [false, false, false, true, true, true, true, true, true]);
  const delays = Array.from({ length: HARD_ERROR_LIMIT + 1 }, (_, n) => errorDelay(n));
  assert.deepEqual(delays.slice(0, 3), [0, 0, 0]);
  for (let n = 3; n < delays.length; n++) {
    assert.ok(delays[n] > 0 && delays[n] >= delays[n - 1], `delay after ${n} errors: ${delays[n]}`);
    assert.ok(delays[n] <= 1000);
  }
  assert.ok(delays[6] > delays[3], 'the delay grows');
});

test('ErrorTally logs each kind LOGGED_PER_KIND times and sums up the rest', () => {
  const t = new ErrorTally();
  const logged = Array.from({ length: 12 }, () => t.record('relaying denied')).filter(Boolean).length;
  assert.equal(logged, LOGGED_PER_KIND);
  assert.equal(t.record('auth'), true);
  assert.deepEqual(t.unlogged(), { 'relaying denied': 12 - LOGGED_PER_KIND });
  assert.equal(new ErrorTally().unlogged(), null);
});

test('AUTH: three failures, then locked; the delay grows with each failure', () => {
  assert.deepEqual([0, 1, 2, 3, 4].map(isAuthLocked), [false, false, false, true, true]);
  assert.ok(authFailureDelay(1) > 0 && authFailureDelay(2) > authFailureDelay(1) && authFailureDelay(3) > authFailureDelay(2));
});

test('verifyUser: right and wrong passwords; an unknown user runs a scrypt of the same size too', async () => {
  const users = path.join(ROOT, 'test', 'fixtures', 'users');
  assert.equal(await verifyUser(users, 'office', 's3cret'), true);
  assert.equal(await verifyUser(users, 'office', 'wrong'), false);
  const original = crypto.scrypt;
  const lengths: number[] = [];
  // counts scrypt runs without changing them (the module calls crypto.scrypt at each attempt)
  (crypto as { scrypt: unknown }).scrypt = (...args: unknown[]) => {
    lengths.push(args[2] as number);
    return (original as (...a: unknown[]) => void)(...args);
  };
  try {
    assert.equal(await verifyUser(users, 'nobody', 's3cret'), false);
    assert.equal(await verifyUser(users, 'office', 'wrong'), false);
  } finally {
    (crypto as { scrypt: unknown }).scrypt = original;
  }
  assert.deepEqual(lengths, [64, 64], 'one 64-byte scrypt for the unknown user and one for the known');
  const dir = await tempDir();
  await assert.rejects(verifyUser(path.join(dir, 'missing'), 'office', 'x'));
  await fs.rm(dir, { recursive: true, force: true });
});

test('checkAddressCommand: non-ASCII and invalid UTF-8 addresses, unknown and known parameters', () => {
  const ctx = { smtpUtf8: false, isAuthOffered: false };
  const utf8 = { smtpUtf8: true, isAuthOffered: false };
  const cases: Array<[line: string, c: typeof ctx, reply: string | null]> = [
    ['MAIL FROM:<a@b.example>', ctx, null],
    ['MAIL FROM:<>', ctx, null],
    ['MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x1', ctx, null],
    ['mail from: <a@b.example> size=100', ctx, null],
    ['MAIL FROM:<a@b.example> FOO=bar', ctx, '555 5.5.4'],
    ['MAIL FROM:<a@b.example> XYZ', ctx, '555 5.5.4'],
    ['MAIL FROM:<a@b.example> SIZE=1 XYZ', ctx, '555 5.5.4'],
    ['MAIL FROM:<a@b.example> NOTIFY=NEVER', ctx, '555 5.5.4'],
    ['MAIL FROM:<a@b.example> REQUIRETLS', ctx, '555 5.5.4'],
    ['MAIL FROM:<a@b.example> AUTH=<>', ctx, '555 5.5.4'],
    ['MAIL FROM:<a@b.example> AUTH=<>', { smtpUtf8: false, isAuthOffered: true }, null],
    ['RCPT TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b.example', ctx, null],
    ['RCPT TO:<a@b.example> SIZE=1', ctx, '555 5.5.4'],
    ['RCPT TO:<a@b.example> FOO', ctx, '555 5.5.4'],
    ['MAIL FROM:<caf\xc3\xa9@b.example>', ctx, '553 5.6.7'],
    ['MAIL FROM:<caf\xc3\xa9@b.example> SMTPUTF8', ctx, null],
    ['MAIL FROM:<\xff\xfe@far.example> SMTPUTF8', ctx, '553 5.1.7'],
    ['MAIL FROM:<\xff\xfe@far.example>', ctx, '553 5.6.7'],
    ['MAIL FROM:<x@\xff.office.example> SMTPUTF8', ctx, '553 5.1.7'],
    ['RCPT TO:<x@\xff.office.example>', utf8, '553 5.1.3'],
    ['RCPT TO:<\xc3\xa9@office.example>', utf8, null],
    ['RCPT TO:<\xc3\xa9@office.example>', ctx, '553 5.6.7'],
    ['RCPT TO:<\xc3@office.example>', utf8, '553 5.1.3'], // a truncated sequence
    ['MAIL FROM:<a@b.example> ENVID=\xff', ctx, '501 5.5.4'],
    ['RCPT TO:<a@b.example> ORCPT=utf-8;\xc3\xa9@b.example', utf8, null],
    ['MAIL FROM:', ctx, null], // no address: smtp-server's 501
    ['NOOP', ctx, null],
  ];
  for (const [line, c, reply] of cases) {
    const r = checkAddressCommand(Buffer.from(line, 'latin1'), c);
    assert.equal(r ? r.text.replace(/^(\d\.\d+\.\d+) .*/, `${r.code} $1`) : null, reply, JSON.stringify(line));
  }
  assert.match(checkAddressCommand(Buffer.from('MAIL FROM:<a@b> X\x01Y=1'), ctx)!.text, /^5\.5\.4 Unsupported MAIL FROM parameter X\?Y$/);
});

function scan(chunks: string[]): BodyScanner {
  const s = new BodyScanner();
  for (const c of chunks) s.push(Buffer.from(c, 'latin1'));
  s.end();
  return s;
}

test('BodyScanner notices a NUL byte anywhere', () => {
  assert.equal(scan(['a\r\n', 'b\x00c\r\n']).hasNul, true);
  assert.equal(scan(['\r\n\x00.\r\n']).hasNul, true);
  assert.equal(scan(['abc\r\n']).hasNul, false);
});

test('BodyScanner counts Received: fields of the header section only, across chunks and in any case', () => {
  const hops = (n: number) => Array.from({ length: n }, (_, i) => `Received: from h${i} by h${i + 1}; Mon, 1 Dec 2026 08:00:00 +0000\r\n`).join('');
  const cases: Array<[chunks: string[], count: number]> = [
    [[`${hops(3)}Subject: x\r\n\r\nbody\r\n`], 3],
    [[`Subject: x\r\n${hops(2)}\r\nReceived: in the body\r\n`], 2],
    [['Rece', 'ived: a\r\nRECEIVED: b\r\nreceived:c\r\n\r\n'], 3],
    [['Received-SPF: pass\r\nX-Received: a\r\n Received: folded\r\n\r\n'], 0],
    [['Subject: x\n\nReceived: after a bare-LF empty line\n'], 0],
    [['Subject: x\r', '\n\r', '\nReceived: body\r\n'], 0],
    [[hops(MAX_RECEIVED + 1)], MAX_RECEIVED + 1],
  ];
  for (const [chunks, count] of cases) assert.equal(scan(chunks).receivedCount, count, JSON.stringify(chunks));
  assert.equal(scan([`${hops(MAX_RECEIVED)}\r\nx\r\n`]).hasTooManyHops, false);
  assert.equal(scan([`${hops(MAX_RECEIVED + 1)}\r\nx\r\n`]).hasTooManyHops, true);
});

test('refusalOf: size first, then bare CR, NUL, too many hops, bare LF where refused', () => {
  const facts = { sizeExceeded: false, maxMessageSize: 1000, bareLf: 'normalize' as const };
  const code = (chunks: string[], f = facts) => {
    const r = refusalOf(scan(chunks), f);
    return r ? `${r.code} ${r.enhanced}` : null;
  };
  const many = Array.from({ length: 31 }, () => 'Received: x\r\n').join('');
  assert.equal(code(['Subject: ok\r\n\r\nhi\r\n']), null);
  assert.equal(code(['Subject: ok\r\n\r\nhi\r\n'], { ...facts, sizeExceeded: true }), '552 5.3.4');
  assert.equal(code(['a\rb\r\n']), '554 5.6.0');
  assert.equal(code(['a\x00b\r\n']), '554 5.6.0');
  assert.equal(code([`${many}\r\nhi\r\n`]), '554 5.4.6');
  assert.equal(code(['a\nb\r\n']), null);
  assert.equal(code(['a\nb\r\n'], { ...facts, bareLf: 'reject' }), '554 5.6.0');
});
