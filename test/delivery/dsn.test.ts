/**
 * DSN composition (SPEC §10) and its backscatter rule (SPEC §9): a DSN
 * about mail from outside the LAN carries the headers only, never the body,
 * whatever RET asked for. Pure: composeDsn's output is parsed back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { composeDsn, headersOf, isFromOutside, type DsnInput } from '../../src/delivery/dsn.js';
import { NetworkList } from '../../src/config/cidr.js';
import type { Envelope } from '../../src/queue/envelope.js';
import type { QueueId } from '../../src/queue/queue-id.js';

const PAYLOAD = 'BUY-CHEAP-PILLS-PAYLOAD';
const ORIGINAL = Buffer.from(`From: victim@far.example\r\nSubject: hello\r\nX-Long: a\r\n  continued\r\n\r\n${PAYLOAD}\r\nline 2\r\n`);

function envelope(over: Partial<Envelope> = {}): Envelope {
  return {
    version: 1, id: '0QxA1B2C3D4' as QueueId, group: 'default', sender: 'victim@far.example',
    recipients: [{ address: 'x@cust1.dom', state: 'failed' }], arrivalTime: '2026-12-01T08:00:00.000Z', size: ORIGINAL.length,
    class: 0, priority: 0, attempts: 1, nextAttempt: null, bodyType: '7BIT', smtputf8: false, dsn: {},
    client: { via: 'smtp', ip: '203.0.113.9' }, ...over,
  };
}

function input(env: Envelope, extra: Partial<DsnInput> = {}): DsnInput {
  return {
    hostname: 'relay.isp.example', now: Date.parse('2026-12-01T09:00:00Z'), env, kind: 'failure', original: ORIGINAL, messageId: 'dsn1',
    notices: [{ address: 'x@cust1.dom', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 no such user', remoteMta: 'mx.cust1.dom' }],
    ...extra,
  };
}

test('isFromOutside(): SMTP from outside mynetworks without AUTH; LAN, authenticated, local submission and DSNs are not', () => {
  const lan = new NetworkList(['127.0.0.1/32', '192.168.1.0/24']);
  const cases: Array<[Envelope['client'], boolean]> = [
    [{ via: 'smtp', ip: '203.0.113.9' }, true],
    [{ via: 'smtp', ip: '127.0.0.2' }, true],
    [{ via: 'smtp' }, true],
    [{ via: 'smtp', ip: '192.168.1.7' }, false],
    [{ via: 'smtp', ip: '::ffff:127.0.0.1' }, false],
    [{ via: 'smtp', ip: '203.0.113.9', user: 'office' }, false],
    [{ via: 'sendmail', uid: 1000, user: 'alice' }, false],
    [{ via: 'dsn' }, false],
  ];
  for (const [client, want] of cases) assert.equal(isFromOutside(client, lan), want, JSON.stringify(client));
});

test('a failure DSN returns the whole message unless RET=HDRS or headersOnly; then never a body byte', async () => {
  // [RET, headersOnly, whole message returned]
  const cases: Array<['FULL' | 'HDRS' | undefined, boolean | undefined, boolean]> = [
    [undefined, undefined, true],
    ['FULL', false, true],
    ['HDRS', undefined, false],
    [undefined, true, false],
    ['FULL', true, false],
  ];
  for (const [ret, headersOnly, whole] of cases) {
    const dsn = (await composeDsn(input(envelope({ dsn: { ret } }), { headersOnly }))).toString();
    const what = `RET=${ret} headersOnly=${headersOnly}`;
    assert.equal(dsn.includes(PAYLOAD), whole, what);
    assert.equal(/Content-Type: message\/rfc822/.test(dsn), whole, what);
    assert.equal(/Content-Type: text\/rfc822-headers/.test(dsn), !whole, what);
    assert.match(dsn, /Subject: hello/, `${what}: the headers are always there`);
    assert.match(dsn, /Status: 5\.1\.1/);
  }
});

test('headersOf() stops at the empty line or at the first line that is not a header field', () => {
  const cases: Array<[string, string]> = [
    ['A: 1\r\nB: 2\r\n\r\nbody\r\n', 'A: 1\r\nB: 2\r\n'],
    ['A: 1\r\n folded\r\n\r\nbody', 'A: 1\r\n folded\r\n'],
    [`A: 1\r\n${PAYLOAD} no colon\r\nB: 2\r\n`, 'A: 1\r\n'],
    [`${PAYLOAD}\r\n\r\n`, ''],
    [' leading fold: x\r\n\r\n', ''],
    ['A: 1\r\nB: 2', 'A: 1\r\nB: 2'],
  ];
  for (const [message, want] of cases) assert.equal(headersOf(Buffer.from(message)).toString(), want, JSON.stringify(message));
});

test('a headers-only DSN of a message without an empty line carries no body line', async () => {
  const noBlank = Buffer.from(`Subject: hi\r\n${PAYLOAD}\r\n`);
  const dsn = (await composeDsn(input(envelope(), { original: noBlank, headersOnly: true }))).toString();
  assert.ok(!dsn.includes(PAYLOAD));
  assert.match(dsn, /Subject: hi/);
});
