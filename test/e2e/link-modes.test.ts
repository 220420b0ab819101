/**
 * Link modes, DialDelay, the dial/hangup commands, joined triggers, the ETRN
 * client's replies and the PPP hook scripts, against real processes and
 * servers on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { tempDir, writeConfig, startDaemon, runCli, withTimeout, BIN, ROOT, type Daemon } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';
import { startSink, type Sink } from '../helpers/sink.js';
import { startEtrnRelay, type EtrnRelay } from '../helpers/wan.js';
import { gateway as runGateway } from '../helpers/gateway.js';

type Tree = Record<string, unknown>;

const gateway = (over: Tree | ((dir: string) => Tree), body: Parameters<typeof runGateway>[2], servers: Array<Sink | EtrnRelay> = []) =>
  runGateway({ lanNetworks: ['127.0.0.1/32'], queue: { minQueueAge: '0s' } }, over, body, servers);

const MSG = 'Subject: link\r\n\r\nbody\r\n';

test('the ETRN client reports 250, 251, 458, 459 and 501 replies: exit 0, 75 for 458, 69 for 459 and 5xx', async () => {
  const replies: Record<string, string> = {
    'a.example': '250 OK, queuing for node a.example started',
    'b.example': '251 OK, no messages waiting for node b.example',
    'c.example': '458 Unable to queue messages for node c.example',
    'd.example': '459 Node d.example not allowed',
    'bad': '501 Syntax error',
  };
  const relay = await startEtrnRelay('127.0.0.2', (arg) => replies[arg] ?? '250 OK');
  await gateway({}, async (_d, config) => {
    const ok = await runCli(['etrn', '-c', config, '--relay', `127.0.0.2:${relay.port}`, 'a.example', 'b.example']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /ETRN a\.example to .*: 250 OK, queuing for node a\.example started/);
    assert.match(ok.stdout, /ETRN b\.example to .*: 251 /);
    const temp = await runCli(['etrn', '-c', config, '--relay', `127.0.0.2:${relay.port}`, 'c.example']);
    assert.equal(temp.code, 75);
    assert.match(temp.stdout, /458 Unable to queue/);
    const denied = await runCli(['etrn', '-c', config, '--relay', `127.0.0.2:${relay.port}`, 'd.example']);
    assert.equal(denied.code, 69, '459: this node is not allowed, asking again will not help');
    assert.match(denied.stdout, /459 Node d\.example not allowed/);
    const perm = await runCli(['etrn', '-c', config, '--relay', `127.0.0.2:${relay.port}`, 'bad']);
    assert.equal(perm.code, 69);
    assert.match(perm.stdout, /501 Syntax error/);
    assert.deepEqual(relay.etrn, ['a.example', 'b.example', 'c.example', 'd.example', 'bad']);
  }, [relay]);
});

test('DialDelay: a link route whose first connection fails is retried once after the delay; a LAN route is not', async () => {
  const wan = await startSink({ host: '127.0.0.2', refuseFirst: 1 });
  const lan = await startSink({ refuseFirst: 1 });
  await gateway({
    dialDelay: '1s',
    link: { mode: 'demand' },
    routes: [
      { domain: 'far.example', relay: `[127.0.0.2]:${wan.port}` },
      { domain: 'lan.example', relay: `[127.0.0.1]:${lan.port}` },
    ],
  }, async (d, config) => {
    const r = await sendMail(d.port, 'alice@office.example', ['x@lan.example'], MSG);
    await d.waitLog((l) => l.msg === 'deferred' && l.to === 'x@lan.example', 'the LAN route deferred at once');
    assert.equal(lan.refused, 1);
    assert.equal(lan.messages.length, 0, 'no DialDelay retry for a LAN route');
    assert.ok(!d.logs.some((l) => /waiting dialDelay/.test(String(l.msg))));
    void r;
    await sendMail(d.port, 'alice@office.example', ['y@far.example'], MSG);
    const f = await runCli(['flush', '-c', config, '--wait', '-qRfar']);
    assert.equal(f.code, 0, f.stdout);
    assert.equal(wan.refused, 1);
    assert.equal(wan.messages.length, 1, 'delivered by the one retry after dialDelay');
    assert.ok(d.logs.some((l) => /waiting dialDelay/.test(String(l.msg))));
  }, [wan, lan]);
});

test('managed mode with link.dial: the window dials, waits for up, delivers, hangs up once', async () => {
  const wan = await startSink({ host: '127.0.0.2' });
  await gateway((dir) => ({
    smartHost: [`[127.0.0.2]:${wan.port}`],
    // the dial command tells the daemon "up", as pppd's ip-up hook would once the line is up
    link: {
      mode: 'managed', dialTimeout: '30s',
      dial: `"${process.execPath}" "${BIN}" link up --iface ppp0 -c "${path.join(dir, 'quietlink.yaml')}"`,
      hangup: `echo hangup >> "${path.join(dir, 'hangups')}"`,
    },
  }), async (d, config, dir) => {
    await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG);
    assert.equal(wan.connections, 0);
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 0, f.stdout + f.stderr);
    assert.equal(wan.messages.length, 1);
    assert.equal(d.logs.filter((l) => l.msg === 'link dial command done').length, 1);
    assert.equal((await fs.readFile(path.join(dir, 'hangups'), 'utf8')).trim().split('\n').length, 1, 'hung up once');
    assert.equal(d.logs.filter((l) => l.msg === 'window').length, 1, 'the link-up that the dial caused joined the same window');
    assert.ok(d.logs.some((l) => l.msg === 'window: trigger joins the open window' && l.cause === 'link-up'));
  }, [wan]);
});

test('demand mode: a window with nothing to send is not opened; permanent mode needs no window', async () => {
  const wan = await startSink({ host: '127.0.0.2' });
  await gateway({ smartHost: [`[127.0.0.2]:${wan.port}`], link: { mode: 'demand' } }, async (d, config) => {
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 0);
    assert.ok(d.logs.some((l) => /window not opened: nothing to send/.test(String(l.msg))));
    assert.equal(wan.connections, 0, 'the line is not dialed for nothing');
  }, [wan]);
  const wan2 = await startSink({ host: '127.0.0.2' });
  await gateway({ smartHost: [`[127.0.0.2]:${wan2.port}`], link: { mode: 'permanent' } }, async (d) => {
    await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG);
    await wan2.waitMessages(1);
    assert.ok(!d.logs.some((l) => l.msg === 'window'), 'delivered at intake, as a LAN route would be');
  }, [wan2]);
});

test('concurrent flushes deliver each message once; interval and cron with a time zone open windows', async () => {
  const wan = await startSink({ host: '127.0.0.2' });
  await gateway({
    smartHost: [`[127.0.0.2]:${wan.port}`],
    link: { mode: 'demand' },
    flush: { interval: '1s', cron: ['*/1 * * * * *'], timezone: 'Europe/Berlin' },
  }, async (d, config) => {
    for (let i = 0; i < 20; i++) await sendMail(d.port, 'alice@office.example', [`r${i}@far.example`], MSG);
    const [a, b] = await Promise.all([runCli(['flush', '-c', config, '--wait']), runCli(['flush', '-c', config, '--wait'])]);
    assert.equal(a.code, 0);
    assert.equal(b.code, 0);
    assert.equal(wan.messages.length, 20, 'each message once');
    await d.waitLog((l) => /^window/.test(String(l.msg)) && /(^| \+ )cron/.test(String(l.cause)), 'a cron window');
    // with nothing left to send, demand mode does not open the window: either line names the cause
    await d.waitLog((l) => /^window/.test(String(l.msg)) && String(l.cause).split(' + ').includes('interval'), 'an interval window');
  }, [wan]);
});

