/**
 * config/load.ts — reads the YAML configuration and the classic files it
 * names into one typed, validated Config.
 *
 * Every problem is reported as `file:line: message` (a ConfigError, exit 78).
 * The classic files are the mailertable, the class files, authinfo and the
 * aliases file (config/aliases.ts); the daemon reloads them together.
 * Relative paths in the file are resolved against the file's own folder, so
 * the daemon and the CLI find the same spool whatever their working folder.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseDocument, LineCounter, isMap, isNode, isPair, isScalar, type Document } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { configSchema, type Config } from './schema.js';
import {
  parseAuthinfo, parseClassFile, parseMailertable, parseRecipientList, readClassic,
  type AuthinfoEntry, type MailertableEntry,
} from './classic-files.js';
import { aliasMap, parseAliases, type AliasMap } from './aliases.js';

export const DEFAULT_CONFIG_FILE = '/etc/quietlink/quietlink.yaml';

export interface LoadedConfig {
  file: string;
  config: Config;
}

export interface ClassicMaps {
  mailertable: MailertableEntry[];
  classes: Map<string, Set<string>>;
  /** `classes.NAME.recipients`: the addresses (and `@domain` catch-alls) a class accepts. */
  recipients: Map<string, Set<string>>;
  authinfo: AuthinfoEntry[];
  /** The aliases file (`aliases:`), empty without one. */
  aliases: AliasMap;
}

/** The line of the YAML node at `p` (or of the nearest parent that exists). */
function lineOf(doc: Document, counter: LineCounter, p: readonly PropertyKey[], key?: string): number {
  let node: unknown = doc.contents;
  let best = 1;
  const mark = (n: unknown) => {
    if (isNode(n) && n.range) best = counter.linePos(n.range[0]).line;
  };
  mark(node);
  for (const part of p) {
    if (!isNode(node)) break;
    const child = (node as { items?: unknown[] }).items;
    if (!Array.isArray(child)) break;
    if (isMap(node)) {
      const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && it.key.value === part);
      if (!pair) break;
      mark(pair.key);
      node = pair.value;
      if (pair.value) mark(pair.value);
    } else {
      node = child[Number(part)];
      mark(node);
    }
  }
  if (key !== undefined && isMap(node)) {
    const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && it.key.value === key);
    if (pair) mark(pair.key);
  }
  return best;
}

/** Parses and validates the configuration text; pure apart from os.hostname defaults. */
export function parseConfigText(text: string, file: string): Config {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const problems: ConfigProblem[] = doc.errors.map((e) => ({
    file,
    line: e.linePos?.[0].line ?? counter.linePos(e.pos[0]).line,
    message: e.message.split('\n')[0],
  }));
  if (problems.length) throw new ConfigError(problems);
  const raw = doc.toJS() ?? {};
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const where = issue.path.map(String).join('.');
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          problems.push({ file, line: lineOf(doc, counter, issue.path, key), message: `unknown key "${where ? `${where}.` : ''}${key}"` });
        }
      } else {
        problems.push({ file, line: lineOf(doc, counter, issue.path), message: `${where || '(top level)'}: ${issue.message}` });
      }
    }
    throw new ConfigError(problems);
  }
  for (const [i, name] of result.data.holdClasses.entries()) {
    if (!(name in result.data.classes) && name !== 'CustDoms') {
      problems.push({ file, line: lineOf(doc, counter, ['holdClasses', i]), message: `holdClasses names unknown class "${name}"` });
    }
  }
  // pppd's demand option keeps ppp0 up between calls: the watcher would call the line up for ever
  if (result.data.link.mode === 'demand' && result.data.link.interface) {
    problems.push({ file, line: lineOf(doc, counter, ['link', 'interface']), message: 'link.interface cannot be used with link.mode demand (the interface stays up between calls); the PPP hooks report the line' });
  }
  if (problems.length) throw new ConfigError(problems);
  return resolvePaths(result.data, path.dirname(path.resolve(file)));
}

function resolvePaths(config: Config, base: string): Config {
  const r = (p: string | undefined) => (p === undefined ? undefined : path.resolve(base, p));
  return {
    ...config,
    spool: path.resolve(base, config.spool),
    mailertable: r(config.mailertable),
    authinfo: r(config.authinfo),
    aliases: r(config.aliases),
    classes: Object.fromEntries(Object.entries(config.classes).map(([k, v]) => [k, { ...v, file: r(v.file), recipients: r(v.recipients) }])),
    smtp: {
      ...config.smtp,
      tls: config.smtp.tls && { cert: r(config.smtp.tls.cert)!, key: r(config.smtp.tls.key)! },
      auth: config.smtp.auth && { users: r(config.smtp.auth.users)! },
    },
    dns: { ...config.dns, hosts: r(config.dns.hosts) },
    odmr: { ...config.odmr, users: r(config.odmr.users) },
  };
}

/** The file to use: -c, then $QUIETLINK_CONFIG, then /etc/quietlink/quietlink.yaml. */
export function configPath(explicit?: string): string {
  return path.resolve(explicit ?? process.env.QUIETLINK_CONFIG ?? DEFAULT_CONFIG_FILE);
}

export async function loadConfig(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 0, message: `cannot read configuration: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }], { cause: err });
  }
  return { file, config: parseConfigText(text, file) };
}

/** Reads the classic files the configuration names; problems are returned, not thrown. */
export async function loadClassicMaps(config: Config): Promise<{ maps: ClassicMaps; problems: ConfigProblem[] }> {
  const problems: ConfigProblem[] = [];
  const mailertable = config.mailertable ? await readClassic(config.mailertable, parseMailertable) : { entries: [], problems: [] };
  problems.push(...mailertable.problems);
  const authinfo = config.authinfo ? await readClassic(config.authinfo, parseAuthinfo) : { entries: [], problems: [] };
  problems.push(...authinfo.problems);
  const aliases = config.aliases ? await readClassic(config.aliases, parseAliases) : { entries: [], problems: [] };
  problems.push(...aliases.problems);
  const classes = new Map<string, Set<string>>();
  const recipients = new Map<string, Set<string>>();
  for (const [name, cls] of Object.entries(config.classes)) {
    const set = new Set(cls.domains);
    if (cls.file) {
      const parsed = await readClassic(cls.file, parseClassFile, cls.optional);
      problems.push(...parsed.problems);
      for (const d of parsed.entries) set.add(d);
    }
    classes.set(name, set);
    if (cls.recipients) {
      // never optional: a missing list read as "no list" would open the class
      const list = await readClassic(cls.recipients, parseRecipientList);
      problems.push(...list.problems);
      recipients.set(name, new Set(list.entries));
    }
  }
  return { maps: { mailertable: mailertable.entries, classes, recipients, authinfo: authinfo.entries, aliases: aliasMap(aliases.entries) }, problems };
}

/** Configuration plus classic files, or a ConfigError listing every problem. */
export async function loadAll(file: string): Promise<LoadedConfig & { maps: ClassicMaps }> {
  const loaded = await loadConfig(file);
  const { maps, problems } = await loadClassicMaps(loaded.config);
  if (problems.length) throw new ConfigError(problems);
  return { ...loaded, maps };
}
