#!/usr/bin/env node
// bench/recovery.mjs — how fast a restart drains what a crash left (issue 16:
// "kill -9 with 5,000 due messages, restart → all delivered at ≥ 1,000 msg/s").
//
//   node bench/recovery.mjs [--n 5000] [--conc 20] [--size 2048]
//
// 1. quietlink on a fresh spool, its smart host a link route with the link
//    down (link.mode managed): smtp-source hands it N messages of SIZE bytes
//    over CONC sessions; every one is acknowledged (on disk) and none leaves.
// 2. kill -9 right after the last 250 (most messages are still in the intake
//    journal only: what a crash under load leaves).
// 3. The configuration becomes a permanent link (the line is back), the sink
//    (an smtp-server in this process, counting messages) listens on the smart
//    host's port, and quietlink starts again. Prints
//      recovery_ready_s      spawn to the "ready" log line
//      recovery_drain_s      "ready" to the N-th message at the sink
//      recovery_msgs_per_s   N / recovery_drain_s
//      recovery_total_msgs_per_s  N / (spawn to the N-th message: replay included)
//      delivered_to_sink     messages the sink received (N: none lost)
// Only 127.0.0.1 is used; every wait is bounded; the daemon is stopped by PID.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { SMTPServer } from 'smtp-server';
import { BIN, freePort, hasCommand, option, smtpSource } from './lib.mjs';

const N = Number(option('n', 5000));
const CONC = Number(option('conc', 20));
const SIZE = Number(option('size', 2048));
if (!hasCommand('smtp-source')) {
  console.error('bench/recovery needs smtp-source (apt-get install postfix)');
  process.exit(69);
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ql-recovery-'));
const config = path.join(dir, 'quietlink.yaml');
const sinkPort = await freePort();
const smtpPort = await freePort();
const writeConfig = (mode) => fs.writeFile(config, [
  'hostname: gw.bench.example', `spool: ${path.join(dir, 'spool')}`, 'deliveryMode: deferred',
  'smtp:', `  listen: ["127.0.0.1:${smtpPort}"]`, '  mynetworks: [127.0.0.0/8]', `  maxConnections: ${CONC * 2}`,
  `smartHost: ["[127.0.0.1]:${sinkPort}"]`, 'queue: { maxQueueChildren: 16 }', `link: { mode: ${mode} }`, 'log: { level: info }', '',
].join('\n'));

function daemon() {
  const t0 = performance.now();
  const proc = spawn(process.execPath, [BIN, 'start', '-c', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no "ready" within 60 s')), 60_000).unref();
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      if (line.includes('"msg":"ready"')) {
        clearTimeout(t);
        resolve(performance.now());
      }
    });
    proc.once('exit', (code) => reject(new Error(`quietlink exited ${code} before ready`)));
  });
  return { proc, t0, ready };
}

let received = 0;
let reachedN;
const allIn = new Promise((r) => (reachedN = r));
const sink = new SMTPServer({
  authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], disableReverseLookup: true, logger: false,
  onData(stream, _s, cb) {
    stream.resume();
    stream.on('end', () => {
      if (++received === N) reachedN(performance.now());
      cb();
    });
  },
});

let second;
try {
  await writeConfig('managed');
  const first = daemon();
  await first.ready;
  await smtpSource(smtpPort, N, CONC, SIZE);
  first.proc.kill('SIGKILL');
  await new Promise((r) => first.proc.once('exit', r));
  console.log(`quietlink N=${N} CONC=${CONC} SIZE=${SIZE} killed after the last 250`);

  await writeConfig('permanent');
  await new Promise((r) => sink.listen(sinkPort, '127.0.0.1', r));
  second = daemon();
  const ready = await second.ready;
  const done = await Promise.race([allIn, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${received} of ${N} delivered within 300 s`)), 300_000).unref())]);
  const drain = (done - ready) / 1000;
  console.log(`recovery_ready_s=${((ready - second.t0) / 1000).toFixed(3)}`);
  console.log(`recovery_drain_s=${drain.toFixed(3)}`);
  console.log(`recovery_msgs_per_s=${(N / drain).toFixed(1)}`);
  console.log(`recovery_total_msgs_per_s=${(N / ((done - second.t0) / 1000)).toFixed(1)}`);
} finally {
  console.log(`delivered_to_sink=${received}`);
  if (second) {
    second.proc.kill('SIGTERM');
    await new Promise((r) => second.proc.once('exit', r));
  }
  await new Promise((r) => sink.close(r));
  await fs.rm(dir, { recursive: true, force: true });
}
