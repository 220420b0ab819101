/**
 * config/classic-files.ts — sendmail's classic map files, parsed with their
 * own formats so that an administrator's existing files work unchanged:
 *
 *   mailertable   `key  mailer:host[,host...]`  (key: a.b.c, .b.c, .)
 *   class file    `F{CustDoms} -o`: one domain a line (several words allowed), `#` comments
 *   recipients    `user@cust1.dom` or `@cust1.dom` (every user), one a line, `#` comments
 *                 (Postfix's relay_recipient_maps as a plain list)
 *   authinfo      `AuthInfo:host "U:user" "I:authzid" "P:secret" "M:PLAIN LOGIN"`
 *
 * A class (and `smtp.localDomains`) matches as sendmail's classes do: an
 * entry `cust1.dom` is that domain only; `.cust1.dom` is cust1.dom and every
 * subdomain of it (matchesClass). Subdomains are never implied: an outsider
 * must not reach `x@nosuch.cust1.dom` or `user@gw.office.example` unless the
 * administrator wrote the dot.
 *
 * Parsers are pure (text in, entries and file:line problems out); readers add
 * the file I/O. A bad line is reported and skipped; the caller decides
 * whether problems stop the start (they do) or keep the old map (reloads do).
 */
import fs from 'node:fs/promises';
import type { ConfigProblem } from '../errors.js';
import { isHostname } from './cidr.js';
import { isValidMailbox } from '../intake/address.js';

export interface MailertableEntry {
  key: string;
  mailer: 'relay' | 'esmtp' | 'smtp' | 'qsmtp';
  hosts: string;
  line: number;
}

export interface AuthinfoEntry {
  host: string;
  user?: string;
  authzid?: string;
  password?: string;
  mechanisms: string[];
  /** Extension: `T:plain` allows AUTH over an unencrypted connection. */
  allowPlaintext: boolean;
  line: number;
}

export interface Parsed<T> {
  entries: T[];
  problems: ConfigProblem[];
}

function* meaningfulLines(text: string): Generator<[number, string]> {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/(^|\s)#.*$/, '').trim();
    if (line) yield [i + 1, line];
  }
}

const MAILERS = new Set(['relay', 'esmtp', 'smtp', 'qsmtp']);
const HOST_RE = /^(\[[^\]\s]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

export function parseMailertable(text: string, file: string): Parsed<MailertableEntry> {
  const entries: MailertableEntry[] = [];
  const problems: ConfigProblem[] = [];
  for (const [line, content] of meaningfulLines(text)) {
    const [key, value, ...rest] = content.split(/\s+/);
    const fail = (message: string) => problems.push({ file, line, message });
    if (value === undefined) { fail(`mailertable entry "${key}" has no mailer:host`); continue; }
    if (rest.length) { fail(`unexpected text after "${value}"`); continue; }
    const lowered = key.toLowerCase();
    if (lowered !== '.' && !isHostname(lowered.replace(/^\./, ''))) { fail(`invalid mailertable key "${key}"`); continue; }
    const colon = value.indexOf(':');
    const mailer = colon < 0 ? '' : value.slice(0, colon);
    const hosts = colon < 0 ? '' : value.slice(colon + 1);
    if (!MAILERS.has(mailer)) { fail(`unknown mailer "${mailer || value}" (use relay, esmtp, smtp or qsmtp)`); continue; }
    if (!hosts || !hosts.split(',').every((h) => HOST_RE.test(h))) { fail(`invalid host list "${hosts}"`); continue; }
    entries.push({ key: lowered, mailer: mailer as MailertableEntry['mailer'], hosts, line });
  }
  return { entries, problems };
}

export function parseClassFile(text: string, file: string): Parsed<string> {
  const entries: string[] = [];
  const problems: ConfigProblem[] = [];
  for (const [line, content] of meaningfulLines(text)) {
    for (const word of content.split(/\s+/)) {
      const d = word.toLowerCase().replace(/\.$/, '');
      if (isHostname(d.replace(/^\./, ''))) entries.push(d);
      else problems.push({ file, line, message: `invalid domain "${word}"` });
    }
  }
  return { entries, problems };
}

/** A class entry as matchesClass() wants it: lower case, no trailing dot (`.dom` keeps its leading dot). */
export function classEntry(entry: string): string {
  return entry.toLowerCase().replace(/\.$/, '');
}

/**
 * Whether `domain` is in a class whose entries went through classEntry():
 * `dom` matches dom only; `.dom` matches dom and any name ending in `.dom`.
 */
export function matchesClass(domain: string, entries: ReadonlySet<string>): boolean {
  const d = domain.toLowerCase().replace(/\.$/, '');
  if (!d) return false;
  if (entries.has(d) || entries.has(`.${d}`)) return true;
  for (let dot = d.indexOf('.'); dot >= 0; dot = d.indexOf('.', dot + 1)) {
    if (entries.has(d.slice(dot))) return true;
  }
  return false;
}

/**
 * A recipient list (`classes.NAME.recipients`): `user@domain` (compared in
 * lower case, as Postfix's table lookups are) or `@domain` for every user
 * of that domain. Entries come out lower case: `a@b.example`, `@b.example`.
 */
export function parseRecipientList(text: string, file: string): Parsed<string> {
  const entries: string[] = [];
  const problems: ConfigProblem[] = [];
  for (const [line, content] of meaningfulLines(text)) {
    for (const word of content.split(/\s+/)) {
      const entry = word.toLowerCase().replace(/\.$/, '');
      const ok = entry.startsWith('@') ? isHostname(entry.slice(1)) : isValidMailbox(entry, true);
      if (ok) entries.push(entry);
      else problems.push({ file, line, message: `invalid recipient "${word}" (use user@domain or @domain)` });
    }
  }
  return { entries, problems };
}

/** Splits `AuthInfo:host "U:a b" "P:x"` into the key and its quoted items. */
function authinfoTokens(content: string): { key: string; items: string[] } | null {
  const m = /^(\S+)\s*(.*)$/.exec(content);
  if (!m) return null;
  const items: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let t = re.exec(m[2]); t; t = re.exec(m[2])) items.push(t[1] !== undefined ? t[1].replace(/\\(.)/g, '$1') : t[2]);
  return { key: m[1], items };
}

