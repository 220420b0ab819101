#!/usr/bin/env node
// bench/scale.mjs — quietlink with a big queue (SPEC §14 targets: mailq ≤ 1 s and
// ≤ 0.5× Postfix's postqueue -p, restart to first delivery ≤ 2 s, RSS ≤ 80 MB
// idle and ≤ 250 MB with 100,000 queued).
//
//   node bench/scale.mjs [--n 100000] [--conc 256] [--no-postfix]
//   node bench/scale.mjs --held N [--due 1000] [--domains 500] [--etrn-count 2000] [--conc 256] [--keep DIR]
//
// --held: the ISP relay of issue 16 (see heldScenario() at the end). Without it:
//
// One spool under /tmp, one smart host [127.0.0.1]:PORT (the sink's port,
// closed until the restart step). Steps, each printing "key=value" lines:
//   1. rss_idle_mb      daemon on the empty spool: VmRSS 2 s after its "ready"
//                       line, the start-up run and the leftover sweep done.
//   2. fill_s           N messages (2 KB, one recipient each) put into the spool
//                       with the daemon down, by the queue code itself
//                       (dist/queue/spool.js: spoolQueue(), as src/daemon.ts
//                       builds it; init(), then begin/write/commit as intake
//                       does), CONC commits in flight (the journal's
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
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ROOT, freePort, hasCommand, option } from './lib.mjs';
import {
  cli, countingSink, fillSpool, kbField, mailqRun, mailqTotal, mb, median, note, out, quiet, rawSmtp, secs, sleep, spawnDaemon, status, timed,
} from './scale-lib.mjs';

const N = Number(option('n', 100000));
const CONC = Number(option('conc', 256));
const POSTFIX = !process.argv.includes('--no-postfix');

try {
  await fs.access(path.join(ROOT, 'dist', 'daemon.js'));
} catch {
  note('dist/ missing: npm run build');
  const b = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit', timeout: 300_000 });
  if (b.status !== 0) process.exit(1);
}
if (option('held') !== undefined) {
  await heldScenario();
  process.exit(process.exitCode ?? 0);
}

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

async function fill(n) {
  const f = await fillSpool(spool, n, CONC, (i) => `user${i}@dest.example`);
  return f.total;
}

