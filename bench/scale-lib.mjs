// bench/scale-lib.mjs — what bench/scale.mjs's two scenarios share: the
// daemon as a child (its JSON log read line by line), /proc figures (RSS,
// CPU seconds), timed CLI runs, the spool filled by the queue code itself
// (dist/queue/spool.js, as the daemon builds it), a counting sink and a raw
// SMTP client for ETRN. Only 127.0.0.1 is used; every wait is bounded.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import { SMTPServer } from 'smtp-server';
import { BIN } from './lib.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const secs = (ms) => (ms / 1000).toFixed(3);
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
export const out = (line) => console.log(line);
export const note = (line) => console.error(`# ${line}`);

export function status(pid) {
  try {
    return spawnSync('cat', [`/proc/${pid}/status`], { encoding: 'utf8' }).stdout;
  } catch {
    return '';
  }
}
export const kbField = (text, key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
export const mb = (kb) => (kb / 1024).toFixed(1);
/** User + system CPU seconds of a process so far (Linux /proc, clock ticks of 1/100 s). */
export async function cpuSeconds(pid) {
  const f = (await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Spawns `quietlink start -c CONFIG`; t0 is the spawn time (performance.now()). */
export function spawnDaemon(config) {
  const prof = process.env.QL_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.QL_PROF}`] : [];
  const t0 = performance.now();
  const proc = spawn(process.execPath, [...prof, BIN, 'start', '-c', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  const listeners = [];
  const seen = [];
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    let l;
    try { l = JSON.parse(line); } catch { return; }
    l.at = performance.now();
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
    proc, t0, waitLog, exited, seen,
    cpu: () => cpuSeconds(proc.pid),
    /** SIGTERM, at most `ms` for a clean stop, then SIGKILL; seconds taken. */
    async stop(ms = 60_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return 0;
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

/** Waits until the process used < 1 % of a CPU for a whole second (bounded). */
export async function quiet(pid, maxMs) {
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
export async function timed(cmd, args, timeoutMs = 600_000) {
  const devnull = openSync('/dev/null', 'w');
  const t = performance.now();
  const code = await new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', devnull, 'inherit'] });
    const k = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('exit', (c, sig) => { clearTimeout(k); resolve(c ?? sig); });
  });
  const s = (performance.now() - t) / 1000;
  closeSync(devnull);
  if (code !== 0) note(`${cmd} ${args.join(' ')} exited ${code}`);
  return s;
}

/** The quietlink CLI without blocking this process (the sink lives here); bounded. */
export function cli(config, args, timeoutMs = 900_000) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args, '-c', config], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    p.stdout.on('data', (c) => (stdout += c));
    const k = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('close', (code, sig) => { clearTimeout(k); resolve({ status: code ?? sig, stdout }); });
  });
}
export const mailqRun = (config) => timed(process.execPath, [BIN, 'mailq', '-c', config]);
/** `mailq -bP`: the total the CLI sees. */
export async function mailqTotal(config) {
  const r = await cli(config, ['mailq', '-bP'], 900_000);
  return Number(/Total requests: (\d+)/.exec(r.stdout)?.[1] ?? NaN);
}

/** 2,048 bytes of message as intake would store it (trace header, CRLF). */
export function message(receivedHeader, id, i, rcpt) {
  const head = receivedHeader({ hostname: 'gw.bench.example', id, now: Date.now(), helo: 'bench', ip: '127.0.0.1', protocol: 'ESMTP', recipient: rcpt })
    + `From: <a@x.example>\r\nTo: <${rcpt}>\r\nSubject: scale ${i}\r\nMessage-ID: <${id}@x.example>\r\n\r\n`;
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n';
  let body = head;
  while (body.length + line.length <= 2048) body += line;
  return Buffer.from(body.padEnd(2046, 'x') + '\r\n');
}

/**
 * Puts n messages (one recipient each: rcptOf(i)) into the spool with the
 * daemon down, by the queue code itself (spoolQueue(): the file store behind
 * the intake journal's write-back cache; begin/write/commit as intake does),
 * conc commits in flight (the journal's group commit), until close() has
 * settled every message into its own files. Progress on stderr every 100,000.
 */
export async function fillSpool(spool, n, conc, rcptOf) {
  const { spoolQueue } = await import('../dist/queue/spool.js');
  const { createIdGenerator } = await import('../dist/queue/queue-id.js');
  const { receivedHeader } = await import('../dist/intake/received.js');
  const { createCliLogger } = await import('../dist/observability/logger.js');
  const queue = spoolQueue(spool, { groups: [], log: createCliLogger('warn'), onJournalError: (err) => note(`journal: ${err.message}`) });
  const newId = createIdGenerator();
  const t0 = performance.now();
  await queue.init();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      if (i > 0 && i % 100_000 === 0) note(`fill: ${i} of ${n} in ${secs(performance.now() - t0)} s`);
      const id = newId();
      const rcpt = rcptOf(i);
      const body = message(receivedHeader, id, i, rcpt);
      const w = await queue.begin(id);
      await w.write(body);
      await queue.commit(w, body.length, { sender: 'a@x.example', recipients: [{ address: rcpt }], bodyType: '7BIT', smtputf8: false, dsn: {}, client: { via: 'smtp', ip: '127.0.0.1', helo: 'bench' } });
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  const t1 = performance.now();
  await queue.close();
  return { total: (performance.now() - t0) / 1000, settle: (performance.now() - t1) / 1000 };
}

/** An smtp-server sink on 127.0.0.1:port counting messages by recipient domain. */
export async function countingSink(port) {
  const byDomain = new Map();
  let total = 0;
  let first = null;
  const server = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], disableReverseLookup: true, logger: false,
    onData(stream, session, cb) {
      stream.resume();
      stream.on('end', () => {
        total++;
        first ??= performance.now();
        for (const r of session.envelope.rcptTo) {
          const d = r.address.split('@').pop().toLowerCase();
          byDomain.set(d, (byDomain.get(d) ?? 0) + 1);
        }
        cb();
      });
    },
  });
  // a daemon stopped mid-delivery resets its connections: not an error of the sink
  server.on('error', (err) => { if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') note(`sink: ${err.message}`); });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    total: () => total, first: () => first, domain: (d) => byDomain.get(d) ?? 0,
    /** Resolves true once pred() holds, false after ms. */
    async until(pred, ms) {
      const end = performance.now() + ms;
      while (!pred() && performance.now() < end) await sleep(20);
      return pred();
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

/** A raw SMTP client on 127.0.0.1:port: cmd(line) resolves the whole reply {code, text, ms}. */
export async function rawSmtp(port, timeoutMs = 120_000) {
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  const waiting = [];
  let lines = [];
  let buf = '';
  sock.on('data', (c) => {
    buf += c.toString('latin1');
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      lines.push(line);
      if (/^\d{3} /.test(line)) {
        const w = waiting.shift();
        const text = lines.join('\n');
        lines = [];
        w?.(text);
      }
    }
  });
  sock.on('error', (err) => note(`raw smtp: ${err.message}`));
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  const reply = () => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no SMTP reply in time')), timeoutMs);
    waiting.push((text) => { clearTimeout(t); resolve(text); });
  });
  await reply();
  return {
    async cmd(line) {
      const r = reply();
      const t = performance.now();
      sock.write(`${line}\r\n`);
      const text = await r;
      return { code: Number(text.slice(0, 3)), text, ms: performance.now() - t };
    },
    close: () => sock.destroy(),
  };
}
