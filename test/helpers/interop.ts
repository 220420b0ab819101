/**
 * test/helpers/interop.ts — shared set-up for the interop suite
 * (test/interop/): real independent programs (swaks, msmtp, fetchmail,
 * Python's smtplib, s-nail, PHP, git send-email) against a running quietlink
 * on 127.0.0.1, delivering at once to a recording next hop.
 *
 * - need(): the program's path, or the test is skipped with "X is not
 *   installed" (a developer's machine; CI installs them all, .ci/run).
 * - startRecorder(): a real smtp-server next hop that keeps each message's
 *   bytes and its MAIL / RCPT parameters (BODY, RET, ENVID, NOTIFY, ORCPT).
 * - interop(): a temp folder readable by other users, a configuration that
 *   sends everything to the recorder at once (smartHost, deliveryMode
 *   background, link permanent), the daemon started now or later.
 * - withLocalUser(): a real user made with useradd for the test, in no group
 *   but its own, removed afterwards; run() runs a program as that user
 *   (setpriv, as test/e2e/local-users.test.ts does).
 * - sendmailWrapper(): a script named `sendmail` that runs quietlink's, for
 *   programs that take the path of sendmail (s-nail's mta, PHP's
 *   sendmail_path, git's --smtp-server); it notes each argument vector, so a
 *   test can show what the real caller passed.
 * Every wait is bounded.
 */
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import type { TestContext } from 'node:test';
import { BIN, ROOT, runProcess, startDaemon, tempDir, withTimeout, writeConfig, type CliResult, type Daemon } from './daemon.js';

type Tree = Record<string, unknown>;

export const FIXTURES = path.join(ROOT, 'test', 'fixtures');

const SEARCH = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The absolute path of an executable program, or null. */
export function findProgram(name: string): string | null {
  for (const dir of SEARCH) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** The program's path; null after skipping the test with a clear message when it is missing. */
export function need(t: TestContext, name: string, hint = name): string | null {
  const p = findProgram(name);
  if (!p) t.skip(`${hint} is not installed`);
  return p;
}

/** Root is needed to make users (useradd) and run programs as them. */
export function needRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  t.skip('needs root to create users (useradd)');
  return false;
}

// ---------------------------------------------------------------------------
// the next hop

export interface Recorded {
  from: string;
  /** MAIL FROM parameters as sent (`BODY`, `RET`, `ENVID`, `SIZE`...). */
  mailArgs: Record<string, string | boolean>;
  to: string[];
  /** RCPT TO parameters as sent, one object per recipient (`NOTIFY`, `ORCPT`). */
  rcptArgs: Array<Record<string, string | boolean>>;
  /** The message exactly as received (dot-unstuffed, CRLF line ends). */
  body: Buffer;
  bodyType: string;
  secure: boolean;
}

export interface Recorder {
  port: number;
  messages: Recorded[];
  /** Resolves with the first message (already there or still to come) for which pred holds. */
  waitFor(pred: (m: Recorded) => boolean, what: string, ms?: number): Promise<Recorded>;
  close(): Promise<void>;
}

