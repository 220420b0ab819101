/**
 * Office behind NAT ↔ ISP over ODMR (RFC 2645), two quietlink processes on
 * loopback: the ISP holds mail for cust1.dom and has no route to the office
 * at all (its route for cust1.dom is a closed port; the office's SMTP
 * listener appears nowhere in its configuration). The office's window
 * (etrn.mode odmr) connects out, STARTTLS, AUTH from authinfo, ATRN; the
 * held mail comes down that connection, lands at the office's LAN sink;
 * the ISP's queue is empty; the window records the inbound messages and
 * does not linger. `quietlink etrn` (etrn.mode odmr) does the same by hand (453 when
 * nothing waits). `quietlink etrn --odmr` pulls by ODMR for an office whose
 * etrn.mode is etrn.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ROOT, runCli, startDaemon, tempDir, writeConfig, type Daemon } from '../helpers/daemon.js';
import { RawSmtp, fromOutside } from '../helpers/smtp-client.js';
import { closedPort, startSink, type Sink } from '../helpers/sink.js';

const FIX = path.join(ROOT, 'test', 'fixtures');

interface Pair {
  lan: Sink;
  isp: Daemon;
  office: Daemon;
  ispConfig: string;
  officeConfig: string;
}

/** The ISP (holding cust1.dom, no route to the office) and the office (etrn.mode as given), both running. */
async function officeAndIsp(mode: 'etrn' | 'odmr', body: (p: Pair) => Promise<void>): Promise<void> {
  // the LAN sink on another loopback address: the authinfo entry for the relay (127.0.0.1) is not for it
  const lan = await startSink({ host: '127.0.0.3' });
  const odmrPort = await closedPort();
  const ispDir = await tempDir('ql-odmr-isp-');
  const officeDir = await tempDir('ql-odmr-office-');
  await fs.writeFile(path.join(ispDir, 'odmr-users'), 'cust1 s3cret-1\n', { mode: 0o600 });
  const ispConfig = await writeConfig(ispDir, {
    hostname: 'smtprelay.isp.test',
    smtp: { mynetworks: ['127.0.0.1/32'], tls: { cert: path.join(FIX, 'tls.crt'), key: path.join(FIX, 'tls.key') } },
    classes: { CustDoms: { domains: ['cust1.dom'] }, cust1: { domains: ['cust1.dom'] } },
    routes: [{ domain: 'cust1.dom', qsmtp: `[127.0.0.1]:${await closedPort()}` }],
    odmr: { listen: [`127.0.0.1:${odmrPort}`], users: 'odmr-users' },
    link: { mode: 'managed' },
  });
  await fs.writeFile(path.join(officeDir, 'authinfo'), 'AuthInfo:127.0.0.1 "U:cust1" "P:s3cret-1"\n', { mode: 0o600 });
  const officeConfig = await writeConfig(officeDir, {
    hostname: 'gw.cust1.dom',
    // the ISP's address (127.0.0.1) is outside the office's networks: its push is treated as from outside
    smtp: { mynetworks: ['127.0.0.9/32'], localDomains: ['cust1.dom'] },
    routes: [{ domain: 'cust1.dom', relay: `[127.0.0.3]:${lan.port}`, link: false }],
    authinfo: 'authinfo',
    etrn: { relay: `[127.0.0.1]:${odmrPort}`, domains: ['cust1.dom'], mode },
    link: { mode: 'managed', linger: '30s' },
  });
  const isp = await startDaemon(ispConfig);
  const office = await startDaemon(officeConfig);
  try {
    await body({ lan, isp, office, ispConfig, officeConfig });
  } finally {
    await office.stop();
    await isp.stop();
    await lan.close();
    for (const dir of [ispDir, officeDir]) await fs.rm(dir, { recursive: true, force: true });
  }
}

