/**
 * cli/sendmail-smtp.ts — `sendmail -bs`: an SMTP conversation on stdin and
 * stdout (as inetd-started MTAs and some mail programs use it). The local
 * user is trusted as a LAN client is: any recipient. Each accepted message
 * is prepared as `sendmail` prepares one (masquerade of unqualified
 * addresses, aliases for local recipients: intake/local-submission.ts) and
 * handed over (cli/submit.ts) before its 250, with the -od delivery mode.
 * stdin and stdout stand in for the socket (cli/stdio-socket.ts).
 * Exit 0 after a normal session, 75 when a message could not be kept.
 */
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Config } from '../config/schema.js';
import type { ClassicMaps } from '../config/load.js';
import { DataError, EX, MailError, TempFailError, UsageError } from '../errors.js';
import { isValidMailbox } from '../intake/address.js';
import { prepareLocalSubmission, qualify } from '../intake/local-submission.js';
import { dropMessage, type Drop } from './submit.js';
import { localNames, recipientExpander } from '../config/aliases.js';
import type { DeliveryWish } from './args.js';
import { installSmtpExtensions } from '../intake/smtp-extensions.js';
import { stdioSocket } from './stdio-socket.js';

function reply(code: number, enhanced: string, text: string): Error {
  return Object.assign(new Error(`${enhanced} ${text}`), { responseCode: code });
}

/** The reply for a message that could not be kept, and whether it makes the exit 75. */
export function replyForFailure(err: unknown): { reply: Error; isTemporary: boolean } {
  if (err instanceof TempFailError || err instanceof MailError) return { reply: reply(err.code, err.enhanced, err.message), isTemporary: err.isTemporary };
  if (err instanceof DataError || err instanceof UsageError) return { reply: reply(554, '5.6.0', err.message), isTemporary: false };
  return { reply: reply(451, '4.3.0', `Local error in processing: ${(err as Error).message}`), isTemporary: true };
}

/** One session's envelope and data as `sendmail` would drop them (masquerade, aliases). */
export function dropFor(env: SMTPServerSession['envelope'], raw: Buffer, masquerade: string, expand: (address: string) => string[] | null): Drop {
  const dsn = (env.dsn ?? {}) as { ret?: string | null; envid?: string | null };
  const prepared = prepareLocalSubmission({
    raw, ignoreDots: true, extractRecipients: false, recipients: env.rcptTo.map((r) => r.address), masquerade, expandRecipient: expand,
  });
  return {
    sender: env.mailFrom && env.mailFrom.address !== '' ? qualify(env.mailFrom.address, masquerade) : '',
    recipients: prepared.recipients,
    raw: prepared.raw,
    ignoreDots: true,
    extract: false,
    // without BODY=, the 8-bit check of a local submission decides (as for sendmail -t)
    bodyType: env.bodyType === '8bitmime' ? '8BITMIME' : undefined,
    dsn: { ret: (dsn.ret ?? undefined) as 'FULL' | 'HDRS' | undefined, envid: dsn.envid ?? undefined },
  };
}

/** What the session's handlers share: the config, the names, the writes under way, the exit status. */
interface StdioSession {
  config: Config;
  masquerade: string;
  expand: (address: string) => string[] | null;
  deliveryMode?: DeliveryWish;
  pending: Set<Promise<unknown>>;
  tempFailed: boolean;
}

/** DATA: the message is written (dropMessage) before its 250. */
function onData(s: StdioSession) {
  return (stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      if (stream.sizeExceeded) return cb(reply(552, '5.3.4', `Message size exceeds fixed limit of ${s.config.smtp.maxMessageSize} bytes`));
      const env = session.envelope;
      const writing = Promise.resolve()
        .then(() => dropMessage(s.config, dropFor(env, Buffer.concat(chunks), s.masquerade, s.expand), { pickup: s.deliveryMode ? { deliveryMode: s.deliveryMode } : undefined }))
        .then((id) => {
          cb(null, `2.0.0 Ok: queued as ${id}`);
        }, (err) => {
          const failed = replyForFailure(err);
          s.tempFailed ||= failed.isTemporary;
          cb(failed.reply);
        });
      s.pending.add(writing);
      void writing.finally(() => s.pending.delete(writing)).catch(() => undefined);
    });
  };
}

function smtpServer(s: StdioSession, onClose: () => void): SMTPServer {
  const { config, masquerade } = s;
  return new SMTPServer({
    name: config.hostname,
    banner: 'quietlink (sendmail -bs)',
    size: config.smtp.maxMessageSize,
    disabledCommands: ['STARTTLS', 'AUTH'],
    authOptional: true,
    hideDSN: false,
    hideENHANCEDSTATUSCODES: false,
    disableReverseLookup: true,
    logger: false,
    socketTimeout: config.timeout.command,
    onClose,
    onMailFrom(address, _session, cb) {
      if (address.address !== '' && !isValidMailbox(qualify(address.address, masquerade))) return cb(reply(501, '5.1.7', 'Bad sender address syntax'));
      cb();
    },
    onRcptTo(address, _session, cb) {
      if (!isValidMailbox(qualify(address.address, masquerade))) return cb(reply(501, '5.1.3', 'Bad recipient address syntax'));
      cb();
    },
    onData: onData(s),
  });
}

/** A message whose data was complete is written (and answered) before we go. */
async function settle(pending: Set<Promise<unknown>>): Promise<void> {
  for (let i = 0; i < 2; i++) {
    await new Promise((r) => setImmediate(r));
    while (pending.size) await Promise.allSettled([...pending]);
  }
}

export async function runSmtpOnStdio(config: Config, maps: ClassicMaps, deliveryMode?: DeliveryWish): Promise<number> {
  installSmtpExtensions();
  const { masquerade } = localNames(config);
  const s: StdioSession = { config, masquerade, expand: recipientExpander(config, maps.aliases), deliveryMode, pending: new Set(), tempFailed: false };
  let sessionOver!: () => void;
  const over = new Promise<void>((resolve) => (sessionOver = resolve));
  const server = smtpServer(s, () => sessionOver());
  const socket = stdioSocket(process.stdin, process.stdout);
  // the session ends with QUIT (the server closes), or when the input is used up (a client that just hangs up)
  socket.stream.once('end', () => void settle(s.pending).then(() => socket.stream.destroy()));
  // smtp-server's own timers are unref'd: hold the process open until the session is over
  const alive = setInterval(() => undefined, 60_000);
  server.connect(socket.stream as unknown as Socket, { remoteAddress: '127.0.0.1', remotePort: 0, localAddress: '127.0.0.1', localPort: 0 } as never);
  await over;
  await settle(s.pending);
  clearInterval(alive);
  socket.stopIdle();
  return s.tempFailed ? EX.TEMPFAIL : EX.OK;
}
