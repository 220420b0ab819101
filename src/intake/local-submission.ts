/**
 * intake/local-submission.ts — turns what a program pipes into `sendmail`
 * (or hands over with -bs) into a message fit for the queue (pure):
 *
 * - input ends at EOF, or at a line with a single "." unless -i/-oi;
 * - LF or CRLF line ends become CRLF; a bare CR is refused (DataError);
 * - with -t, recipients come from To/Cc/Bcc (plus any arguments, as Postfix
 *   does) and Bcc is removed;
 * - masquerade (SPEC §11): unqualified addresses — the envelope's and those
 *   in From/Sender/Reply-To/To/Cc/Bcc and their Resent- forms, e.g. cron's
 *   `From: root (Cron Daemon)` and `To: root` — get `@masquerade` (default
 *   hostname); display names, comments and groups are kept as written;
 * - local recipients go through the aliases (config/aliases.ts, passed in
 *   as `expandRecipient`), after -t has read them from the header;
 * - missing From, Date and Message-ID headers are added (Date and
 *   Message-ID as intake/missing-headers.ts writes them for SMTP).
 *
 * prepareLocalSubmission() does all but the added headers and can run
 * first on its own: run again on its output (with no aliases), it changes
 * nothing, so composeLocalSubmission() may follow it.
 */
import { DataError, UsageError } from '../errors.js';
import { isValidMailbox } from './address.js';
import { missingHeaderFields } from './missing-headers.js';

export interface PrepareInput {
  raw: Buffer;
  ignoreDots: boolean;
  extractRecipients: boolean;
  recipients: string[];
  /** The domain for unqualified addresses (config masquerade, default hostname). */
  masquerade: string;
  /** What a recipient becomes (aliases); null keeps it. */
  expandRecipient?: (address: string) => string[] | null;
}

export interface LocalSubmissionInput extends Omit<PrepareInput, 'masquerade'> {
  sender: string;
  fullName?: string;
  hostname: string;
  /** Default: hostname. */
  masquerade?: string;
  id: string;
  now: number;
}

export interface LocalSubmission {
  recipients: string[];
  body: Buffer;
  eightBit: boolean;
}

/** Splits an address-list header value into addresses (groups, comments, quotes, angle brackets). */
export function parseAddressList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let depth = 0;
  let quoted = false;
  let inAngle = false;
  const flush = () => {
    const part = cur.trim();
    cur = '';
    if (!part) return;
    const angle = /<([^<>]*)>\s*$/.exec(part);
    const addr = (angle ? angle[1].replace(/^@[^:]*:/, '') : part.replace(/\([^)]*\)/g, '')).trim();
    if (addr) out.push(addr);
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted) {
      if (c === '\\') { cur += c + (value[++i] ?? ''); continue; }
      if (c === '"') quoted = false;
      cur += c;
    } else if (c === '"') { quoted = true; cur += c; }
    else if (c === '(') { depth++; cur += c; }
    else if (c === ')') { depth = Math.max(0, depth - 1); cur += c; }
    else if (depth > 0) cur += c;
    else if (c === '<') { inAngle = true; cur += c; }
    else if (c === '>') { inAngle = false; cur += c; }
    else if (inAngle) cur += c;
    else if (c === ':' && !cur.includes('@')) cur = ''; // a group's display name
    else if (c === ',' || c === ';') flush();
    else cur += c;
  }
  flush();
  return out;
}

export function qualify(address: string, domain: string): string {
  return address.includes('@') ? address : `${address}@${domain}`;
}

export function checkArgument(what: string, value: string): void {
  if (/[\r\n\0]/.test(value)) throw new UsageError(`Refusing ${what} with a line break or NUL in it`);
}

const LOCAL_PART = /^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*|"(?:[^"\\\r\n]|\\.)*")$/;

/**
 * Calls `visit(i, c, quoted)` for every character of `text` outside comments
 * (quoted: inside a quoted string, its quotes included); false stops.
 */
function walkOutsideComments(text: string, visit: (i: number, c: string, quoted: boolean) => boolean | void): void {
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (depth > 0) {
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')') depth--;
      continue;
    }
    if (!quoted && c === '(') { depth++; continue; }
    const inQuotes = quoted || c === '"';
    if (quoted && c === '\\') {
      if (visit(i, c, true) === false) return;
      i++;
      if (i < text.length && visit(i, text[i], true) === false) return;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (visit(i, c, inQuotes) === false) return;
  }
}

/** One mailbox of a list, with `@domain` added to a bare local part; anything else as written. */
function qualifyMailbox(item: string, domain: string): string {
  let open = -1;
  let close = -1;
  walkOutsideComments(item, (i, c, quoted) => {
    if (quoted) return;
    if (c === '<' && open < 0) open = i;
    else if (c === '>' && open >= 0) { close = i; return false; }
  });
  if (open >= 0) {
    if (close < 0) return item;
    const inner = item.slice(open + 1, close).trim();
    return inner && !inner.includes('@') && LOCAL_PART.test(inner) ? `${item.slice(0, close).trimEnd()}@${domain}${item.slice(close)}` : item;
  }
  // an addr-spec, perhaps with comments: `root (Cron Daemon)`
  let bare = '';
  let last = -1;
  walkOutsideComments(item, (i, c) => {
    bare += c;
    if (!/\s/.test(c)) last = i;
  });
  const spec = bare.trim();
  if (!spec || spec.includes('@') || !LOCAL_PART.test(spec)) return item;
  return `${item.slice(0, last + 1)}@${domain}${item.slice(last + 1)}`;
}

