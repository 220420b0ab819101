/**
 * test/helpers/security.ts — what the security suite (test/security/) shares:
 * the outside client address, the queue as `quietlink mailq --json` shows
 * it, a flush that waits, replies read until the server closes, and UTF-8
 * text as the latin1 string RawSmtp writes byte for byte, and a client
 * that can turn to TLS. Every wait is bounded.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { BIN, runCli, runProcess, type Daemon } from './daemon.js';
import { sendMail, type RawSmtp, type Reply } from './smtp-client.js';
import type { Sink } from './sink.js';

/** A client outside smtp.mynetworks and lanNetworks (both 127.0.0.1/32 in these tests). */
export const OUTSIDE = '127.0.0.2';
export const INSIDE = '127.0.0.1';

/** UTF-8 bytes of `s` as a latin1 string (RawSmtp.write sends strings as latin1). */
export function utf8(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

export interface QueuedMessage {
  id: string;
  state: string;
  sender: string;
  recipients: Array<{ address: string; state: string }>;
}

/** The queue as `quietlink mailq --json` lists it. */
export async function mailq(config: string): Promise<{ total: number; messages: QueuedMessage[] }> {
  const r = await runCli(['mailq', '-c', config, '--json']);
  assert.equal(r.code, 0, `mailq: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** `quietlink flush --wait`: a run over everything due, waited for. */
export async function flushWait(config: string): Promise<void> {
  const r = await runProcess(process.execPath, [BIN, 'flush', '-c', config, '--wait'], { ms: 60_000 });
  assert.equal(r.code, 0, `flush: ${r.stdout}${r.stderr}`);
}

/**
 * Every reply until the server closes the connection (at most `max`). A
 * reply that does not come within `ms` ends the list with `{ code: 0 }`:
 * a session left hanging is an outcome to report, not a test error.
 */
export async function repliesUntilClosed(c: RawSmtp, ms = 5_000, max = 50): Promise<Reply[]> {
  const out: Reply[] = [];
  for (let i = 0; i < max; i++) {
    try {
      out.push(await c.reply(ms));
    } catch {
      if (!c.closed) out.push({ code: 0, text: `no reply within ${ms} ms` });
      return out;
    }
  }
  return out;
}

/** Resolves after `ms`: only for a delay that is the test's input (bytes split in time), never to wait for a condition. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A line client whose session can turn to TLS (STARTTLS), bound to a local
 * address; RawSmtp stays plaintext. `pending` is what the server sent that
 * no reply() has taken yet.
 */
export class TlsSmtp {
  private buf = '';
  private wake: (() => void) | null = null;
  closed = false;

  protected constructor(protected sock: net.Socket | tls.TLSSocket) {
    this.listen();
  }

  /** A plain connection from `localAddress` to 127.0.0.1:port. */
  protected static async open(port: number, localAddress: string): Promise<net.Socket> {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    return sock;
  }

  private listen(): void {
    this.sock.on('data', (b: Buffer) => {
      this.buf += b.toString('latin1');
      this.wake?.();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    this.sock.on('error', () => undefined);
  }

  static async connect(port: number, localAddress: string): Promise<TlsSmtp> {
    return new TlsSmtp(await TlsSmtp.open(port, localAddress));
  }

  get pending(): string {
    return this.buf;
  }

  async reply(ms = 10_000): Promise<Reply> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*(\d{3})(?: [^\r\n]*)?\r\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return { code: Number(m[1]), text: m[0].trimEnd() };
      }
      if (this.closed) throw new Error(`connection closed; unparsed ${JSON.stringify(this.buf)}`);
      if (Date.now() >= deadline) throw new Error(`no SMTP reply within ${ms} ms; have ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.wake = () => {
          clearTimeout(t);
          this.wake = null;
          resolve();
        };
      });
    }
  }

  write(raw: string): void {
    this.sock.write(Buffer.from(raw, 'latin1'));
  }

  cmd(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Turns the connection to TLS (after the server's 220 to STARTTLS was read). */
  async handshake(): Promise<void> {
    this.sock.removeAllListeners('data');
    this.sock.removeAllListeners('close');
    const secure = tls.connect({ socket: this.sock as net.Socket, rejectUnauthorized: false });
    await new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    this.sock = secure;
    this.listen();
  }

  /** Waits (up to ms) for the server to close the connection. */
  async closedByServer(ms = 10_000): Promise<boolean> {
    if (!this.closed) await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => (clearTimeout(t), (this.wake = null), resolve());
    });
    return this.closed;
  }

  /** STARTTLS (its 220 checked) and the handshake. */
  async startTls(): Promise<void> {
    const r = await this.cmd('STARTTLS');
    if (r.code !== 220) throw new Error(`STARTTLS refused: ${r.text}`);
    await this.handshake();
  }

  close(): void {
    this.sock.destroy();
  }
}

/**
 * A message from the LAN (headers `hdrs`), waited for at the sink as message
 * `n`: everything refused before it was kept or not at all; then the queue
 * must be empty.
 */
export async function marker(d: Daemon, sink: Sink, config: string, n: number, hdrs: string): Promise<void> {
  const r = await sendMail(d.port, 'alice@office.example', ['bob@far.example'], `${hdrs}Subject: marker\r\n\r\nmarker\r\n`);
  assert.equal(r.code, 250, r.text);
  await sink.waitMessages(n);
  const qid = /queued as (\S+)/.exec(r.text)![1];
  await d.waitLog((l) => l.msg === 'delivered' && l.qid === qid, 'marker delivered');
  assert.equal(JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout).total, 0, 'nothing else in the queue');
}
