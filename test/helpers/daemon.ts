/**
 * test/helpers/daemon.ts — real quietlink processes for tests: a temp folder
 * with a config and spool, the daemon as a child process (bin/quietlink, the
 * built CLI), and CLI runs. Every wait is on an event with a bounded timeout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { stringify } from 'yaml';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin', 'quietlink');

export async function tempDir(prefix = 'ql-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

type Tree = { [k: string]: unknown };

function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && base[k] && typeof base[k] === 'object' ? merge(base[k] as Tree, v as Tree) : v;
  }
  return out;
}

/** Writes `quietlink.yaml` into dir: loopback, port 0, spool in dir, merged with `over`. */
export async function writeConfig(dir: string, over: Tree = {}): Promise<string> {
  const file = path.join(dir, 'quietlink.yaml');
  const base: Tree = {
    hostname: 'gw.test.example',
    spool: 'spool',
    smtp: { listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.0/8'], localDomains: ['office.example'] },
    log: { level: 'info' },
  };
  await fs.writeFile(file, stringify(merge(base, over)));
  return file;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its exit, with `input` on stdin. */
export async function runProcess(command: string, args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; ms?: number } = {}): Promise<CliResult> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.on('error', () => undefined);
  child.stdin.end(opts.input ?? '');
  const [code] = (await withTimeout(once(child, 'close'), opts.ms ?? 30_000, `${path.basename(command)} ${args.join(' ')}`)) as [number | null];
  return { code, stdout, stderr };
}

export function runCli(args: string[], opts: { input?: string | Buffer; argv0?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return runProcess(process.execPath, [opts.argv0 ?? BIN, ...args], opts);
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

export interface Daemon {
  proc: ChildProcess;
  port: number;
  logs: Array<Record<string, unknown>>;
  /** Resolves with the first log line (after this call or already seen) matching. */
  waitLog(pred: (l: Record<string, unknown>) => boolean, what: string, ms?: number): Promise<Record<string, unknown>>;
  /** SIGTERM (once) and the exit code. */
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

/**
 * Starts `quietlink start -c configFile` and resolves once it logs "ready".
 * `command` runs another program file instead (an installed layout), with
 * the configuration taken from its environment.
 */
export async function startDaemon(configFile: string | null, opts: { env?: NodeJS.ProcessEnv; command?: string } = {}): Promise<Daemon> {
  const args = ['start', ...(configFile ? ['-c', configFile] : [])];
  const env = { ...process.env, ...opts.env };
  const proc = opts.command
    ? spawn(opts.command, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
    : spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let buf = '';
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  proc.stdout!.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line);
      } catch {
        continue;
      }
      logs.push(obj);
      for (const w of [...waiters]) {
        if (w.pred(obj)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(obj);
        }
      }
    }
  });
  const exited = once(proc, 'exit');
  let terminated = false;
  const waitLog = (pred: (l: Record<string, unknown>) => boolean, what: string, ms = 20_000) => {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return withTimeout(
      Promise.race([
        new Promise<Record<string, unknown>>((resolve) => waiters.push({ pred, resolve })),
        exited.then(() => {
          throw new Error(`daemon exited while waiting for ${what}: ${stderr}`);
        }),
      ]),
      ms,
      what,
    );
  };
  const ready = await waitLog((l) => l.msg === 'ready', 'daemon ready');
  const port = (ready.listen as Array<{ port: number }>)[0].port;
  return {
    proc,
    port,
    logs,
    waitLog,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      if (!terminated) proc.kill('SIGTERM');
      terminated = true;
      const [code] = (await withTimeout(exited, 20_000, 'daemon exit')) as [number | null];
      return code;
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await withTimeout(exited, 20_000, 'daemon kill');
    },
  };
}
