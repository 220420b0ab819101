#!/usr/bin/env node
// bench/scale.mjs — quietlink with a big queue (SPEC §14 targets: mailq ≤ 1 s and
// ≤ 0.5× Postfix's postqueue -p, restart to first delivery ≤ 2 s, RSS ≤ 80 MB
// idle and ≤ 250 MB with 100,000 queued).
//
//   node bench/scale.mjs [--n 100000] [--conc 256] [--no-postfix]
//
// One spool under /tmp, one smart host [127.0.0.1]:PORT (the sink's port,
// closed until the restart step). Steps, each printing "key=value" lines:
//   1. rss_idle_mb      daemon on the empty spool: VmRSS 2 s after its "ready"
//                       line, the start-up run and the leftover sweep done.
//   2. fill_s           N messages (2 KB, one recipient each) put into the spool
//                       with the daemon down, by the queue code itself
//                       (dist/queue: Queue + FsStore + IntakeJournal, as
//                       src/daemon.ts builds them; begin/write/commit as its
//                       notify() does), CONC commits in flight (the journal's
//                       group commit), until close() has settled every message
//                       into its own files (envelope + body): what a daemon loads.
//   3. mailq_nodaemon_s median of 3 `quietlink mailq -c CFG > /dev/null`, daemon
//                       stopped (cli/mailq.ts reads the spool read-only then).
//   4. rss_100k_mb      daemon started on the N queued messages with the link held
//                       (link.mode managed, link down, the smart host is a link
//                       route: the start-up run reads every envelope and skips
//                       it, nothing is attempted). Measured once "ready" and
//                       "leftovers swept" were logged and the daemon then used
//                       < 1 % CPU for 1 s (the start-up run over, queue loaded,
//                       nothing delivering); also rss_100k_peak_mb (VmHWM).
//      mailq_s          median of 3 `quietlink mailq -c CFG > /dev/null` with
//                       that daemon running (measured after the RSS).
//   5. restart_to_first_delivery_s
//                       the daemon stopped, the sink (smtp-server from
//                       node_modules, in this process) started on the smart
//                       host's port, and the configuration changed to a
//                       permanent link (an office box with an always-on line):
//                       a restart then delivers what is queued by itself, in
//                       the start-up run (runner.run({trigger:{kind:'intake'}})
//                       with deliveryMode deferred = "at once" for routes that
//                       need no dial-up). Time from spawning
//                       `node bin/quietlink start -c CFG` to the end of the
//                       first message's DATA at the sink. No `flush` is sent.
//   6. Postfix (../shared/peers/postfix-setup.sh, defer_transports = smtp):
//      the same N (2 KB, smtp-source, 20 sessions) queued, then median of 3
//      `postqueue -c CFG -p > /dev/null`: postfix mailq_s, ratio mailq=.
// Only 127.0.0.1 is used; every process started here is stopped by PID; every
// wait is bounded.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { SMTPServer } from 'smtp-server';
import { BIN, ROOT, freePort, hasCommand, option } from './lib.mjs';

