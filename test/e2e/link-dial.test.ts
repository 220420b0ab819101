/**
 * The link's session in the field (SPEC §4, §5): real dial and hangup
 * scripts (they write counter files and tell the daemon "up" through the
 * real CLI, as pppd's ip-up hook would), poll windows, the linger while the
 * ISP pushes inbound mail, and a simulated day read back from
 * `quietlink windows --json`. The WAN is 127.0.0.2, the LAN 127.0.0.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli, BIN, withTimeout, type Daemon } from '../helpers/daemon.js';
import { sendMail, RawSmtp } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';
import { startEtrnRelay } from '../helpers/wan.js';
import { gateway as runGateway } from '../helpers/gateway.js';

type Tree = Record<string, unknown>;
const MSG = 'Subject: link\r\n\r\nbody\r\n';

/**
 * Writes the dial and hangup scripts into dir before the daemon starts (a
 * window may fire in its first second): each appends a line to its counter
 * file; dial then runs `dialBody` (LINK_UP: the CLI's `link up`, as pppd's
 * ip-up hook would). Returns the link settings that use them.
 */
function dialScripts(dir: string, dialBody: string, extra: Tree = {}): Tree {
  const config = path.join(dir, 'quietlink.yaml');
  const link = (state: string) => `"${process.execPath}" "${BIN}" link ${state} --iface ppp0 -c "${config}"`;
  const dial = path.join(dir, 'dial.sh');
  const hangup = path.join(dir, 'hangup.sh');
  writeFileSync(dial, `#!/bin/sh\necho dial >> "${dir}/dials"\n${dialBody.replace('LINK_UP', link('up'))}\n`, { mode: 0o755 });
  writeFileSync(hangup, `#!/bin/sh\necho hangup >> "${dir}/hangups"\n${link('down')} >/dev/null 2>&1\nexit 0\n`, { mode: 0o755 });
  return { mode: 'managed', dial, hangup, dialTimeout: '20s', ...extra };
}

/** How many times the scripts in dir ran. */
function counter(dir: string): { count: (what: 'dials' | 'hangups') => Promise<number> } {
  return { count: async (what) => (await fs.readFile(path.join(dir, what), 'utf8').catch(() => '')).split('\n').filter(Boolean).length };
}

