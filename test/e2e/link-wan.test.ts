/**
 * The link against a WAN that misbehaves as real ones do (SPEC §3, §5, §6,
 * §7, §14): an ETRN relay that accepts and says nothing, a DNS upstream
 * that drops every query while the line is still dialing, two routes that
 * are one relay, and the zero-wake-up promise in demand mode, with the line
 * up outside a window, and with the resolver serving a real LAN client
 * (dig). Every WAN server is on 127.0.0.2/.3 and counts what it sees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { runCli, runProcess, withTimeout, type Daemon } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';
import { startDns, startEtrnRelay } from '../helpers/wan.js';
import { gateway as runGateway } from '../helpers/gateway.js';

type Tree = Record<string, unknown>;
const MSG = 'Subject: wan\r\n\r\nbody\r\n';

const gateway = (over: Tree, body: (d: Daemon, config: string, dir: string) => Promise<void>, servers: Array<{ close(): Promise<void> }> = []) =>
  runGateway({ lanNetworks: ['127.0.0.1/32'], queue: { minQueueAge: '0s' } }, over, body, servers);

const status = async (config: string) => JSON.parse((await runCli(['status', '--json', '-c', config])).stdout);

test('an ETRN relay that accepts and says nothing cannot hold the window: timeout.etrn ends it, the next relay of the list is asked', { timeout: 60_000 }, async () => {
  const silent = await startEtrnRelay('127.0.0.2', () => null);
  const good = await startEtrnRelay('127.0.0.2');
  await gateway({
    etrn: { relay: [`[127.0.0.2]:${silent.port}`, `[127.0.0.2]:${good.port}`], domains: ['office.example'] },
    timeout: { etrn: '2s' },
    link: { mode: 'managed', linger: '0s' },
    flush: { onLinkUp: false },
  }, async (d, config) => {
    await runCli(['link', 'up', '-c', config]);
    const f = await withTimeout(runCli(['flush', '--wait', '-c', config]), 20_000, 'flush --wait');
    assert.equal(f.code, 0, f.stdout + f.stderr);
    assert.deepEqual(silent.etrn, ['office.example'], 'the silent relay got the ETRN');
    assert.deepEqual(good.etrn, ['office.example'], 'then the next relay of the list');
    const st = await status(config);
    assert.equal(st.window, 'closed');
    assert.equal(st.lastWindow.etrn.replies[0].code, 250);
    const tried = d.logs.find((l) => l.msg === 'etrn sent');
    assert.ok(tried);
  }, [silent, good]);
  // a single silent relay: the window closes with the error, within timeout.etrn
  const alone = await startEtrnRelay('127.0.0.2', () => null);
  await gateway({
    etrn: { relay: `[127.0.0.2]:${alone.port}`, domains: ['office.example'] },
    timeout: { etrn: '1s' },
    flush: { onLinkUp: false },
  }, async (_d, config) => {
    await runCli(['link', 'up', '-c', config]);
    const f = await withTimeout(runCli(['flush', '--wait', '-c', config]), 20_000, 'flush --wait');
    assert.match(f.stdout, /timeout\.etrn/);
    const st = await status(config);
    assert.equal(st.window, 'closed');
    assert.match(st.lastWindow.etrn.error, /timeout\.etrn \(1s\)/);
  }, [alone]);
});

test('demand mode, smart host by name: DNS that is lost while the line dials is asked again after dialDelay, in the same window', { timeout: 60_000 }, async () => {
  const wan = await startSink({ host: '127.0.0.2' });
  const dns = await startDns('127.0.0.3', { 'smarthost.isp.example': { a: ['127.0.0.2'] } }, 60, { dropFirstMs: 3000 });
  await gateway({
    smartHost: [`[smarthost.isp.example]:${wan.port}`],
    dns: { upstream: [`127.0.0.3:${dns.port}`] },
    dialDelay: '4s',
    link: { mode: 'demand' },
  }, async (d, config) => {
    assert.equal((await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG)).code, 250);
    const f = await withTimeout(runCli(['flush', '--wait', '-c', config]), 40_000, 'flush --wait');
    assert.equal(f.code, 0, f.stdout + f.stderr);
    assert.equal(wan.messages.length, 1, 'delivered in the same window');
    assert.ok(dns.dropped > 0, 'the first queries were lost');
    assert.ok(dns.queries.includes('A smarthost.isp.example'));
    assert.equal(d.logs.filter((l) => /waiting dialDelay/.test(String(l.msg))).length, 1, 'DialDelay once per window');
    const w = d.logs.find((l) => l.msg === 'window')!;
    assert.equal(w.delivered, 1);
  }, [wan, dns]);
});

test('two routes to one relay share one connection; a handful of messages goes down one connection', { timeout: 60_000 }, async () => {
  const wan = await startSink({ host: '127.0.0.2' });
  await gateway({
    routes: [
      { domain: 'a.example', relay: `[127.0.0.2]:${wan.port}` },
      { domain: 'b.example', esmtp: `[127.0.0.2]:${wan.port}` },
    ],
    link: { mode: 'demand' },
  }, async (d, config) => {
    for (let i = 0; i < 3; i++) {
      assert.equal((await sendMail(d.port, 'alice@office.example', [`x${i}@a.example`], MSG)).code, 250);
      assert.equal((await sendMail(d.port, 'alice@office.example', [`y${i}@b.example`], MSG)).code, 250);
    }
    const f = await runCli(['flush', '--wait', '-c', config]);
    assert.equal(f.code, 0, f.stdout + f.stderr);
    assert.equal(wan.messages.length, 6);
    assert.equal(wan.connections, 1, 'one connection for both routes');
  }, [wan]);
});

test('zero wake-ups: demand mode with the link down, the line up outside a window, and a LAN client asking the resolver', { timeout: 90_000 }, async () => {
  const digOk = spawnSync('dig', ['-v']).status === 0;
  const wan = await startSink({ host: '127.0.0.2' });
  const lan = await startSink();
  const relay = await startEtrnRelay('127.0.0.2');
  const dns = await startDns('127.0.0.3', { 'far.example': { mx: [[10, 'mx.far.example']] }, 'www.far.example': { a: ['127.0.0.2'] } });
  const common = {
    routes: [{ domain: 'lan.example', relay: `[127.0.0.1]:${lan.port}` }],
    etrn: { relay: `[127.0.0.2]:${relay.port}`, domains: ['office.example'] },
    dns: { upstream: [`127.0.0.3:${dns.port}`], listen: ['127.0.0.4:0'] },
  };
  /** 30 WAN messages, then one LAN message: once the LAN one is delivered, intake has had its chance with the rest. */
  const submit = async (d: Daemon) => {
    for (let i = 0; i < 30; i++) assert.equal((await sendMail(d.port, 'alice@office.example', [`u${i}@far.example`], MSG)).code, 250);
    const before = lan.messages.length;
    assert.equal((await sendMail(d.port, 'alice@office.example', ['z@lan.example'], MSG)).code, 250);
    await lan.waitMessages(before + 1);
  };
  // async: the upstream DNS server of this test runs in this process
  const dig = async (d: Daemon, name: string) => {
    const port = ((d.logs.find((l) => l.msg === 'ready')!.dns as Array<{ port: number }>)[0]).port;
    return (await runProcess('dig', ['@127.0.0.4', '-p', String(port), '+tries=1', '+time=3', name, 'A'])).stdout;
  };
  // demand mode, link down, no window: the first packet would dial
  await gateway({ ...common, link: { mode: 'demand' } }, async (d, config) => {
    await submit(d);
    const dry = await runCli(['flush', '--dry-run', '-c', config]);
    assert.match(dry.stdout, /30 recipients would be attempted/);
    if (digOk) assert.match(await dig(d, 'www.far.example'), /status: SERVFAIL/, 'the LAN client gets SERVFAIL at once');
    assert.equal(wan.connections, 0);
    assert.equal(relay.connections, 0);
    assert.deepEqual(dns.queries, []);
  });
  // managed, the line up (someone else dialed), no window opens for it: mail still waits for a window
  await gateway({ ...common, link: { mode: 'managed' }, flush: { onLinkUp: false } }, async (d, config) => {
    assert.equal((await runCli(['link', 'up', '--iface', 'ppp0', '-c', config])).code, 0);
    await d.waitLog((l) => l.msg === 'link' && l.link === 'up', 'link up');
    await submit(d);
    assert.equal(wan.connections, 0, 'no SMTP toward the WAN outside a window, line up or not');
    assert.equal(relay.connections, 0);
    assert.deepEqual(dns.queries, [], 'delivery looked nothing up');
    // the LAN's own queries may use a line that is up anyway (SPEC §6)
    if (digOk) {
      assert.match(await dig(d, 'www.far.example'), /127\.0\.0\.2/);
      assert.deepEqual(dns.queries, ['A www.far.example']);
    }
    const st = await status(config);
    assert.equal(st.queue.queued, 30);
  }, [wan, lan, relay, dns]);
});

