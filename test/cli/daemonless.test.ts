/**
 * No daemon at all (SPEC §11): `sendmail` drops into maildrop and `flush`
 * runs the queue once in the foreground, holding the spool's lock; and
 * `flush --spool DIR` for a moved-aside queue.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { tempDir, writeConfig, startDaemon, runCli, withTimeout, BIN } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';

test('daemonless: sendmail drops, flush delivers and exits 0; a second concurrent flush waits for the first one and nothing goes twice', async () => {
  let release!: () => void;
  const sink = await startSink({ holdData: new Promise<void>((r) => (release = r)) });
  const dir = await tempDir();
  const config = await writeConfig(dir, { smartHost: [`[127.0.0.1]:${sink.port}`], link: { mode: 'permanent' } });
  try {
    for (let i = 0; i < 3; i++) assert.equal((await runCli(['sendmail', '-c', config, `r${i}@far.example`], { input: `Subject: m${i}\n\nx\n` })).code, 0);
    const first = spawn(process.execPath, [BIN, 'flush', '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    first.stdout.on('data', (d) => (out += d));
    await withTimeout((async () => { while (sink.connections === 0) await new Promise((r) => setImmediate(r)); })(), 20_000, 'the first run connecting');
    // the second run finds the first one's lock (its control socket) and waits for its window to end
    const second = runCli(['flush', '-c', config]);
    await withTimeout((async () => { while (!(await fs.readdir(path.join(dir, 'spool'))).includes('quietlink.sock')) await new Promise((r) => setImmediate(r)); })(), 5000, 'lock');
    release();
    const [code] = await withTimeout(once(first, 'exit'), 30_000, 'the first run') as [number];
    assert.equal(code, 0, out);
    assert.match(out, /3 delivered/);
    const s2 = await second;
    assert.ok(s2.code === 0 || s2.code === 75, `${s2.code}: ${s2.stdout}${s2.stderr}`);
    assert.equal(sink.messages.length, 3, 'nothing delivered twice');
    assert.equal(JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout).total, 0);
  } finally {
    await sink.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('flush --spool DIR runs a moved-aside queue once, with or without a daemon on the main spool; never a live spool', async () => {
  const sink = await startSink();
  const dir = await tempDir();
  const config = await writeConfig(dir, { smartHost: [`[127.0.0.1]:${sink.port}`], link: { mode: 'permanent' }, deliveryMode: 'queue' });
  try {
    // a queue written by the queue code, then moved aside (sendmail's omqueue)
    const d = await startDaemon(config);
    for (let i = 0; i < 2; i++) assert.equal((await sendMail(d.port, 'a@office.example', [`old${i}@far.example`], 'Subject: old\r\n\r\nx\r\n')).code, 250);
    await d.stop();
    const old = path.join(dir, 'omqueue');
    await fs.rename(path.join(dir, 'spool'), old);
    const main = await startDaemon(config);
    try {
      const r = await runCli(['flush', '-c', config, '--spool', old, '-v']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(sink.messages.length, 2);
      assert.match(r.stdout, /stat=delivered \(250 /);
      const live = await runCli(['flush', '-c', config, '--spool', path.join(dir, 'spool')]);
      assert.equal(live.code, 64, 'the configured spool is refused');
    } finally {
      await main.stop();
    }
    // a second moved-aside queue, no daemon anywhere; one message cannot go: exit 75
    const again = await writeConfig(dir, { smartHost: [`[127.0.0.1]:${sink.port}`], link: { mode: 'permanent' }, deliveryMode: 'queue', queue: { groups: [{ name: 'frozen', runners: 0, match: ['frozen.example'] }] } });
    const d2 = await startDaemon(again);
    await sendMail(d2.port, 'a@office.example', ['x@far.example'], 'Subject: go\r\n\r\nx\r\n');
    await sendMail(d2.port, 'a@office.example', ['y@frozen.example'], 'Subject: stays\r\n\r\nx\r\n');
    await d2.stop();
    const old2 = path.join(dir, 'omqueue2');
    await fs.rename(path.join(dir, 'spool'), old2);
    const r2 = await runCli(['flush', '-c', again, '--spool', old2]);
    assert.equal(r2.code, 75, r2.stdout + r2.stderr);
    assert.equal(sink.messages.length, 3);
    // a spool that a daemon runs is refused
    const live2 = await startDaemon(again);
    try {
      const r3 = await runCli(['flush', '-c', again, '--spool', path.join(dir, 'omqueue')]);
      assert.equal(r3.code, 0, 'an idle moved-aside spool is fine');
      const busy = await runCli(['flush', '-c', again, '--spool', path.join(dir, 'spool')]);
      assert.equal(busy.code, 64);
    } finally {
      await live2.stop();
    }
  } finally {
    await sink.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('flush --spool DIR opens no listener: it runs while a daemon holds every port its configuration names', async () => {
  const sink = await startSink();
  const dir = await tempDir();
  const over = { smartHost: [`[127.0.0.1]:${sink.port}`], link: { mode: 'permanent' }, deliveryMode: 'queue' };
  const config = await writeConfig(dir, over);
  try {
    const d = await startDaemon(config);
    assert.equal((await sendMail(d.port, 'a@office.example', ['old@far.example'], 'Subject: old\r\n\r\nx\r\n')).code, 250);
    await d.stop();
    const old = path.join(dir, 'omqueue');
    await fs.rename(path.join(dir, 'spool'), old);
    // the live gateway: SMTP, DNS and metrics on ports of the system's choosing
    const live = await writeConfig(dir, { ...over, dns: { listen: ['127.0.0.1:0'] }, metrics: { listen: '127.0.0.1:0' } });
    const main = await startDaemon(live);
    try {
      const ready = await main.waitLog((l) => l.msg === 'ready', 'ready');
      const held = {
        smtp: (ready.listen as Array<{ port: number }>).map((l) => `127.0.0.1:${l.port}`),
        dns: (ready.dns as Array<{ port: number }>).map((l) => `127.0.0.1:${l.port}`),
        metrics: `127.0.0.1:${(ready.metrics as { port: number }).port}`,
      };
      assert.equal(held.dns.length, 1);
      // the moved-aside queue's run names exactly the ports the live gateway holds
      // (in a directory of its own: the live daemon watches its own file)
      const clash = await writeConfig(await fs.mkdtemp(path.join(dir, 'clash-')), {
        ...over, smtp: { listen: held.smtp }, dns: { listen: held.dns }, metrics: { listen: held.metrics },
      });
      const r = await runCli(['flush', '-c', clash, '--spool', old]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stderr, /EADDRINUSE/);
      assert.equal(sink.messages.length, 1);
      // the live gateway was not disturbed
      assert.equal((await sendMail(main.port, 'a@office.example', ['new@far.example'], 'Subject: new\r\n\r\nx\r\n')).code, 250);
    } finally {
      await main.stop();
    }
  } finally {
    await sink.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
