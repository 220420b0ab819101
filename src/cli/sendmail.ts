/**
 * cli/sendmail.ts — `quietlink sendmail` and the `sendmail` / `newaliases`
 * entry points.
 *
 * A message is prepared here (intake/local-submission.ts: "." handling,
 * -t, masquerade of unqualified envelope and header addresses, aliases for
 * local recipients) and handed to cli/submit.ts, which writes it to
 * spool/maildrop/ and hands it to the daemon (no daemon: exit 0 all the
 * same; the daemon takes maildrop in when it starts).
 *
 * Flags are parsed the way sendmail's getopt does (`-ti`, `-oi`, `-fFROM`,
 * `-f FROM`); harmless ones PHP, cron and mdadm pass are accepted and
 * ignored. Anything that could inject a header or an option is refused (64).
 * `-odi` / `-odb` / `-odq` / `-odd` (or `-O DeliveryMode=i`...) choose the
 * delivery mode of this message, as sendmail's do: the daemon attempts it
 * at once and, for `-odi`, answers only when that attempt is over; `-odq`
 * only queues it. `-bi` (newaliases) checks the aliases file and has the
 * daemon reload; `-bv` prints where each address goes after aliasing.
 */
import type { Config } from '../config/schema.js';
import { EX, UsageError, DataError } from '../errors.js';
import { checkArgument, prepareLocalSubmission, qualify } from '../intake/local-submission.js';
import { isValidMailbox } from '../intake/address.js';
import { expandRecipient, localNames, localPartOf, recipientExpander } from '../config/aliases.js';
import { deliveryWish, type DeliveryWish } from './args.js';
import { controlRequest, DaemonNotRunningError } from '../control/client.js';
import { runMailq } from './mailq.js';
import { runFlush } from './flush.js';
import { printRoutes, runAddressTest } from './route.js';
import { currentUser, dropMessage } from './submit.js';
import type { ClassicMaps } from '../config/load.js';

/** Options that take a value (sendmail's getopt string); `q` takes an optional one. */
const WITH_VALUE = new Set(['A', 'B', 'b', 'C', 'd', 'e', 'F', 'f', 'h', 'L', 'N', 'O', 'o', 'p', 'Q', 'R', 'r', 'V', 'X']);
const FLAGS = new Set(['G', 'I', 'i', 'm', 'n', 's', 't', 'U', 'v']);

