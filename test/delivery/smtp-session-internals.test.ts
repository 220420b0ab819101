/**
 * delivery/smtp-session.ts takes the socket over from nodemailer's
 * SMTPConnection after EHLO/STARTTLS/AUTH and reads a few members that are
 * not public API (NODEMAILER_INTERNALS). When nodemailer changes one of
 * them, these tests fail and name it. Written against nodemailer 10.6.0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { NODEMAILER_INTERNALS, missingInternals, SmtpSession } from '../../src/delivery/smtp-session.js';
import { startSink } from '../helpers/sink.js';

const version = (createRequire(import.meta.url)('nodemailer/package.json') as { version: string }).version;

test(`nodemailer ${version}: every member smtp-session.ts relies on is there, with its kind`, async () => {
  const sink = await startSink();
  const conn = new SMTPConnection({ host: '127.0.0.1', port: sink.port, name: 'gw.test.example', ignoreTLS: true } as ConstructorParameters<typeof SMTPConnection>[0]);
  try {
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => resolve());
    });
    for (const [name, kind] of Object.entries(NODEMAILER_INTERNALS)) {
      assert.equal(typeof (conn as unknown as Record<string, unknown>)[name], kind, `SMTPConnection.${name} is no longer a ${kind}`);
    }
    assert.deepEqual(missingInternals(conn), []);
    const c = conn as unknown as Record<string, unknown> & { _socket: Socket };
    // the take-over detaches nodemailer by these very functions: they must be what listens to the socket
    for (const [event, member] of [['data', '_onSocketData'], ['error', '_onSocketError'], ['close', '_onSocketClose'], ['end', '_onSocketEnd'], ['timeout', '_onSocketTimeout']] as const) {
      assert.ok(c._socket.listeners(event).includes(c[member] as (...a: unknown[]) => void), `SMTPConnection.${member} no longer listens to the socket's '${event}'`);
    }
    // CHUNKING is read from the EHLO keywords
    assert.ok(Array.isArray(c._ehloLines), 'SMTPConnection._ehloLines is no longer an array');
    assert.ok((c._ehloLines as string[]).includes('PIPELINING'), 'SMTPConnection._ehloLines no longer holds the EHLO keywords');
    assert.equal(c._remainder, '', 'SMTPConnection._remainder is not empty after EHLO');
    assert.deepEqual(c._responseQueue, [], 'SMTPConnection._responseQueue is not empty after EHLO');
  } finally {
    conn.close();
    await sink.close();
  }
});

test('a session taken over from nodemailer carries a message and nodemailer hears nothing more', async () => {
  const sink = await startSink();
  try {
    const s = await SmtpSession.open({ name: '127.0.0.1', ip: '127.0.0.1', port: sink.port }, {
      hostname: 'gw.test.example',
      timeouts: { iconnect: 5000, connect: 5000, helo: 5000, mail: 5000, rcpt: 5000, datainit: 5000, datablock: 5000, datafinal: 5000, command: 5000 },
    });
    const [r] = await s.send({ from: 'a@office.example', to: ['b@far.example'], size: 20, use8BitMime: false }, Buffer.from('Subject: x\r\n\r\nhello\r\n'));
    assert.equal(r.code, 250);
    assert.equal(sink.messages.length, 1);
    s.quit();
  } finally {
    await sink.close();
  }
});
