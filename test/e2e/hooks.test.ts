/**
 * The PPP hooks (scripts/ip-up.d, scripts/ip-down.d) and the NetworkManager
 * dispatcher script, run the way pppd and NetworkManager run them: with an
 * empty environment (`env -i`), their settings only from the defaults file
 * named on their QUIETLINK_DEFAULTS line, against a real daemon on loopback.
 * Each hook is a copy with that line pointed at the test's own defaults file
 * (as install.sh --root does); the last test runs install.sh itself.
 *
 * A hook backgrounds its `quietlink link` call. The background process
 * inherits the hook's file descriptors, and runHook gives the hook an extra
 * pipe (fd 3) that nothing redirects, so its end means the call (if any) is
 * over: "ignored" is proved by order, an ignored event first and then a real
 * one whose log line must be the next link line.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { BIN, ROOT, runProcess, tempDir, withTimeout, type Daemon } from '../helpers/daemon.js';
import { gateway } from '../helpers/gateway.js';

const PPP = (iface: string) => [iface, '/dev/ttyS0', '115200', '10.0.0.2', '10.0.0.1', 'isp'];
// what pppd and NetworkManager leave a hook: a PATH (plus the node that runs bin/quietlink)
const PATH = `${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

/** Copies scripts/NAME into dir with its QUIETLINK_DEFAULTS line naming `defaults`. */
async function bakeHook(dir: string, name: string, defaults: string): Promise<string> {
  const text = await fs.readFile(path.join(ROOT, 'scripts', name), 'utf8');
  assert.equal(text.match(/^QUIETLINK_DEFAULTS=.*$/gm)?.length, 1, `${name} has one QUIETLINK_DEFAULTS line`);
  const file = path.join(dir, name.replace('/', '-'));
  await fs.writeFile(file, text.replace(/^QUIETLINK_DEFAULTS=.*$/m, `QUIETLINK_DEFAULTS='${defaults}'`), { mode: 0o755 });
  return file;
}

/** The defaults file as install.sh writes it, naming this checkout's program and the test's config. */
async function writeDefaults(dir: string, config: string, extra = ''): Promise<string> {
  const file = path.join(dir, 'default-quietlink');
  await fs.writeFile(file, `# test defaults\nQUIETLINK='${BIN}'\nQUIETLINK_CONFIG='${config}'\n${extra}`);
  return file;
}

/**
 * Runs a hook with an empty environment but PATH (and `vars`), to the end of
 * its background call: 'close' waits for every pipe, fd 3 included, which the
 * background call holds until it exits.
 */
async function runHook(hook: string, args: string[], vars: string[] = []): Promise<{ code: number | null; stderr: string }> {
  const child = spawn('/usr/bin/env', ['-i', `PATH=${PATH}`, ...vars, 'sh', hook, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b) => (stderr += b));
  child.stdout!.resume();
  (child.stdio[3] as Readable).resume();
  const [code] = (await withTimeout(once(child, 'close'), 15_000, `${path.basename(hook)} ${args.join(' ')}`)) as [number | null];
  return { code, stderr };
}

