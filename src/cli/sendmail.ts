/**
 * cli/sendmail.ts — `quietlink sendmail` and the `sendmail` entry point.
 *
 * The message is written durably to spool/maildrop/ first (so nothing is
 * lost whether or not the daemon runs), then the daemon is asked to pick it
 * up into the queue at once. No daemon: exit 0 all the same; the daemon
 * takes maildrop in when it starts.
 *
 * Flags are parsed the way sendmail's getopt does (`-ti`, `-oi`, `-fFROM`,
 * `-f FROM`); harmless ones PHP, cron and mdadm pass are accepted and
 * ignored. Anything that could inject a header or an option is refused (64).
 */
import type { Config } from '../config/schema.js';
import { EX, UsageError, DataError } from '../errors.js';
import { checkArgument, qualify } from '../intake/local-submission.js';
import { isValidMailbox } from '../intake/address.js';
import { runMailq } from './mailq.js';
import { runFlush } from './flush.js';
import { runAddressTest } from './route.js';
import { askPickup, currentUser, dropMessage } from './submit.js';
import type { ClassicMaps } from '../config/load.js';

/** Options that take a value (sendmail's getopt string); `q` takes an optional one. */
const WITH_VALUE = new Set(['A', 'B', 'b', 'C', 'd', 'e', 'F', 'f', 'h', 'L', 'N', 'O', 'o', 'p', 'Q', 'R', 'r', 'V', 'X']);
const FLAGS = new Set(['G', 'I', 'i', 'm', 'n', 's', 't', 'U', 'v']);

export interface SendmailOptions {
  extract: boolean;
  ignoreDots: boolean;
  from?: string;
  fullName?: string;
  mode: 'deliver' | 'list' | 'flush' | 'smtp' | 'test';
  verbose: boolean;
  notify?: string[];
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  bodyType?: '7BIT' | '8BITMIME';
  recipients: string[];
  /** Everything after -bp, for mailq. */
  listArgs: string[];
}

export function parseSendmailArgs(argv: readonly string[]): SendmailOptions {
  const o: SendmailOptions = { extract: false, ignoreDots: false, mode: 'deliver', verbose: false, recipients: [], listArgs: [] };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    for (let j = 1; j < a.length; j++) {
      const opt = a[j];
      if (opt === 'q') {
        o.mode = 'flush';
        o.listArgs.push(`-q${a.slice(j + 1)}`);
        break;
      }
      if (FLAGS.has(opt)) {
        if (opt === 't') o.extract = true;
        else if (opt === 'i') o.ignoreDots = true;
        else if (opt === 'v') o.verbose = true;
        continue;
      }
      if (!WITH_VALUE.has(opt)) throw new UsageError(`sendmail: unknown option -${opt}`);
      let value = a.slice(j + 1);
      if (value === '') {
        if (argv[i + 1] === undefined) throw new UsageError(`sendmail: -${opt} needs a value`);
        value = argv[++i];
      }
      checkArgument(`-${opt} value`, value);
      applyValueOption(o, opt, value, argv.slice(i + 1));
      if (o.mode === 'list') return o;
      break;
    }
  }
  for (; i < argv.length; i++) {
    const r = argv[i];
    if (r.startsWith('-')) throw new UsageError(`sendmail: refusing recipient "${r}" that starts with "-"`);
    checkArgument('recipient', r);
    o.recipients.push(...r.split(',').map((s) => s.trim()).filter(Boolean));
  }
  return o;
}

function applyValueOption(o: SendmailOptions, opt: string, value: string, after: string[]): void {
  switch (opt) {
    case 'f': case 'r': o.from = value; return;
    case 'F': o.fullName = value; return;
    case 'o':
      if (value === 'i') o.ignoreDots = true;
      else if (!/^(d[ibqd]|e[mpqwe]|m|em|ep|eq|ew|ee|\w+=.*)$/.test(value) && !/^[A-Za-z]$/.test(value[0])) throw new UsageError(`sendmail: unknown option -o${value}`);
      return;
    case 'b':
      if (value === 'm') o.mode = 'deliver';
      else if (value === 'p') { o.mode = 'list'; o.listArgs = after; }
      else if (value === 's') o.mode = 'smtp';
      else if (value === 't') o.mode = 'test';
      else throw new UsageError(`sendmail: -b${value} is not supported`);
      return;
    case 'N': {
      const n = value.toUpperCase().split(',').map((s) => s.trim());
      if (!n.every((x) => ['NEVER', 'SUCCESS', 'FAILURE', 'DELAY'].includes(x))) throw new UsageError(`sendmail: bad -N value "${value}"`);
      o.notify = n;
      return;
    }
    case 'R': {
      const r = value.toUpperCase();
      if (r !== 'FULL' && r !== 'HDRS') throw new UsageError(`sendmail: -R takes full or hdrs`);
      o.ret = r;
      return;
    }
    case 'V': o.envid = value; return;
    case 'B': {
      const b = value.toUpperCase();
      if (b !== '7BIT' && b !== '8BITMIME') throw new UsageError('sendmail: -B takes 7BIT or 8BITMIME');
      o.bodyType = b;
      return;
    }
    case 'C': case 'X':
      throw new UsageError(`sendmail: -${opt} is not supported by quietlink (use -c FILE for the configuration)`);
    default:
      // -A, -d, -e, -h, -L, -O, -p, -Q: accepted and ignored, as harmless here
      return;
  }
}

async function readStdin(limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new DataError(`Message is larger than smtp.maxMessageSize (${limit} bytes)`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}


export async function runSendmail(config: Config, argv: string[], maps: ClassicMaps, configFile?: string): Promise<number> {
  const o = parseSendmailArgs(argv);
  if (o.mode === 'test') return runAddressTest(config, maps);
  if (o.mode === 'list') return runMailq(config, o.listArgs);
  if (o.mode === 'smtp') return (await import('./sendmail-smtp.js')).runSmtpOnStdio(config);
  if (o.mode === 'flush') return runFlush(config, [...o.listArgs.filter((a) => a !== '-q'), ...(o.verbose ? ['-v'] : [])], maps, configFile);
  const user = currentUser();
  let sender = o.from === undefined ? `${user.name}@${config.hostname}` : o.from.replace(/^<(.*)>$/, '$1');
  if (sender !== '') sender = qualify(sender, config.hostname);
  if (sender !== '' && !isValidMailbox(sender)) throw new DataError(`Bad sender address syntax: ${sender}`);
  for (const r of o.recipients) checkArgument('recipient', r);
  const raw = await readStdin(config.smtp.maxMessageSize);
  const id = await dropMessage(config, {
    sender, recipients: o.recipients, raw, ignoreDots: o.ignoreDots, extract: o.extract, fullName: o.fullName,
    bodyType: o.bodyType, dsn: { ret: o.ret, envid: o.envid, notify: o.notify },
  });
  await askPickup(config, [id], o.verbose);
  return EX.OK;
}
