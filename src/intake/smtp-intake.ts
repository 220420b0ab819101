/**
 * intake/smtp-intake.ts — SMTP intake on every smtp.listen address
 * (smtp-server), with the policies of SPEC §9.
 *
 * Owns no state beyond its sessions: a message becomes the queue's when
 * Queue.commit() resolves, and only then is 250 sent. Never resolves a name
 * or opens a connection (reverse lookups are off; the log shows the IP).
 * Refusals carry their own reply code and enhanced code (errors.ts).
 *
 * Liberal where Postfix is (SPEC §9): 8-bit data without BODY=8BITMIME is
 * kept (the envelope says 8BITMIME) and sent on as is; a bare LF in data is
 * a line end, stored as CRLF (`smtp.bareNewline: reject` refuses it from
 * clients outside smtp.mynetworks); a bare CR is always refused. LAN clients
 * may leave out the angle brackets in MAIL/RCPT (smtp-extensions.ts), and
 * their mail gets a missing Date: / Message-ID: as it is stored
 * (missing-headers.ts). IntakeDeps.expandRecipient (aliases) rewrites a
 * recipient after the relay and limit checks have seen it as given.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession, type SMTPServerDataStream, type SMTPServerAddress } from 'smtp-server';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { NetworkList, parseHostPort } from '../config/cidr.js';
import { MailError, smtpReply } from '../errors.js';
import type { Queue } from '../queue/queue.js';
import type { Envelope } from '../queue/envelope.js';
import type { QueueId } from '../queue/queue-id.js';
import { BodyScanner, bareNewlineAction } from './body-scanner.js';
import { envelopeRecipients, type Rcpt } from './recipient-expansion.js';
import { addMissingHeaders, headerSection, type MessageFacts } from './missing-headers.js';
import { domainOf, isValidMailbox } from './address.js';
import { mayRelay, type RelayPolicy } from './relay-policy.js';
import { receivedHeader } from './received.js';
import { installSmtpExtensions, type EtrnHandler, type ExtensionOptions } from './smtp-extensions.js';
import { precedenceClass } from '../queue/priority.js';
import { insufficientStorage, isNoSpace } from './disk-policy.js';

export interface IntakeDeps {
  config: Config;
  /** localDomains plus the hold classes' domains. */
  openDomains: ReadonlySet<string>;
  queue: Queue;
  log: Logger;
  newId: () => QueueId;
  now: () => number;
  /** Called once a message is durable, before the 250; a returned promise is awaited (interactive mode). */
  onQueued?: (envelopes: Envelope[]) => Promise<void> | undefined;
  /** The ETRN server (RFC 1985) on the SMTP listener, when this gateway offers one. */
  onEtrn?: EtrnHandler;
  /** Refuses a new connection (the load: 421 4.3.2); null = accept. */
  admitConnection?: () => MailError | null;
  /** Refuses a message of `size` bytes (0 = not declared) at MAIL and DATA (the disk: 452 4.3.1); null = accept. */
  admitMessage?: (size: number) => MailError | null;
  /** An accepted session opened or closed (the link's linger watches sessions from outside). */
  onSession?: (event: 'open' | 'close', ip: string) => void;
  /**
   * Called at RCPT for every accepted recipient, after the relay and limit
   * checks (which see the address as given): null keeps it; a list is
   * recorded in its place (aliases). An empty list counts as null.
   */
  expandRecipient?: (address: string) => string[] | null;
}

/** The first block of a message as stored, and what was learnt from its header section. */
interface FirstBlock {
  block: Buffer;
  precedence?: string;
  /** The fields added (LAN clients only). */
  added: string[];
}

/** Reads Precedence from the first block and, for a LAN client (`facts`), adds a missing Date / Message-ID. */
function firstBlock(block: Buffer, facts: MessageFacts | null, isWhole: boolean): FirstBlock {
  const text = block.toString('latin1');
  const section = headerSection(text, isWhole);
  const head = section ? text.slice(0, section.end) : text;
  const precedence = /(?:^|\r\n)Precedence:[ \t]*([^\r\n]*)/i.exec(head)?.[1];
  if (!facts || !section) return { block, precedence, added: [] };
  return { ...addMissingHeaders(block, section, facts), precedence };
}

/** An SMTP error as smtp-server's callbacks take it. */
function replyError(err: unknown): Error & { responseCode: number } {
  const { code, text } = smtpReply(err);
  return Object.assign(new Error(text), { responseCode: code });
}

const BUFFER_LIMIT = 256 * 1024;

export class SmtpIntake {
  private readonly servers: SMTPServer[] = [];
  private readonly perClient = new Map<string, number>();
  private readonly policy: RelayPolicy;

