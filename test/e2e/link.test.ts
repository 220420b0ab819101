/**
 * The link (SPEC §4, §5, §14): with the link down nothing goes toward the
 * WAN — no SMTP connection, no DNS query, no ETRN — however much mail comes
 * and however many cron ticks pass; `link up` opens one window that delivers
 * everything due and sends ETRN. The WAN is 127.0.0.2 (SMTP, ETRN) and
 * 127.0.0.3 (DNS), the LAN 127.0.0.1; every server counts what it sees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { tempDir, writeConfig, startDaemon, runCli } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';
import { startDns, startEtrnRelay } from '../helpers/wan.js';
import { DESTINATION_MAX } from '../../src/scheduler/destinations.js';

async function submit(port: number, to: string[], n: number, subject: string) {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    await c.cmd('EHLO lan.test');
    for (let i = 0; i < n; i++) {
      assert.equal((await c.cmd('MAIL FROM:<alice@office.example>')).code, 250);
      for (const t of to) assert.equal((await c.cmd(`RCPT TO:<${t.replace('#', String(i))}>`)).code, 250);
      assert.equal((await c.cmd('DATA')).code, 354);
      c.write(`Subject: ${subject} ${i}\r\n\r\nbody\r\n.\r\n`);
      assert.equal((await c.reply()).code, 250);
    }
  } finally {
    c.close();
  }
}

test('zero wake-ups with the link down; link up opens one window that delivers all due mail, then ETRN', { timeout: 120_000 }, async () => {
  const wan = await startSink({ host: '127.0.0.2' });
  const lan = await startSink();
  const relay = await startEtrnRelay('127.0.0.2');
  const dns = await startDns('127.0.0.3', { 'mx.example': { mx: [[10, 'mail.mx.example']] }, 'mail.mx.example': { a: ['127.0.0.2'] } });
  const dir = await tempDir();
  const config = await writeConfig(dir, {
    lanNetworks: ['127.0.0.1/32'],
    smartHost: [`[127.0.0.2]:${wan.port}`],
    routes: [
      { domain: 'lan.example', relay: `[127.0.0.1]:${lan.port}` },
      { domain: 'mx.example', esmtp: `mx.example:${wan.port}` },
    ],
    etrn: { relay: `[127.0.0.2]:${relay.port}`, domains: ['office.example'] },
    dns: { upstream: [`127.0.0.3:${dns.port}`] },
    flush: { cron: ['* * * * * *'] },
    queue: { minQueueAge: '0s' },
    // the relay answers ETRN with 250 and pushes nothing: a short linger keeps the test short
    link: { linger: '1s' },
  });
  const d = await startDaemon(config);
  try {
    await submit(d.port, ['user#@far.example'], 480, 'wan');
    await submit(d.port, ['user#@mx.example'], 20, 'mx');
    await submit(d.port, ['user#@lan.example'], 5, 'lan');
    await lan.waitMessages(5);
    // cron ticks and an operator flush with the link down
    const ticks = d.logs.filter((l) => l.msg === 'window').length;
    await d.waitLog((l) => l.msg === 'window' && d.logs.filter((x) => x.msg === 'window').length >= ticks + 2, 'two cron windows');
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 75, f.stdout);
    assert.match(f.stdout, /500 waiting for the link/);
    assert.ok(d.logs.some((l) => /window: link down, 500 messages wait for the link/.test(String(l.msg))));
    assert.equal(wan.connections, 0, 'no SMTP connection toward the WAN');
    assert.equal(relay.connections, 0, 'no ETRN toward the WAN');
    assert.deepEqual(dns.queries, [], 'no DNS query toward the WAN');
    const waiting = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout) as { messages: Array<{ attempts: number; nextAttempt: string | null }> };
    assert.ok(waiting.messages.every((m) => m.attempts === 0 && m.nextAttempt === null), 'waiting for the link is no attempt: no backoff');

    assert.equal((await runCli(['link', 'up', '--iface', 'ppp0', '-c', config])).code, 0);
    const w = await d.waitLog((l) => l.msg === 'window' && String(l.cause).split(' + ').includes('link-up'), 'the link-up window', 60_000);
    assert.equal(w.delivered, 500);
    assert.equal(wan.messages.length, 500);
    assert.ok(wan.connections <= 2 * DESTINATION_MAX, `${wan.connections} connections for two next hops (${DESTINATION_MAX} each at most)`);
    assert.ok(dns.queries.includes('MX mx.example'), 'names are looked up inside the window');
    assert.deepEqual(relay.etrn.slice(0, 1), ['office.example']);
    assert.equal((await runCli(['mailq', '-c', config, '--json'])).stdout.includes('"total": 0'), true);
    assert.ok(Number(w.linkSeconds) >= 0);

    // a second link session with nothing due: ETRN only, no SMTP connection
    await runCli(['link', 'down', '-c', config]);
    const before = { smtp: wan.connections, etrn: relay.connections };
    await runCli(['link', 'up', '-c', config]);
    const w2 = await d.waitLog((l) => l.msg === 'window' && String(l.cause).split(' + ').includes('link-up') && l !== w, 'the second window');
    assert.equal(w2.delivered, 0);
    assert.equal(wan.connections, before.smtp);
    assert.ok(relay.connections > before.etrn, 'ETRN is sent on an empty window too');
    const st = JSON.parse((await runCli(['status', '-c', config, '--json'])).stdout);
    assert.equal(st.link.state, 'up');
    assert.ok(st.lastWindow);
  } finally {
    await d.stop();
    for (const s of [wan, lan, relay, dns]) await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
