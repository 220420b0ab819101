/**
 * test/dns/dig.ts — runs the real DNS clients a LAN uses for checks, `dig`
 * (bind9-dnsutils, +yaml) and `kdig` (knot-dnsutils, +json), against a
 * server on loopback and reads their structured output into one shape. Each
 * run is bounded (one try, 3 s, killed after 10 s). `normalize()` gives the
 * form two servers' answers are compared in: no ID, no TTLs, no sizes, the
 * records of a section sorted (an RRset has no order, RFC 2181 §5).
 */
import { execFile, spawnSync } from 'node:child_process';
import YAML from 'yaml';

export type Tool = 'dig' | 'kdig';

export interface DigRecord {
  name: string;
  ttl: number;
  type: string;
  data: string;
}

export interface DigView {
  rcode: string;
  /** Header flags, sorted: aa ad cd qr ra rd tc. */
  flags: string[];
  edns: { version: number; do: boolean; udp: number } | null;
  question: string;
  answer: DigRecord[];
  authority: DigRecord[];
  additional: DigRecord[];
  size: number;
  tcp: boolean;
}

export const hasTool = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim() !== '';

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      // dig exits 9 when no answer came; the view is then empty and the test says so
      if (err && !stdout) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

function digRecord(line: string): DigRecord {
  const [name, ttl, , type, ...data] = line.split(/\s+/);
  return { name: name.toLowerCase(), ttl: Number(ttl), type, data: data.join(' ') };
}

function fromDig(text: string): DigView {
  const docs = YAML.parse(text, { customTags: ['timestamp'] }) as Array<{ type: string; message: Record<string, any> }>;
  const m = docs.filter((d) => d.type === 'MESSAGE').at(-1)?.message;
  if (!m) throw new Error(`dig gave no answer:\n${text}`);
  const r = m.response_message_data;
  const opt = r.OPT_PSEUDOSECTION?.EDNS;
  return {
    rcode: r.status,
    flags: String(r.flags ?? '').split(/\s+/).filter(Boolean).sort(),
    edns: opt ? { version: Number(opt.version), do: /\bdo\b/.test(String(opt.flags ?? '')), udp: Number(opt.udp) } : null,
    question: String(r.QUESTION_SECTION?.[0] ?? ''),
    answer: (r.ANSWER_SECTION ?? []).map(digRecord),
    authority: (r.AUTHORITY_SECTION ?? []).map(digRecord),
    additional: (r.ADDITIONAL_SECTION ?? []).map(digRecord),
    size: parseInt(String(m.message_size), 10),
    tcp: m.socket_protocol === 'TCP',
  };
}

function fromKdig(text: string): DigView {
  const m = JSON.parse(text.slice(text.indexOf('{'), text.lastIndexOf('}') + 1));
  const rec = (r: any): DigRecord => ({ name: String(r.NAME).toLowerCase(), ttl: r.TTL, type: r.TYPEname ?? `TYPE${r.TYPE}`, data: r.RDATAHEX ?? '' });
  const opt = (m.additionalRRs ?? []).find((r: any) => r.TYPE === 41);
  const flags = ['aa', 'ad', 'cd', 'qr', 'ra', 'rd', 'tc'].filter((f) => m[f.toUpperCase()] === 1);
  return {
    rcode: RCODES[m.RCODE] ?? String(m.RCODE),
    flags,
    edns: opt ? { version: (opt.TTL >> 16) & 0xff, do: (opt.TTL & 0x8000) !== 0, udp: opt.CLASS } : null,
    question: `${m.QNAME} ${m.QCLASSname} ${m.QTYPEname}`,
    answer: (m.answerRRs ?? []).map(rec),
    authority: (m.authorityRRs ?? []).map(rec),
    additional: (m.additionalRRs ?? []).filter((r: any) => r.TYPE !== 41).map(rec),
    size: m.msgLength,
    tcp: false,
  };
}

/** One query with `tool` to host:port; `opts` are the tool's own +options (e.g. +dnssec, +bufsize=512). */
export async function dig(tool: Tool, host: string, port: number, name: string, type: string, ...opts: string[]): Promise<DigView> {
  if (tool === 'dig') return fromDig(await run('dig', [`@${host}`, '-p', String(port), name, type, '+yaml', '+time=3', '+tries=1', ...opts]));
  return fromKdig(await run('kdig', [`@${host}`, '-p', String(port), name, type, '+json', '+timeout=3', '+retry=0', ...opts]));
}

/** The comparable form: no ID, TTLs, sizes or transport; records sorted within each section. */
export function normalize(v: DigView): Record<string, string> {
  const recs = (rs: DigRecord[]) => rs.map((r) => `${r.name} ${r.type} ${r.data}`).sort().join(' | ');
  return {
    rcode: v.rcode,
    flags: v.flags.join(' '),
    edns: v.edns ? `v${v.edns.version} udp ${v.edns.udp}${v.edns.do ? ' do' : ''}` : 'none',
    question: v.question.toLowerCase(),
    answer: recs(v.answer),
    authority: recs(v.authority),
    additional: recs(v.additional),
  };
}