const N = Number(option('n', 100000));
const CONC = Number(option('conc', 256));
const POSTFIX = !process.argv.includes('--no-postfix');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secs = (ms) => (ms / 1000).toFixed(3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const out = (line) => console.log(line);
const note = (line) => console.error(`# ${line}`);

try {
  await fs.access(path.join(ROOT, 'dist', 'daemon.js'));
} catch {
  note('dist/ missing: npm run build');
  const b = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit', timeout: 300_000 });
  if (b.status !== 0) process.exit(1);
}
const { Queue } = await import('../dist/queue/queue.js');
const { FsStore } = await import('../dist/queue/fs-store.js');
const { IntakeJournal } = await import('../dist/queue/journal.js');
const { createIdGenerator } = await import('../dist/queue/queue-id.js');
const { receivedHeader } = await import('../dist/intake/received.js');
const { createCliLogger } = await import('../dist/observability/logger.js');

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ql-scale-'));
const spool = path.join(dir, 'spool');
const config = path.join(dir, 'quietlink.yaml');
const sinkPort = await freePort();

/** The configuration; `held`: link down (nothing goes), else a permanent link (queued mail goes at start). */
async function writeConfig(held) {
  await fs.writeFile(config, [
    'hostname: gw.bench.example',
    `spool: ${spool}`,
    'deliveryMode: deferred',
    'smtp:',
    '  listen: ["127.0.0.1:0"]',
    '  mynetworks: [127.0.0.0/8]',
    `smartHost: ["[127.0.0.1]:${sinkPort}"]`,
    'queue: { maxQueueChildren: 16 }',
    `link: { mode: ${held ? 'managed' : 'permanent'} }`,
    'log: { level: info }',
    '',
  ].join('\n'));
}

function status(pid) {
  try {
    return spawnSync('cat', [`/proc/${pid}/status`], { encoding: 'utf8' }).stdout;
  } catch {
    return '';
  }
}
const kbField = (text, key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
const mb = (kb) => (kb / 1024).toFixed(1);
async function cpuSeconds(pid) {
  const f = (await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Spawns `quietlink start`; t0 is the spawn time (performance.now()). */
function spawnDaemon() {
  const prof = process.env.QL_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.QL_PROF}`] : [];
  const t0 = performance.now();
  const proc = spawn(process.execPath, [...prof, BIN, 'start', '-c', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  const listeners = [];
  const seen = [];
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    let l;
    try { l = JSON.parse(line); } catch { return; }
    if (l.level >= 50) note(`daemon: ${line}`);
    if (seen.length < 10_000 && l.msg !== 'delivered') seen.push(l);
    for (const f of [...listeners]) f(l);
  });
  const exited = new Promise((r) => proc.once('exit', (code, sig) => r(code ?? sig)));
  const waitLog = (pred, ms) => {
    const old = seen.find(pred);
    if (old) return Promise.resolve(old);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { listeners.splice(listeners.indexOf(f), 1); reject(new Error('timed out waiting for the daemon')); }, ms);
      const f = (l) => { if (pred(l)) { clearTimeout(t); listeners.splice(listeners.indexOf(f), 1); resolve(l); } };
      listeners.push(f);
      void exited.then((c) => { clearTimeout(t); reject(new Error(`daemon exited (${c})`)); });
    });
  };
  return {
    proc, t0, waitLog, exited,
    /** SIGTERM, at most `ms` for a clean stop, then SIGKILL. */
    async stop(ms = 60_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const t = performance.now();
      proc.kill('SIGTERM');
      let timer;
      const r = await Promise.race([exited, new Promise((res) => (timer = setTimeout(res, ms, 'timeout')))]);
      clearTimeout(timer);
      if (r === 'timeout') {
        note(`daemon did not stop in ${ms / 1000} s: SIGKILL`);
        proc.kill('SIGKILL');
        await exited;
      }
      return (performance.now() - t) / 1000;
    },
  };
}

/** Waits until the daemon used < 1 % of a CPU for a whole second (bounded). */
async function quiet(pid, maxMs) {
  const end = performance.now() + maxMs;
  let last = await cpuSeconds(pid);
  let calm = 0;
  while (performance.now() < end) {
    await sleep(500);
    const c = await cpuSeconds(pid);
    calm = c - last <= 0.005 ? calm + 1 : 0;
    last = c;
    if (calm >= 2) return true;
  }
  return false;
}

/** Wall seconds of one command with stdout to /dev/null (bounded). */
async function timed(cmd, args, timeoutMs = 600_000) {
  const devnull = openSync('/dev/null', 'w');
  const t = performance.now();
  const status = await new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', devnull, 'inherit'] });
    const k = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('exit', (code, sig) => { clearTimeout(k); resolve(code ?? sig); });
  });
  const s = (performance.now() - t) / 1000;
  closeSync(devnull);
  if (status !== 0) note(`${cmd} ${args.join(' ')} exited ${status}`);
  return s;
}
const mailqRun = () => timed(process.execPath, [BIN, 'mailq', '-c', config]);
/** `mailq -bP`: the total the CLI sees. */
function mailqTotal() {
  const r = spawnSync(process.execPath, [BIN, 'mailq', '-bP', '-c', config], { encoding: 'utf8', timeout: 600_000 });
  return Number(/Total requests: (\d+)/.exec(r.stdout)?.[1] ?? NaN);
}

/** 2,048 bytes of message as intake would store it (trace header, CRLF). */
function message(id, i, rcpt) {
  const head = receivedHeader({ hostname: 'gw.bench.example', id, now: Date.now(), helo: 'bench', ip: '127.0.0.1', protocol: 'ESMTP', recipient: rcpt })
    + `From: <a@x.example>\r\nTo: <${rcpt}>\r\nSubject: scale ${i}\r\nMessage-ID: <${id}@x.example>\r\n\r\n`;
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n';
  let body = head;
  while (body.length + line.length <= 2048) body += line;
  return Buffer.from(body.padEnd(2046, 'x') + '\r\n');
}

async function fill(n) {
  const log = createCliLogger('warn');
  const journal = new IntakeJournal(spool, { onError: (err) => note(`journal: ${err.message}`) });
  const queue = new Queue(new FsStore(spool), { groups: [], log, journal });
  const newId = createIdGenerator();
  const t0 = performance.now();
  await queue.init();
  await queue.replayJournal();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const id = newId();
      const rcpt = `user${i}@dest.example`;
      const body = message(id, i, rcpt);
      const w = await queue.begin(id);
      await w.write(body);
      await queue.commit(w, body.length, { sender: 'a@x.example', recipients: [{ address: rcpt }], bodyType: '7BIT', smtputf8: false, dsn: {}, client: { via: 'smtp', ip: '127.0.0.1', helo: 'bench' } });
    }
  };
  await Promise.all(Array.from({ length: CONC }, worker));
  await queue.close();
  await journal.close();
  return (performance.now() - t0) / 1000;
}

const started = Date.now();
const figures = {};
let daemon = null;
let sink = null;
try {
  out(`quietlink N=${N} CONC=${CONC} node=${process.version} date=${new Date().toISOString()} spool=${spool}`);
  await writeConfig(true);

  // 1. idle RSS: empty spool
  daemon = spawnDaemon();
  await daemon.waitLog((l) => l.msg === 'ready', 30_000);
  await daemon.waitLog((l) => l.msg === 'leftovers swept', 30_000);
  await quiet(daemon.proc.pid, 10_000);
  await sleep(2000);
  figures.rss_idle = kbField(status(daemon.proc.pid), 'VmRSS');
  out(`quietlink rss_idle_mb=${mb(figures.rss_idle)}`);
  await daemon.stop();
  daemon = null;

  // 2. fill, daemon down
  figures.fill = await fill(N);
  out(`quietlink fill_s=${figures.fill.toFixed(3)} (${(N / figures.fill).toFixed(0)} msg/s)`);

  // 3. mailq without a daemon
  const total0 = mailqTotal();
  out(`quietlink queued=${total0} expected=${N} ${total0 === N ? 'OK' : 'MISMATCH'}`);
  const nd = [];
  for (let i = 0; i < 3; i++) nd.push(await mailqRun());
  out(`quietlink mailq_nodaemon_runs_s=${nd.map((s) => s.toFixed(3)).join(',')}`);
  out(`quietlink mailq_nodaemon_s=${median(nd).toFixed(3)}`);

  // 4. daemon with N queued, link held
  daemon = spawnDaemon();
  const ready = await daemon.waitLog((l) => l.msg === 'ready', 300_000);
  void ready;
  out(`quietlink start_to_ready_s=${secs(performance.now() - daemon.t0)} (held, ${N} queued)`);
  await daemon.waitLog((l) => l.msg === 'leftovers swept', 600_000);
  const swept = performance.now();
  const calm = await quiet(daemon.proc.pid, 600_000);
  out(`quietlink loaded_s=${secs(performance.now() - daemon.t0)} (spawn to quiet; sweep done at ${secs(swept - daemon.t0)}${calm ? '' : ', NOT quiet after 600 s'})`);
  const st = status(daemon.proc.pid);
  figures.rss_100k = kbField(st, 'VmRSS');
  out(`quietlink rss_100k_mb=${mb(figures.rss_100k)}`);
  out(`quietlink rss_100k_peak_mb=${mb(kbField(st, 'VmHWM'))}`);
  const total1 = mailqTotal();
  out(`quietlink queued_daemon=${total1} ${total1 === N ? 'OK' : 'MISMATCH'}`);
  const wd = [];
  for (let i = 0; i < 3; i++) wd.push(await mailqRun());
  figures.mailq = median(wd);
  out(`quietlink mailq_runs_s=${wd.map((s) => s.toFixed(3)).join(',')}`);
  out(`quietlink mailq_s=${figures.mailq.toFixed(3)}`);
  out(`quietlink rss_after_mailq_mb=${mb(kbField(status(daemon.proc.pid), 'VmRSS'))}`);
  const stopS = await daemon.stop();
  out(`quietlink stop_s=${stopS.toFixed(3)} (held)`);
  daemon = null;

  // 5. restart with the line up and the sink listening
  let first = null;
  let received = 0;
  const server = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], disableReverseLookup: true, logger: false,
    onData(stream, _s, cb) {
      stream.resume();
      stream.on('end', () => { received++; first ??= performance.now(); cb(); });
    },
  });
  // a daemon stopped mid-delivery resets its connections: not an error of the sink
  server.on('error', (err) => { if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') note(`sink: ${err.message}`); });
  await new Promise((r) => server.listen(sinkPort, '127.0.0.1', r));
  sink = server;
  await writeConfig(false);
  daemon = spawnDaemon();
  const end = performance.now() + 300_000;
  let readyAt = null;
  void daemon.waitLog((l) => l.msg === 'ready', 300_000).then(() => (readyAt = performance.now()), () => undefined);
  while (first === null && performance.now() < end && daemon.proc.exitCode === null) await sleep(5);
  if (first === null) throw new Error('the sink received nothing within 300 s of the restart');
  figures.restart = (first - daemon.t0) / 1000;
  out(`quietlink restart_ready_s=${readyAt === null ? 'n/a' : secs(readyAt - daemon.t0)}`);
  out(`quietlink restart_to_first_delivery_s=${figures.restart.toFixed(3)}`);
  await sleep(5000);
  out(`quietlink delivered_in_first_5s_after=${received}`);
  out(`quietlink rss_delivering_mb=${mb(kbField(status(daemon.proc.pid), 'VmRSS'))}`);
  const stop2 = await daemon.stop(60_000);
  out(`quietlink stop_s=${stop2.toFixed(3)} (delivering; ${received} received by then)`);
  daemon = null;
  await new Promise((r) => server.close(r));
  sink = null;
} finally {
  if (daemon) await daemon.stop(30_000);
  if (sink) await new Promise((r) => sink.close(r));
  await fs.rm(dir, { recursive: true, force: true });
}

// 6. Postfix with the same N queued
if (!POSTFIX) {
  note('Postfix part skipped (--no-postfix)');
} else if (!hasCommand('postqueue') || !hasCommand('smtp-source')) {
  out('postfix skipped: postfix is not installed (apt-get install -y postfix swaks, see ../shared/peers/README.md)');
} else {
  const base = process.env.PF_BASE ?? '/tmp/peers/postfix';
  const cfg = path.join(base, 'etc');
  const q = path.join(base, 'spool');
  const env = { ...process.env, PF_BASE: base, PF_PORT: String(await freePort()), SINK_PORT: String(await freePort()) };
  const run = (cmd, args, timeout = 120_000) => spawnSync(cmd, args, { env, encoding: 'utf8', timeout, maxBuffer: 1 << 26 });
  const countFiles = async (sub) => {
    let n = 0;
    const walk = async (d) => {
      for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
        if (e.isDirectory()) await walk(path.join(d, e.name));
        else n++;
      }
    };
    await walk(path.join(q, sub));
    return n;
  };
  try {
    const setup = run('bash', [path.join(ROOT, '..', 'shared', 'peers', 'postfix-setup.sh')]);
    if (setup.status !== 0) throw new Error(`postfix-setup.sh failed: ${setup.stderr}`);
    run('postsuper', ['-c', cfg, '-d', 'ALL']);
    out(`postfix version=${run('postconf', ['-c', cfg, '-h', 'mail_version']).stdout.trim()} N=${N}`);
    const t0 = performance.now();
    const src = run('smtp-source', ['-s', '20', '-m', String(N), '-l', '2048', '-f', 'a@x.example', '-t', 'b@y.example', `127.0.0.1:${env.PF_PORT}`], 3_600_000);
    if (src.status !== 0) note(`smtp-source exited ${src.status}: ${src.stderr?.slice(-300)}`);
    const t1 = performance.now();
    let deferred = 0;
    const settleEnd = performance.now() + 900_000;
    while ((deferred = await countFiles('deferred')) < N && performance.now() < settleEnd) await sleep(500);
    const t2 = performance.now();
    out(`postfix fill_s=${secs(t2 - t0)} (smtp-source ${secs(t1 - t0)} + to deferred ${secs(t2 - t1)}; deferred=${deferred})`);
    const pf = [];
    for (let i = 0; i < 3; i++) pf.push(await timed('postqueue', ['-c', cfg, '-p']));
    const pfm = median(pf);
    out(`postfix mailq_runs_s=${pf.map((s) => s.toFixed(3)).join(',')}`);
    out(`postfix mailq_s=${pfm.toFixed(3)}`);
    if (figures.mailq !== undefined) out(`ratio mailq=${(figures.mailq / pfm).toFixed(2)}`);
    if (figures.fill !== undefined) out(`ratio fill=${(figures.fill / ((t2 - t0) / 1000)).toFixed(2)}`);
  } finally {
    run('postsuper', ['-c', cfg, '-d', 'ALL'], 600_000);
    run('postfix', ['-c', cfg, 'stop']);
  }
}
out(`bench_wall_s=${((Date.now() - started) / 1000).toFixed(1)}`);