export async function startRecorder(): Promise<Recorder> {
  const waiters: Array<() => void> = [];
  const messages: Recorded[] = [];
  const server = new SMTPServer({
    name: 'nexthop.test',
    disabledCommands: ['STARTTLS', 'AUTH'],
    authOptional: true,
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: true,
    // offer DSN (smtp-server hides it by default), so that RET / NOTIFY are passed on
    hideDSN: false,
    logger: false,
    closeTimeout: 1000,
    size: 64 * 1024 * 1024,
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const env = session.envelope;
        const mailFrom = env.mailFrom || { address: '', args: {} };
        messages.push({
          from: mailFrom.address,
          mailArgs: (mailFrom.args || {}) as Record<string, string | boolean>,
          to: env.rcptTo.map((r) => r.address),
          rcptArgs: env.rcptTo.map((r) => (r.args || {}) as Record<string, string | boolean>),
          body: Buffer.concat(chunks),
          bodyType: String(env.bodyType),
          secure: Boolean(session.secure),
        });
        for (const w of waiters.splice(0)) w();
        cb(null, 'Ok: queued at the next hop');
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.server.address() as net.AddressInfo).port,
    messages,
    waitFor(pred, what, ms = 30_000) {
      return withTimeout(new Promise<Recorded>((resolve) => {
        const check = () => {
          const m = messages.find(pred);
          if (m) resolve(m);
          else waiters.push(check);
        };
        check();
      }), ms, what);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The unfolded value of the first header field `name` of a message, or undefined. */
export function header(body: Buffer | string, name: string): string | undefined {
  const text = Buffer.isBuffer(body) ? body.toString('utf8') : body;
  const end = text.search(/\r?\n\r?\n/);
  const head = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const m = new RegExp(`^${name.replace(/[-]/g, '\\-')}:[ \\t]*(.*)$`, 'im').exec(head);
  return m ? m[1].trimEnd() : undefined;
}

/** A message whose Subject carries `marker`. */
export const bySubject = (marker: string) => (m: Recorded) => (header(m.body, 'Subject') ?? '').includes(marker);

// ---------------------------------------------------------------------------
// the gateway

export interface Interop {
  dir: string;
  config: string;
  sink: Recorder;
  /** The running daemon (null until start()). */
  daemon: Daemon | null;
  start(): Promise<Daemon>;
  close(): Promise<void>;
}

function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = base[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? merge(b as Tree, v as Tree) : v;
  }
  return out;
}

/**
 * A configuration in a fresh temp folder (mode 0755, the file 0644, so that
 * other users' `sendmail` can read it as under /etc): everything goes to the
 * recorder at once; `over` is merged on top. The daemon starts now unless
 * `start: false`; then the spool is laid out as install.sh leaves it before
 * the daemon's first start (spool 0711, maildrop 1733).
 */
export async function interop(over: Tree | ((dir: string, sink: Recorder) => Tree) = {}, opts: { start?: boolean } = {}): Promise<Interop> {
  const sink = await startRecorder();
  const dir = await tempDir('ql-interop-');
  await fsp.chmod(dir, 0o755);
  const extra = typeof over === 'function' ? over(dir, sink) : over;
  const config = await writeConfig(dir, merge({
    smartHost: [`[127.0.0.1]:${sink.port}`],
    deliveryMode: 'background',
    link: { mode: 'permanent' },
    queue: { minQueueAge: '0s' },
  }, extra));
  await fsp.chmod(config, 0o644);
  await fsp.mkdir(path.join(dir, 'spool', 'maildrop'), { recursive: true });
  await fsp.chmod(path.join(dir, 'spool'), 0o711);
  await fsp.chmod(path.join(dir, 'spool', 'maildrop'), 0o1733);
  const g: Interop = {
    dir,
    config,
    sink,
    daemon: null,
    async start() {
      g.daemon = await startDaemon(config);
      return g.daemon;
    },
    async close() {
      try {
        await g.daemon?.stop();
      } finally {
        await sink.close();
        await fsp.rm(dir, { recursive: true, force: true });
      }
    },
  };
  if (opts.start !== false) {
    try {
      await g.start();
    } catch (err) {
      await g.close();
      throw err;
    }
  }
  return g;
}

/** The daemon's "queued" log lines for local submissions (sendmail, -bs): uid, relay `user@localhost`, to. */
export const localQueued = (d: Daemon) => d.logs.filter((l) => l.msg === 'queued' && l.proto === 'local');

// ---------------------------------------------------------------------------
// local users

export interface LocalUser {
  name: string;
  uid: number;
  gid: number;
  /** A home folder owned by the user (removed with it). */
  home: string;
  /** Runs a program as this user: its uid and gid, its groups (none but its own), HOME, USER, LOGNAME. */
  run(command: string, args: string[], opts?: { input?: string | Buffer; env?: NodeJS.ProcessEnv; ms?: number }): Promise<CliResult>;
}

/** A real user (useradd) for the body's length, then userdel and its home removed. */
export async function withLocalUser<T>(body: (u: LocalUser) => Promise<T>): Promise<T> {
  const name = `qli${crypto.randomBytes(3).toString('hex')}`;
  const made = await runProcess('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', name]);
  if (made.code !== 0) throw new Error(`useradd ${name}: ${made.stderr}`);
  const home = await tempDir('ql-home-');
  try {
    const uid = Number((await runProcess('id', ['-u', name])).stdout.trim());
    const gid = Number((await runProcess('id', ['-g', name])).stdout.trim());
    const groups = (await runProcess('id', ['-G', name])).stdout.trim();
    if (groups !== String(gid)) throw new Error(`${name} is in other groups than its own: ${groups}`);
    await fsp.chown(home, uid, gid);
    const user: LocalUser = {
      name, uid, gid, home,
      run(command, args, opts = {}) {
        return runProcess('setpriv', ['--reuid', name, '--regid', name, '--init-groups', '--', command, ...args], {
          ...opts,
          env: { HOME: home, USER: name, LOGNAME: name, ...opts.env },
        });
      },
    };
    return await body(user);
  } finally {
    await runProcess('userdel', [name]);
    await fsp.rm(home, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// the sendmail entry point

export interface Wrapper {
  /** The path of the script named `sendmail`. */
  path: string;
  /** Every argument vector it was called with, in order (arguments joined by one space). */
  calls(): Promise<string[]>;
}

/**
 * `DIR/bin/sendmail`: notes its arguments in a log any user may append to,
 * then execs quietlink's sendmail with the test's configuration.
 */
export async function sendmailWrapper(dir: string, config: string): Promise<Wrapper> {
  const bin = path.join(dir, 'bin');
  await fsp.mkdir(bin, { recursive: true });
  await fsp.chmod(bin, 0o755);
  const log = path.join(dir, 'sendmail-argv.log');
  await fsp.writeFile(log, '');
  await fsp.chmod(log, 0o666);
  const file = path.join(bin, 'sendmail');
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  await fsp.writeFile(file, `#!/bin/sh\nprintf '%s\\n' "$*" >> ${q(log)}\nexec ${q(process.execPath)} ${q(BIN)} sendmail -c ${q(config)} "$@"\n`);
  await fsp.chmod(file, 0o755);
  return {
    path: file,
    calls: async () => (await fsp.readFile(log, 'utf8')).split('\n').filter(Boolean),
  };
}

/** The argument vector of quietlink's sendmail run directly (`node BIN sendmail -c CONFIG ...`). */
export const sendmailArgs = (config: string, ...args: string[]) => [BIN, 'sendmail', '-c', config, ...args];