  constructor(private readonly deps: IntakeDeps) {
    installSmtpExtensions();
    this.policy = { mynetworks: new NetworkList(deps.config.smtp.mynetworks), openDomains: deps.openDomains };
  }

  private options(): SMTPServerOptions {
    const { config } = this.deps;
    const s = config.smtp;
    const disabled: string[] = [];
    if (!s.tls) disabled.push('STARTTLS');
    if (!s.auth) disabled.push('AUTH');
    const extensions: ExtensionOptions = {
      ...(this.deps.onEtrn ? { onEtrn: this.deps.onEtrn } : {}),
      mayOmitAngleBrackets: (ip) => this.policy.mynetworks.has(ip),
    };
    const tls = s.tls ? { key: fs.readFileSync(s.tls.key), cert: fs.readFileSync(s.tls.cert), minVersion: 'TLSv1.2' as const } : {};
    return {
      ...tls,
      name: config.hostname,
      banner: 'quietlink',
      size: s.maxMessageSize,
      rejectOversized: true,
      maxClients: s.maxConnections,
      maxRecipients: s.maxRecipients,
      disableReverseLookup: true,
      disabledCommands: disabled,
      authOptional: true,
      allowInsecureAuth: false,
      authMethods: ['PLAIN', 'LOGIN'],
      hideDSN: false,
      hideENHANCEDSTATUSCODES: false,
      socketTimeout: config.timeout.command,
      closeTimeout: 10_000,
      logger: false,
      onConnect: (session, cb) => this.onConnect(session, cb),
      ...extensions,
      onClose: (session) => this.onClose(session),
      onAuth: s.auth ? (auth, session, cb) => this.onAuth(auth.username ?? '', auth.password ?? '', cb) : undefined,
      onMailFrom: (address, session, cb) => this.onMailFrom(address, session, cb),
      onRcptTo: (address, session, cb) => this.onRcptTo(address, session, cb),
      onData: (stream, session, cb) => {
        this.onData(stream, session).then((msg) => cb(null, msg), (err) => cb(replyError(err)));
      },
    };
  }

  private onConnect(session: SMTPServerSession, cb: (err?: Error) => void): void {
    const ip = session.remoteAddress;
    const limit = this.deps.config.smtp.maxConnectionsPerClient;
    const count = (this.perClient.get(ip) ?? 0) + 1;
    this.perClient.set(ip, count);
    (session as SMTPServerSession & { qlCounted?: boolean }).qlCounted = true;
    this.deps.log.info({ sid: session.id, client: ip }, 'connect');
    const refusal = this.deps.admitConnection?.() ?? (limit !== undefined && count > limit
      ? new MailError(421, '4.7.0', `Too many connections from ${ip}, try again later`)
      : null);
    if (refusal) {
      this.deps.log.warn({ sid: session.id, client: ip, reason: refusal.message }, 'connection refused');
      return cb(replyError(refusal));
    }
    (session as SMTPServerSession & { qlOpen?: boolean }).qlOpen = true;
    this.deps.onSession?.('open', ip);
    const pause = this.deps.config.smtp.greetPause;
    if (pause > 0) setTimeout(() => cb(), pause);
    else cb();
  }

  private onClose(session: SMTPServerSession): void {
    if (!(session as SMTPServerSession & { qlCounted?: boolean }).qlCounted) return;
    const ip = session.remoteAddress;
    if ((session as SMTPServerSession & { qlOpen?: boolean }).qlOpen) this.deps.onSession?.('close', ip);
    const n = (this.perClient.get(ip) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(ip);
    else this.perClient.set(ip, n);
  }

  private onAuth(username: string, password: string, cb: (err: Error | null | undefined, res?: { user: string }) => void): void {
    const file = this.deps.config.smtp.auth!.users;
    verifyUser(file, username, password).then(
      (ok) => (ok ? cb(null, { user: username }) : cb(replyError(new MailError(535, '5.7.8', 'Authentication credentials invalid')))),
      (err) => {
        this.deps.log.error({ err: (err as Error).message, file }, 'cannot read users file');
        cb(replyError(new MailError(454, '4.7.0', 'Temporary authentication failure')));
      },
    );
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error) => void): void {
    const a = address.address;
    if (a !== '' && !isValidMailbox(a, Boolean(session.envelope.smtpUtf8))) {
      return cb(replyError(new MailError(501, '5.1.7', 'Bad sender address syntax')));
    }
    const declared = Number((address.args as Record<string, string> | false | undefined || {}).SIZE ?? 0);
    const full = this.deps.admitMessage?.(Number.isFinite(declared) ? declared : 0);
    if (full) {
      this.deps.log.warn({ sid: session.id, client: session.remoteAddress, size: declared || undefined, reason: full.message }, 'message refused');
      return cb(replyError(full));
    }
    cb();
  }