const gateway = (over: (dir: string) => Tree, body: (d: Daemon, config: string, dir: string) => Promise<void>, servers: Array<{ close(): Promise<void> }> = []) =>
  runGateway({ lanNetworks: ['127.0.0.1/32'], smtp: { listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'] }, queue: { minQueueAge: '0s' } }, over, body, servers);

const windows = async (config: string) => JSON.parse((await runCli(['windows', '--json', '-c', config])).stdout) as Array<Record<string, any>>;
const windowLines = (d: Daemon) => d.logs.filter((l) => l.msg === 'window');

test('managed + link.dial: send windows with nothing due never dial; poll windows dial, send ETRN and hang up once each', { timeout: 120_000 }, async () => {
  const relay = await startEtrnRelay('127.0.0.2');
  let dialer!: ReturnType<typeof counter>;
  await gateway((dir) => ({
    etrn: { relay: `[127.0.0.2]:${relay.port}`, domains: ['office.example'] },
    flush: { cron: ['* * * * * *'] },
    link: dialScripts(dir, 'LINK_UP'),
  }), async (d, config, dir) => {
    dialer = counter(dir);
    await d.waitLog(() => windowLines(d).length >= 5, 'five send windows', 15_000);
    assert.equal(await dialer.count('dials'), 0, 'no dial for an empty queue');
    assert.equal(relay.connections, 0, 'no ETRN without the link');
    const st = JSON.parse((await runCli(['status', '--json', '-c', config])).stdout);
    assert.equal(st.link.dials, 0);
  }, []);
  await gateway((dir) => ({
    etrn: { relay: `[127.0.0.2]:${relay.port}`, domains: ['office.example'], poll: ['* * * * * *'] },
    metrics: { listen: '127.0.0.1:0' },
    link: dialScripts(dir, 'LINK_UP', { linger: '0s' }),
  }), async (d, config, dir) => {
    dialer = counter(dir);
    await d.waitLog(() => windowLines(d).filter((l) => l.dialed).length >= 2, 'two poll windows that dialed', 30_000);
    const st = JSON.parse((await runCli(['status', '--json', '-c', config])).stdout);
    assert.ok(st.link.dials >= 2);
    const metrics = (d.logs.find((l) => l.msg === 'ready')!.metrics) as { host: string; port: number };
    assert.match(await (await fetch(`http://${metrics.host}:${metrics.port}/metrics`)).text(), /quietlink_dials_total [1-9]/);
    await d.stop();
    const history = await windows(config);
    const dialed = history.filter((w) => w.dialed);
    assert.ok(dialed.length >= 2);
    // the stop may cut the last dial script before it wrote its line; its hangup still runs
    const dials = await dialer.count('dials');
    assert.ok(dials === dialed.length || dials === dialed.length - 1, `${dials} dial scripts for ${dialed.length} windows that dialed`);
    assert.equal(await dialer.count('hangups'), dialed.length, 'exactly one hangup after each window that dialed');
    // a window that was still dialing when the daemon stopped hung up without sending anything
    for (const w of dialed.filter((x) => x.linkOpen)) {
      assert.equal(w.kind, 'poll');
      assert.equal(w.etrn?.replies?.[0]?.code, 250, 'each dial was followed by ETRN');
    }
    assert.ok(relay.etrn.length >= dialed.filter((x) => x.linkOpen).length, 'the relay got every ETRN');
  }, [relay]);
});

for (const [name, body, extra] of [
  ['a dial script that exits 1', 'exit 1', {}],
  ['a dial script that hangs past link.dialTimeout', 'exec sleep 30', { dialTimeout: '1s' }],
] as const) {
  test(`${name}: the window closes, hangup runs once, the mail waits without backoff`, { timeout: 60_000 }, async () => {
    const wan = await startSink({ host: '127.0.0.2' });
    await gateway((dir) => ({
      smartHost: [`[127.0.0.2]:${wan.port}`],
      link: dialScripts(dir, body, extra),
    }), async (d, config, dir) => {
      const dialer = counter(dir);
      assert.equal((await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG)).code, 250);
      const f = await runCli(['flush', '--wait', '-c', config]);
      assert.equal(f.code, 75, f.stdout + f.stderr);
      assert.match(f.stdout, /1 waiting for the link/);
      assert.equal(await dialer.count('dials'), 1);
      assert.equal(await dialer.count('hangups'), 1, 'hangup once after a failed dial');
      const st = JSON.parse((await runCli(['status', '--json', '-c', config])).stdout);
      assert.equal(st.window, 'closed');
      assert.equal(st.link.state, 'down');
      const q = JSON.parse((await runCli(['mailq', '--json', '-c', config])).stdout) as { messages: Array<{ attempts: number; nextAttempt: string | null }> };
      assert.equal(q.messages.length, 1);
      assert.equal(q.messages[0].attempts, 0, 'waiting for the link is no attempt');
      assert.equal(q.messages[0].nextAttempt, null, 'no backoff');
      assert.equal(wan.connections, 0);
    }, [wan]);
  });
}

test('linger: after ETRN the line stays up while the ISP pushes; hangup runs once, after the third pushed message', { timeout: 60_000 }, async () => {
  const lan = await startSink();
  const wan = await startSink({ host: '127.0.0.2' });
  let port = 0;
  const pushed: Array<Promise<void>> = [];
  // the ISP: answers ETRN, then 2 s later connects back (from 127.0.0.2, outside the LAN) with 3 messages
  const relay = await startEtrnRelay('127.0.0.2', () => '253 OK, 3 pending messages for node office.example started', () => {
    pushed.push(new Promise<void>((resolve) => setTimeout(resolve, 2000)).then(async () => {
      const c = await RawSmtp.connect(port, '127.0.0.2');
      try {
        await c.reply();
        await c.cmd('EHLO smtprelay.isp.example');
        for (let i = 0; i < 3; i++) {
          assert.equal((await c.cmd('MAIL FROM:<someone@far.example>')).code, 250);
          assert.equal((await c.cmd(`RCPT TO:<user${i}@office.example>`)).code, 250);
          assert.equal((await c.cmd('DATA')).code, 354);
          c.write(`Subject: inbound ${i}\r\n\r\nbody\r\n.\r\n`);
          assert.equal((await c.reply()).code, 250);
        }
        await c.cmd('QUIT');
      } finally {
        c.close();
      }
    }));
  });
  await gateway((dir) => ({
    smartHost: [`[127.0.0.2]:${wan.port}`],
    routes: [{ domain: 'office.example', relay: `[127.0.0.1]:${lan.port}` }],
    etrn: { relay: `[127.0.0.2]:${relay.port}`, domains: ['office.example'] },
    link: dialScripts(dir, 'LINK_UP', { linger: '6s', lingerMax: '1m' }),
  }), async (d, config, dir) => {
    port = d.port;
    const dialer = counter(dir);
    // mail due for the WAN: the operator's window dials, delivers, sends ETRN and lingers
    assert.equal((await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG)).code, 250);
    const f = await withTimeout(runCli(['flush', '--wait', '-c', config]), 40_000, 'flush --wait');
    assert.equal(f.code, 0, f.stdout + f.stderr);
    await Promise.all(pushed);
    assert.equal(wan.messages.length, 1);
    const w = await d.waitLog((l) => l.msg === 'window', 'the window record');
    assert.equal(w.inbound, 3, 'the window counted the three pushed messages');
    assert.ok(Number(w.lingerSeconds) >= 2, `lingered ${w.lingerSeconds}s`);
    const hangupAt = d.logs.findIndex((l) => l.msg === 'link hangup command done');
    const accepted = d.logs.map((l, i) => (l.msg === 'queued' && String(l.relay).includes('127.0.0.2') ? i : -1)).filter((i) => i >= 0);
    assert.equal(accepted.length, 3);
    assert.ok(hangupAt > Math.max(...accepted), 'hangup after the third pushed message was accepted');
    assert.equal(await dialer.count('dials'), 1);
    assert.equal(await dialer.count('hangups'), 1);
    await lan.waitMessages(3);
    const [rec] = (await windows(config)).slice(-1);
    assert.equal(rec.inbound, 3);
    assert.equal(rec.dialed, true);
  }, [relay, lan, wan]);
});

test('a simulated day: dials = send windows with due mail + poll windows, read back from quietlink windows --json', { timeout: 120_000 }, async (t) => {
  const wan = await startSink({ host: '127.0.0.2' });
  const relay = await startEtrnRelay('127.0.0.2');
  await gateway((dir) => ({
    smartHost: [`[127.0.0.2]:${wan.port}`],
    etrn: { relay: `[127.0.0.2]:${relay.port}`, domains: ['office.example'], poll: ['*/5 * * * * *'] },
    // "business hours": a send window every 2 s; "poll": every 5 s (some coincide and join)
    flush: { cron: ['*/2 * * * * *'] },
    link: dialScripts(dir, 'LINK_UP', { linger: '0s' }),
  }), async (d, config, dir) => {
    const dialer = counter(dir);
    for (const batch of [1, 3]) {
      const before = wan.messages.length;
      for (let i = 0; i < batch; i++) assert.equal((await sendMail(d.port, 'alice@office.example', [`u${batch}-${i}@far.example`], MSG)).code, 250);
      await wan.waitMessages(before + batch);
      const seen = windowLines(d).length;
      await d.waitLog(() => windowLines(d).length >= seen + 3, 'three more windows', 30_000);
    }
    await d.waitLog(() => windowLines(d).filter((l) => l.kind === 'poll').length >= 2, 'two poll windows', 30_000);
    await d.stop();
    const all = await windows(config);
    // a window the stop cut while it was dialing got no link: not part of the day
    const day = all.filter((w) => !(w.dialed && !w.linkOpen));
    const withMail = day.filter((w) => w.kind === 'send' && w.delivered + w.deferred + w.failed > 0);
    const polls = day.filter((w) => w.kind === 'poll');
    const dialed = day.filter((w) => w.dialed);
    // mail may also leave in a poll window (a poll joined, or came first): it counts as a poll then
    assert.ok(polls.length >= 2);
    assert.equal(dialed.length, withMail.length + polls.length, 'dials = send windows with due mail + poll windows');
    assert.ok(dialed.every((w) => w.kind === 'poll' || w.delivered > 0));
    const cut = all.length - day.length;
    assert.ok(cut <= 1);
    assert.ok([dialed.length, dialed.length + cut].includes(await dialer.count('dials')));
    assert.equal(await dialer.count('hangups'), dialed.length + cut, 'one hangup after every window that dialed');
    assert.equal(wan.messages.length, 4);
    const linkSeconds = day.reduce((s, w) => s + w.linkSeconds, 0);
    t.diagnostic(`simulated day: ${day.length} windows, ${dialed.length} dials (${withMail.length} send with mail + ${polls.length} poll), ${linkSeconds.toFixed(2)} link-seconds`);
  }, [wan, relay]);
});
