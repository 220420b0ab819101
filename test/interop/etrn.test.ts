/**
 * Interop: quietlink as the ISP relay (SPEC §1 deployment 2, §7 server)
 * and the ETRN clients customers' sites run: fetchmail's ETRN mode
 * (`fetchmail --protocol ETRN --fetchdomains cust1.dom`) and msmtp's Remote
 * Message Queue Starting (`msmtp --rmqs=cust1.dom`). Mail for cust1.dom
 * (class CustDoms, a qsmtp route to the customer's server, here a recording
 * next hop) is held until the client's ETRN; then it arrives. Skipped only
 * when the client is not installed (.ci/run installs both).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, runProcess } from '../helpers/daemon.js';
import { fromOutside as outside } from '../helpers/smtp-client.js';
import { bySubject, interop, need, type Interop } from '../helpers/interop.js';

/** The ISP: cust1.dom and cust2.dom are customers whose mail waits for their ETRN. */
const isp = () => interop((_dir, sink) => ({
  hostname: 'smtprelay.isp.test',
  smtp: { mynetworks: ['127.0.0.1/32'] },
  classes: { CustDoms: { domains: ['cust1.dom', 'cust2.dom'] } },
  routes: [
    { domain: 'cust1.dom', qsmtp: `[127.0.0.1]:${sink.port}` },
    { domain: 'cust2.dom', qsmtp: `[127.0.0.1]:${sink.port}` },
  ],
  etrnServer: { allow: ['127.0.0.1/32'] },
  link: { mode: 'managed' },
}));

/** Mail from the Internet for a customer, accepted and held (with Date and Message-ID, as a real MTA sends). */
const fromOutside = (port: number, to: string, subject: string) => outside(port, to, subject, {
  headers: `Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@sender.test>\r\n`, body: 'for the customer',
});

async function held(g: Interop): Promise<Record<string, number>> {
  const r = await runCli(['status', '-c', g.config, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { held: Record<string, number> }).held;
}

test('fetchmail --protocol ETRN --fetchdomains cust1.dom: held mail for cust1.dom arrives after its ETRN (253); cust2.dom stays held; a second run gets 251', async (t) => {
  const fetchmail = need(t, 'fetchmail');
  if (!fetchmail) return;
  const g = await isp();
  try {
    await fromOutside(g.daemon!.port, 'boss@cust1.dom', 'for cust1 QLE1a');
    await fromOutside(g.daemon!.port, 'staff@cust1.dom', 'for cust1 QLE1b');
    await fromOutside(g.daemon!.port, 'ceo@cust2.dom', 'for cust2 QLE1c');
    assert.deepEqual(await held(g), { 'cust1.dom': 2, 'cust2.dom': 1 });
    assert.equal(g.sink.messages.length, 0, 'held until ETRN');

    // fetchmail keeps its lock and state in FETCHMAILHOME; an empty rcfile, everything on the command line
    const home = path.join(g.dir, 'fetchmail');
    await fs.mkdir(home, { mode: 0o700 });
    await fs.writeFile(path.join(home, 'fetchmailrc'), '', { mode: 0o600 });
    const env = { FETCHMAILHOME: home, HOME: home };
    const args = ['--nosyslog', '--pidfile', path.join(home, 'fetchmail.pid'), '--protocol', 'ETRN', '--fetchdomains', 'cust1.dom', '--service', String(g.daemon!.port), '--verbose', '127.0.0.1'];
    const r = await runProcess(fetchmail, args, { env });
    assert.equal(r.code, 0, `fetchmail exit ${r.code}\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /ETRN cust1\.dom/);
    assert.match(r.stdout + r.stderr, /253 OK, 2 pending messages for node cust1\.dom started/);
    await g.sink.waitFor(bySubject('QLE1a'), 'the first held message at the customer');
    await g.sink.waitFor(bySubject('QLE1b'), 'the second held message at the customer');
    assert.deepEqual(g.sink.messages.flatMap((m) => m.to).sort(), ['boss@cust1.dom', 'staff@cust1.dom']);
    assert.deepEqual(await held(g), { 'cust2.dom': 1 }, "cust2.dom's mail stays held");

    // the flush the first ETRN started is over (a second ETRN during it joins it: 250)
    await g.daemon!.waitLog((l) => l.msg === 'etrn flush done' && l.node === 'cust1.dom', 'the ETRN flush to end');
    const again = await runProcess(fetchmail, args, { env });
    assert.match(again.stdout + again.stderr, /ETRN< 251 OK, no messages waiting for node cust1\.dom/);
    assert.equal(again.code, 0, 'fetchmail takes 251 as a normal end');
    assert.equal(g.sink.messages.length, 2, 'each message once');
  } finally {
    await g.close();
  }
});

test('msmtp --rmqs=cust1.dom: held mail for cust1.dom arrives after its ETRN (253, exit 0); cust2.dom stays held; a second request gets 251', async (t) => {
  const msmtp = need(t, 'msmtp');
  if (!msmtp) return;
  const g = await isp();
  try {
    await fromOutside(g.daemon!.port, 'boss@cust1.dom', 'for cust1 QLE2a');
    await fromOutside(g.daemon!.port, 'ceo@cust2.dom', 'for cust2 QLE2b');
    assert.deepEqual(await held(g), { 'cust1.dom': 1, 'cust2.dom': 1 });
    const rc = path.join(g.dir, 'msmtprc');
    await fs.writeFile(rc, `account default\nhost 127.0.0.1\nport ${g.daemon!.port}\ndomain gw.cust1.dom\nauth off\ntls off\ntimeout 20\n`, { mode: 0o600 });
    const r = await runProcess(msmtp, ['-C', rc, '--debug', '--rmqs=cust1.dom']);
    assert.equal(r.code, 0, `msmtp exit ${r.code}\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /ETRN cust1\.dom/);
    assert.match(r.stdout + r.stderr, /253 OK, 1 pending messages for node cust1\.dom started/);
    const m = await g.sink.waitFor(bySubject('QLE2a'), 'the held message at the customer');
    assert.deepEqual(m.to, ['boss@cust1.dom']);
    assert.deepEqual(await held(g), { 'cust2.dom': 1 });
    await g.daemon!.waitLog((l) => l.msg === 'etrn flush done' && l.node === 'cust1.dom', 'the ETRN flush to end');
    const again = await runProcess(msmtp, ['-C', rc, '--debug', '--rmqs=cust1.dom']);
    assert.match(again.stdout, /^<-- 251 OK, no messages waiting for node cust1\.dom\r?$/m);
    assert.equal(again.code, 0, 'msmtp takes 251 as success');
  } finally {
    await g.close();
  }
});
