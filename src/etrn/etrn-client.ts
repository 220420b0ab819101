/**
 * etrn/etrn-client.ts — the ETRN client (RFC 1985, SPEC §7): connect to the
 * ISP relay, EHLO, `ETRN DOMAIN` (or `@DOMAIN`) for each domain, report each
 * reply, QUIT. A relay that does not offer ETRN is still asked (many answer
 * anyway) and the missing keyword is reported. Errors are reported, never
 * retried in a loop. A short plain-socket dialogue: nodemailer has no
 * public raw-command API.
 *
 * `timeout.etrn` bounds one relay's whole exchange (its lookups and every
 * address, connect to QUIT), not each reply: a relay that accepts and then
 * says nothing cannot hold a window, and its line, open. `etrn.relay` is a
 * list tried in order; the next relay is asked only when one gave no ETRN
 * reply at all (refused, silent, closed), so the worst case is
 * relays × timeout.etrn.
 */
import net from 'node:net';
import { parseHosts } from '../routing/route.js';
import { expandHosts, type Resolver } from '../delivery/resolver.js';

export interface EtrnReply {
  domain: string;
  code: number;
  text: string;
}

export interface EtrnResult {
  relay: string;
  offersEtrn: boolean;
  replies: EtrnReply[];
  error?: string;
  /** etrn.mode odmr (odmr/client.ts): the messages received on the turned-round connection. */
  odmr?: { received: number };
}

export async function sendEtrn(target: { ip: string; port: number; name: string }, domains: readonly string[], hostname: string, timeoutMs = 120_000, configured = timeoutMs): Promise<EtrnResult> {
  const relay = `${target.name} [${target.ip}]:${target.port}`;
  const sock = net.connect({ host: target.ip, port: target.port });
  // the whole exchange, not idle time: a relay that trickles or says nothing is cut at the deadline
  const deadline = setTimeout(() => {
    fail(new Error(`no complete ETRN exchange within timeout.etrn (${Math.round(configured / 1000)}s)`));
    sock.destroy();
  }, timeoutMs);
  let buf = '';
  const waiters: Array<(r: { code: number; text: string } | Error) => void> = [];
  const pump = () => {
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*(\d{3})(?: [^\n]*)?\r?\n/.exec(buf);
      if (!m || !waiters.length) return;
      buf = buf.slice(m[0].length);
      waiters.shift()!({ code: Number(m[1]), text: m[0].trim() });
    }
  };
  const fail = (err: Error) => {
    for (const w of waiters.splice(0)) w(err);
  };
  sock.on('data', (d) => {
    buf += d.toString('latin1');
    pump();
  });
  sock.on('error', fail);
  sock.on('close', () => fail(new Error('connection closed by the relay')));
  const reply = () => new Promise<{ code: number; text: string }>((resolve, reject) => {
    waiters.push((r) => (r instanceof Error ? reject(r) : resolve(r)));
    pump();
  });
  const cmd = (line: string) => {
    sock.write(`${line}\r\n`);
    return reply();
  };
  const result: EtrnResult = { relay, offersEtrn: false, replies: [] };
  try {
    const greeting = await reply();
    if (greeting.code !== 220) throw new Error(`greeting: ${greeting.text}`);
    const ehlo = await cmd(`EHLO ${hostname}`);
    if (ehlo.code !== 250) {
      const helo = await cmd(`HELO ${hostname}`);
      if (helo.code !== 250) throw new Error(`HELO refused: ${helo.text}`);
    }
    result.offersEtrn = /^250[ -]ETRN\b/im.test(ehlo.text);
    for (const domain of domains) {
      const r = await cmd(`ETRN ${domain}`);
      result.replies.push({ domain, code: r.code, text: r.text.replace(/\r?\n/g, ' ') });
    }
    sock.write('QUIT\r\n');
  } catch (err) {
    result.error = (err as Error).message;
  } finally {
    clearTimeout(deadline);
    sock.end();
    setTimeout(() => sock.destroy(), 1000).unref();
  }
  return result;
}

/**
 * ETRN to the first relay of `relays` (each a host list as the mailertable
 * writes it) that gives an ETRN reply; the result of the last one tried
 * when none does.
 */
export async function sendEtrnToRelays(relays: readonly string[], domains: readonly string[], hostname: string, timeoutMs: number, resolver: Resolver): Promise<EtrnResult> {
  let last: EtrnResult = { relay: relays.join(' '), offersEtrn: false, replies: [], error: 'no ETRN relay configured' };
  for (const relay of relays) {
    // timeout.etrn covers this relay's whole exchange: its lookups and every address it has
    const deadline = Date.now() + timeoutMs;
    const timedOut = (): EtrnResult => ({ relay, offersEtrn: false, replies: [], error: `no complete ETRN exchange within timeout.etrn (${Math.round(timeoutMs / 1000)}s)` });
    let targets: Array<{ ip: string; port: number; name: string }>;
    try {
      let timer: NodeJS.Timeout | undefined;
      targets = await Promise.race([
        expandHosts(parseHosts(relay), resolver).finally(() => clearTimeout(timer)),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(timedOut().error)), timeoutMs))),
      ]);
    } catch (err) {
      last = { relay, offersEtrn: false, replies: [], error: (err as Error).message };
      continue;
    }
    for (const target of targets) {
      const left = deadline - Date.now();
      if (left <= 0) {
        last = timedOut();
        break;
      }
      last = await sendEtrn(target, domains, hostname, left, timeoutMs);
      if (last.replies.length) return last;
    }
  }
  return last;
}
