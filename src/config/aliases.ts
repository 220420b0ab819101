/**
 * config/aliases.ts — the aliases file (`aliases:`), in the /etc/aliases
 * format sendmail and Postfix read, and what a local recipient becomes.
 *
 *   # comment (a line whose first non-blank character is #)
 *   root:       admin@office.example
 *   staff:      alice, bob@office.example,
 *               carol@far.example            (a line starting with blanks continues)
 *   webmaster:  \webmaster, admin            (\name: no further aliasing)
 *
 * Names are case-insensitive; a value is a list of addresses or other alias
 * names, expanded recursively. An alias that reaches itself again (a loop,
 * or `root: root, admin`) stops there and that name is kept as a mailbox,
 * as Postfix's local(8) does; nesting deeper than MAX_DEPTH is refused when
 * the file is read. `:include:`, `|command` and `/file` targets are refused
 * with `file:line: message`: quietlink relays mail and stores none.
 *
 * Local recipients (SPEC §11): a bare name, or a name at the gateway's own
 * `hostname` or at `localhost`. The `masquerade` domain is NOT local: it is
 * normally the office's real mail domain, served by the LAN mail server, and
 * aliasing it here would hijack real mailboxes. A local name with no alias
 * becomes `name@masquerade` (default hostname).
 *
 * Pure: the parser takes text and returns entries and problems (the reader
 * is config/classic-files.ts readClassic); expansion takes the map.
 */
import type { ConfigProblem } from '../errors.js';
import { isValidMailbox } from '../intake/address.js';
import type { Parsed } from './classic-files.js';
import type { Config } from './schema.js';

/** sendmail's MaxAliasRecursion. */
export const MAX_DEPTH = 10;

export interface AliasTarget {
  /** An address (`a@b`) or a local name (`bob`). */
  address: string;
  /** `\name`: a mailbox, not aliased again. */
  final: boolean;
}

export interface AliasEntry {
  /** Lower case. */
  name: string;
  targets: AliasTarget[];
  line: number;
}

export type AliasMap = ReadonlyMap<string, AliasEntry>;

export interface LocalNames {
  /** The gateway's own name (config `hostname`). */
  hostname: string;
  /** The domain for unqualified and unaliased local names (config `masquerade`, default hostname). */
  masquerade: string;
}

/** The names aliases and masquerade work with: `masquerade` defaults to `hostname`. */
export function localNames(config: Pick<Config, 'hostname' | 'masquerade'>): LocalNames {
  return { hostname: config.hostname, masquerade: config.masquerade ?? config.hostname };
}

const LOCAL_NAME = /^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*|"(?:[^"\\\r\n]|\\.)*")$/;

/** Splits at commas outside double quotes. */
function splitList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted && c === '\\') { cur += c + (value[++i] ?? ''); continue; }
    if (c === '"') quoted = !quoted;
    if (c === ',' && !quoted) { out.push(cur.trim()); cur = ''; } else cur += c;
  }
  out.push(cur.trim());
  return out;
}

/** One list item → a target, or why it is refused. */
function parseTarget(item: string): AliasTarget | string {
  const unquoted = /^"(.*)"$/s.exec(item)?.[1] ?? item;
  if (/^:include:/i.test(unquoted)) return `":include:" lists are not supported (${unquoted}): quietlink relays mail and reads no include files; put the addresses in this file`;
  if (unquoted.startsWith('|')) return `delivery to a command is not supported (${unquoted}): quietlink relays mail and delivers none locally`;
  if (unquoted.startsWith('/')) return `delivery to a file is not supported (${unquoted}): quietlink relays mail and stores none locally`;
  const final = item.startsWith('\\');
  const address = (/^[^<>]*<([^<>]*)>$/.exec(item)?.[1] ?? item.replace(/^\\/, '')).trim();
  if (address.includes('@') ? !isValidMailbox(address) : !LOCAL_NAME.test(address)) return `invalid address "${item}"`;
  if (final && address.includes('@')) return `"\\" marks a local name, not an address ("${item}")`;
  return { address, final };
}

/** Folds continuation lines: [line of the entry, text]; comments and blank lines are skipped. */
function logicalLines(text: string, file: string, problems: ConfigProblem[]): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    if (/^\s*(#|$)/.test(raw)) continue;
    if (/^[ \t]/.test(raw)) {
      if (!out.length) problems.push({ file, line: i + 1, message: 'continuation line with no alias before it' });
      else out[out.length - 1][1] += ` ${raw.trim()}`;
      continue;
    }
    out.push([i + 1, raw.trim()]);
  }
  return out;
}

