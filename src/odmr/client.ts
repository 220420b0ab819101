/**
 * odmr/client.ts — the ODMR client (RFC 2645, SPEC §7), the office side: the
 * ETRN step of a window when etrn.mode is odmr, and `quietlink etrn --odmr`.
 * Connects to etrn.relay (port 366 unless the relay names one), EHLO,
 * STARTTLS when offered, AUTH with the authinfo entry for the relay
 * (CRAM-MD5 when offered, else PLAIN or LOGIN; the entry's M: list
 * chooses), `ATRN dom,dom`; on 250 the connection is handed to intake
 * (SmtpIntake.serve: the same rules as the ISP relay's push) and this
 * resolves when the relay has QUIT or the connection is gone, with the
 * number of messages received.
 *
 * Credentials are never sent over a plaintext connection unless the
 * authinfo entry says `T:plain`. `timeout.etrn` bounds one relay's
 * exchange up to the ATRN reply; the reversed session is bounded by
 * intake's own timeouts. `etrn.relay` is a list tried in order; the next
 * relay is asked only when one gave no ATRN reply at all. The result has
 * the ETRN client's shape (one reply per domain, the same ATRN reply), so
 * windows, `status` and windows.log show it in the same place.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { AuthinfoEntry } from '../config/classic-files.js';
import type { EtrnResult } from '../etrn/etrn-client.js';
import { expandHosts, type Resolver, type Target } from '../delivery/resolver.js';
import { parseHosts } from '../routing/route.js';
import { LineReader, type Reply } from './lines.js';
import { cramMd5Digest } from './policy.js';
import type { Metrics } from '../observability/metrics.js';

export const ODMR_PORT = 366;

export interface OdmrClientDeps {
  hostname: string;
  /** timeout.etrn, ms. */
  timeoutMs: number;
  resolver: Resolver;
  authinfo: () => readonly AuthinfoEntry[];
  /** Serves the turned-round connection as an SMTP server; resolves with the messages accepted once it closes. */
  serve: (socket: Socket) => Promise<number>;
  log: Logger;
  metrics?: Metrics;
}

/** Pure: a relay's hosts, with port 366 for those that name none. */
export function odmrHosts(relay: string): ReturnType<typeof parseHosts> {
  const raw = relay.split(',').map((h) => h.trim());
  return parseHosts(relay).map((h, i) => (/(\]|^[^:[\]]+):\d+$/.test(raw[i]) ? h : { ...h, port: ODMR_PORT }));
}

/** Pure: the mechanism to use, from what the relay offers and what the entry allows. */
export function chooseMechanism(offered: readonly string[], entry: AuthinfoEntry): string | null {
  const wanted = entry.mechanisms.length ? entry.mechanisms : ['CRAM-MD5', 'PLAIN', 'LOGIN'];
  return wanted.find((m) => offered.includes(m)) ?? null;
}