test('the ip-up and ip-down hooks take pppd\'s arguments, and do nothing harmful without a daemon', async () => {
  const hook = (name: string, config: string, ...args: string[]) => {
    const child = spawn('/bin/sh', [path.join(ROOT, 'scripts', name, 'quietlink'), ...args], {
      env: { ...process.env, QUIETLINK: BIN, QUIETLINK_CONFIG: config }, stdio: 'ignore',
    });
    return withTimeout(once(child, 'exit'), 10_000, `${name} hook`);
  };
  await gateway({}, async (d, config) => {
    const [code] = await hook('ip-up.d', config, 'ppp0', '/dev/ttyUSB0', '115200', '10.0.0.2', '10.0.0.1', 'isp');
    assert.equal(code, 0);
    const up = await d.waitLog((l) => l.msg === 'link' && l.link === 'up', 'link up from the hook');
    assert.equal(up.iface, 'ppp0');
    await hook('ip-down.d', config, 'ppp0', '/dev/ttyUSB0', '115200', '10.0.0.2', '10.0.0.1', 'isp');
    await d.waitLog((l) => l.msg === 'link' && l.link === 'down', 'link down from the hook');
    await d.stop();
    const [offline] = await hook('ip-up.d', config, 'ppp0', '/dev/ttyUSB0', '115200', '10.0.0.2', '10.0.0.1', 'isp');
    assert.equal(offline, 0, 'exits 0 with the daemon down');
  });
});