export function parseAuthinfo(text: string, file: string): Parsed<AuthinfoEntry> {
  const entries: AuthinfoEntry[] = [];
  const problems: ConfigProblem[] = [];
  for (const [line, content] of meaningfulLines(text)) {
    const fail = (message: string) => problems.push({ file, line, message });
    const tokens = authinfoTokens(content);
    if (!tokens || !/^AuthInfo:/i.test(tokens.key)) { fail('authinfo lines start with AuthInfo:host'); continue; }
    const host = tokens.key.slice('AuthInfo:'.length).toLowerCase();
    const entry: AuthinfoEntry = { host, mechanisms: [], allowPlaintext: false, line };
    let ok = true;
    for (const item of tokens.items) {
      const m = /^([UIPMRT])([:=])(.*)$/s.exec(item);
      if (!m) { fail(`unknown authinfo item "${item.replace(/^(P[:=]).*/, '$1***')}"`); ok = false; break; }
      const [, tag, sep, value] = m;
      if (tag === 'U') entry.user = value;
      else if (tag === 'I') entry.authzid = value;
      else if (tag === 'P') entry.password = sep === '=' ? Buffer.from(value, 'base64').toString('utf8') : value;
      else if (tag === 'M') entry.mechanisms = value.toUpperCase().split(/\s+/).filter(Boolean);
      else if (tag === 'T') entry.allowPlaintext = /^plain(text)?$/i.test(value);
    }
    if (!ok) continue;
    if (!entry.user && !entry.authzid) { fail(`authinfo entry for "${host}" has no U: user`); continue; }
    if (entry.password === undefined) { fail(`authinfo entry for "${host}" has no P: secret`); continue; }
    entries.push(entry);
  }
  return { entries, problems };
}

/** Reads a file and parses it; a missing optional file is an empty map. */
export async function readClassic<T>(
  file: string,
  parse: (text: string, file: string) => Parsed<T>,
  optional = false,
): Promise<Parsed<T>> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && optional) return { entries: [], problems: [] };
    return { entries: [], problems: [{ file, line: 0, message: `cannot read file: ${code ?? (err as Error).message}` }] };
  }
  return parse(text, file);
}
