/**
 * STARTTLS only with a configured certificate; AUTH only where smtp.auth is
 * configured and only over TLS; an authenticated outside client may relay.
 * The client is nodemailer's SMTP connection, a real client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { tempDir, writeConfig, startDaemon, ROOT } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/smtp-client.js';

const FIX = path.join(ROOT, 'test', 'fixtures');

function send(port: number, opts: { user?: string; pass?: string; localAddress?: string }): Promise<string> {
  const conn = new SMTPConnection({ port, host: '127.0.0.1', localAddress: opts.localAddress, name: 'client.test', tls: { rejectUnauthorized: false }, connectionTimeout: 10_000 });
  return new Promise((resolve, reject) => {
    conn.once('error', reject);
    conn.connect(() => {
      const go = () => conn.send({ from: 'far@outside.example', to: ['bob@far.example'] }, 'Subject: tls\r\n\r\nhi\r\n', (err, info) => {
        conn.quit();
        if (err) reject(err);
        else resolve(info.response);
      });
      if (opts.user) conn.login({ user: opts.user, pass: opts.pass ?? '' }, (err) => (err ? reject(err) : go()));
      else go();
    });
  });
}

test('STARTTLS and AUTH with a certificate and a users file; AUTH never in plaintext', async () => {
  const dir = await tempDir();
  const config = await writeConfig(dir, {
    smtp: {
      mynetworks: ['127.0.0.1/32'],
      tls: { cert: path.join(FIX, 'tls.crt'), key: path.join(FIX, 'tls.key') },
      auth: { users: path.join(FIX, 'users') },
    },
  });
  const daemon = await startDaemon(config);
  try {
    const raw = await RawSmtp.connect(daemon.port, '127.0.0.2');
    await raw.reply();
    const ehlo = await raw.cmd('EHLO client.test');
    assert.match(ehlo.text, /STARTTLS/);
    assert.doesNotMatch(ehlo.text, /AUTH/, 'AUTH is not offered before TLS');
    const auth = await raw.cmd('AUTH PLAIN AG9mZmljZQBzM2NyZXQ=');
    assert.ok(auth.code >= 500, auth.text);
    raw.close();

    // an outside client (127.0.0.2) relays once authenticated over TLS
    assert.match(await send(daemon.port, { user: 'office', pass: 's3cret', localAddress: '127.0.0.2' }), /^250 /);
    await assert.rejects(send(daemon.port, { user: 'office', pass: 'wrong', localAddress: '127.0.0.2' }), /535/);
    await assert.rejects(send(daemon.port, { localAddress: '127.0.0.2' }), /550/);
    const queued = daemon.logs.filter((l) => l.msg === 'queued');
    assert.equal(queued.length, 1);
    assert.equal(queued[0].proto, 'ESMTPSA');
  } finally {
    await daemon.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