export interface SendmailOptions {
  extract: boolean;
  ignoreDots: boolean;
  from?: string;
  fullName?: string;
  mode: 'deliver' | 'list' | 'flush' | 'smtp' | 'test' | 'verify' | 'aliases';
  /** -od? / -O DeliveryMode=?: this message's delivery mode (default: the configuration's). */
  deliveryMode?: DeliveryWish;
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
      else if (/^d./.test(value)) o.deliveryMode = deliveryWish(value[1]);
      else if (!/^(d[ibqd]|e[mpqwe]|m|em|ep|eq|ew|ee|\w+=.*)$/.test(value) && !/^[A-Za-z]$/.test(value[0])) throw new UsageError(`sendmail: unknown option -o${value}`);
      return;
    case 'b':
      if (value === 'm') o.mode = 'deliver';
      else if (value === 'p') { o.mode = 'list'; o.listArgs = [...o.listArgs, ...after]; }
      else if (value === 's') o.mode = 'smtp';
      else if (value === 't') o.mode = 'test';
      else if (value === 'v') o.mode = 'verify';
      else if (value === 'i') o.mode = 'aliases';
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
    case 'O': {
      const m = /^DeliveryMode=(.)/i.exec(value);
      if (m) o.deliveryMode = deliveryWish(m[1]);
      return;
    }
    case 'A':
      // -Ac / -Am: which queue -bp lists (the maildrop, or the queue)
      if (value !== 'c' && value !== 'm') throw new UsageError('sendmail: -A takes c or m');
      o.listArgs.push(`-A${value}`);
      return;
    case 'C': case 'X':
      throw new UsageError(`sendmail: -${opt} is not supported by quietlink (use -c FILE for the configuration)`);
    default:
      // -d, -e, -h, -L, -p, -Q: accepted and ignored, as harmless here
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


/** `sendmail -bi` / `newaliases`: check the aliases file (main has read it with the other classic files) and have the daemon reload. */
export async function runNewaliases(config: Config, argv: string[]): Promise<number> {
  if (argv.length) throw new UsageError(`newaliases: unexpected argument ${argv[0]}`);
  if (!config.aliases) {
    process.stdout.write('newaliases: no aliases file is configured (aliases:); nothing to do\n');
    return EX.OK;
  }
  try {
    await controlRequest(config.spool, 'reload', {});
    process.stdout.write(`${config.aliases}: OK; the daemon reloaded it\n`);
  } catch (err) {
    if (!(err instanceof DaemonNotRunningError)) throw err;
    process.stdout.write(`${config.aliases}: OK (no daemon running: checked only)\n`);
  }
  return EX.OK;
}

/** `sendmail -bv ADDR...`: what each address becomes through the aliases, then where each result goes (as `route`). */
async function verifyAddresses(config: Config, maps: ClassicMaps, addresses: readonly string[]): Promise<number> {
  if (!addresses.length) throw new UsageError('sendmail -bv: give one or more addresses');
  const names = localNames(config);
  const targets = new Map<string, string>();
  let anyLocal = false;
  for (const raw of addresses) {
    const a = raw.trim().replace(/^<(.*)>$/, '$1');
    const expanded = expandRecipient(a, maps.aliases, names);
    if (expanded) {
      anyLocal = true;
      const aliased = maps.aliases.has(localPartOf(a, names.hostname)!.toLowerCase());
      process.stdout.write(`${a}: ${aliased ? 'aliased to' : 'local name, qualified as'} ${expanded.join(', ')}\n`);
    }
    for (const t of expanded ?? [a]) if (!targets.has(t.toLowerCase())) targets.set(t.toLowerCase(), t);
  }
  if (anyLocal) process.stdout.write('\n');
  return printRoutes([...targets.values()], config, maps, false);
}

export async function runSendmail(config: Config, argv: string[], maps: ClassicMaps, configFile?: string): Promise<number> {
  const o = parseSendmailArgs(argv);
  if (o.mode === 'test') return runAddressTest(config, maps);
  if (o.mode === 'verify') return verifyAddresses(config, maps, o.recipients);
  if (o.mode === 'aliases') return runNewaliases(config, o.recipients);
  if (o.mode === 'list') return runMailq(config, o.listArgs);
  if (o.mode === 'smtp') return (await import('./sendmail-smtp.js')).runSmtpOnStdio(config, maps, o.deliveryMode);
  if (o.mode === 'flush') return runFlush(config, [...o.listArgs.filter((a) => a !== '-q'), ...(o.verbose ? ['-v'] : [])], maps, configFile);
  const { masquerade } = localNames(config);
  const user = currentUser();
  let sender = o.from === undefined ? `${user.name}@${masquerade}` : o.from.replace(/^<(.*)>$/, '$1');
  if (sender !== '') sender = qualify(sender, masquerade);
  if (sender !== '' && !isValidMailbox(sender)) throw new DataError(`Bad sender address syntax: ${sender}`);
  for (const r of o.recipients) checkArgument('recipient', r);
  const raw = await readStdin(config.smtp.maxMessageSize);
  // masquerade, -t and aliases here; submit.ts adds From/Date/Message-ID and hands it over
  const prepared = prepareLocalSubmission({
    raw, ignoreDots: o.ignoreDots, extractRecipients: o.extract, recipients: o.recipients, masquerade,
    expandRecipient: recipientExpander(config, maps.aliases),
  });
  await dropMessage(config, {
    sender, recipients: prepared.recipients, raw: prepared.raw, ignoreDots: true, extract: false, fullName: o.fullName,
    bodyType: o.bodyType, dsn: { ret: o.ret, envid: o.envid, notify: o.notify },
  }, { verbose: o.verbose, pickup: o.deliveryMode ? { deliveryMode: o.deliveryMode } : undefined });
  return EX.OK;
}
