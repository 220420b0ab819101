/**
 * The ODMR server (RFC 2645), the ISP side, against a scripted customer
 * (test/odmr/customer.ts): every reply code it gives in the initial state,
 * AUTH only over TLS, ATRN only for the user's domains, the turnaround with
 * delivery down the customer's own connection (queue empty afterwards, the
 * usual delivery log lines), a second ATRN for a domain being delivered
 * (450), and a connection cut mid-delivery (nothing lost, nothing marked
 * delivered that was not).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ROOT, runCli, startDaemon, tempDir, writeConfig, type Daemon } from '../helpers/daemon.js';
import { fromOutside } from '../helpers/smtp-client.js';
import { closedPort } from '../helpers/sink.js';
import { Customer, customerServer } from './customer.js';

const FIX = path.join(ROOT, 'test', 'fixtures');
/** What the customer's mail carries in these tests. */
const CUSTOMER = { body: 'for the customer' };

/** The ISP: cust1.dom and cust2.dom held; user cust1 takes its class cust1, user cust2 cust2.dom by listing. */
async function isp(): Promise<{ d: Daemon; config: string; dir: string; odmr: number; close(): Promise<void> }> {
  const dir = await tempDir('ql-odmr-isp-');
  const odmr = await closedPort();
  await fs.writeFile(path.join(dir, 'odmr-users'), '# user secret [domains]\ncust1 s3cret-1\ncust2 "s3cret 2" cust2.dom\n', { mode: 0o600 });
  const config = await writeConfig(dir, {
    hostname: 'smtprelay.isp.test',
    smtp: { mynetworks: ['127.0.0.1/32'], tls: { cert: path.join(FIX, 'tls.crt'), key: path.join(FIX, 'tls.key') } },
    classes: { CustDoms: { domains: ['cust1.dom', 'cust2.dom'] }, cust1: { domains: ['cust1.dom'] } },
    // the ISP has no way to reach the customers: a closed port
    routes: [{ domain: 'cust1.dom', qsmtp: `[127.0.0.1]:${await closedPort()}` }, { domain: 'cust2.dom', qsmtp: `[127.0.0.1]:${await closedPort()}` }],
    odmr: { listen: [`127.0.0.1:${odmr}`], users: 'odmr-users' },
    link: { mode: 'managed' },
  });
  const d = await startDaemon(config);
  return { d, config, dir, odmr, close: async () => { await d.stop(); await fs.rm(dir, { recursive: true, force: true }); } };
}

async function queued(config: string, domain: string): Promise<number> {
  return JSON.parse((await runCli(['mailq', '-c', config, '--json', `-qR${domain}`])).stdout).total;
}

/** A customer through EHLO, STARTTLS and AUTH. */
async function loggedIn(port: number, user = 'cust1', secret = 's3cret-1'): Promise<Customer> {
  const c = await Customer.connect(port);
  assert.equal((await c.reply()).code, 220);
  await c.cmd('EHLO gw.cust1.dom');
  await c.startTls();
  assert.equal((await c.cmd('EHLO gw.cust1.dom')).code, 250);
  assert.equal((await c.authCram(user, secret)).code, 235);
  return c;
}

test('ODMR server: the initial state answers as RFC 2645 says (220, 250 with ATRN, 530, 535, 504, 501, 450, 453, 502, 500, 221)', { timeout: 60_000 }, async () => {
  const g = await isp();
  try {
    const c = await Customer.connect(g.odmr);
    assert.equal((await c.reply()).code, 220);
    assert.equal((await c.cmd('ATRN cust1.dom')).code, 530, 'ATRN before AUTH');
    const plain = await c.cmd('EHLO gw.cust1.dom');
    assert.match(plain.text, /250-STARTTLS/);
    assert.match(plain.text, /ATRN/);
    assert.doesNotMatch(plain.text, /AUTH/, 'no AUTH offered before TLS');
    assert.equal((await c.authPlain('cust1', 's3cret-1')).code, 530, 'AUTH before STARTTLS');
    assert.equal((await c.cmd('MAIL FROM:<a@b.c>')).code, 502);
    assert.equal((await c.cmd('FROB')).code, 500);
    await c.startTls();
    const ehlo = await c.cmd('EHLO gw.cust1.dom');
    assert.match(ehlo.text, /AUTH CRAM-MD5 PLAIN LOGIN/);
    assert.equal((await c.cmd('AUTH XFOO')).code, 504);
    assert.equal((await c.authPlain('cust1', 'wrong')).code, 535);
    assert.equal((await c.authCram('cust1', 'wrong')).code, 535);
    assert.equal((await c.authCram('cust1', 's3cret-1')).code, 235);
    assert.equal((await c.cmd('ATRN not a domain!')).code, 501);
    assert.match((await c.cmd('ATRN cust2.dom')).text, /^450 ATRN request refused: not your domain cust2\.dom/);
    assert.match((await c.cmd('ATRN cust1.dom')).text, /^453 You have no mail/);
    assert.equal((await c.cmd('QUIT')).code, 221);
    c.close();
    // PLAIN over TLS, with a secret holding a space; the listed domain
    const c2 = await Customer.connect(g.odmr);
    await c2.reply();
    await c2.cmd('EHLO gw.cust2.dom');
    await c2.startTls();
    await c2.cmd('EHLO gw.cust2.dom');
    assert.equal((await c2.authPlain('cust2', 's3cret 2')).code, 235);
    assert.equal((await c2.cmd('ATRN')).code, 453, 'ATRN without argument: all the user\'s domains');
    c2.close();
  } finally {
    await g.close();
  }
});

