/**
 * SIGTERM lets a transaction in flight finish (250) before the daemon exits
 * 0; smtp.maxConnections and smtp.maxConnectionsPerClient refuse with 421.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { tempDir, writeConfig, startDaemon, runCli } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/smtp-client.js';

test('SIGTERM lets a message in flight finish with 250, then the daemon exits 0', async () => {
  const dir = await tempDir();
  const config = await writeConfig(dir);
  const daemon = await startDaemon(config);
  try {
    const c = await RawSmtp.connect(daemon.port);
    await c.reply();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@office.example>');
    await c.cmd('RCPT TO:<b@far.example>');
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write('Subject: in flight\r\n\r\nfirst half\r\n');
    const exit = daemon.stop();
    await daemon.waitLog((l) => l.msg === 'signal received', 'SIGTERM seen');
    c.write('second half\r\n.\r\n');
    const r = await c.reply();
    assert.equal(r.code, 250, r.text);
    const id = /queued as (\S+)/.exec(r.text)![1];
    const next = await c.cmd('NOOP');
    assert.equal(next.code, 421, 'new commands are refused while shutting down');
    c.close();
    assert.equal(await exit, 0);
    const q = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout);
    assert.deepEqual(q.messages.map((m: { id: string }) => m.id), [id]);
  } finally {
    await daemon.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('connections past smtp.maxConnections or smtp.maxConnectionsPerClient get 421', async () => {
  const dir = await tempDir();
  // outside clients (the per-client limit is for them; LAN clients are not limited per client), no LAN reserve
  const daemon = await startDaemon(await writeConfig(dir, { smtp: { mynetworks: ['127.0.0.1/32'], maxConnections: 3, maxConnectionsPerClient: 2, lanReserve: 0 } }));
  const open: RawSmtp[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = await RawSmtp.connect(daemon.port, '127.0.0.5');
      open.push(c);
      assert.equal((await c.reply()).code, 220);
    }
    const third = await RawSmtp.connect(daemon.port, '127.0.0.5');
    open.push(third);
    const r = await third.reply();
    assert.equal(r.code, 421);
    assert.match(r.text, /4\.7\.0 Too many connections from/);
    const other = await RawSmtp.connect(daemon.port, '127.0.0.2');
    open.push(other);
    assert.equal((await other.reply()).code, 220, 'another client still gets in');
    const fourth = await RawSmtp.connect(daemon.port, '127.0.0.3');
    open.push(fourth);
    const r4 = await fourth.reply();
    assert.equal(r4.code, 421);
    assert.match(r4.text, /4\.3\.2/);
  } finally {
    for (const c of open) c.close();
    await daemon.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