async function hookOk(hook: string, args: string[], vars: string[] = []): Promise<void> {
  const r = await runHook(hook, args, vars);
  assert.equal(r.code, 0, `${path.basename(hook)} ${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stderr, '', `${path.basename(hook)} ${args.join(' ')} is quiet`);
}

/** The daemon's `link` log lines from index `from` on. */
const linkLines = (d: Daemon, from: number) => d.logs.slice(from).filter((l) => l.msg === 'link');

/**
 * Waits for the first `want.length` link lines after `from` and checks them.
 * An ignored call that acted anyway would have changed the state before the
 * real call that follows it, so its line would come first and differ.
 */
async function expectLinks(d: Daemon, from: number, want: Array<[string, string]>): Promise<void> {
  await d.waitLog(() => linkLines(d, from).length >= want.length, `${want.length} link log lines`);
  assert.deepEqual(linkLines(d, from).slice(0, want.length).map((l) => [l.link, l.iface]), want);
}

test('ip-up and ip-down with an empty environment read the defaults file named in them, pass the interface, and exit 0 without a daemon', async () => {
  await gateway({}, {}, async (d, config, dir) => {
    const defaults = await writeDefaults(dir, config);
    const up = await bakeHook(dir, 'ip-up.d/quietlink', defaults);
    const down = await bakeHook(dir, 'ip-down.d/quietlink', defaults);
    const nm = await bakeHook(dir, 'NetworkManager/90-quietlink', defaults);
    const start = d.logs.length;

    await hookOk(up, PPP('ppp0'));
    const upLine = await d.waitLog((l) => l.msg === 'link' && l.link === 'up', 'link up from ip-up');
    assert.equal(upLine.iface, 'ppp0');
    await hookOk(down, PPP('ppp0'));
    const downLine = await d.waitLog((l) => l.msg === 'link' && l.link === 'down', 'link down from ip-down');
    assert.equal(downLine.iface, 'ppp0', 'ip-down says which interface went down');
    await expectLinks(d, start, [['up', 'ppp0'], ['down', 'ppp0']]);

    // no daemon: every hook still exits 0, quietly, its call over within runHook's bound
    // (QUIETLINK_IFACE lets the dispatcher get as far as calling quietlink whatever the routes)
    await d.stop();
    for (const [hook, args] of [[up, PPP('ppp0')], [down, PPP('ppp0')], [nm, ['ppp0', 'up']], [nm, ['ppp0', 'down']]] as const) {
      await hookOk(hook, [...args], ['QUIETLINK_IFACE=ppp0']);
    }
    // nor does a defaults file that is not valid shell stop them
    await fs.writeFile(defaults, 'QUIETLINK=\'unterminated\nif then\n');
    for (const hook of [up, down]) await hookOk(hook, PPP('ppp0'));
    await hookOk(nm, ['ppp0', 'up'], ['QUIETLINK_IFACE=ppp0']);
  });
});

test('with QUIETLINK_IFACE=ppp0 the PPP hooks ignore ppp1; PPP_IFACE stands in for a missing first argument; the environment wins over the file', async () => {
  await gateway({}, {}, async (d, config, dir) => {
    const defaults = path.join(dir, 'default-quietlink');
    await fs.writeFile(defaults, "QUIETLINK='/nonexistent/quietlink'\nQUIETLINK_CONFIG='/nonexistent/quietlink.yaml'\nQUIETLINK_IFACE=ppp0\n");
    const up = await bakeHook(dir, 'ip-up.d/quietlink', defaults);
    const down = await bakeHook(dir, 'ip-down.d/quietlink', defaults);
    const env = [`QUIETLINK=${BIN}`, `QUIETLINK_CONFIG=${config}`];
    const start = d.logs.length;

    await hookOk(up, PPP('ppp1'), env);
    await hookOk(up, PPP('ppp0'), env);
    await expectLinks(d, start, [['up', 'ppp0']]);
    await hookOk(down, [], [...env, 'PPP_IFACE=ppp1']);
    await hookOk(down, [], [...env, 'PPP_IFACE=ppp0']);
    await expectLinks(d, start, [['up', 'ppp0'], ['down', 'ppp0']]);
  });
});

test('NetworkManager with QUIETLINK_IFACE=ppp0: docker0 up, wlan0 down and actions other than up/down change nothing; ppp0 up and down do', async () => {
  await gateway({}, {}, async (d, config, dir) => {
    const nm = await bakeHook(dir, 'NetworkManager/90-quietlink', await writeDefaults(dir, config, 'QUIETLINK_IFACE=ppp0\n'));
    // other actions for an interface the environment names (it wins over the file), so a wrong line would say wwan0
    const otherActions = async () => {
      for (const action of ['pre-up', 'pre-down', 'dhcp4-change', 'connectivity-change', 'hostname']) {
        await hookOk(nm, ['wwan0', action], ['QUIETLINK_IFACE=wwan0']);
      }
    };
    const start = d.logs.length;

    await hookOk(nm, ['docker0', 'up']);
    await otherActions();
    await hookOk(nm, ['ppp0', 'up']);
    await expectLinks(d, start, [['up', 'ppp0']]);
    await hookOk(nm, ['wlan0', 'down']);
    await otherActions();
    await hookOk(nm, ['ppp0', 'down']);
    await expectLinks(d, start, [['up', 'ppp0'], ['down', 'ppp0']]);
    assert.ok(!linkLines(d, start).some((l) => ['wlan0', 'docker0', 'wwan0'].includes(String(l.iface))));
  });
});

test('NetworkManager without QUIETLINK_IFACE: up only for an interface with the default route, down only when no default route is left', async () => {
  await gateway({}, {}, async (d, config, dir) => {
    const nm = await bakeHook(dir, 'NetworkManager/90-quietlink', await writeDefaults(dir, config));
    // an `ip` that answers "ip route show default [dev IF]" from a file the test writes
    const routes = path.join(dir, 'routes');
    const bin = path.join(dir, 'bin');
    await fs.mkdir(bin);
    await fs.writeFile(path.join(bin, 'ip'), [
      '#!/bin/sh',
      '[ "$1 $2 $3" = "route show default" ] || exit 2',
      `if [ "\${4:-}" = dev ]; then awk -v d="$5" '$NF == d' '${routes}'; else cat '${routes}'; fi`,
      '',
    ].join('\n'), { mode: 0o755 });
    const fakeIp = [`PATH=${bin}:${PATH}`];
    await fs.writeFile(routes, 'default via 10.64.64.64 dev ppp0\n');
    const start = d.logs.length;

    await hookOk(nm, ['docker0', 'up'], fakeIp);
    await hookOk(nm, ['ppp0', 'up'], fakeIp);
    await expectLinks(d, start, [['up', 'ppp0']]);
    await hookOk(nm, ['wlan0', 'down'], fakeIp);
    await fs.writeFile(routes, '');
    await hookOk(nm, ['ppp0', 'down'], fakeIp);
    await expectLinks(d, start, [['up', 'ppp0'], ['down', 'ppp0']]);
  });
});

test('install.sh --root names DIR/etc/default/quietlink in the hooks and writes it once; uninstall.sh removes it unless it holds settings of its own', async () => {
  const root = await tempDir('ql-hooks-install-');
  dirs.push(root);
  const sh = (script: string, ...args: string[]) => runProcess('/bin/sh', [path.join(ROOT, 'scripts', script), '--root', root, ...args], { ms: 60_000 });
  const first = await sh('install.sh');
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /wrote \/etc\/default\/quietlink/);

  const defaults = path.join(root, 'etc/default/quietlink');
  for (const hook of ['ip-up.d/quietlink', 'ip-down.d/quietlink']) {
    const installed = await fs.readFile(path.join(root, 'etc/ppp', hook), 'utf8');
    const source = await fs.readFile(path.join(ROOT, 'scripts', hook), 'utf8');
    assert.match(installed, new RegExp(`^QUIETLINK_DEFAULTS='${defaults}'$`, 'm'), hook);
    assert.equal(installed.replace(/^QUIETLINK_DEFAULTS=.*$/m, ''), source.replace(/^QUIETLINK_DEFAULTS=.*$/m, ''), `${hook}: only that line differs`);
    assert.equal((await fs.stat(path.join(root, 'etc/ppp', hook))).mode & 0o777, 0o755);
  }
  const written = await fs.readFile(defaults, 'utf8');
  assert.match(written, /^QUIETLINK=\/usr\/lib\/quietlink\/bin\/quietlink$/m);
  assert.match(written, /^QUIETLINK_CONFIG=\/etc\/quietlink\/quietlink\.yaml$/m);
  assert.match(written, /^#QUIETLINK_IFACE=ppp0$/m);
  assert.equal((await fs.stat(defaults)).mode & 0o777, 0o644);

  // the installed hook, the installed program, an empty environment: the daemon hears ppp0 only
  const own = `QUIETLINK=${root}/usr/lib/quietlink/bin/quietlink\nQUIETLINK_IFACE=ppp0\n`;
  await gateway({}, {}, async (d, config) => {
    await fs.writeFile(defaults, `${own}QUIETLINK_CONFIG=${config}\n`);
    const start = d.logs.length;
    await hookOk(path.join(root, 'etc/ppp/ip-up.d/quietlink'), PPP('ppp1'));
    await hookOk(path.join(root, 'etc/ppp/ip-up.d/quietlink'), PPP('ppp0'));
    await expectLinks(d, start, [['up', 'ppp0']]);
  });
  const edited = await fs.readFile(defaults, 'utf8');

  const again = await sh('install.sh');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /kept \/etc\/default\/quietlink/);
  assert.equal(await fs.readFile(defaults, 'utf8'), edited);

  const keep = await sh('uninstall.sh');
  assert.equal(keep.code, 0, keep.stderr);
  assert.match(keep.stdout, /kept \/etc\/default\/quietlink \(it holds settings of your own/);
  assert.equal(await fs.readFile(defaults, 'utf8'), edited);
  await fs.writeFile(defaults, written.replace(/^# quietlink's.*$/m, '# a comment changed'));
  const remove = await sh('uninstall.sh');
  assert.equal(remove.code, 0, remove.stderr);
  assert.match(remove.stdout, /removed \/etc\/default\/quietlink/);
  await assert.rejects(fs.access(defaults));
  await fs.writeFile(defaults, edited);
  const purge = await sh('uninstall.sh', '--purge');
  assert.equal(purge.code, 0, purge.stderr);
  await assert.rejects(fs.access(defaults));
});
