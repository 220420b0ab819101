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
 *
 * CHUNKING (RFC 3030, bdat.ts): a message may come in BDAT chunks instead of
 * DATA; it takes the same onData path (message-intake.ts) with the same
 * limits and checks, and its last chunk gets the same 250 after the commit.
 * BINARYMIME is not offered: BODY=BINARYMIME gets 555 5.5.4. The line rules
 * are DATA's for BDAT too (smtp.bareNewline: a bare LF normalized or, from
 * outside under `reject`, refused; a bare CR refused): with BDAT the lines
 * are the client's to get right, and one policy for both verbs means no
 * client picks its verb to get a message through that DATA would refuse,
 * and the queue holds CRLF lines only, whichever way a message came.
 *
 * Under abuse (SPEC §9): connections are admitted by admitClient()
 * (session-limits.ts: per outside client, a reserve for the LAN); the
 * session clock, the data rate and the error limits run inside smtp-server
 * (smtp-guards.ts, told through the `guard` option); AUTH is limited and
 * slowed (auth-guard.ts); a message with a NUL byte (554 5.6.0) or more than
 * 30 Received: fields (554 5.4.6) is refused at the end of DATA and nothing
 * of it is kept. A client's FIN does not end our side (allowHalfOpen): the
 * replies it is owed still reach it. Repeated errors are logged 5 times a
 * kind and a session, the rest summed up when it closes.
 */
import fs from 'node:fs';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession, type SMTPServerAddress } from 'smtp-server';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { NetworkList, parseHostPort } from '../config/cidr.js';
import { MailError, smtpReply } from '../errors.js';
import type { QueueSubmit } from '../queue/roles.js';
import type { Envelope } from '../queue/envelope.js';
import type { QueueId } from '../queue/queue-id.js';
import type { Rcpt } from './recipient-expansion.js';
import { domainOf, isValidMailbox } from './address.js';
import { mayRelay, postmasterAddress, recipientAllowed, userUnknown, type ClassRecipients, type RelayPolicy } from './relay-policy.js';
import { installSmtpExtensions, type EtrnHandler, type ExtensionOptions } from './smtp-extensions.js';
import { guardStateOf, type GuardEvent, type GuardState } from './smtp-guards.js';
import { admitClient } from './session-limits.js';
import { ErrorTally } from './error-limits.js';
import { authFailureDelay, isAuthLocked, verifyUser } from './auth-guard.js';
import { receiveMessage } from './message-intake.js';

export interface IntakeDeps {
  config: Config;
  /** localDomains plus the hold classes' domains. */
  openDomains: ReadonlySet<string>;
  queue: QueueSubmit;
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
  /**
   * The hold classes' recipient lists as last loaded (classes.NAME.recipients):
   * a recipient in a listed class's domains that is not on its list gets
   * 550 5.1.1 at RCPT, from every client (relay-policy.ts recipientAllowed).
   */
  recipientLists?: () => readonly ClassRecipients[];
}

export { verifyUser } from './auth-guard.js';

/** What intake keeps on smtp-server's session object. */
type Session = SMTPServerSession & {
  /** Counted in the connection limits (decremented at close). */
  qlCounted?: boolean;
  qlTally?: ErrorTally;
  qlGuard?: GuardState;
};

/** An SMTP error as smtp-server's callbacks take it. */
function replyError(err: unknown): Error & { responseCode: number } {
  const { code, text } = smtpReply(err);
  return Object.assign(new Error(text), { responseCode: code });
}


export class SmtpIntake {
  private readonly servers: SMTPServer[] = [];
  /** Accepted sessions by client address, and all together (every listener). */
  private readonly perClient = new Map<string, number>();
  private open = 0;
  private readonly policy: RelayPolicy;
  /** lanNetworks + smtp.mynetworks: not limited per client, may use the reserve. */
  private readonly lan: NetworkList;

