/**
 * odmr/server-session.ts — one customer connection on odmr.listen, the ISP
 * side of RFC 2645: the initial state (EHLO, STARTTLS, AUTH, ATRN, QUIT,
 * RSET, NOOP) and, after `250 OK now reversing the connection`, the hand-
 * over of the socket to the reverse delivery. Owns nothing but the
 * connection; what ATRN may take is decided by odmr/policy.ts.
 *
 * Replies it gives: 220 greeting / STARTTLS, 221, 235, 250, 334, 421 (too
 * many errors or failed AUTHs, idle timeout), 450 (a domain the user may
 * not take, or one being flushed now), 451 (the queue could not be read),
 * 453 (no mail), 454 (customers' file unreadable), 500, 501, 502 (mail
 * commands: this port only turns round), 503 (order), 504 (unknown AUTH
 * mechanism), 530 (ATRN before AUTH; AUTH before STARTTLS), 535.
 *
 * AUTH mechanisms: CRAM-MD5 (RFC 2195, what RFC 2645 and fetchmail use),
 * PLAIN and LOGIN; offered and taken only over TLS unless odmr.insecureAuth
 * (tests). Failed AUTHs are slowed and limited as on the SMTP listener
 * (intake/auth-guard.ts), and an unknown user costs the same as a wrong
 * secret.
 */
import crypto from 'node:crypto';
import tls from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { authFailureDelay, isAuthLocked } from '../intake/auth-guard.js';
import { LineReader } from './lines.js';
import { cramMd5Matches, decideAtrn, domainsOfUser, mayAuth, parseAtrn, takenBy, type OdmrUser } from './policy.js';
import { domainOf } from '../intake/address.js';

/** Errors in a session before it is cut (as SPEC §9 says for SMTP). */
const MAX_ERRORS = 20;

export interface SessionDeps {
  config: () => Config;
  /** The customers' file as it is now (read at every AUTH: a change needs no reload). */
  users: () => Promise<readonly OdmrUser[]>;
  classes: () => ReadonlyMap<string, ReadonlySet<string>>;
  tls: tls.SecureContext | null;
  log: Logger;
  isBusy: (domain: string) => boolean;
  /** Messages with a pending recipient for which `wanted` holds; null when the queue cannot be read. */
  pending: (wanted: (address: string) => boolean) => Promise<number | null>;
  /** Turns the connection round and delivers; resolves when the customer's session is over. */
  reverse: (r: { socket: Socket; leftover: Buffer; domains: string[]; allowed: ReadonlySet<string>; user: string; sid: string }) => Promise<void>;
}

interface State {
  sock: Socket;
  reader: LineReader;
  sid: string;
  client: string;
  ehlo: boolean;
  secure: boolean;
  user: OdmrUser | null;
  errors: number;
  authFailures: number;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string) => Buffer.from(s.trim(), 'base64').toString('utf8');

export class OdmrSession {
  private readonly s: State;

  constructor(private readonly deps: SessionDeps, sock: Socket) {
    const sid = crypto.randomBytes(6).toString('hex');
    this.s = { sock, reader: new LineReader(sock), sid, client: sock.remoteAddress ?? '', ehlo: false, secure: false, user: null, errors: 0, authFailures: 0 };
  }

  private send(code: number, text: string | string[]): void {
    const lines = Array.isArray(text) ? text : [text];
    const out = lines.map((l, i) => `${code}${i < lines.length - 1 ? '-' : ' '}${l}\r\n`).join('');
    if (this.s.sock.writable) this.s.sock.write(out);
    if (code >= 400) this.s.errors++;
  }

  private close(code: number, text: string): void {
    this.send(code, text);
    this.s.sock.end();
  }