test('a link report naming another interface than link.interface is ignored; a delay warning names the next window with its time zone', { timeout: 60_000 }, async () => {
  const wan = await startSink({ host: '127.0.0.2', rcpt: () => ({ code: 451, text: '4.3.0 Try later' }) });
  const lan = await startSink();
  await gateway({
    smartHost: [`[127.0.0.2]:${wan.port}`],
    routes: [{ domain: 'lan.example', relay: `[127.0.0.1]:${lan.port}` }],
    link: { mode: 'managed', interface: 'ppp0', poll: '1h', linger: '0s' },
    flush: { cron: ['0 8 * * *'], timezone: 'Europe/Berlin', onLinkUp: false },
    queue: { minQueueAge: '0s', queueWarn: '0s' },
  }, async (d, config) => {
    assert.equal((await runCli(['link', 'up', '--iface', 'eth1', '-c', config])).code, 0);
    await d.waitLog((l) => /another interface than link\.interface/.test(String(l.msg)) && l.iface === 'eth1', 'the report for eth1 ignored');
    assert.equal((await status(config)).link.state, 'down');
    assert.equal((await runCli(['link', 'up', '--iface', 'ppp0', '-c', config])).code, 0);
    await d.waitLog((l) => l.msg === 'link' && l.link === 'up' && l.iface === 'ppp0', 'the report for ppp0');
    assert.equal((await sendMail(d.port, 'alice@lan.example', ['x@far.example'], MSG)).code, 250);
    const f = await runCli(['flush', '--wait', '-c', config]);
    assert.equal(f.code, 75, f.stdout);
    await lan.waitMessages(1);
    assert.match(lan.messages[0].body, /waiting for the next scheduled connection at 08:00 (CET|CEST|GMT\+1|GMT\+2)/);
  }, [wan, lan]);
});
