/**
 * delivery/smtp-connect.ts sets a connection up on nodemailer's
 * SMTPConnection (EHLO/STARTTLS/AUTH), wraps a few of its members that are
 * not public API (NODEMAILER_INTERNALS) and hands the socket over to
 * delivery/smtp-session.ts. When nodemailer changes one of them, these
 * tests fail and name it. Written against nodemailer 10.6.0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { NODEMAILER_INTERNALS, missingInternals } from '../../src/delivery/smtp-connect.js';
import { SmtpSession } from '../../src/delivery/smtp-session.js';
import { startSink } from '../helpers/sink.js';

const version = (createRequire(import.meta.url)('nodemailer/package.json') as { version: string }).version;

test(`nodemailer ${version}: every member smtp-connect.ts relies on is there, with its kind`, async () => {
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

test(`nodemailer ${version}: _upgradeConnection puts the TLS socket in _socket before the handshake, so its tickets can be kept`, async () => {
  const sink = await startSink({ tls: true });
  const conn = new SMTPConnection({ host: '127.0.0.1', port: sink.port, name: 'gw.test.example', opportunisticTLS: true, tls: { rejectUnauthorized: false } } as ConstructorParameters<typeof SMTPConnection>[0]);
  const c = conn as unknown as { _socket: Socket; _upgradeConnection(cb: (err: Error | null, secured?: boolean) => void): void; secure: boolean };
  const seen: string[] = [];
  try {
    const upgrade = c._upgradeConnection.bind(conn);
    c._upgradeConnection = (cb) => {
      const plain = c._socket;
      upgrade(cb);
      seen.push('upgrade');
      assert.ok(c._socket instanceof TLSSocket && c._socket !== plain, 'SMTPConnection._upgradeConnection no longer sets _socket to the TLS socket as it returns');
      c._socket.on('session', () => seen.push('session'));
    };
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => resolve());
    });
    assert.equal(c.secure, true);
    assert.equal(seen[0], 'upgrade', 'STARTTLS no longer goes through SMTPConnection._upgradeConnection');
    assert.ok(seen.includes('session'), 'no TLS session arrived during the set-up');
  } finally {
    conn.close();
    await sink.close();
  }
});