  /** Runs the dialogue to its end (QUIT, a cut, or the end of the reversed session). */
  async run(): Promise<void> {
    const c = this.deps.config();
    const { sock } = this.s;
    sock.setTimeout(c.timeout.command, () => this.close(421, '4.4.2 Idle too long, closing connection'));
    this.deps.log.info({ sid: this.s.sid, client: this.s.client }, 'odmr: connect');
    this.send(220, `${c.hostname} ESMTP quietlink ODMR (RFC 2645)`);
    try {
      for (;;) {
        if (this.s.errors >= MAX_ERRORS) return this.close(421, '4.7.0 Too many errors, closing connection');
        const line = await this.s.reader.line();
        const m = /^([A-Za-z]+)(?: (.*))?$/.exec(line);
        const verb = m?.[1].toUpperCase() ?? '';
        const arg = m?.[2] ?? '';
        if (verb === 'QUIT') return this.close(221, '2.0.0 Bye');
        if (verb === 'ATRN') {
          if (await this.atrn(arg)) return;
        } else await this.command(verb, arg);
      }
    } catch (err) {
      if (/line too long/.test((err as Error).message)) this.close(500, '5.5.2 Line too long');
      this.deps.log.debug({ sid: this.s.sid, err }, 'odmr: connection ended');
    } finally {
      sock.setTimeout(0);
    }
  }

  private async command(verb: string, arg: string): Promise<void> {
    const c = this.deps.config();
    switch (verb) {
      case 'EHLO':
      case 'HELO': {
        if (!arg.trim()) return this.send(501, '5.5.4 Syntax: EHLO hostname');
        this.s.ehlo = true;
        if (verb === 'HELO') return this.send(250, c.hostname);
        const auth = mayAuth({ secure: this.s.secure, insecureAuth: c.odmr.insecureAuth });
        return this.send(250, [
          `${c.hostname} Hello ${arg.trim()}`, 'ENHANCEDSTATUSCODES',
          ...(this.deps.tls && !this.s.secure ? ['STARTTLS'] : []),
          ...(auth ? ['AUTH CRAM-MD5 PLAIN LOGIN'] : []), 'ATRN',
        ]);
      }
      case 'STARTTLS':
        if (!this.deps.tls || this.s.secure) return this.send(502, '5.5.1 STARTTLS not available');
        return this.startTls();
      case 'AUTH':
        return this.auth(arg);
      case 'NOOP':
      case 'RSET':
        return this.send(250, '2.0.0 OK');
      case 'MAIL': case 'RCPT': case 'DATA': case 'BDAT': case 'ETRN': case 'VRFY': case 'EXPN': case 'TURN':
        return this.send(502, '5.5.1 Command not implemented on the ODMR port: AUTH, then ATRN');
      default:
        return this.send(500, '5.5.2 Command unrecognized');
    }
  }

