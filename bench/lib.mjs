// bench/lib.mjs — what the benchmarks share: a quietlink daemon on loopback
// with a fresh spool, Postfix's smtp-source as the load, and the peer
// scripts of ../shared/peers. Only 127.0.0.1 is used.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import { SMTPServer } from 'smtp-server';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = path.join(ROOT, 'bin', 'quietlink');

export function option(name, def) {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
}

export const hasCommand = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim() !== '';

/** Starts quietlink with `extraYaml` appended to a loopback config; resolves when it is ready. */
export async function startDaemon(extraYaml = '', conc = 20) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ql-bench-'));
  const config = path.join(dir, 'quietlink.yaml');
  await fs.writeFile(config, `hostname: gw.bench.example\nspool: spool\nsmtp:\n  listen: ["127.0.0.1:0"]\n  mynetworks: [127.0.0.0/8]\n  maxConnections: ${conc * 2}\nlog: { level: ${process.env.QL_LOG ?? "info"} }\n${extraYaml}`);
  // QL_PROF=DIR: a CPU profile of the daemon in DIR
  const prof = process.env.QL_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.QL_PROF}`] : [];
  const proc = spawn(process.execPath, [...prof, BIN, 'start', '-c', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  // QL_LOG=debug: the daemon's connection events on stderr
  if (process.env.QL_LOG) readline.createInterface({ input: proc.stdout }).on('line', (l) => /"msg":"connect|"msg":"connection|"msg":"run:/.test(l) && console.error(l));
  const listeners = [];
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    let l;
    try { l = JSON.parse(line); } catch { return; }
    for (const f of [...listeners]) f(l);
  });
  const waitLog = (pred, ms) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('timed out waiting for the daemon')), ms);
    const f = (l) => { if (pred(l)) { clearTimeout(t); listeners.splice(listeners.indexOf(f), 1); resolve(l); } };
    listeners.push(f);
  });
  const ready = await waitLog((l) => l.msg === 'ready', 30_000);
  return {
    /** CPU seconds the daemon has used so far (Linux /proc). */
    cpu: async () => {
      const f = (await fs.readFile(`/proc/${proc.pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ') ?? [];
      return (Number(f[11]) + Number(f[12])) / 100;
    },
    proc, dir, config, port: ready.listen[0].port, waitLog,
    /** Runs the CLI without blocking this process (a sink in it, or a pipe it drains, must keep going). */
    cli: (...args) => new Promise((resolve, reject) => {
      const p = spawn(process.execPath, [BIN, ...args, '-c', config], { stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      p.stdout.on('data', (c) => (stdout += c));
      p.once('error', reject);
      p.once('close', (status) => resolve({ status, stdout }));
    }),
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** N messages of SIZE bytes over CONC sessions, a new connection per message (smtp-source). */
export function smtpSource(port, n, conc, size) {
  return new Promise((resolve, reject) => {
    const p = spawn('smtp-source', ['-s', String(conc), '-m', String(n), '-l', String(size), '-f', 'a@x.example', '-t', 'b@y.example', `127.0.0.1:${port}`], { stdio: 'inherit' });
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`smtp-source exited ${code}`))));
  });
}

/** Runs a ../shared/peers script; returns its stdout (lines "postfix key=value"). */
export function peer(script, ...args) {
  const file = path.join(ROOT, '..', 'shared', 'peers', script);
  const r = spawnSync('bash', [file, ...args.map(String)], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return r.stdout + r.stderr;
}

export function figure(output, key) {
  const m = new RegExp(`${key}=([\\d.]+)`).exec(output);
  return m ? Number(m[1]) : null;
}

/** A free TCP port on 127.0.0.1 (for programs that need a port number up front). */
export async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * The next hop for the benchmarks: Postfix's smtp-sink when installed (fast,
 * and what the Postfix peer delivers to), else an smtp-server sink in this
 * process. `messages()` counts what an smtp-server sink received.
 */
export async function startSink() {
  const port = await freePort();
  if (hasCommand('smtp-sink')) {
    const p = spawn('smtp-sink', ['-u', 'nobody', `127.0.0.1:${port}`, '1024'], { stdio: 'ignore' });
    for (let i = 0; i < 50; i++) {
      if (await new Promise((r) => { const c = net.connect(port, '127.0.0.1', () => { c.destroy(); r(true); }); c.on('error', () => r(false)); })) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return { port, kind: 'smtp-sink', messages: () => null, stop: () => p.kill() };
  }
  let messages = 0;
  const server = new SMTPServer({ authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], disableReverseLookup: true, logger: false,
    onData(stream, _s, cb) { stream.resume(); stream.on('end', () => { messages++; cb(); }); } });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { port, kind: 'smtp-server', messages: () => messages, stop: () => server.close() };
}

/** Waits (polling every 50 ms) until `pred()` is true; throws after `ms`. */
export async function waitFor(pred, ms, what) {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Submits messages ({from, to[], body}) to 127.0.0.1:PORT over CONC
 * connections (nodemailer, pipelined, one connection for many messages);
 * throws on any refusal.
 */
export async function submitMessages(port, messages, conc = 4) {
  const { default: SMTPConnection } = await import('nodemailer/lib/smtp-connection/index.js');
  let next = 0;
  const worker = async () => {
    const conn = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, name: 'bench.example', socketTimeout: 300_000 });
    await new Promise((resolve, reject) => { conn.once('error', reject); conn.connect(resolve); });
    while (next < messages.length) {
      const m = messages[next++];
      await new Promise((resolve, reject) => conn.send({ from: m.from, to: m.to }, m.body, (err) => (err ? reject(err) : resolve())));
    }
    conn.quit();
  };
  await Promise.all(Array.from({ length: Math.min(conc, messages.length) }, worker));
}