test('ODMR server: after 250 the held mail goes down the customer\'s connection; the queue is empty, cust2.dom untouched; a second ATRN meanwhile gets 450', { timeout: 90_000 }, async () => {
  const g = await isp();
  try {
    await fromOutside(g.d.port, 'boss@cust1.dom', 'odmr one', CUSTOMER);
    await fromOutside(g.d.port, 'staff@cust1.dom', 'odmr two', CUSTOMER);
    await fromOutside(g.d.port, 'ceo@cust2.dom', 'odmr three', CUSTOMER);
    assert.equal(await queued(g.config, 'cust1.dom'), 2);
    const c = await loggedIn(g.odmr);
    const r = await c.cmd('ATRN cust1.dom');
    assert.equal(r.text, '250 OK now reversing the connection');
    // a second customer session asks for the same domain while the first is being delivered
    const second = await loggedIn(g.odmr);
    assert.match((await second.cmd('ATRN cust1.dom')).text, /^450 .*being delivered now/);
    second.close();
    const sink = customerServer();
    const closed = c.turn(sink);
    await sink.waitMessages(2);
    await closed;
    assert.deepEqual(sink.messages.flatMap((m) => m.to).sort(), ['boss@cust1.dom', 'staff@cust1.dom']);
    const done = await g.d.waitLog((l) => l.msg === 'odmr: session done', 'the ODMR session to end');
    assert.equal(done.delivered, 2);
    assert.equal(g.d.logs.filter((l) => l.msg === 'delivered' && String(l.to).endsWith('@cust1.dom')).length, 2, 'the usual delivery log lines');
    assert.equal(await queued(g.config, 'cust1.dom'), 0);
    assert.equal(await queued(g.config, 'cust2.dom'), 1);
    const status = JSON.parse((await runCli(['status', '-c', g.config, '--json'])).stdout);
    assert.equal(status.counters.odmrServed, 1);
    assert.equal(status.counters.odmrDelivered, 2);
  } finally {
    await g.close();
  }
});

test('ODMR server: a connection cut mid-delivery leaves what was not delivered queued, none lost, none marked delivered', { timeout: 90_000 }, async () => {
  const g = await isp();
  try {
    for (const n of [1, 2, 3]) await fromOutside(g.d.port, `user${n}@cust1.dom`, `cut ${n}`, CUSTOMER);
    const c = await loggedIn(g.odmr);
    assert.equal((await c.cmd('ATRN cust1.dom')).code, 250);
    const sink = customerServer({ dropAt: 2 });
    await c.turn(sink);
    const done = await g.d.waitLog((l) => l.msg === 'odmr: session done', 'the ODMR session to end');
    assert.equal(sink.messages.length, 1);
    assert.equal(done.delivered, 1);
    assert.equal(await queued(g.config, 'cust1.dom'), 2, 'the two not delivered are still queued');
    const delivered = g.d.logs.filter((l) => l.msg === 'delivered').map((l) => l.to);
    assert.deepEqual(delivered, sink.messages.flatMap((m) => m.to), 'only what the customer accepted is logged delivered');
    // the next ATRN gets the rest
    const again = await loggedIn(g.odmr);
    assert.equal((await again.cmd('ATRN cust1.dom')).code, 250);
    const sink2 = customerServer();
    await again.turn(sink2);
    assert.equal(sink2.messages.length, 2);
    assert.equal(await queued(g.config, 'cust1.dom'), 0);
  } finally {
    await g.close();
  }
});
