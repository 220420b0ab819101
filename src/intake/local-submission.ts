/**
 * intake/local-submission.ts — turns what a program pipes into `sendmail`
 * into a message fit for the queue (pure):
 *
 * - input ends at EOF, or at a line with a single "." unless -i/-oi;
 * - LF or CRLF line ends become CRLF; a bare CR is refused (DataError);
 * - with -t, recipients come from To/Cc/Bcc (plus any arguments, as Postfix
 *   does) and Bcc is removed;
 * - missing From, Date and Message-ID headers are added;
 * - bare user names (`root`, as cron writes MAILTO) get `@hostname`.
 */
import { DataError, UsageError } from '../errors.js';
import { isValidMailbox } from './address.js';
import { rfc5322Date } from './received.js';

export interface LocalSubmissionInput {
  raw: Buffer;
  ignoreDots: boolean;
  extractRecipients: boolean;
  recipients: string[];
  sender: string;
  fullName?: string;
  hostname: string;
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

export function qualify(address: string, hostname: string): string {
  return address.includes('@') ? address : `${address}@${hostname}`;
}

export function checkArgument(what: string, value: string): void {
  if (/[\r\n\0]/.test(value)) throw new UsageError(`Refusing ${what} with a line break or NUL in it`);
}

export function composeLocalSubmission(input: LocalSubmissionInput): LocalSubmission {
  const lines = input.raw.toString('latin1').split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const kept: string[] = [];
  for (let line of lines) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (!input.ignoreDots && line === '.') break;
    if (line.includes('\r')) throw new DataError('Message contains a bare carriage return (CR); not accepted');
    kept.push(line);
  }
  let headerEnd = 0;
  while (headerEnd < kept.length && kept[headerEnd] !== ''
    && (/^[!-9;-~]+:/.test(kept[headerEnd]) || (headerEnd > 0 && /^[ \t]/.test(kept[headerEnd])))) headerEnd++;
  const headerLines = kept.slice(0, headerEnd);
  const bodyLines = kept.slice(headerEnd);
  if (bodyLines[0] !== '') bodyLines.unshift('');

  // unfold into fields: [name, fullText]
  const fields: Array<{ name: string; text: string }> = [];
  for (const l of headerLines) {
    if (/^[ \t]/.test(l) && fields.length) fields[fields.length - 1].text += `\r\n${l}`;
    else fields.push({ name: l.slice(0, l.indexOf(':')).toLowerCase(), text: l });
  }
  const has = (n: string) => fields.some((f) => f.name === n);
  const valueOf = (f: { text: string }) => f.text.slice(f.text.indexOf(':') + 1).replace(/\r\n[ \t]/g, ' ');

  const recipients = input.recipients.map((r) => qualify(r, input.hostname));
  if (input.extractRecipients) {
    for (const f of fields) {
      if (f.name === 'to' || f.name === 'cc' || f.name === 'bcc') {
        for (const a of parseAddressList(valueOf(f))) recipients.push(qualify(a, input.hostname));
      }
    }
  }
  const kept2 = fields.filter((f) => !(input.extractRecipients && f.name === 'bcc'));
  const unique = [...new Set(recipients)];
  if (unique.length === 0) throw new UsageError(input.extractRecipients ? 'No recipient addresses found in header' : 'No recipients given (use -t or name them)');
  for (const r of unique) {
    checkArgument('recipient', r);
    if (!isValidMailbox(r)) throw new DataError(`Bad recipient address syntax: ${r}`);
  }
  const added: string[] = [];
  if (!has('from')) {
    const name = input.fullName ? `${/^[\w .-]*$/.test(input.fullName) ? input.fullName : JSON.stringify(input.fullName)} ` : '';
    added.push(`From: ${name}<${input.sender}>`);
  }
  if (!has('date')) added.push(`Date: ${rfc5322Date(input.now)}`);
  if (!has('message-id')) added.push(`Message-ID: <${input.id}@${input.hostname}>`);
  const out = [...kept2.map((f) => f.text), ...added, ...bodyLines].join('\r\n') + '\r\n';
  const body = Buffer.from(out, 'latin1');
  return { recipients: unique, body, eightBit: /[\x80-\xff]/.test(out) };
}