  constructor(private readonly deps: IntakeDeps) {
    installSmtpExtensions();
    this.policy = { mynetworks: new NetworkList(deps.config.smtp.mynetworks), openDomains: deps.openDomains };
    this.lan = new NetworkList([...deps.config.lanNetworks, ...deps.config.smtp.mynetworks]);
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
      chunking: true,
      guard: { sessionTimeout: config.timeout.session, minDataRate: s.minDataRate, onGuardEvent: (session, e) => this.onGuardEvent(session as Session, e) },
    };
    const tls = s.tls ? { key: fs.readFileSync(s.tls.key), cert: fs.readFileSync(s.tls.cert), minVersion: 'TLSv1.2' as const } : {};
    return {
      ...tls,
      name: config.hostname,
      banner: 'quietlink',
      size: s.maxMessageSize,
      rejectOversized: true,
      // connections are counted by onConnect (admitClient), across listeners
      maxRecipients: s.maxRecipients,
      disableReverseLookup: true,
      disabledCommands: disabled,
      authOptional: true,
      allowInsecureAuth: false,
      authMethods: ['PLAIN', 'LOGIN'],
      hideDSN: false,
      hideENHANCEDSTATUSCODES: false,
      // REQUIRETLS (RFC 8689) would bind us to TLS on every later hop, which nothing enforces
      hideREQUIRETLS: true,
      // the replies owed to a client that half-closes still go out (smtp-guards.ts closes after them)
      allowHalfOpen: true,
      socketTimeout: config.timeout.command,
      closeTimeout: 10_000,
      logger: false,
      onConnect: (session, cb) => this.onConnect(session, cb),
      ...extensions,
      onClose: (session) => this.onClose(session),
      onAuth: s.auth ? (auth, session, cb) => this.onAuth(auth.username ?? '', auth.password ?? '', session, cb) : undefined,
      onMailFrom: (address, session, cb) => this.onMailFrom(address, session, cb),
      onRcptTo: (address, session, cb) => this.onRcptTo(address, session, cb),
      onData: (stream, session, cb) => {
        // a message in BDAT chunks (bdat.ts) says how many it came in
        const chunks = () => (stream as { qlChunks?: number }).qlChunks;
        receiveMessage(stream, session, {
          ...this.deps,
          isLan: (ip) => this.policy.mynetworks.has(ip),
          logError: (kind, level, fields, msg) => this.logError(session, kind, level, fields, msg),
        }).then((msg) => {
          if (chunks()) this.deps.log.debug({ sid: session.id, chunks: chunks(), reply: msg }, 'message received by BDAT');
          cb(null, msg);
        }, (err) => cb(replyError(err)));
      },
    };
  }

  private onConnect(session: Session, cb: (err?: Error) => void): void {
    const ip = session.remoteAddress;
    const s = this.deps.config.smtp;
    this.deps.log.info({ sid: session.id, client: ip }, 'connect');
    const refusal = this.deps.admitConnection?.() ?? admitClient(
      { isLan: this.lan.has(ip), open: this.open, fromClient: this.perClient.get(ip) ?? 0 },
      { maxConnections: s.maxConnections, maxConnectionsPerClient: s.maxConnectionsPerClient, lanReserve: s.lanReserve },
      ip,
    );
    if (refusal) {
      this.deps.log.warn({ sid: session.id, client: ip, reason: refusal.message }, 'connection refused');
      return cb(replyError(refusal));
    }
    session.qlCounted = true;
    this.open++;
    this.perClient.set(ip, (this.perClient.get(ip) ?? 0) + 1);
    this.deps.onSession?.('open', ip);
    const pause = s.greetPause;
    if (pause > 0) setTimeout(() => cb(), pause);
    else cb();
  }

  private onClose(session: Session): void {
    const unlogged = session.qlTally?.unlogged();
    if (unlogged) this.deps.log.warn({ sid: session.id, client: session.remoteAddress, errors: session.qlGuard?.errors, unlogged }, 'session errors not logged one by one');
    if (!session.qlCounted) return;
    const ip = session.remoteAddress;
    this.deps.onSession?.('close', ip);
    this.open--;
    const n = (this.perClient.get(ip) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(ip);
    else this.perClient.set(ip, n);
  }

  /** Logs an error of `kind` for this session, LOGGED_PER_KIND times; the rest is summed up at close. */
  private logError(session: Session, kind: string, level: 'info' | 'warn', fields: Record<string, unknown>, msg: string): void {
    if ((session.qlTally ??= new ErrorTally()).record(kind)) this.deps.log[level]({ sid: session.id, client: session.remoteAddress, ...fields }, msg);
  }

  private onGuardEvent(session: Session, e: GuardEvent): void {
    const { kind, ...fields } = e;
    this.deps.log.warn({ sid: session.id, client: session.remoteAddress, ...fields }, `${kind}: session closed`);
  }

  private onAuth(username: string, password: string, session: Session, cb: (err: Error | null | undefined, res?: { user: string }) => void): void {
    const file = this.deps.config.smtp.auth!.users;
    const guard = guardStateOf(session);
    if (isAuthLocked(guard.authFailures)) {
      this.deps.log.warn({ sid: session.id, client: session.remoteAddress, failures: guard.authFailures }, 'too many failed AUTH attempts: session closed');
      return cb(replyError(new MailError(421, '4.7.0', 'Too many failed authentication attempts, closing connection')));
    }
    verifyUser(file, username, password).then(
      (ok) => {
        if (ok) return cb(null, { user: username });
        guard.authFailures++;
        this.logError(session, 'auth', 'warn', { failures: guard.authFailures }, 'authentication failed');
        setTimeout(() => cb(replyError(new MailError(535, '5.7.8', 'Authentication credentials invalid'))), authFailureDelay(guard.authFailures));
      },
      (err) => {
        this.deps.log.error({ err, file }, 'cannot read users file');
        cb(replyError(new MailError(454, '4.7.0', 'Temporary authentication failure')));
      },
    );
  }

  private onMailFrom(address: SMTPServerAddress, session: Session, cb: (err?: Error) => void): void {
    const a = address.address;
    if (a !== '' && !isValidMailbox(a, Boolean(session.envelope.smtpUtf8))) {
      return cb(replyError(new MailError(501, '5.1.7', 'Bad sender address syntax')));
    }
    const declared = Number((address.args as Record<string, string> | false | undefined || {}).SIZE ?? 0);
    const full = this.deps.admitMessage?.(Number.isFinite(declared) ? declared : 0);
    if (full) {
      this.logError(session, 'message refused', 'warn', { size: declared || undefined, reason: full.message }, 'message refused');
      return cb(replyError(full));
    }
    cb();
  }

  private onRcptTo(address: Rcpt, session: Session, cb: (err?: Error) => void): void {
    // RFC 5321 §4.5.1: "postmaster" without a domain must be accepted; from outside it is the
    // local domains' postmaster, which stays on the LAN (relay-policy.ts postmasterAddress)
    if (/^postmaster$/i.test(address.address)) {
      const fromOutside = !this.policy.mynetworks.has(session.remoteAddress) && !session.user;
      address.address = postmasterAddress(this.deps.config.smtp.localDomains, this.deps.config.hostname, fromOutside);
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
      this.logError(session, 'relaying denied', 'info', { to: a }, 'relaying denied');
      return cb(replyError(new MailError(550, '5.7.1', 'Relaying denied')));
    }
    const lists = this.deps.recipientLists?.();
    if (lists?.length && !recipientAllowed(a, lists)) {
      this.logError(session, 'user unknown', 'info', { to: a }, 'recipient not in its class\'s recipient list');
      return cb(replyError(userUnknown()));
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
      this.deps.log.error({ sid: session.id, to: address.address, err }, 'cannot expand recipient');
      return cb(replyError(new MailError(451, '4.3.0', 'Local error in processing the recipient, try again later', { cause: err })));
    }
    if (list && list.length > 0) {
      address.qlExpandedTo = list;
      this.deps.log.info({ sid: session.id, to: address.address, expanded: list }, 'recipient expanded');
    }
    cb();
  }

  /** Starts listening on every smtp.listen address; resolves with the bound addresses. */
  async start(): Promise<Array<{ host: string; port: number }>> {
    const bound: Array<{ host: string; port: number }> = [];
    for (const listen of this.deps.config.smtp.listen) {
      const { host, port } = parseHostPort(listen);
      const server = new SMTPServer(this.options());
      server.on('error', (err) => this.deps.log.error({ err, listen }, 'SMTP server error'));
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

  /**
   * One SMTP session on a connection that is already open (ODMR, odmr/client.ts:
   * the relay's connection turned round), under the same rules as any other
   * (the peer's address decides relaying: the ISP relay's push); no STARTTLS
   * (the connection is TLS already, or was allowed plaintext). Resolves with
   * the messages accepted once the connection has closed.
   */
  serve(socket: Socket): Promise<number> {
    const base = this.options();
    let accepted = 0;
    const server = new SMTPServer({
      ...base, hideSTARTTLS: true, secure: socket instanceof TLSSocket, secured: true,
      onData: (stream, session, cb) => base.onData!(stream, session, (err, msg) => {
        if (!err) accepted++;
        cb(err, msg);
      }),
    });
    server.on('error', (err) => this.deps.log.info({ err }, 'SMTP session on an ODMR connection failed'));
    return new Promise((resolve) => {
      socket.once('close', () => resolve(accepted));
      server.connect(socket, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort });
      socket.resume();
    });
  }

  /** Stops accepting; sessions in flight finish (up to closeTimeout). */
  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.servers.length = 0;
  }
}