function authFor(entries: readonly AuthinfoEntry[], t: Target): AuthinfoEntry | undefined {
  return entries.find((e) => e.host === t.name.toLowerCase()) ?? entries.find((e) => e.host === t.ip) ?? entries.find((e) => e.host === '');
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

class Dialogue {
  reader: LineReader;
  constructor(public sock: Socket) {
    this.reader = new LineReader(sock);
  }
  async cmd(line: string): Promise<Reply> {
    this.sock.write(`${line}\r\n`);
    return this.reader.reply();
  }
  async ehlo(hostname: string): Promise<string[]> {
    const r = await this.cmd(`EHLO ${hostname}`);
    if (r.code !== 250) throw new Error(`EHLO refused: ${r.code} ${r.text}`);
    return r.lines.slice(1).map((l) => l.slice(4).trim().toUpperCase());
  }
  async startTls(servername: string): Promise<void> {
    const r = await this.cmd('STARTTLS');
    if (r.code !== 220) throw new Error(`STARTTLS refused: ${r.code} ${r.text}`);
    this.reader.detach();
    const secure = tls.connect({ socket: this.sock, servername: net.isIP(servername) ? undefined : servername, rejectUnauthorized: false });
    await new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    this.sock = secure;
    this.reader = new LineReader(secure);
  }
  async auth(mech: string, a: AuthinfoEntry): Promise<Reply> {
    const user = a.user ?? a.authzid ?? '';
    const pass = a.password ?? '';
    if (mech === 'PLAIN') return this.cmd(`AUTH PLAIN ${b64(`${a.authzid ?? ''}\0${user}\0${pass}`)}`);
    if (mech === 'LOGIN') {
      await this.cmd('AUTH LOGIN');
      await this.cmd(b64(user));
      return this.cmd(b64(pass));
    }
    const challenge = await this.cmd('AUTH CRAM-MD5');
    if (challenge.code !== 334) return challenge;
    const text = Buffer.from(challenge.text, 'base64').toString('utf8');
    return this.cmd(b64(`${user} ${cramMd5Digest(pass, text)}`));
  }
}

/** Up to the ATRN reply; the dialogue (for the turnaround) when it was 250. */
async function atrnExchange(d: Dialogue, t: Target, domains: readonly string[], deps: OdmrClientDeps, result: EtrnResult): Promise<boolean> {
  const greeting = await d.reader.reply();
  if (greeting.code !== 220) throw new Error(`greeting: ${greeting.code} ${greeting.text}`);
  let ext = await d.ehlo(deps.hostname);
  const a = authFor(deps.authinfo(), t);
  if (ext.includes('STARTTLS')) {
    await d.startTls(t.name);
    ext = await d.ehlo(deps.hostname);
  } else if (!a?.allowPlaintext) throw new Error('the relay offers no STARTTLS: credentials withheld');
  result.offersEtrn = ext.includes('ATRN');
  if (!a) throw new Error(`no authinfo entry for ${t.name}`);
  const offered = ext.find((e) => e.startsWith('AUTH '))?.split(/\s+/).slice(1) ?? [];
  const mech = chooseMechanism(offered, a);
  if (!mech) throw new Error(`no AUTH mechanism in common (offered: ${offered.join(' ') || 'none'})`);
  const auth = await d.auth(mech, a);
  if (auth.code !== 235) throw new Error(`AUTH ${mech} refused: ${auth.code} ${auth.text}`);
  const r = await d.cmd(`ATRN ${domains.join(',')}`);
  result.replies = domains.map((domain) => ({ domain, code: r.code, text: `${r.code} ${r.text}` }));
  if (r.code === 250) return true;
  await d.cmd('QUIT').catch(() => undefined);
  return false;
}

/** One ODMR session with one address of the relay. */
async function pullFrom(t: Target, domains: readonly string[], deps: OdmrClientDeps, timeoutMs: number): Promise<EtrnResult> {
  const result: EtrnResult = { relay: `${t.name} [${t.ip}]:${t.port}`, offersEtrn: false, replies: [], odmr: { received: 0 } };
  const d = new Dialogue(net.connect({ host: t.ip, port: t.port }));
  d.sock.on('error', () => undefined);
  let turned = false;
  let timer: NodeJS.Timeout | undefined;
  try {
    const exchange = atrnExchange(d, t, domains, deps, result);
    // a timeout leaves it to fail later, on the destroyed socket: nobody waits for that
    exchange.catch(() => undefined);
    turned = await Promise.race([exchange, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no complete ATRN exchange within timeout.etrn (${Math.round(deps.timeoutMs / 1000)}s)`)), timeoutMs);
    })]);
  } catch (err) {
    result.error = (err as Error).message;
  } finally {
    clearTimeout(timer);
  }
  if (!turned) {
    d.sock.destroy();
    return result;
  }
  // the roles turn: we are the SMTP server on this connection until the relay QUITs
  const leftover = d.reader.detach();
  if (leftover.length) d.sock.unshift(leftover);
  deps.log.info({ relay: result.relay, domains }, 'odmr: connection turned round, receiving');
  deps.metrics?.inc('quietlink_odmr_sessions_made_total');
  result.odmr = { received: await deps.serve(d.sock) };
  deps.metrics?.inc('quietlink_odmr_messages_received_total', undefined, result.odmr.received);
  deps.log.info({ relay: result.relay, domains, received: result.odmr.received }, 'odmr: session done');
  return result;
}

/**
 * ODMR with the first relay of `relays` (host lists as the mailertable
 * writes them) that answers ATRN; the result of the last one tried when
 * none does.
 */
export async function pullByOdmr(relays: readonly string[], domains: readonly string[], deps: OdmrClientDeps): Promise<EtrnResult> {
  let last: EtrnResult = { relay: relays.join(' '), offersEtrn: false, replies: [], error: 'no ODMR relay configured' };
  for (const relay of relays) {
    const deadline = Date.now() + deps.timeoutMs;
    let targets: Target[];
    try {
      targets = await expandHosts(odmrHosts(relay), deps.resolver);
    } catch (err) {
      last = { relay, offersEtrn: false, replies: [], error: (err as Error).message };
      continue;
    }
    for (const t of targets) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      last = await pullFrom(t, domains, deps, left);
      if (last.replies.length) return last;
    }
  }
  return last;
}
