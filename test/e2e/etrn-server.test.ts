/**
 * The ISP side (SPEC §1 deployment 2, §7 server): CustDoms mail is relayed
 * from anywhere, held on qsmtp without a single connection until ETRN, and
 * ETRN answers with every RFC 1985 code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir, writeConfig, startDaemon, runCli } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';

const MSG = 'Subject: for the customer\r\n\r\nbody\r\n';

async function fromOutside(port: number, to: string) {
  const c = await RawSmtp.connect(port, '127.0.0.2');
  try {
    await c.reply();
    await c.cmd('EHLO sender.outside.test');
    await c.cmd('MAIL FROM:<someone@outside.test>');
    const r = await c.cmd(`RCPT TO:<${to}>`);
    if (r.code !== 250) return r;
    await c.cmd('DATA');
    c.write(`${MSG}.\r\n`);
    return await c.reply();
  } finally {
    c.close();
  }
}

test('ISP: CustDoms mail is held without a connection (cron, interval, link-up, flush) until ETRN; every ETRN reply code', { timeout: 60_000 }, async () => {
  let release!: () => void;
  const holdData = new Promise<void>((resolve) => (release = resolve));
  const customer = await startSink({ holdData });
  const dir = await tempDir();
  await fs.writeFile(path.join(dir, 'mailertable'), `cust1.dom qsmtp:[127.0.0.1]:${customer.port}\n.cust1.dom qsmtp:[127.0.0.1]:${customer.port}\ncust3.dom qsmtp:[127.0.0.1]:${customer.port}\n`);
  // .cust1.dom: its subdomains too (sendmail's class semantics: a bare name is that domain only)
  await fs.writeFile(path.join(dir, 'CustDoms'), '# customers\ncust1.dom\n.cust1.dom\ncust2.dom\ncust3.dom\n');
  const config = await writeConfig(dir, {
    smtp: { mynetworks: ['127.0.0.1/32'] },
    mailertable: 'mailertable',
    classes: { CustDoms: { file: 'CustDoms' } },
    etrnServer: { allow: ['127.0.0.1/32'] },
    queue: { groups: [{ name: 'custq', match: ['cust3.dom'] }] },
    flush: { interval: '1s', cron: ['* * * * * *'] },
    link: { mode: 'managed' },
  });
  const d = await startDaemon(config);
  try {
    for (const to of ['a@cust1.dom', 'b@cust1.dom', 'c@sub.cust1.dom', 'd@cust3.dom']) assert.equal((await fromOutside(d.port, to)).code, 250, to);
    const denied = await fromOutside(d.port, 'victim@elsewhere.example');
    assert.equal(denied.code, 550, 'relaying for other domains stays denied');
    // runs, windows and link-up pass held mail by
    await runCli(['link', 'up', '-c', config]);
    await d.waitLog((l) => l.msg === 'window' && String(l.cause).split(' + ').includes('link-up'), 'link-up window');
    await d.waitLog((l) => l.msg === 'window' && String(l.cause).split(' + ').includes('interval'), 'interval window');
    await d.waitLog((l) => l.msg === 'window' && /(^| \+ )cron/.test(String(l.cause)), 'cron window');
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    assert.equal(customer.connections, 0, 'no connection to an offline customer');
    const st = JSON.parse((await runCli(['status', '-c', config, '--json'])).stdout);
    assert.deepEqual(st.held, { 'cust1.dom': 2, 'sub.cust1.dom': 1, 'cust3.dom': 1 });

    const c = await RawSmtp.connect(d.port);
    await c.reply();
    assert.equal((await c.cmd('ETRN cust1.dom')).code, 503, 'ETRN before EHLO');
    const ehlo = await c.cmd('EHLO customer.gw');
    assert.match(ehlo.text, /^250[ -]ETRN$/m);
    assert.equal((await c.cmd('ETRN')).code, 501);
    assert.equal((await c.cmd('ETRN not a domain!')).code, 501);
    assert.match((await c.cmd('ETRN elsewhere.example')).text, /^459 /);
    assert.match((await c.cmd('ETRN cust2.dom')).text, /^251 OK, no messages waiting for node cust2\.dom/);
    assert.match((await c.cmd('ETRN cust1.dom')).text, /^253 OK, 2 pending messages for node cust1\.dom started/);
    assert.match((await c.cmd('ETRN cust1.dom')).text, /^250 OK, queuing for node cust1\.dom started/, 'a second ETRN joins the running flush');
    release();
    await customer.waitMessages(2);
    assert.match((await c.cmd('ETRN @cust1.dom')).text, /^253 OK, 1 pending messages for node @cust1\.dom started/);
    await customer.waitMessages(3);
    assert.match((await c.cmd('ETRN #custq')).text, /^253 /);
    await customer.waitMessages(4);
    assert.match((await c.cmd('ETRN #nosuchgroup')).text, /^459 /);
    let last = { code: 0, text: '' };
    for (let i = 0; i < 10 && last.code !== 458; i++) last = await c.cmd('ETRN cust2.dom');
    assert.equal(last.code, 458, 'a bounded rate per client');
    c.close();
    const outside = await RawSmtp.connect(d.port, '127.0.0.2');
    await outside.reply();
    await outside.cmd('EHLO outside.test');
    assert.match((await outside.cmd('ETRN cust1.dom')).text, /^459 .*may not use ETRN/);
    outside.close();
    assert.equal(customer.messages.length, 4, 'each message once');
    const st2 = JSON.parse((await runCli(['status', '-c', config, '--json'])).stdout);
    assert.ok(st2.lastEtrn['cust1.dom']);
  } finally {
    await d.stop();
    await customer.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('ISP: the class file is reloaded without a restart; a bad line keeps the old set', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'CustDoms');
  await fs.writeFile(file, 'cust1.dom\n');
  const config = await writeConfig(dir, { smtp: { mynetworks: ['127.0.0.1/32'] }, classes: { CustDoms: { file: 'CustDoms' } } });
  const d = await startDaemon(config);
  try {
    assert.equal((await fromOutside(d.port, 'x@cust4.dom')).code, 550);
    await fs.writeFile(file, 'cust1.dom\ncust4.dom\n');
    await d.waitLog((l) => l.msg === 'routes reloaded', 'reload after the class file changed');
    assert.equal((await fromOutside(d.port, 'x@cust4.dom')).code, 250);
    await fs.writeFile(file, 'cust1.dom\nbad domain!\n');
    const refused = await d.waitLog((l) => /^reload refused: .*CustDoms:2: invalid domain/.test(String(l.msg)), 'bad line refused with file:line');
    assert.ok(refused);
    assert.equal((await fromOutside(d.port, 'y@cust4.dom')).code, 250, 'the old set stays');
  } finally {
    await d.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('ETRN #group for a queue group with runners 0 runs that group (someone asked), and the reply says what started', { timeout: 60_000 }, async () => {
  const customer = await startSink();
  const dir = await tempDir();
  await fs.writeFile(path.join(dir, 'CustDoms'), 'cust1.dom\n');
  const config = await writeConfig(dir, {
    smtp: { mynetworks: ['127.0.0.1/32'] },
    routes: [{ domain: 'cust1.dom', qsmtp: `[127.0.0.1]:${customer.port}` }],
    classes: { CustDoms: { file: 'CustDoms' } },
    etrnServer: { allow: ['127.0.0.0/8'] },
    queue: { groups: [{ name: 'grpb', runners: 0, match: ['cust1.dom'] }] },
    link: { mode: 'permanent' },
  });
  const d = await startDaemon(config);
  try {
    for (const to of ['a@cust1.dom', 'b@cust1.dom']) assert.equal((await fromOutside(d.port, to)).code, 250, to);
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    assert.equal(customer.connections, 0, 'runners 0: not by an ordinary run');
    const c = await RawSmtp.connect(d.port, '127.0.0.2');
    try {
      await c.reply();
      await c.cmd('EHLO customer.test');
      const r = await c.cmd('ETRN #grpb');
      assert.equal(r.code, 253, r.text);
      assert.match(r.text, /2 pending messages for node #grpb started/);
    } finally {
      c.close();
    }
    await customer.waitMessages(2);
    assert.deepEqual(customer.messages.map((m) => m.to[0]).sort(), ['a@cust1.dom', 'b@cust1.dom']);
  } finally {
    await d.stop();
    await customer.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
