/**
 * Office ↔ ISP end to end, two quietlink processes on loopback (issue 7):
 * the ISP holds mail for cust1.dom and cust2.dom while the office link is
 * down and makes no connection; `quietlink link up` at the office flushes its
 * outbound mail to the ISP and sends ETRN cust1.dom; the ISP pushes only
 * cust1.dom's mail to the office, which delivers it to its LAN sink within
 * the same window; cust2.dom's mail stays held; a second ETRN gets 251.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir, writeConfig, startDaemon, runCli } from '../helpers/daemon.js';
import { RawSmtp, fromOutside, sendMail } from '../helpers/smtp-client.js';
import { startSink, closedPort } from '../helpers/sink.js';

test('office and ISP: hold while down, one window flushes out and ETRN pulls in only cust1.dom', { timeout: 90_000 }, async () => {
  const lan = await startSink();
  const cust2 = await startSink();
  const [ispPort, officePort] = [await closedPort(), await closedPort()];
  const ispDir = await tempDir('ql-isp-');
  const officeDir = await tempDir('ql-office-');
  await fs.writeFile(path.join(ispDir, 'mailertable'), `cust1.dom qsmtp:[127.0.0.1]:${officePort}\ncust2.dom qsmtp:[127.0.0.1]:${cust2.port}\n`);
  const ispConfig = await writeConfig(ispDir, {
    hostname: 'smtprelay.isp.test',
    smtp: { listen: [`127.0.0.1:${ispPort}`], mynetworks: ['127.0.0.1/32'] },
    mailertable: 'mailertable',
    classes: { CustDoms: { domains: ['cust1.dom', 'cust2.dom'] } },
    etrnServer: { allow: ['127.0.0.0/8'] },
    link: { mode: 'managed' },
  });
  const officeConfig = await writeConfig(officeDir, {
    hostname: 'gw.cust1.dom',
    // on loopback the ISP looks like the LAN: the routes say which is which
    smtp: { listen: [`127.0.0.1:${officePort}`], mynetworks: ['127.0.0.1/32'], localDomains: ['cust1.dom'] },
    routes: [
      { domain: 'cust1.dom', relay: `[127.0.0.1]:${lan.port}`, link: false },
      { domain: '.', relay: `[127.0.0.1]:${ispPort}`, link: true },
    ],
    etrn: { relay: `[127.0.0.1]:${ispPort}`, domains: ['cust1.dom'] },
    // the ISP pushes right after ETRN: linger only briefly after its last message
    link: { mode: 'managed', linger: '1s' },
  });
  const isp = await startDaemon(ispConfig);
  const office = await startDaemon(officeConfig);
  try {
    // inbound mail for both customers reaches the ISP (their backup MX) while the office is offline
    await fromOutside(ispPort, 'boss@cust1.dom', 'for cust1');
    await fromOutside(ispPort, 'ceo@cust2.dom', 'for cust2');
    // the office writes to the world: it waits for the link
    assert.equal((await sendMail(officePort, 'staff@cust1.dom', ['partner@far.example'], 'Subject: outbound\r\n\r\nhi\r\n')).code, 250);
    const officeConnects = office.logs.filter((l) => l.msg === 'connect').length;
    const ispFlush = await runCli(['flush', '-c', ispConfig, '--wait']);
    assert.equal(ispFlush.code, 0, ispFlush.stdout + ispFlush.stderr);
    assert.equal(office.logs.filter((l) => l.msg === 'connect').length, officeConnects, 'the ISP made no connection to the office');
    assert.equal(cust2.connections, 0);
    assert.equal(lan.messages.length, 0);

    assert.equal((await runCli(['link', 'up', '--iface', 'ppp0', '-c', officeConfig])).code, 0);
    const w = await office.waitLog((l) => l.msg === 'window' && String(l.cause).split(' + ').includes('link-up'), 'the office window', 60_000);
    assert.equal(w.delivered, 1, 'the outbound mail went to the ISP');
    const etrn = w.etrn as { replies: Array<{ domain: string; code: number; text: string }> };
    assert.equal(etrn.replies[0].domain, 'cust1.dom');
    assert.equal(etrn.replies[0].code, 253);
    await lan.waitMessages(1, 30_000);
    assert.match(lan.messages[0].body, /Subject: for cust1/);
    assert.deepEqual(lan.messages[0].to, ['boss@cust1.dom']);
    // cust2.dom's mail stays held at the ISP, untouched
    const held = JSON.parse((await runCli(['mailq', '-c', ispConfig, '--json', '-qRcust2.dom'])).stdout);
    assert.equal(held.total, 1);
    assert.equal(cust2.connections, 0);
    // the office's outbound mail sits at the ISP now (its own link route waits there)
    assert.equal(JSON.parse((await runCli(['mailq', '-c', ispConfig, '--json', '-qRfar.example'])).stdout).total, 1);
    const again = await runCli(['etrn', '-c', officeConfig, 'cust1.dom']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /251 OK, no messages waiting for node cust1\.dom/);
  } finally {
    await office.stop();
    await isp.stop();
    for (const s of [lan, cust2]) await s.close();
    for (const dir of [ispDir, officeDir]) await fs.rm(dir, { recursive: true, force: true });
  }
});