  private onRcptTo(address: Rcpt, session: SMTPServerSession, cb: (err?: Error) => void): void {
    // RFC 5321 §4.5.1: "postmaster" without a domain must be accepted; it means ours
    if (/^postmaster$/i.test(address.address)) {
      address.address = `postmaster@${this.deps.config.hostname}`;
      return this.expand(address, session, cb);
    }
    const a = address.address;
    if (!isValidMailbox(a, Boolean(session.envelope.smtpUtf8))) {
      return cb(replyError(new MailError(501, '5.1.3', 'Bad recipient address syntax')));
    }
    const allowed = mayRelay(
      { clientIp: session.remoteAddress, authenticated: Boolean(session.user), recipientDomain: domainOf(a) },
      this.policy,
    );
    if (!allowed) {
      this.deps.log.info({ sid: session.id, client: session.remoteAddress, to: a }, 'relaying denied');
      return cb(replyError(new MailError(550, '5.7.1', 'Relaying denied')));
    }
    this.expand(address, session, cb);
  }

  /** expandRecipient() on an accepted recipient: what it returns is recorded at DATA in its place. */
  private expand(address: Rcpt, session: SMTPServerSession, cb: (err?: Error) => void): void {
    if (!this.deps.expandRecipient) return cb();
    let list: string[] | null;
    try {
      list = this.deps.expandRecipient(address.address);
      // the hook's addresses go into RCPT TO on the way out: never a line break or a malformed one
      const bad = list?.find((x) => !isValidMailbox(x, true));
      if (bad !== undefined) throw new Error(`expansion of ${address.address} gave a bad address: ${JSON.stringify(bad)}`);
    } catch (err) {
      this.deps.log.error({ sid: session.id, to: address.address, err: (err as Error).message }, 'cannot expand recipient');
      return cb(replyError(new MailError(451, '4.3.0', 'Local error in processing the recipient, try again later', { cause: err })));
    }
    if (list && list.length > 0) {
      address.qlExpandedTo = list;
      this.deps.log.info({ sid: session.id, to: address.address, expanded: list }, 'recipient expanded');
    }
    cb();
  }

  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const { queue, config, log, now } = this.deps;
    const id = this.deps.newId();
    const env = session.envelope;
    const rcpts = env.rcptTo;
    const isLan = this.policy.mynetworks.has(session.remoteAddress);
    const bareLf = bareNewlineAction(config.smtp.bareNewline, isLan);
    const scanner = new BodyScanner();
    const protocol = `ESMTP${session.secure ? 'S' : ''}${session.user ? 'A' : ''}` as const;
    const trace = Buffer.from(receivedHeader({
      hostname: config.hostname, id, now: now(), helo: session.hostNameAppearsAs, ip: session.remoteAddress,
      protocol: session.openingCommand === 'HELO' ? 'SMTP' : protocol,
      recipient: rcpts.length === 1 ? rcpts[0].address : undefined,
    }));
    const admission = this.deps.admitMessage?.(0);
    let writer: Awaited<ReturnType<Queue['begin']>> | null = null;
    let failure: unknown = admission ?? null;
    // the first block is held until it holds the header section (or is BUFFER_LIMIT long):
    // Precedence is read from it and missing Date / Message-ID are added to it
    let first: FirstBlock | null = null;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let written = 0;
    const flush = async (isWhole: boolean) => {
      let block = Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      if (!first) {
        first = firstBlock(block, isLan ? { id, hostname: config.hostname, now: now() } : null, isWhole);
        block = Buffer.concat([trace, first.block]);
      }
      await writer!.write(block);
      written += block.length;
    };
    try {
      if (!failure) writer = await queue.begin(id);
    } catch (err) {
      failure = err;
    }
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const stored = scanner.push(chunk);
      if (failure || scanner.hasBareCr || (scanner.hasBareLf && bareLf === 'reject') || stream.sizeExceeded) continue;
      pending.push(stored);
      pendingBytes += stored.length;
      if (pendingBytes >= BUFFER_LIMIT && writer) {
        try {
          await flush(false);
        } catch (err) {
          failure = err;
        }
      }
    }
    scanner.end();
    const refuse = async (err: unknown): Promise<never> => {
      await writer?.abort().catch(() => undefined);
      throw err;
    };
    if (stream.sizeExceeded) {
      await refuse(new MailError(552, '5.3.4', `Message size exceeds fixed limit of ${config.smtp.maxMessageSize} bytes`));
    }
    if (scanner.hasBareCr) {
      log.warn({ sid: session.id, client: session.remoteAddress }, 'refused message with bare CR (SMTP smuggling)');
      await refuse(new MailError(554, '5.6.0', 'Message contains bare <CR>; line endings must be <CRLF>'));
    }
    if (scanner.hasBareLf && bareLf === 'reject') {
      log.warn({ sid: session.id, client: session.remoteAddress }, 'refused message with bare LF (smtp.bareNewline: reject)');
      await refuse(new MailError(554, '5.6.0', 'Message contains bare <LF>; line endings must be <CRLF>'));
    }
    if (isNoSpace(failure)) {
      log.warn({ sid: session.id, err: (failure as Error).message }, 'spool file system full: message refused');
      failure = insufficientStorage(failure);
    }
    if (failure) {
      if (!(failure instanceof MailError)) log.error({ sid: session.id, err: (failure as Error).message }, 'cannot write message to the queue');
      await refuse(failure);
    }
    try {
      await flush(!first);
      const done = first as FirstBlock | null;
      const mailFrom = env.mailFrom || { address: '' };
      const recipients = envelopeRecipients(rcpts);
      // 8-bit data without BODY=8BITMIME is kept and sent on as is (sendmail's EightBitMode=pass8)
      const eightBit = env.bodyType === '8bitmime' || scanner.hasEightBit;
      const envelopes = await queue.commit(writer!, written, {
        sender: mailFrom.address,
        recipients,
        bodyType: eightBit ? '8BITMIME' : '7BIT',
        smtputf8: Boolean(env.smtpUtf8),
        dsn: { ret: (env.dsn?.ret ?? undefined) as 'FULL' | 'HDRS' | undefined, envid: env.dsn?.envid ?? undefined },
        client: { via: 'smtp', ip: session.remoteAddress, helo: session.hostNameAppearsAs, user: session.user as string | undefined },
        class: precedenceClass(done?.precedence),
      });
      log.info({
        qid: id, from: mailFrom.address, size: written, nrcpts: recipients.length,
        to: recipients.map((r) => r.address), relay: `${session.hostNameAppearsAs ?? ''} [${session.remoteAddress}]`,
        proto: protocol, parts: envelopes.length,
        ...(scanner.hasBareLf ? { bareLf: 'normalized' } : {}),
        ...(eightBit && env.bodyType !== '8bitmime' ? { body: '8-bit, undeclared' } : {}),
        ...(done?.added.length ? { added: done.added.map((l) => l.slice(0, l.indexOf(':'))) } : {}),
      }, 'queued');
      const delivering = this.deps.onQueued?.(envelopes);
      if (delivering) await delivering;
      return `2.0.0 Ok: queued as ${id}`;
    } catch (err) {
      log.error({ qid: id, err: (err as Error).message }, 'cannot commit message to the queue');
      await writer?.abort().catch(() => undefined);
      throw err instanceof MailError ? err : isNoSpace(err) ? insufficientStorage(err) : new MailError(451, '4.3.0', 'Local error in processing, try again later', { cause: err });
    }
  }

  /** Starts listening on every smtp.listen address; resolves with the bound addresses. */
  async start(): Promise<Array<{ host: string; port: number }>> {
    const bound: Array<{ host: string; port: number }> = [];
    for (const listen of this.deps.config.smtp.listen) {
      const { host, port } = parseHostPort(listen);
      const server = new SMTPServer(this.options());
      server.on('error', (err) => this.deps.log.error({ err: err.message, listen }, 'SMTP server error'));
      await new Promise<void>((resolve, reject) => {
        server.server.once('error', reject);
        server.listen(port, host, () => {
          server.server.off('error', reject);
          resolve();
        });
      });
      const addr = server.server.address();
      bound.push({ host, port: typeof addr === 'object' && addr ? addr.port : port });
      this.servers.push(server);
    }
    return bound;
  }

  /** Stops accepting; sessions in flight finish (up to closeTimeout). */
  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.servers.length = 0;
  }
}

/**
 * Checks a password against a users file: `user:scrypt$SALT$HASH` lines,
 * salt and hash in base64 (N=16384, r=8, p=1, 64-byte key).
 */
export async function verifyUser(file: string, user: string, password: string): Promise<boolean> {
  const text = await fs.promises.readFile(file, 'utf8');
  for (const line of text.split(/\r?\n/)) {
    const m = /^([^:#\s]+):scrypt\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(line.trim());
    if (!m || m[1] !== user) continue;
    const expected = Buffer.from(m[3], 'base64');
    const got = await new Promise<Buffer>((resolve, reject) =>
      crypto.scrypt(password, Buffer.from(m[2], 'base64'), expected.length, (err, key) => (err ? reject(err) : resolve(key))));
    return got.length === expected.length && crypto.timingSafeEqual(got, expected);
  }
  return false;
}
