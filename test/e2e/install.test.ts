/**
 * scripts/install.sh and scripts/uninstall.sh into a fresh --root folder, and
 * the installed layout at work: PHP-style `sendmail -t -i -f` through the
 * installed link into the maildrop, `mailq -Ac`, the installed daemon taking
 * it into the queue, `mailq`, then an uninstall that keeps the spool with the
 * message. Runs as root or not (CI: root, no systemd); only 127.0.0.1.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseDocument, parse } from 'yaml';
import { ROOT, runProcess, startDaemon, tempDir, type CliResult } from '../helpers/daemon.js';

const INSTALL = path.join(ROOT, 'scripts', 'install.sh');
const UNINSTALL = path.join(ROOT, 'scripts', 'uninstall.sh');
const PROGRAM = '../lib/quietlink/bin/quietlink';
// the installed commands start with #!/usr/bin/env node: the node running this test
const ENV = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}` };

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

/** Runs a program (a script or an installed link, by its own #! line) to its exit. */
const run = (file: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> =>
  runProcess(file, args, { input: opts.input, env: { ...ENV, ...opts.env }, ms: 60_000 });

async function install(dir: string): Promise<CliResult> {
  const r = await run('/bin/sh', [INSTALL, '--root', dir]);
  assert.equal(r.code, 0, `install.sh failed:\n${r.stdout}${r.stderr}`);
  return r;
}

const mode = async (p: string) => (await fs.stat(p)).mode & 0o7777;
const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

test('install.sh --root: layout, links, config; the installed sendmail, mailq and daemon work; uninstall keeps the spool with mail', async () => {
  const dir = await tempDir('ql-install-');
  dirs.push(dir);
  const lib = path.join(dir, 'usr/lib/quietlink');
  const conf = path.join(dir, 'etc/quietlink/quietlink.yaml');
  const spool = path.join(dir, 'var/spool/quietlink');

  const first = await install(dir);
  assert.match(first.stdout, /installed \/usr\/lib\/quietlink /);
  assert.match(first.stdout, /skipped creating the user quietlink: .*etc\/passwd does not exist/);

  // the program and only the production dependencies
  assert.ok(await exists(path.join(lib, 'dist/cli/run.js')));
  assert.ok(await exists(path.join(lib, 'package.json')));
  assert.equal(await mode(path.join(lib, 'bin/quietlink')), 0o755);
  const pkg = JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8'));
  for (const dep of Object.keys(pkg.dependencies)) assert.ok(await exists(path.join(lib, 'node_modules', dep, 'package.json')), `${dep} installed`);
  for (const dev of Object.keys(pkg.devDependencies)) assert.equal(await exists(path.join(lib, 'node_modules', dev)), false, `${dev} (dev) not installed`);
  assert.equal(await exists(path.join(lib, 'node_modules/.bin')), false);

  // links: relative, to the installed program
  for (const [link, target] of [
    ['usr/sbin/sendmail', PROGRAM],
    ['usr/bin/mailq', PROGRAM],
    ['usr/bin/quietlink', PROGRAM],
    ['usr/lib/sendmail', 'quietlink/bin/quietlink'],
  ]) {
    assert.equal(await fs.readlink(path.join(dir, link)), target, link);
    assert.equal(await fs.realpath(path.join(dir, link)), await fs.realpath(path.join(lib, 'bin/quietlink')), link);
  }

  // configuration: production values, a commented LAN address
  const confText = await fs.readFile(conf, 'utf8');
  const confYaml = parse(confText);
  assert.equal(confYaml.spool, '/var/spool/quietlink');
  assert.deepEqual(confYaml.smtp.listen, ['127.0.0.1:25']);
  assert.match(confText, /^ *# - "192\.168\.1\.1:25"/m);
  assert.match(first.stdout, /configuration OK/);

  // spool, unit, hooks
  assert.equal(await mode(spool), 0o711);
  assert.equal(await mode(path.join(spool, 'maildrop')), 0o1733);
  const unit = await fs.readFile(path.join(dir, 'lib/systemd/system/quietlink.service'), 'utf8');
  assert.match(unit, /^Type=exec$/m);
  assert.match(unit, /^ExecStart=\/usr\/lib\/quietlink\/bin\/quietlink start -c \/etc\/quietlink\/quietlink\.yaml$/m);
  assert.match(unit, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
  assert.equal(await mode(path.join(dir, 'lib/systemd/system/quietlink.service')), 0o644);
  for (const hook of ['etc/ppp/ip-up.d/quietlink', 'etc/ppp/ip-down.d/quietlink']) {
    assert.equal(await mode(path.join(dir, hook)), 0o755, hook);
    // install.sh --root bakes the root's defaults file into the hook; the rest is the source as shipped
    const withoutDefaults = (text: string) => text.replace(/^QUIETLINK_DEFAULTS=.*$/m, '');
    const installed = await fs.readFile(path.join(dir, hook), 'utf8');
    assert.match(installed, new RegExp(`^QUIETLINK_DEFAULTS='?${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/etc/default/quietlink'?$`, 'm'));
    assert.equal(withoutDefaults(installed), withoutDefaults(await fs.readFile(path.join(ROOT, 'scripts', hook.slice('etc/ppp/'.length)), 'utf8')));
  }

  // this test's own settings: the spool inside DIR (relative paths resolve
  // against the configuration's folder), a free port on loopback
  const doc = parseDocument(confText);
  doc.set('spool', '../../var/spool/quietlink');
  doc.setIn(['smtp', 'listen'], ['127.0.0.1:0']);
  if (doc.hasIn(['metrics', 'listen'])) doc.setIn(['metrics', 'listen'], '127.0.0.1:0');
  await fs.writeFile(conf, doc.toString());
  const edited = await fs.readFile(conf, 'utf8');

  // running it again is an upgrade: new program files, the configuration kept
  const second = await install(dir);
  assert.match(second.stdout, /upgraded \/usr\/lib\/quietlink /);
  assert.match(second.stdout, /kept \/etc\/quietlink\/quietlink\.yaml/);
  assert.match(second.stdout, /kept \/usr\/sbin\/sendmail -> \.\.\/lib\/quietlink\/bin\/quietlink/);
  assert.equal(await fs.readFile(conf, 'utf8'), edited);
  assert.equal(await fs.readlink(path.join(dir, 'usr/sbin/sendmail')), PROGRAM);

  // PHP's mail(): sendmail -t -i -f, LF line ends, no daemon running
  const env = { QUIETLINK_CONFIG: conf };
  const php = 'To: customer@far.example\nSubject: Your order 42\nX-PHP-Originating-Script: 33:shop.php\nContent-Type: text/plain; charset=UTF-8\n\nThank you for your order.\n';
  const sent = await run(path.join(dir, 'usr/sbin/sendmail'), ['-t', '-i', '-f', 'www-data@example.org'], { input: php, env });
  assert.equal(sent.code, 0, sent.stderr);
  const dropped = (await fs.readdir(path.join(spool, 'maildrop'))).filter((n) => !n.startsWith('.'));
  assert.equal(dropped.length, 1);
  const [id] = dropped;
  const drop = await fs.readFile(path.join(spool, 'maildrop', id), 'utf8');
  const sub = JSON.parse(drop.slice(0, drop.indexOf('\n')));
  assert.equal(sub.sender, 'www-data@example.org');
  assert.deepEqual(sub.recipients, ['customer@far.example']);
  assert.match(drop, /Subject: Your order 42\r\n/);

  const clientQueue = await run(path.join(dir, 'usr/bin/mailq'), ['-Ac'], { env });
  assert.equal(clientQueue.code, 0, clientQueue.stderr);
  assert.match(clientQueue.stdout, new RegExp(`^${id} `, 'm'));
  assert.match(clientQueue.stdout, /<www-data@example\.org>/);
  assert.match(clientQueue.stdout, /Total requests: 1\n$/);

  // the installed daemon takes it from the maildrop into the queue
  let qid = '';
  const daemon = await startDaemon(null, { command: path.join(lib, 'bin/quietlink'), env: { ...ENV, ...env } });
  try {
    const ready = await daemon.waitLog((l) => l.msg === 'ready', 'daemon ready');
    assert.equal(ready.spool, spool);
    const queued = await daemon.waitLog((l) => l.msg === 'queued' && (l.to as string[])[0] === 'customer@far.example', `${id} picked up`);
    qid = String(queued.qid);
    const q = await run(path.join(dir, 'usr/bin/mailq'), [], { env });
    assert.equal(q.code, 0, q.stderr);
    assert.match(q.stdout, new RegExp(`^${queued.qid} `, 'm'), 'queued under an ID of the daemon');
    assert.match(q.stdout, /<customer@far\.example>/);
    assert.match(q.stdout, /Total requests: 1\n$/);
    assert.equal(await daemon.stop(), 0);
  } finally {
    await daemon.kill();
  }
  assert.deepEqual((await fs.readdir(path.join(spool, 'maildrop'))).filter((n) => !n.startsWith('.')), []);

  // uninstall: program, links, unit and hooks go; configuration and the spool with the message stay
  const un = await run('/bin/sh', [UNINSTALL, '--root', dir]);
  assert.equal(un.code, 0, un.stderr);
  assert.match(un.stdout, /kept the spool \/var\/spool\/quietlink: 1 message remains/);
  assert.match(un.stdout, /kept \/etc\/quietlink/);
  for (const gone of ['usr/lib/quietlink', 'usr/sbin/sendmail', 'usr/lib/sendmail', 'usr/bin/mailq', 'usr/bin/quietlink',
    'lib/systemd/system/quietlink.service', 'etc/ppp/ip-up.d/quietlink', 'etc/ppp/ip-down.d/quietlink']) {
    assert.equal(await exists(path.join(dir, gone)), false, `${gone} removed`);
  }
  assert.ok(await exists(conf));
  assert.ok(await exists(path.join(spool, 'queue', 'mqueue', `${qid}.json`)));
  assert.ok(await exists(path.join(spool, 'data', qid)));

  // --purge removes the configuration but still not a spool with mail in it
  const purge = await run('/bin/sh', [UNINSTALL, '--root', dir, '--purge']);
  assert.equal(purge.code, 0, purge.stderr);
  assert.match(purge.stdout, /kept the spool \/var\/spool\/quietlink: 1 message remains/);
  assert.equal(await exists(conf), false);
  assert.ok(await exists(path.join(spool, 'queue', 'mqueue', `${qid}.json`)));
});

test('install.sh leaves another MTA\'s sendmail and mailq alone; creates the user when DIR has etc/passwd; uninstall --purge', async () => {
  const dir = await tempDir('ql-install-');
  dirs.push(dir);
  const foreign = '#!/bin/sh\n# another MTA\'s sendmail\n';
  await fs.mkdir(path.join(dir, 'usr/sbin'), { recursive: true });
  await fs.mkdir(path.join(dir, 'usr/bin'), { recursive: true });
  await fs.writeFile(path.join(dir, 'usr/sbin/sendmail'), foreign, { mode: 0o755 });
  await fs.symlink('../sbin/sendmail', path.join(dir, 'usr/bin/mailq'));
  // useradd --root (chroot) needs root; as another user DIR gets no etc/passwd and the installer says it skipped the user
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    await fs.mkdir(path.join(dir, 'etc'));
    await fs.writeFile(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    await fs.writeFile(path.join(dir, 'etc/group'), 'root:x:0:\n');
  }

  const r = await install(dir);
  assert.match(r.stderr, /\/usr\/sbin\/sendmail exists and is not quietlink's .*left alone/);
  assert.match(r.stderr, /\/usr\/bin\/mailq -> \.\.\/sbin\/sendmail belongs to another MTA: left alone/);
  assert.equal(await fs.readFile(path.join(dir, 'usr/sbin/sendmail'), 'utf8'), foreign);
  assert.equal(await fs.readlink(path.join(dir, 'usr/bin/mailq')), '../sbin/sendmail');
  assert.equal(await fs.readlink(path.join(dir, 'usr/bin/quietlink')), PROGRAM);

  if (asRoot) {
    // the user exists in DIR, not on this machine, and owns DIR's spool
    assert.match(r.stdout, /created system user quietlink in /);
    const line = (await fs.readFile(path.join(dir, 'etc/passwd'), 'utf8')).split('\n').find((l) => l.startsWith('quietlink:'));
    assert.ok(line, 'quietlink in DIR/etc/passwd');
    const [, , uid, gid, , home, shell] = line.split(':');
    assert.equal(home, '/var/spool/quietlink');
    assert.equal(shell, '/usr/sbin/nologin');
    for (const d of ['var/spool/quietlink', 'var/spool/quietlink/maildrop']) {
      const st = await fs.stat(path.join(dir, d));
      assert.deepEqual([st.uid, st.gid], [Number(uid), Number(gid)], d);
    }
  } else {
    assert.match(r.stdout, /skipped creating the user quietlink/);
  }

  const un = await run('/bin/sh', [UNINSTALL, '--root', dir, '--purge']);
  assert.equal(un.code, 0, un.stderr);
  assert.match(un.stdout, /left \/usr\/sbin\/sendmail alone/);
  assert.equal(await fs.readFile(path.join(dir, 'usr/sbin/sendmail'), 'utf8'), foreign);
  assert.equal(await fs.readlink(path.join(dir, 'usr/bin/mailq')), '../sbin/sendmail');
  assert.equal(await exists(path.join(dir, 'usr/bin/quietlink')), false);
  assert.match(un.stdout, /removed the empty spool \/var\/spool\/quietlink \(--purge\)/);
  assert.equal(await exists(path.join(dir, 'var/spool/quietlink')), false);
  assert.equal(await exists(path.join(dir, 'etc/quietlink')), false);
  if (asRoot) assert.doesNotMatch(await fs.readFile(path.join(dir, 'etc/passwd'), 'utf8'), /^quietlink:/m);
});
