/**
 * cli/sendmail-smtp.ts — `sendmail -bs`: an SMTP conversation on stdin and
 * stdout (as inetd-started MTAs and some mail programs use it). The local
 * user is trusted as a LAN client is: any recipient. Each accepted message
 * is prepared as `sendmail` prepares one (masquerade of unqualified
 * addresses, aliases for local recipients: intake/local-submission.ts) and
 * handed over (cli/submit.ts) before its 250, with the -od delivery mode.
 * Exit 0 after a normal session, 75 when a message could not be kept.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Config } from '../config/schema.js';
import type { ClassicMaps } from '../config/load.js';
import { DataError, EX, MailError, TempFailError, UsageError } from '../errors.js';
import { isValidMailbox } from '../intake/address.js';
import { prepareLocalSubmission, qualify } from '../intake/local-submission.js';
import { dropMessage } from './submit.js';
import { localNames, recipientExpander } from '../config/aliases.js';
import type { DeliveryWish } from './args.js';
import { installSmtpExtensions } from '../intake/smtp-extensions.js';

function reply(code: number, enhanced: string, text: string): Error {
  return Object.assign(new Error(`${enhanced} ${text}`), { responseCode: code });
}

export async function runSmtpOnStdio(config: Config, maps: ClassicMaps, deliveryMode?: DeliveryWish): Promise<number> {
  installSmtpExtensions();
  const { masquerade } = localNames(config);
  const expand = recipientExpander(config, maps.aliases);
  const pending = new Set<Promise<unknown>>();
  let sessionOver!: () => void;
  const over = new Promise<void>((resolve) => (sessionOver = resolve));
  let tempFailed = false;
  const server = new SMTPServer({
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
    onClose: () => sessionOver(),
    onMailFrom(address, _session, cb) {
      if (address.address !== '' && !isValidMailbox(qualify(address.address, masquerade))) return cb(reply(501, '5.1.7', 'Bad sender address syntax'));
      cb();
    },
    onRcptTo(address, _session, cb) {
      if (!isValidMailbox(qualify(address.address, masquerade))) return cb(reply(501, '5.1.3', 'Bad recipient address syntax'));
      cb();
    },
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (stream.sizeExceeded) return cb(reply(552, '5.3.4', `Message size exceeds fixed limit of ${config.smtp.maxMessageSize} bytes`));
        const env = session.envelope;
        const dsn = (env.dsn ?? {}) as { ret?: string | null; envid?: string | null };
        const writing = Promise.resolve().then(() => {
          const prepared = prepareLocalSubmission({
            raw: Buffer.concat(chunks), ignoreDots: true, extractRecipients: false, recipients: env.rcptTo.map((r) => r.address), masquerade, expandRecipient: expand,
          });
          return dropMessage(config, {
            sender: env.mailFrom && env.mailFrom.address !== '' ? qualify(env.mailFrom.address, masquerade) : '',
            recipients: prepared.recipients,
            raw: prepared.raw,
            ignoreDots: true,
            extract: false,
            // without BODY=, the 8-bit check of a local submission decides (as for sendmail -t)
            bodyType: env.bodyType === '8bitmime' ? '8BITMIME' : undefined,
            dsn: { ret: (dsn.ret ?? undefined) as 'FULL' | 'HDRS' | undefined, envid: dsn.envid ?? undefined },
          }, { pickup: deliveryMode ? { deliveryMode } : undefined });
        }).then((id) => {
          cb(null, `2.0.0 Ok: queued as ${id}`);
        }, (err) => {
          if (err instanceof TempFailError || err instanceof MailError) {
            tempFailed ||= err.isTemporary;
            return cb(reply(err.code, err.enhanced, err.message));
          }
          if (err instanceof DataError || err instanceof UsageError) return cb(reply(554, '5.6.0', err.message));
          tempFailed = true;
          cb(reply(451, '4.3.0', `Local error in processing: ${(err as Error).message}`));
        });
        pending.add(writing);
        void writing.finally(() => pending.delete(writing)).catch(() => undefined);
      });
    },
  });
  // stdin and stdout as the connection's socket
  // input waits for the greeting: a client that writes its whole session at once is no early talker here
  let greeted = false;
  let held: Array<Buffer | null> = [];
  const feed = (d: Buffer | null) => (greeted ? stdio.push(d) : held.push(d));
  const stdio = new Duplex({
    read() {},
    write(chunk, _enc, done) {
      process.stdout.write(chunk, done);
      if (!greeted) {
        greeted = true;
        setImmediate(() => {
          for (const d of held) stdio.push(d);
          held = [];
        });
      }
    },
  });
  // what smtp-server asks of a socket: its state, addresses and an idle timer (timeout.command)
  let idleMs = 0;
  let idle: NodeJS.Timeout | null = null;
  const touch = () => {
    if (idle) clearTimeout(idle);
    idle = idleMs > 0 ? setTimeout(() => stdio.emit('timeout'), idleMs) : null;
    idle?.unref();
  };
  Object.assign(stdio, {
    readyState: 'open', remoteAddress: '127.0.0.1', localAddress: '127.0.0.1',
    setTimeout(ms: number, cb?: () => void) {
      idleMs = ms;
      if (cb) stdio.once('timeout', cb);
      touch();
      return stdio;
    },
    setNoDelay: () => stdio,
    setKeepAlive: () => stdio,
  });
  // local programs often end lines with LF alone: that is no smuggling attempt here, make it CRLF
  let lastCR = false;
  process.stdin.on('data', (d: Buffer) => {
    touch();
    let text = d.toString('latin1');
    // a CR at the end of the last piece and an LF at the start of this one are one CRLF
    const head = lastCR && text.startsWith('\n') ? '\n' : '';
    if (head) text = text.slice(1);
    const fixed = head + text.replace(/\r?\n/g, '\r\n');
    lastCR = text.endsWith('\r');
    feed(Buffer.from(fixed, 'latin1'));
  });
  process.stdin.on('end', () => feed(null));
  const settle = async () => {
    // a message whose data was complete is written (and answered) before we go
    for (let i = 0; i < 2; i++) {
      await new Promise((r) => setImmediate(r));
      while (pending.size) await Promise.allSettled([...pending]);
    }
  };
  // the session ends with QUIT (the server closes), or when the input is used up (a client that just hangs up)
  stdio.once('end', () => void settle().then(() => stdio.destroy()));
  // smtp-server's own timers are unref'd: hold the process open until the session is over
  const alive = setInterval(() => undefined, 60_000);
  server.connect(stdio as unknown as Socket, { remoteAddress: '127.0.0.1', remotePort: 0, localAddress: '127.0.0.1', localPort: 0 } as never);
  await over;
  await settle();
  clearInterval(alive);
  if (idle) clearTimeout(idle);
  return tempFailed ? EX.TEMPFAIL : EX.OK;
}
