/**
 * control/client.ts — the CLI side of the control socket. A daemon that is
 * not running is an UnavailableError (exit 69) with a clear message; a
 * failed command carries the daemon's exit code.
 */
import net from 'node:net';
import { QuietlinkError, UnavailableError, type ExitCode } from '../errors.js';
import { LineDecoder, socketPath, type ControlReply } from './protocol.js';
import { needsAdmin, type ArgsOf, type CommandName, type EventOf, type ReplyOf } from './commands.js';
import { makeCredential } from './credentials.js';

export class DaemonNotRunningError extends UnavailableError {}

/**
 * One request to the daemon, typed by control/commands.ts. A command that
 * needs an administrator carries proof of the caller's uid
 * (control/credentials.ts); the daemon decides.
 */
export async function controlRequest<N extends CommandName>(
  spool: string,
  cmd: N,
  args: ArgsOf<N>,
  onEvent?: (event: EventOf<N>) => void,
): Promise<ReplyOf<N>> {
  const wire = args as Record<string, unknown>;
  const events = onEvent as ((event: unknown) => void) | undefined;
  if (!needsAdmin(cmd, args)) return request(spool, cmd, wire, events) as Promise<ReplyOf<N>>;
  // no maildrop to write to: ask without proof, and let the daemon say no
  const cred = await makeCredential(spool).catch(() => null);
  try {
    return await (request(spool, cmd, { ...wire, cred: cred?.nonce }, events) as Promise<ReplyOf<N>>);
  } finally {
    await cred?.cleanup().catch(() => undefined);
  }
}

function request(
  spool: string,
  cmd: string,
  args: Record<string, unknown>,
  onEvent?: (event: unknown) => void,
): Promise<unknown> {
  const path = socketPath(spool);
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    const decoder = new LineDecoder();
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      fn();
    };
    sock.once('connect', () => sock.write(`${JSON.stringify({ cmd, args })}\n`));
    sock.on('data', (chunk) => {
      for (const m of decoder.push(chunk) as ControlReply[]) {
        if (m.type === 'event') onEvent?.(m.event);
        else if (m.ok) finish(() => resolve(m.data));
        else finish(() => reject(new QuietlinkError(m.error.message, { exitCode: m.error.exitCode as ExitCode })));
      }
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        finish(() => reject(new DaemonNotRunningError(`quietlink daemon is not running (no control socket at ${path})`, { cause: err })));
      } else {
        finish(() => reject(new UnavailableError(`Cannot talk to the quietlink daemon at ${path}: ${err.code ?? err.message}`, { cause: err })));
      }
    });
    sock.once('close', () => finish(() => reject(new UnavailableError('The quietlink daemon closed the control connection without an answer'))));
  });
}
