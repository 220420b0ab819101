/**
 * control/server.ts — the daemon side of the CLI: a unix socket in the spool
 * (mode 0666: every local user may ask; commands that change the queue or
 * the link check who asks, control/credentials.ts). Each connection carries one
 * request, dispatched to the daemon's handlers (control/handlers.ts); a handler may emit
 * events before its result. Errors become `{ok:false}` with the exit code
 * the CLI should use.
 */
import net from 'node:net';
import fs from 'node:fs/promises';
import type { Logger } from 'pino';
import { EX, exitCodeOf, UnavailableError } from '../errors.js';
import { LineDecoder, socketPath, type ControlReply, type ControlRequest } from './protocol.js';

/**
 * Carries out one request (control/handlers.ts: the command's name and arguments checked,
 * the caller's privilege proven); `emit` sends an event line, its promise resolves once the
 * socket can take more (a big listing streams).
 */
export type ControlDispatch = (cmd: unknown, args: Record<string, unknown>, emit: (event: unknown) => Promise<void>) => Promise<unknown>;

export class ControlServer {
  private server: net.Server | null = null;
  private readonly path: string;

  constructor(spool: string, private readonly dispatch: ControlDispatch, private readonly log: Logger) {
    this.path = socketPath(spool);
  }

  /** Listens; refuses to start when another daemon answers on the socket. */
  async start(): Promise<void> {
    if (await isAlive(this.path)) {
      throw new UnavailableError(`Another quietlink daemon is running on ${this.path}`, { exitCode: EX.TEMPFAIL });
    }
    await fs.rm(this.path, { force: true });
    const server = net.createServer((sock) => this.serve(sock));
    // created with the right mode: no moment in which others could connect
    const umask = process.umask(0o111);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(umask);
    }
    await fs.chmod(this.path, 0o666);
    this.server = server;
  }

  private serve(sock: net.Socket): void {
    const decoder = new LineDecoder();
    let started = false;
    const send = (reply: ControlReply): boolean => !sock.destroyed && sock.write(`${JSON.stringify(reply)}\n`);
    const emit = (event: unknown) => new Promise<void>((resolve) => {
      if (send({ type: 'event', event }) || sock.destroyed) return resolve();
      const go = () => {
        sock.off('drain', go);
        sock.off('close', go);
        resolve();
      };
      sock.on('drain', go);
      sock.on('close', go);
    });
    sock.on('error', () => undefined);
    sock.on('data', (chunk) => {
      if (started) return;
      let msgs: unknown[];
      try {
        msgs = decoder.push(chunk);
      } catch {
        started = true;
        send({ type: 'result', ok: false, error: { message: 'Malformed control request', exitCode: EX.USAGE } });
        sock.end();
        return;
      }
      if (!msgs.length) return;
      started = true;
      const req = msgs[0] as ControlRequest | null;
      const args = typeof req?.args === 'object' && req.args !== null ? req.args : {};
      this.dispatch(req?.cmd, args, emit).then(
        (data) => send({ type: 'result', ok: true, data: data ?? null }),
        (err) => {
          const exitCode = exitCodeOf(err);
          if (exitCode === EX.SOFTWARE) this.log.error({ cmd: req?.cmd, err }, 'control command failed');
          send({ type: 'result', ok: false, error: { message: (err as Error).message, exitCode } });
        },
      ).finally(() => sock.end());
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(this.path, { force: true });
  }
}

/** Whether a daemon answers on the socket (a stale socket file does not). */
export function isAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(path);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}