export function parseAliases(text: string, file: string): Parsed<AliasEntry> {
  const problems: ConfigProblem[] = [];
  const entries: AliasEntry[] = [];
  const seen = new Map<string, number>();
  for (const [line, content] of logicalLines(text, file, problems)) {
    const fail = (message: string) => problems.push({ file, line, message });
    const m = /^("(?:[^"\\]|\\.)*"|[^\s:"]+)\s*:(.*)$/.exec(content);
    if (!m) { fail(`expected "name: address, ..." (got "${content.slice(0, 40)}")`); continue; }
    const name = m[1].toLowerCase();
    if (name.includes('@')) { fail(`alias name "${m[1]}" must be a local name, without @`); continue; }
    if (!LOCAL_NAME.test(name)) { fail(`invalid alias name "${m[1]}"`); continue; }
    const first = seen.get(name);
    if (first !== undefined) { fail(`alias "${m[1]}" is defined twice (first at line ${first})`); continue; }
    const items = splitList(m[2]).filter(Boolean);
    if (!items.length) { fail(`alias "${m[1]}" has no address`); continue; }
    const targets: AliasTarget[] = [];
    for (const item of items) {
      const t = parseTarget(item);
      if (typeof t === 'string') fail(t);
      else targets.push(t);
    }
    if (targets.length !== items.length) continue;
    seen.set(name, line);
    entries.push({ name, targets, line });
  }
  problems.push(...tooDeep(new Map(entries.map((e) => [e.name, e])), file));
  return { entries, problems };
}

export function aliasMap(entries: readonly AliasEntry[]): AliasMap {
  return new Map(entries.map((e) => [e.name, e]));
}

/** Names whose expansion nests deeper than MAX_DEPTH (loops stop on their own and are fine). */
function tooDeep(map: AliasMap, file: string): ConfigProblem[] {
  const depthOf = (name: string, chain: string[]): string[] | null => {
    if (chain.length > MAX_DEPTH) return chain;
    const e = map.get(name);
    if (!e) return null;
    for (const t of e.targets) {
      if (t.final || t.address.includes('@')) continue;
      const key = t.address.toLowerCase();
      if (chain.includes(key) || !map.has(key)) continue;
      const deep = depthOf(key, [...chain, key]);
      if (deep) return deep;
    }
    return null;
  };
  const problems: ConfigProblem[] = [];
  for (const e of map.values()) {
    const chain = depthOf(e.name, [e.name]);
    if (chain) problems.push({ file, line: e.line, message: `alias "${e.name}" nests more than ${MAX_DEPTH} deep (${chain.join(' -> ')})` });
  }
  return problems;
}

/** The local name when the address is local (bare, @hostname, @localhost), else null. */
export function localPartOf(address: string, hostname: string): string | null {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  const domain = address.slice(at + 1).toLowerCase();
  return domain === hostname.toLowerCase() || domain === 'localhost' ? address.slice(0, at) : null;
}

/**
 * What a recipient becomes: null when it is not local (it stays as written);
 * otherwise its aliases' addresses, expanded, or `name@masquerade` without one.
 */
export function expandRecipient(address: string, aliases: AliasMap, names: LocalNames): string[] | null {
  if (localPartOf(address, names.hostname) === null) return null;
  const out = new Map<string, string>();
  const add = (a: string) => {
    const key = a.toLowerCase();
    if (!out.has(key)) out.set(key, a);
  };
  const walk = (addr: string, chain: string[]) => {
    const local = localPartOf(addr, names.hostname);
    if (local === null) return add(addr);
    const key = local.toLowerCase();
    const entry = aliases.get(key);
    if (!entry || chain.includes(key) || chain.length >= MAX_DEPTH) return add(`${local}@${names.masquerade}`);
    for (const t of entry.targets) {
      if (t.final) add(`${t.address}@${names.masquerade}`);
      else walk(t.address, [...chain, key]);
    }
  };
  walk(address, []);
  return [...out.values()];
}

/** expandRecipient() bound to a configuration's names and an alias map. */
export function recipientExpander(config: Pick<Config, 'hostname' | 'masquerade'>, aliases: AliasMap): (address: string) => string[] | null {
  const names = localNames(config);
  return (address) => expandRecipient(address, aliases, names);
}