test('office behind NAT: the window\'s ODMR session pulls the held cust1.dom mail down its own connection to the LAN sink; the ISP queue is empty', { timeout: 120_000 }, async () => {
  await officeAndIsp('odmr', async ({ lan, isp, office, ispConfig, officeConfig }) => {
    await fromOutside(isp.port, 'boss@cust1.dom', 'odmr for cust1 A');
    await fromOutside(isp.port, 'staff@cust1.dom', 'odmr for cust1 B');
    assert.equal((await runCli(['link', 'up', '--iface', 'ppp0', '-c', officeConfig])).code, 0);
    const w = await office.waitLog((l) => l.msg === 'window' && String(l.cause).includes('link-up'), 'the office window', 60_000);
    const etrn = w.etrn as { replies: Array<{ domain: string; code: number; text: string }> };
    assert.equal(etrn.replies[0].code, 250, JSON.stringify(w.etrn));
    assert.equal(w.inbound, 2, 'the window records the messages received over ODMR');
    assert.ok(Number(w.lingerSeconds) < 5, 'no linger after ODMR: the connection is closed');
    await lan.waitMessages(2, 30_000);
    assert.deepEqual(lan.messages.flatMap((m) => m.to).sort(), ['boss@cust1.dom', 'staff@cust1.dom']);
    assert.equal(JSON.parse((await runCli(['mailq', '-c', ispConfig, '--json'])).stdout).total, 0, "the ISP's queue is empty");
    const sent = isp.logs.filter((l) => l.msg === 'delivered');
    assert.equal(sent.length, 2);
    assert.match(String(sent[0].stat), /^Sent \(250/);
    const status = JSON.parse((await runCli(['status', '-c', officeConfig, '--json'])).stdout);
    assert.equal(status.counters.odmrMade, 1);
    assert.equal(status.counters.odmrReceived, 2);
    // by hand (etrn.mode odmr), nothing waiting now: 453
    const again = await runCli(['etrn', '-c', officeConfig, 'cust1.dom']);
    assert.match(again.stdout + again.stderr, /453 You have no mail/);
  });
});

test('quietlink etrn --odmr cust1.dom pulls by ODMR for an office whose etrn.mode is etrn: the held mail reaches the LAN sink, exit 0; nothing left: 453, exit 75', { timeout: 120_000 }, async () => {
  await officeAndIsp('etrn', async ({ lan, isp, office, ispConfig, officeConfig }) => {
    await fromOutside(isp.port, 'boss@cust1.dom', 'etrn --odmr for cust1');
    const r = await runCli(['etrn', '--odmr', '-c', officeConfig, 'cust1.dom']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ATRN cust1\.dom to 127\.0\.0\.1 \[127\.0\.0\.1\]:\d+: 250 /m);
    assert.match(r.stdout, /^received 1 message over ODMR from 127\.0\.0\.1 \[127\.0\.0\.1\]:\d+$/m);
    assert.doesNotMatch(r.stdout, /ETRN/);
    await lan.waitMessages(1, 30_000);
    assert.deepEqual(lan.messages.flatMap((m) => m.to), ['boss@cust1.dom']);
    assert.match(lan.messages[0].body, /Subject: etrn --odmr for cust1/);
    assert.equal(JSON.parse((await runCli(['mailq', '-c', ispConfig, '--json'])).stdout).total, 0, "the ISP's queue is empty");
    assert.ok(office.logs.some((l) => l.msg === 'odmr: session done' && l.received === 1), 'the office pulled by ODMR');
    const status = JSON.parse((await runCli(['status', '-c', officeConfig, '--json'])).stdout);
    assert.equal(status.counters.odmrMade, 1);
    assert.equal(status.counters.odmrReceived, 1);
    // again, nothing waiting: the ISP's 453, a temporary answer (75)
    const again = await runCli(['etrn', '--odmr', '-c', officeConfig, 'cust1.dom']);
    assert.equal(again.code, 75, again.stdout + again.stderr);
    assert.match(again.stdout, /^ATRN cust1\.dom to .*: 453 You have no mail$/m);
  });
});