  private async startTls(): Promise<void> {
    this.send(220, '2.0.0 Ready to start TLS');
    // anything the client sent after STARTTLS and before the handshake is dropped (RFC 3207 §4.2, injection)
    this.s.reader.detach();
    const plain = this.s.sock;
    plain.on('error', () => undefined);
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: this.deps.tls! });
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('closed during the TLS handshake')));
    });
    secure.setTimeout(this.deps.config().timeout.command, () => this.close(421, '4.4.2 Idle too long, closing connection'));
    this.s.sock = secure;
    this.s.reader = new LineReader(secure);
    // RFC 3207 §4.2: forget what was said before
    this.s.ehlo = false;
    this.s.secure = true;
  }

  private async auth(arg: string): Promise<void> {
    const c = this.deps.config();
    if (!this.s.ehlo) return this.send(503, '5.5.1 EHLO first');
    if (this.s.user) return this.send(503, '5.5.1 Already authenticated');
    if (!mayAuth({ secure: this.s.secure, insecureAuth: c.odmr.insecureAuth })) return this.send(530, '5.7.0 Must issue a STARTTLS command first');
    if (isAuthLocked(this.s.authFailures)) return this.close(421, '4.7.0 Too many failed authentication attempts, closing connection');
    const [mech, initial] = arg.trim().split(/\s+/);
    let users: readonly OdmrUser[];
    try {
      users = await this.deps.users();
    } catch (err) {
      this.deps.log.error({ err, file: c.odmr.users }, 'odmr: cannot read the customers file');
      return this.send(454, '4.7.0 Temporary authentication failure');
    }
    const find = (name: string) => users.find((u) => u.user === name);
    let who: { name: string; ok: boolean } | null;
    switch ((mech ?? '').toUpperCase()) {
      case 'CRAM-MD5': {
        const challenge = `<${crypto.randomBytes(8).toString('hex')}.${Date.now()}@${c.hostname}>`;
        this.send(334, b64(challenge));
        const answer = await this.s.reader.line();
        if (answer.trim() === '*') return this.send(501, '5.7.0 Authentication cancelled');
        const [name, digest] = unb64(answer).split(' ');
        const u = find(name ?? '');
        // an unknown user costs one HMAC too
        who = { name: name ?? '', ok: cramMd5Matches(u?.secret ?? crypto.randomBytes(16).toString('hex'), challenge, digest ?? '') && Boolean(u) };
        break;
      }
      case 'PLAIN': {
        let token = initial;
        if (!token) {
          this.send(334, '');
          token = await this.s.reader.line();
        }
        if (token.trim() === '*') return this.send(501, '5.7.0 Authentication cancelled');
        const [, name, pass] = unb64(token).split('\0');
        who = { name: name ?? '', ok: secretMatches(find(name ?? '')?.secret, pass ?? '') };
        break;
      }
      case 'LOGIN': {
        this.send(334, b64('Username:'));
        const name = unb64(await this.s.reader.line());
        this.send(334, b64('Password:'));
        const pass = unb64(await this.s.reader.line());
        who = { name, ok: secretMatches(find(name)?.secret, pass) };
        break;
      }
      default:
        return this.send(504, '5.5.4 Unrecognized authentication type (CRAM-MD5, PLAIN, LOGIN)');
    }
    if (who.ok) {
      this.s.user = find(who.name)!;
      this.deps.log.info({ sid: this.s.sid, client: this.s.client, user: who.name, mechanism: mech.toUpperCase() }, 'odmr: authenticated');
      return this.send(235, '2.7.0 Authentication successful');
    }
    this.s.authFailures++;
    this.deps.log.warn({ sid: this.s.sid, client: this.s.client, user: who.name, failures: this.s.authFailures }, 'odmr: authentication failed');
    await new Promise((r) => setTimeout(r, authFailureDelay(this.s.authFailures)));
    this.send(535, '5.7.8 Authentication credentials invalid');
  }

  /** ATRN; true when the connection was turned round (the dialogue is over). */
  private async atrn(arg: string): Promise<boolean> {
    const parsed = parseAtrn(arg);
    if (!this.s.user) {
      this.send(530, '5.7.0 Authentication required');
      return false;
    }
    if ('error' in parsed) {
      this.send(501, parsed.error);
      return false;
    }
    const allowed = domainsOfUser(this.s.user, this.deps.classes());
    const facts = { authenticated: true, asked: parsed.domains, allowed, isBusy: this.deps.isBusy };
    let decision = decideAtrn({ ...facts, pending: 1 });
    if (decision.code === 250) {
      const taken = decision.domains;
      const pending = await this.deps.pending((address) => takenBy(domainOf(address), taken, allowed));
      if (pending === null) {
        this.send(451, '4.3.0 Unable to process ATRN request now');
        return false;
      }
      decision = decideAtrn({ ...facts, pending });
    }
    const log = { sid: this.s.sid, client: this.s.client, user: this.s.user.user, atrn: arg, reply: `${decision.code} ${decision.text}` };
    this.deps.log.info(log, 'odmr: atrn');
    this.send(decision.code, decision.text);
    if (decision.code !== 250) return false;
    this.s.sock.setTimeout(0);
    const leftover = this.s.reader.detach();
    await this.deps.reverse({ socket: this.s.sock, leftover, domains: decision.domains, allowed, user: this.s.user.user, sid: this.s.sid });
    return true;
  }
}

/** PLAIN / LOGIN: the secret as written in the customers' file, compared in constant time. */
function secretMatches(secret: string | undefined, given: string): boolean {
  const a = crypto.createHash('sha256').update(secret ?? crypto.randomBytes(16)).digest();
  const b = crypto.createHash('sha256').update(given).digest();
  return secret !== undefined && crypto.timingSafeEqual(a, b);
}