const started = Date.now();
const figures = {};
let daemon = null;
let sink = null;
try {
  out(`quietlink N=${N} CONC=${CONC} node=${process.version} date=${new Date().toISOString()} spool=${spool}`);
  await writeConfig(true);

  // 1. idle RSS: empty spool
  daemon = spawnDaemon(config);
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
  const total0 = await mailqTotal(config);
  out(`quietlink queued=${total0} expected=${N} ${total0 === N ? 'OK' : 'MISMATCH'}`);
  const nd = [];
  for (let i = 0; i < 3; i++) nd.push(await mailqRun(config));
  out(`quietlink mailq_nodaemon_runs_s=${nd.map((s) => s.toFixed(3)).join(',')}`);
  out(`quietlink mailq_nodaemon_s=${median(nd).toFixed(3)}`);

  // 4. daemon with N queued, link held
  daemon = spawnDaemon(config);
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
  const total1 = await mailqTotal(config);
  out(`quietlink queued_daemon=${total1} ${total1 === N ? 'OK' : 'MISMATCH'}`);
  const wd = [];
  for (let i = 0; i < 3; i++) wd.push(await mailqRun(config));
  figures.mailq = median(wd);
  out(`quietlink mailq_runs_s=${wd.map((s) => s.toFixed(3)).join(',')}`);
  out(`quietlink mailq_s=${figures.mailq.toFixed(3)}`);
  out(`quietlink rss_after_mailq_mb=${mb(kbField(status(daemon.proc.pid), 'VmRSS'))}`);
  const stopS = await daemon.stop();
  out(`quietlink stop_s=${stopS.toFixed(3)} (held)`);
  daemon = null;

  // 5. restart with the line up and the sink listening
  sink = await countingSink(sinkPort);
  await writeConfig(false);
  daemon = spawnDaemon(config);
  const end = performance.now() + 300_000;
  let readyAt = null;
  void daemon.waitLog((l) => l.msg === 'ready', 300_000).then(() => (readyAt = performance.now()), () => undefined);
  while (sink.first() === null && performance.now() < end && daemon.proc.exitCode === null) await sleep(5);
  const first = sink.first();
  if (first === null) throw new Error('the sink received nothing within 300 s of the restart');
  figures.restart = (first - daemon.t0) / 1000;
  out(`quietlink restart_ready_s=${readyAt === null ? 'n/a' : secs(readyAt - daemon.t0)}`);
  out(`quietlink restart_to_first_delivery_s=${figures.restart.toFixed(3)}`);
  await sleep(5000);
  out(`quietlink delivered_in_first_5s_after=${sink.total()}`);
  out(`quietlink rss_delivering_mb=${mb(kbField(status(daemon.proc.pid), 'VmRSS'))}`);
  const stop2 = await daemon.stop(60_000);
  out(`quietlink stop_s=${stop2.toFixed(3)} (delivering; ${sink.total()} received by then)`);
  daemon = null;
  await sink.close();
  sink = null;
} finally {
  if (daemon) await daemon.stop(30_000);
  if (sink) await sink.close();
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

/**
 * --held N: the ISP relay (SPEC §4/§7). N one-recipient 2 KB messages for D
 * customer domains cust1.dom … custD.dom (class CustDoms, the default hold
 * class; mailertable `custK.dom qsmtp:[127.0.0.1]:SINK`): held until ETRN,
 * never sent by a scheduled run. ETRN_N of them (2,000) for cust7.dom, the
 * rest round-robin over the others. M more for dueK@dest.example, which go
 * to the smart host (the same local sink). link.mode demand: a 127.0.0.1 hop
 * outside lanNetworks is a link route, so the due mail waits for a window
 * (as in bench/flush). The spool is filled with the daemon down, then:
 *   start_to_ready_s, swept_s, loaded_s (spawn to 1 s under 1 % CPU),
 *   startup_cpu_s, rss_mb / rss_peak_mb once loaded;
 *   queued_daemon (mailq -bP), mailq_s (median of 3 `mailq`, daemon up);
 *   run_cpu_s: daemon CPU over one `flush --wait` (the M due delivered, the
 *   N held passed by), run_wall_s; empty_run_cpu_s: a second one, nothing due;
 *   etrn_reply_ms: `ETRN cust7.dom` after EHLO on a raw socket, write to
 *   reply line; then etrn_drain_s / etrn_cpu_s until the ETRN_N are at the
 *   sink (not part of the reply time).
 * --keep DIR keeps the filled spool in DIR; a later run with the same N and D
 * only puts back what the last one delivered (M due + ETRN_N for cust7.dom).
 */
async function heldScenario() {
  const HELD = Number(option('held'));
  const DUE = Number(option('due', 1000));
  const DOMAINS = Number(option('domains', 500));
  const ETRN_N = Math.min(Number(option('etrn-count', 2000)), HELD);
  const ETRN_DOM = 'cust7.dom';
  const KEEP = option('keep');
  const dir = KEEP ? path.resolve(KEEP) : await fs.mkdtemp(path.join(os.tmpdir(), 'ql-scale-isp-'));
  await fs.mkdir(dir, { recursive: true });
  const spool = path.join(dir, 'spool');
  const config = path.join(dir, 'quietlink.yaml');
  const marker = path.join(dir, 'filled.json');
  const [smtpPort, sinkPort] = [await freePort(), await freePort()];
  const domains = Array.from({ length: DOMAINS }, (_, k) => `cust${k + 1}.dom`);
  const others = domains.filter((d) => d !== ETRN_DOM);
  await fs.writeFile(path.join(dir, 'mailertable'), domains.map((d) => `${d} qsmtp:[127.0.0.1]:${sinkPort}\n`).join(''));
  await fs.writeFile(path.join(dir, 'CustDoms'), `${domains.join('\n')}\n`);
  await fs.writeFile(config, [
    'hostname: relay.isp.example', `spool: ${spool}`, 'deliveryMode: deferred',
    'smtp:', `  listen: ["127.0.0.1:${smtpPort}"]`, '  mynetworks: [127.0.0.0/8]',
    `smartHost: ["[127.0.0.1]:${sinkPort}"]`, `mailertable: ${path.join(dir, 'mailertable')}`,
    `classes: { CustDoms: { file: ${path.join(dir, 'CustDoms')} } }`, 'holdClasses: [CustDoms]',
    'etrnServer: { allow: [127.0.0.0/8] }', 'queue: { maxQueueChildren: 16 }', 'link: { mode: demand }', 'log: { level: info }', '',
  ].join('\n'));
  const heldRcpt = (i) => `user${i}@${i < ETRN_N ? ETRN_DOM : others[(i - ETRN_N) % others.length]}`;
  const dueRcpt = (i) => `due${i}@dest.example`;
  const started = Date.now();
  let daemon = null;
  let sink = null;
  try {
    const commit = process.env.QL_COMMIT ?? spawnSync('git', ['-C', ROOT, 'log', '-1', '--format=%h'], { encoding: 'utf8' }).stdout.trim();
    out(`quietlink isp held=${HELD} due=${DUE} domains=${DOMAINS} etrn_count=${ETRN_N} conc=${CONC} commit=${commit} node=${process.version} nproc=${os.cpus().length} date=${new Date().toISOString()} dir=${dir}`);
    const prev = JSON.parse(await fs.readFile(marker, 'utf8').catch(() => '{}'));
    const same = prev.held === HELD && prev.domains === DOMAINS && prev.etrnN === ETRN_N;
    let f;
    if (same && prev.state === 'drained') {
      // put back what the last run delivered: its due mail and cust7.dom's
      f = await fillSpool(spool, prev.due + ETRN_N, CONC, (i) => (i < prev.due ? dueRcpt(i) : heldRcpt(i - prev.due)));
      out(`quietlink fill_s=${f.total.toFixed(3)} (top-up of ${prev.due + ETRN_N} onto a kept spool; settle ${f.settle.toFixed(3)})`);
    } else {
      await fs.rm(spool, { recursive: true, force: true });
      f = await fillSpool(spool, HELD + DUE, CONC, (i) => (i < HELD ? heldRcpt(i) : dueRcpt(i - HELD)));
      out(`quietlink fill_s=${f.total.toFixed(3)} (${((HELD + DUE) / f.total).toFixed(0)} msg/s; settle ${f.settle.toFixed(3)})`);
    }
    await fs.writeFile(marker, JSON.stringify({ held: HELD, domains: DOMAINS, etrnN: ETRN_N, due: DUE, state: 'in-use' }));
    const du = spawnSync('du', ['-sh', spool], { encoding: 'utf8', timeout: 600_000 }).stdout.split('\t')[0];
    out(`quietlink spool_du=${du} df_tmp_avail=${spawnSync('df', ['-h', '--output=avail', spool], { encoding: 'utf8' }).stdout.split('\n')[1]?.trim()}`);

    sink = await countingSink(sinkPort);
    daemon = spawnDaemon(config);
    const ready = await daemon.waitLog((l) => l.msg === 'ready', 600_000);
    out(`quietlink start_to_ready_s=${secs(ready.at - daemon.t0)} (${HELD + DUE} queued)`);
    const swept = await daemon.waitLog((l) => l.msg === 'leftovers swept', 1_800_000);
    const calm = await quiet(daemon.proc.pid, 1_800_000);
    const loaded = performance.now();
    out(`quietlink swept_s=${secs(swept.at - daemon.t0)} loaded_s=${secs(loaded - daemon.t0)}${calm ? '' : ' NOT quiet after 1800 s'}`);
    out(`quietlink startup_cpu_s=${(await daemon.cpu()).toFixed(2)} loadavg=${os.loadavg().map((x) => x.toFixed(2)).join(',')}`);
    const st = status(daemon.proc.pid);
    out(`quietlink rss_mb=${mb(kbField(st, 'VmRSS'))} rss_peak_mb=${mb(kbField(st, 'VmHWM'))}`);
    if (sink.total() !== 0) note(`the sink got ${sink.total()} before any window (expected none)`);

    const total = await mailqTotal(config);
    out(`quietlink queued_daemon=${total} ${total === HELD + DUE ? 'OK' : `MISMATCH (expected ${HELD + DUE})`}`);
    const mq = [];
    for (let i = 0; i < 3; i++) mq.push(await mailqRun(config));
    out(`quietlink mailq_runs_s=${mq.map((s) => s.toFixed(3)).join(',')} mailq_s=${median(mq).toFixed(3)}`);
    out(`quietlink rss_after_mailq_mb=${mb(kbField(status(daemon.proc.pid), 'VmRSS'))}`);
    await quiet(daemon.proc.pid, 120_000);

    // one run with DUE due (the held passed by), then one with nothing due
    for (const [label, want] of [['run', DUE], ['empty_run', 0]]) {
      const c0 = await daemon.cpu();
      const t0 = performance.now();
      const r = await cli(config, ['flush', '--wait'], 1_800_000);
      const t1 = performance.now();
      const c1 = await daemon.cpu();
      const delivered = Number(/(\d+) delivered/.exec(r.stdout)?.[1] ?? NaN);
      out(`quietlink ${label}_cpu_s=${(c1 - c0).toFixed(2)} ${label}_wall_s=${secs(t1 - t0)} delivered=${delivered} ${delivered === want ? 'OK' : `MISMATCH (expected ${want})`} exit=${r.status}`);
      note(`flush: ${r.stdout.trim()}`);
      await quiet(daemon.proc.pid, 120_000);
    }
    out(`quietlink sink_after_runs=${sink.total()}`);

    // ETRN for the domain with ETRN_N held: the reply only, then its flush
    const c = await rawSmtp(smtpPort);
    try {
      await c.cmd('EHLO customer7.example');
      const e0 = await daemon.cpu();
      const before = sink.domain(ETRN_DOM);
      const r = await c.cmd(`ETRN ${ETRN_DOM}`);
      const t0 = performance.now();
      out(`quietlink etrn_reply_ms=${r.ms.toFixed(1)} reply="${r.text}"`);
      const all = await sink.until(() => sink.domain(ETRN_DOM) - before >= ETRN_N, 900_000);
      const done = await daemon.waitLog((l) => l.msg === 'etrn flush done' && l.at >= t0 - r.ms, 120_000).catch(() => null);
      out(`quietlink etrn_drain_s=${secs(performance.now() - t0)} etrn_cpu_s=${((await daemon.cpu()) - e0).toFixed(2)} delivered_${ETRN_DOM}=${sink.domain(ETRN_DOM) - before}${all ? '' : ' INCOMPLETE'} flush_done=${done ? JSON.stringify({ delivered: done.delivered, deferred: done.deferred }) : 'not seen'}`);
      await c.cmd('QUIT').catch(() => undefined);
    } finally {
      c.close();
    }
    const other = [...domains].filter((d) => d !== ETRN_DOM).reduce((n, d) => n + sink.domain(d), 0);
    if (other) note(`the sink got ${other} for other customers (expected none)`);
    out(`quietlink rss_end_mb=${mb(kbField(status(daemon.proc.pid), 'VmRSS'))} rss_peak_mb=${mb(kbField(status(daemon.proc.pid), 'VmHWM'))}`);
    out(`quietlink stop_s=${(await daemon.stop(120_000)).toFixed(3)} loadavg=${os.loadavg().map((x) => x.toFixed(2)).join(',')}`);
    daemon = null;
    if (sink.total() === DUE + ETRN_N && other === 0) await fs.writeFile(marker, JSON.stringify({ held: HELD, domains: DOMAINS, etrnN: ETRN_N, due: DUE, state: 'drained' }));
  } finally {
    if (daemon) await daemon.stop(60_000);
    if (sink) await sink.close();
    if (!KEEP) await fs.rm(dir, { recursive: true, force: true });
  }
  out(`bench_wall_s=${((Date.now() - started) / 1000).toFixed(1)}`);
}
