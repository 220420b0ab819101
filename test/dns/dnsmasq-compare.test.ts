/**
 * quietlink beside dnsmasq (dnsmasq-base, when installed): the same queries,
 * with dig and kdig, to both — quietlink's DnsServer on 127.0.0.15 and a
 * private dnsmasq on 127.0.0.14 (this test's own child process, killed
 * after), both forwarding to the zone upstream on 127.0.0.13 — each asked
 * twice (forwarded, then cached). Their answers are compared field by field
 * (RCODE, flags, EDNS, question, the three sections as sorted records) after
 * leaving out what may differ: IDs and TTLs. The table of differences must
 * be empty. dnsmasq runs with --proxy-dnssec (else it clears AD, which the
 * issue asks to pass on) and the LAN names with --local (else it forwards
 * their other types). Two things are not compared, on purpose:
 * - a truncated UDP answer's sections: RFC 2181 §9 allows any whole RRsets
 *   in it; quietlink sends the ones that fit and an OPT record (RFC 6891
 *   §7), dnsmasq sends none or a partial RRset from its cache, and no OPT.
 *   Its RCODE and flags (TC) are compared, and the answer the client gets
 *   after its retry over TCP is compared in full;
 * - NODATA for a local name: quietlink adds an SOA (the issue asks for it),
 *   dnsmasq (--local) sends none.
 * And one flag is checked against the upstream instead: AD in answers to
 * queries without DO. dnsmasq passes the upstream's AD on when it forwards
 * but drops it from answers out of its cache; quietlink passes it on from
 * the cache too (a glibc stub with `trust-ad` asks with AD and no DO), so
 * there the AD flag must equal the upstream's own answer to the same query.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { dig, hasTool, normalize, type Tool } from './dig.js';
import { LAN_HOSTS, startRig, type Rig } from './rig.js';

const DNSMASQ = hasTool('dnsmasq');
const tools: Tool[] = hasTool('kdig') ? ['dig', 'kdig'] : ['dig'];
let rig: Rig;
let dm: { proc: ChildProcess; port: number; dir: string } | null = null;

async function freePort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, () => r()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** dnsmasq on 127.0.0.14 forwarding to the rig's upstream; resolves once it says it is using it. */
async function startDnsmasq(): Promise<{ proc: ChildProcess; port: number; dir: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ql-dnsmasq-'));
  await fs.writeFile(path.join(dir, 'hosts'), LAN_HOSTS, { mode: 0o644 });
  await fs.chmod(dir, 0o755);
  const port = await freePort('127.0.0.14');
  const proc = spawn('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${dir}/hosts`, '--local=/lan.test/',
    `--server=127.0.0.13#${rig.zone.port}`, '--listen-address=127.0.0.14', '--bind-interfaces', `--port=${port}`, '--proxy-dnssec', '--pid-file=', '--user=root'],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('dnsmasq did not start within 10 s')), 10_000);
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`dnsmasq exited ${code}`)); });
    readline.createInterface({ input: proc.stderr! }).on('line', (l) => {
      if (/using nameserver/.test(l)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { proc, port, dir };
}

before(async () => {
  rig = await startRig();
  if (DNSMASQ) dm = await startDnsmasq();
});
after(async () => {
  if (dm) {
    const exited = new Promise((r) => dm!.proc.once('exit', r));
    dm.proc.kill('SIGTERM');
    await exited;
    await fs.rm(dm.dir, { recursive: true, force: true });
  }
  await rig.stop();
});

/** [name, type, options, compare only RCODE and flags (a truncated UDP answer)] */
const CASES: Array<[string, string, string[], boolean?]> = [
  ['a.example.org', 'A', []], ['signed.example.org', 'AAAA', []], ['example.org', 'MX', []], ['example.org', 'NS', []],
  ['example.org', 'SOA', []], ['signed.example.org', 'TXT', []], ['www.example.org', 'A', []], ['example.org', 'DNSKEY', []],
  ['child.example.org', 'DS', []], ['svc.example.org', 'HTTPS', []], ['svc.example.org', 'SVCB', []], ['odd.example.org', 'TYPE65280', []],
  ['www.example.org', 'A', ['+noedns']], ['signed.example.org', 'A', ['+bufsize=1232']],
  ['signed.example.org', 'A', ['+dnssec']], ['sigtxt.example.org', 'TXT', ['+dnssec']], ['example.org', 'DNSKEY', ['+dnssec']],
  ['child.example.org', 'DS', ['+dnssec']], ['signed.example.org', 'A', ['+adflag']], ['signed.example.org', 'A', ['+noadflag']],
  ['signed.example.org', 'A', ['+dnssec', '+cd']], ['a.example.org', 'A', ['+dnssec', '+adflag']],
  ['nx.example.org', 'A', []], ['nx.example.org', 'A', ['+dnssec']], ['a.example.org', 'MX', ['+bufsize=1232']], ['signed.example.org', 'MX', ['+dnssec']],
  ['bigtxt.example.org', 'TXT', ['+bufsize=512']], ['midtxt.example.org', 'TXT', ['+noedns']], ['alias.example.org', 'TXT', ['+noedns']],
  ['largetxt.example.org', 'TXT', ['+bufsize=4096']], ['bigtxt.example.org', 'TXT', ['+tcp']], ['midtxt.example.org', 'TXT', ['+bufsize=1232']],
  ['bigtxt.example.org', 'TXT', ['+bufsize=512', '+ignore'], true], ['midtxt.example.org', 'TXT', ['+noedns', '+ignore'], true],
  ['alias.example.org', 'TXT', ['+noedns', '+ignore'], true],
  ['printer.lan.test', 'A', ['+bufsize=1232']], ['printer.lan.test', 'AAAA', []], ['printer', 'A', []],
];

test('the same queries to quietlink and dnsmasq: no difference but IDs and TTLs', async (t) => {
  if (!dm) {
    t.skip('dnsmasq not installed (apt-get install dnsmasq-base)');
    return;
  }
  const diffs: Array<{ tool: Tool; query: string; pass: number; field: string; quietlink: string; dnsmasq: string }> = [];
  let compared = 0;
  for (const tool of tools) {
    for (const [name, type, opts, flagsOnly] of CASES) {
      for (const pass of [1, 2]) {
        const [ours, theirs] = await Promise.all([
          dig(tool, rig.host, rig.port, name, type, ...opts),
          dig(tool, '127.0.0.14', dm.port, name, type, ...opts),
        ]);
        const a = normalize(ours);
        const b = normalize(theirs);
        const query = `${name} ${type} ${opts.join(' ')}`;
        if (!opts.includes('+dnssec') && !flagsOnly) {
          const upstream = await dig(tool, rig.zone.host, rig.zone.port, name, type, '-b', '127.0.0.16', ...opts);
          const ad = (v: { flags: string[] }) => String(v.flags.includes('ad'));
          if (!name.endsWith('.lan.test') && name !== 'printer' && ad(ours) !== ad(upstream)) diffs.push({ tool, query, pass, field: 'ad (as the upstream)', quietlink: ad(ours), dnsmasq: `upstream: ${ad(upstream)}` });
          a.flags = a.flags.replace(/\bad /, '');
          b.flags = b.flags.replace(/\bad /, '');
        }
        for (const field of flagsOnly ? ['rcode', 'flags'] : Object.keys(a)) {
          if (a[field] !== b[field]) diffs.push({ tool, query, pass, field, quietlink: a[field], dnsmasq: b[field] });
        }
        compared++;
      }
    }
  }
  t.diagnostic(`${compared} answers compared (${tools.join(', ')}; each query forwarded, then cached)`);
  for (const d of diffs) t.diagnostic(`DIFF ${d.tool} | ${d.query} | pass ${d.pass} | ${d.field} | quietlink: ${d.quietlink} | dnsmasq: ${d.dnsmasq}`);
  assert.deepEqual(diffs, []);
});
