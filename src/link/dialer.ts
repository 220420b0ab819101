/**
 * link/dialer.ts — runs `link.dial` / `link.hangup` (e.g. `pon isp` /
 * `poff isp`) through /bin/sh in a process group of its own, output and
 * exit status logged. `startLinkCommand` returns at once with the exit to
 * wait on and a kill for the whole group (a dial script that hangs is cut
 * when the window's dialTimeout runs out, not later); `runLinkCommand`
 * waits, killing the group after its timeout. Failures are logged and
 * reported as a null or non-zero status, never thrown.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';

export interface RunningCommand {
  /** The exit status; null when it could not start or was killed. */
  exited: Promise<number | null>;
  /** Ends the command and everything it started. */
  kill(): void;
}

export function startLinkCommand(command: string, log: Logger, what: 'dial' | 'hangup'): RunningCommand {
  const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', (err) => {
      log.error({ command, err }, `link ${what} command failed to start`);
      resolve(null);
    });
    child.once('close', (code, signal) => {
      const fields = { command, status: code, signal, output: output.trim().slice(-2000) };
      if (code === 0) log.info(fields, `link ${what} command done`);
      else log.warn(fields, `link ${what} command failed`);
      resolve(code);
    });
  });
  return {
    exited,
    kill() {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        child.kill('SIGTERM');
      }
    },
  };
}

export async function runLinkCommand(command: string, timeoutMs: number, log: Logger, what: 'dial' | 'hangup'): Promise<number | null> {
  const run = startLinkCommand(command, log, what);
  const timer = setTimeout(() => run.kill(), timeoutMs);
  try {
    return await run.exited;
  } finally {
    clearTimeout(timer);
  }
}
