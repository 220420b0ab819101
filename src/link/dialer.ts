/**
 * link/dialer.ts — runs `link.dial` / `link.hangup` (e.g. `pon isp` /
 * `poff isp`) for windows quietlink opened itself: through /bin/sh, with a
 * timeout, output and exit status logged. A failure is logged; the window
 * then waits for the link as it would without a dial command.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';

export function runLinkCommand(command: string, timeoutMs: number, log: Logger, what: 'dial' | 'hangup'): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.once('error', (err) => {
      log.error({ command, err: err.message }, `link ${what} command failed to start`);
      resolve(null);
    });
    child.once('close', (code, signal) => {
      const fields = { command, status: code, signal, output: output.trim().slice(-2000) };
      if (code === 0) log.info(fields, `link ${what} command done`);
      else log.warn(fields, `link ${what} command failed`);
      resolve(code);
    });
  });
}