/** An address-list header value with every bare local part qualified; groups, names and comments kept. */
export function qualifyAddressList(value: string, domain: string): string {
  let out = '';
  let start = 0;
  let inAngle = false;
  const take = (end: number, isGroupName: boolean) => {
    const item = value.slice(start, end);
    out += isGroupName ? item : qualifyMailbox(item, domain);
    start = end;
  };
  walkOutsideComments(value, (i, c, quoted) => {
    if (quoted) return;
    if (c === '<') inAngle = true;
    else if (c === '>') inAngle = false;
    else if (!inAngle && (c === ',' || c === ';' || (c === ':' && !value.slice(start, i).includes('@')))) {
      take(i, c === ':');
      out += c;
      start = i + 1;
    }
  });
  take(value.length, false);
  return out;
}

const ADDRESS_FIELDS = new Set(['from', 'sender', 'reply-to', 'to', 'cc', 'bcc', 'resent-from', 'resent-sender', 'resent-to', 'resent-cc', 'resent-bcc']);

interface Field { name: string; text: string }

/** Lines (LF or CRLF) → header fields and body lines, honouring "." unless ignoreDots. */
function splitMessage(raw: Buffer, ignoreDots: boolean): { fields: Field[]; bodyLines: string[] } {
  const lines = raw.toString('latin1').split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const kept: string[] = [];
  for (let line of lines) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (!ignoreDots && line === '.') break;
    if (line.includes('\r')) throw new DataError('Message contains a bare carriage return (CR); not accepted');
    kept.push(line);
  }
  let headerEnd = 0;
  while (headerEnd < kept.length && kept[headerEnd] !== ''
    && (/^[!-9;-~]+:/.test(kept[headerEnd]) || (headerEnd > 0 && /^[ \t]/.test(kept[headerEnd])))) headerEnd++;
  const bodyLines = kept.slice(headerEnd);
  if (bodyLines[0] !== '') bodyLines.unshift('');
  // unfold into fields: continuation lines stay in their field's text
  const fields: Field[] = [];
  for (const l of kept.slice(0, headerEnd)) {
    if (/^[ \t]/.test(l) && fields.length) fields[fields.length - 1].text += `\r\n${l}`;
    else fields.push({ name: l.slice(0, l.indexOf(':')).toLowerCase(), text: l });
  }
  return { fields, bodyLines };
}

const valueOf = (f: Field) => f.text.slice(f.text.indexOf(':') + 1).replace(/\r\n[ \t]/g, ' ');

function prepare(input: PrepareInput): { fields: Field[]; bodyLines: string[]; recipients: string[] } {
  const { fields, bodyLines } = splitMessage(input.raw, input.ignoreDots);
  // -t reads the header as written: a bare `To: root` is a local name, for the aliases
  const given = [...input.recipients];
  if (input.extractRecipients) {
    for (const f of fields) if (f.name === 'to' || f.name === 'cc' || f.name === 'bcc') given.push(...parseAddressList(valueOf(f)));
  }
  for (const f of fields) {
    if (!ADDRESS_FIELDS.has(f.name)) continue;
    const colon = f.text.indexOf(':') + 1;
    f.text = f.text.slice(0, colon) + qualifyAddressList(f.text.slice(colon), input.masquerade);
  }
  const unique = new Map<string, string>();
  for (const r of given) {
    for (const a of input.expandRecipient?.(r) ?? [r]) {
      const q = qualify(a, input.masquerade);
      if (!unique.has(q.toLowerCase())) unique.set(q.toLowerCase(), q);
    }
  }
  const recipients = [...unique.values()];
  if (recipients.length === 0) throw new UsageError(input.extractRecipients ? 'No recipient addresses found in header' : 'No recipients given (use -t or name them)');
  for (const r of recipients) {
    checkArgument('recipient', r);
    if (!isValidMailbox(r)) throw new DataError(`Bad recipient address syntax: ${r}`);
  }
  return { fields: fields.filter((f) => !(input.extractRecipients && f.name === 'bcc')), bodyLines, recipients };
}

/** The message with CRLF lines, "." handled, addresses qualified and -t applied; its recipients, expanded. */
export function prepareLocalSubmission(input: PrepareInput): { raw: Buffer; recipients: string[] } {
  const p = prepare(input);
  return { raw: Buffer.from(`${[...p.fields.map((f) => f.text), ...p.bodyLines].join('\r\n')}\r\n`, 'latin1'), recipients: p.recipients };
}

export function composeLocalSubmission(input: LocalSubmissionInput): LocalSubmission {
  const p = prepare({ ...input, masquerade: input.masquerade ?? input.hostname });
  const has = (n: string) => p.fields.some((f) => f.name === n);
  const added: string[] = [];
  if (!has('from')) {
    const name = input.fullName ? `${/^[\w .-]*$/.test(input.fullName) ? input.fullName : JSON.stringify(input.fullName)} ` : '';
    added.push(`From: ${name}<${input.sender}>`);
  }
  added.push(...missingHeaderFields(has, { id: input.id, hostname: input.hostname, now: input.now }));
  const out = [...p.fields.map((f) => f.text), ...added, ...p.bodyLines].join('\r\n') + '\r\n';
  return { recipients: p.recipients, body: Buffer.from(out, 'latin1'), eightBit: /[\x80-\xff]/.test(out) };
}
