/**
 * Killing the daemon (SIGKILL) during delivery never loses a message and
 * never marks an undelivered recipient delivered: after restarts and a final
 * run, every message reached the next hop at least once (a duplicate is the
 * accepted worst case, as in every MTA) and the queue is empty.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { tempDir, writeConfig, startDaemon, runCli, type Daemon } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';
import { spawn } from 'node:child_process';
import { BIN } from '../helpers/daemon.js';

const N = 80;

test('SIGKILL during delivery loses nothing and marks nothing delivered that was not', { timeout: 180_000 }, async () => {
  const sink = await startSink();
  const dir = await tempDir();
  const first = await writeConfig(dir);
  let daemon: Daemon = await startDaemon(first);
  const config = await writeConfig(dir, {
    smtp: { listen: [`127.0.0.1:${daemon.port}`] },
    routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${sink.port}`, link: true }],
    queue: { minQueueAge: '0s' },
    link: { mode: 'demand' },
  });
  await daemon.stop();
  daemon = await startDaemon(config);
  try {
    for (let i = 0; i < N; i++) assert.equal((await sendMail(daemon.port, 'alice@office.example', [`r${i}@far.example`], `Subject: m${i}\r\n\r\nbody ${i}\r\n`)).code, 250);
    for (const k of [10, 35, 60]) {
      // start a run and kill the daemon in the middle of it
      const flush = spawn(process.execPath, [BIN, 'flush', '-c', config, '--wait'], { stdio: 'ignore' });
      await sink.waitMessages(k, 60_000);
      await daemon.kill();
      await new Promise((r) => flush.once('exit', r));
      daemon = await startDaemon(config);
    }
    const last = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(last.code, 0, last.stdout + last.stderr);
    const seen = new Set(sink.messages.map((m) => /^Subject: (m\d+)/m.exec(m.body)?.[1]));
    for (let i = 0; i < N; i++) assert.ok(seen.has(`m${i}`), `m${i} never reached the next hop`);
    const mq = await runCli(['mailq', '-c', config, '--json']);
    assert.equal(mq.code, 0, `mailq: ${mq.stderr}`);
    const q = JSON.parse(mq.stdout);
    assert.equal(q.total, 0);
    console.log(`# ${sink.messages.length} deliveries for ${N} messages (${sink.messages.length - N} duplicates)`);
  } finally {
    await daemon.stop();
    await sink.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
