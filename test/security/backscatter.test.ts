/**
 * Backscatter and relay from outside (SPEC §9 "Relay", "Backscatter",
 * issue 15). Pure tables for the recipient lists and postmaster, then a real
 * daemon: clients bound to 127.0.0.2 are outside (smtp.mynetworks is
 * 127.0.0.1/32), a counting WAN sink on 127.0.0.2 is the smart host, LAN and
 * customer sinks on 127.0.0.1. Outcomes are counted at the sinks after the
 * ETRNs and the flush that would have sent the mail, not read off replies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli } from '../helpers/daemon.js';
import { RawSmtp, type Reply } from '../helpers/smtp-client.js';
import { startSink, type Sink } from '../helpers/sink.js';
import { gateway } from '../helpers/gateway.js';
import { postmasterAddress, recipientAllowed, recipientListsOf } from '../../src/intake/relay-policy.js';

const OUTSIDE = '127.0.0.2';
const PAYLOAD = 'ATTACKER-PAYLOAD-8f3a';
const MSG = `Subject: probe\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\nMessage-ID: <probe@outside.test>\r\n\r\n${PAYLOAD}\r\n`;

test('recipientAllowed(): a class with a list takes its users and @domain catch-alls only; other domains are not checked', () => {
  const classes = new Map([['CustDoms', new Set(['cust1.dom', '.cust2.dom'])], ['Other', new Set(['other.dom'])]]);
  const lists = recipientListsOf(classes, new Map([['CustDoms', ['alice@cust1.dom', '@cust2.dom', '@mail.cust2.dom']]]));
  const cases: Array<[string, boolean]> = [
    ['alice@cust1.dom', true],
    ['Alice@CUST1.DOM', true],
    ['alice@cust1.dom.', true],
    ['bob@cust1.dom', false],
    ['x@nosuch.cust1.dom', true],
    ['anyone@cust2.dom', true],
    ['anyone@mail.cust2.dom', true],
    ['anyone@other.cust2.dom', false],
    ['alice@cust2.dom', true],
    ['bob@other.dom', true],
    ['bob@far.example', true],
  ];
  for (const [address, want] of cases) assert.equal(recipientAllowed(address, lists), want, address);
  assert.equal(recipientAllowed('bob@cust1.dom', []), true, 'no lists: nothing checked');
  const empty = recipientListsOf(classes, new Map([['CustDoms', []]]));
  assert.equal(recipientAllowed('alice@cust1.dom', empty), false, 'an empty list takes no one');
});

test('postmasterAddress(): the gateway\'s own for the LAN, the first local domain\'s from outside', () => {
  const cases: Array<[string[], boolean, string]> = [
    [['office.example', 'other.example'], true, 'postmaster@office.example'],
    [['.office.example'], true, 'postmaster@office.example'],
    [['office.example'], false, 'postmaster@gw.office.example'],
    [[], true, 'postmaster@gw.office.example'],
    [[], false, 'postmaster@gw.office.example'],
  ];
  for (const [local, outside, want] of cases) assert.equal(postmasterAddress(local, 'gw.office.example', outside), want, `${local} ${outside}`);
});

/** One transaction from `local` (127.0.0.2 is outside); DATA only when the RCPT is taken. */
async function transaction(port: number, local: string, from: string, rcpt: string, params = ''): Promise<{ rcpt: Reply; final?: Reply }> {
  const c = await RawSmtp.connect(port, local);
  try {
    await c.reply();
    await c.cmd('EHLO probe.outside.test');
    const mail = await c.cmd(`MAIL FROM:<${from}>${params}`);
    if (mail.code !== 250) return { rcpt: mail };
    const r = await c.cmd(`RCPT TO:${rcpt}`);
    if (r.code !== 250) return { rcpt: r };
    if ((await c.cmd('DATA')).code !== 354) throw new Error('DATA refused');
    c.write(`${MSG}.\r\n`);
    const final = await c.reply();
    await c.cmd('QUIT').catch(() => undefined);
    return { rcpt: r, final };
  } finally {
    c.close();
  }
}

async function etrn(port: number, ...nodes: string[]): Promise<string[]> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    await c.cmd('EHLO customer.test');
    const out: string[] = [];
    for (const n of nodes) out.push((await c.cmd(`ETRN ${n}`)).text);
    return out;
  } finally {
    c.close();
  }
}

interface Sinks { lan: Sink; customer: Sink; wan: Sink }

/** The ISP-and-office gateway of these tests: mail that leaves goes out at once (permanent link, background). */
function setup(s: Sinks, extra: Record<string, unknown> = {}) {
  return (dir: string) => {
    writeFileSync(path.join(dir, 'mailertable'), [
      `cust1.dom qsmtp:[127.0.0.1]:${s.customer.port}`,
      `cust2.dom qsmtp:[127.0.0.1]:${s.customer.port}`,
      `.cust2.dom qsmtp:[127.0.0.1]:${s.customer.port}`,
      '',
    ].join('\n'));
    return {
      hostname: 'gw.office.example',
      deliveryMode: 'background',
      lanNetworks: ['127.0.0.1/32'],
      smtp: { listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'] },
      routes: [{ domain: 'office.example', relay: `[127.0.0.1]:${s.lan.port}` }],
      smartHost: [`[${OUTSIDE}]:${s.wan.port}`],
      mailertable: path.join(dir, 'mailertable'),
      classes: { CustDoms: { domains: ['cust1.dom', '.cust2.dom'] } },
      link: { mode: 'permanent' },
      queue: { minQueueAge: '0s' },
      ...extra,
    };
  };
}

async function sinks(): Promise<Sinks> {
  return { lan: await startSink(), customer: await startSink(), wan: await startSink({ host: OUTSIDE }) };
}

/** RCPT forms an outsider tries, that must all be refused (nothing stored, nothing sent). */
const REFUSED = [
  '<x@nosuch.cust1.dom>', '<x@deep.sub.cust1.dom>', '<x@a.b.c.d.e.cust1.dom>', '<x@mail.cust1.dom.>', '<x@NOSUCH.CUST1.DOM>',
  '<user@sub.office.example>', '<user@gw.office.example>', '<user@GW.Office.Example>', '<user@sub.office.example.>',
  '<postmaster@gw.office.example>', '<postmaster@sub.office.example>', '<abuse@www.office.example>',
  `<user@${'a'.repeat(60)}.${'b'.repeat(60)}.office.example>`,
  '<user%far.example@sub.office.example>', '<"user@far.example"@sub.office.example>', '<"a@far.example"@office.example>', '<far.example!user@gw.office.example>',
  '<@sub.office.example:user@far.example>', '<user@office.example@far.example>',
  '<user@cust1.dom.far.example>', '<user@xcust1.dom>', '<user@office.example.far.example>', '<user@cust2.dom.evil.example>',
  '<user@[127.0.0.2]>', '<user@[IPv6:::1]>', '<victim@far.example>',
];

/** Forms an outsider may use: each is for a listed domain and goes to its LAN or customer route. */
const ACCEPTED: Array<[string, 'lan' | 'customer']> = [
  ['<user@office.example>', 'lan'], ['<User@OFFICE.EXAMPLE>', 'lan'], ['<user%far.example@office.example>', 'lan'],
  ['<x@cust1.dom>', 'customer'], ['<x@sub.cust2.dom>', 'customer'], ['<x@cust2.dom>', 'customer'],
];

test(`${REFUSED.length} relay forms for subdomains of local and hold domains, the hostname and others from outside: refused, and 0 messages reach the WAN`, { timeout: 120_000 }, async () => {
  const s = await sinks();
  await gateway({}, setup(s), async (d, config) => {
    for (const rcpt of REFUSED) {
      for (const from of ['victim@far.example', '']) {
        const r = await transaction(d.port, OUTSIDE, from, rcpt);
        assert.ok(r.rcpt.code >= 500 && r.rcpt.code < 600, `${rcpt} from <${from}>: ${r.rcpt.text}`);
        assert.equal(r.final, undefined, rcpt);
      }
    }
    for (const [rcpt] of ACCEPTED) {
      const r = await transaction(d.port, OUTSIDE, 'victim@far.example', rcpt);
      assert.equal(r.final?.code, 250, `${rcpt}: ${r.rcpt.text} ${r.final?.text ?? ''}`);
    }
    // what would have sent them: ETRN for the hold domains (with subdomains) and a flush of the rest
    const replies = await etrn(d.port, 'cust1.dom', '@cust2.dom', 'nosuch.cust1.dom');
    assert.match(replies[0], /^253 /);
    assert.match(replies[1], /^253 /);
    assert.match(replies[2], /^459 /, 'an unlisted subdomain is no ETRN node either');
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    await s.lan.waitMessages(ACCEPTED.filter(([, to]) => to === 'lan').length);
    await s.customer.waitMessages(ACCEPTED.filter(([, to]) => to === 'customer').length);
    const q = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout) as { total: number };
    assert.equal(q.total, 0, 'nothing is left to leak later');
    assert.equal(s.wan.messages.length, 0, `leaked to the WAN: ${s.wan.messages.map((m) => m.to).join(' ')}`);
    assert.equal(s.wan.connections, 0);
    assert.deepEqual(s.lan.messages.flatMap((m) => m.to).sort(), ['User@OFFICE.EXAMPLE', 'user%far.example@office.example', 'user@office.example'].sort());
  }, [s.lan, s.customer, s.wan]);
});

test('the same forms from the LAN relay as configured (the smart host), so refusal is the outside rule', { timeout: 60_000 }, async () => {
  const s = await sinks();
  const forms = ['<x@nosuch.cust1.dom>', '<user@sub.office.example>', '<user@gw.office.example>', '<victim@far.example>'];
  await gateway({}, setup(s), async (d) => {
    for (const rcpt of forms) assert.equal((await transaction(d.port, '127.0.0.1', 'alice@office.example', rcpt)).final?.code, 250, rcpt);
    await s.wan.waitMessages(forms.length);
  }, [s.lan, s.customer, s.wan]);
});

test('backscatter: a forged sender from outside to an unknown subdomain of a hold domain is refused at RCPT', async () => {
  const s = await sinks();
  await gateway({}, setup(s), async (d) => {
    const r = await transaction(d.port, OUTSIDE, 'victim@far.example', '<x@nosuch.cust1.dom>');
    assert.match(r.rcpt.text, /^550 5\.7\.1 Relaying denied/);
    assert.deepEqual(await etrn(d.port, 'cust1.dom'), [`251 OK, no messages waiting for node cust1.dom`]);
    assert.equal(s.wan.connections + s.customer.connections, 0);
  }, [s.lan, s.customer, s.wan]);
});

test('backscatter with classes.NAME.recipients: unknown users get 550 5.1.1 at RCPT; the list is reloaded when it changes [needs load.ts/daemon/intake wiring]', { timeout: 60_000 }, async () => {
  const s = await sinks();
  let list = '';
  await gateway({}, (dir) => {
    list = path.join(dir, 'CustDoms.rcpt');
    writeFileSync(list, '# known users\nalice@cust1.dom\n@sub.cust1.dom\n');
    return setup(s, { classes: { CustDoms: { domains: ['.cust1.dom'], recipients: 'CustDoms.rcpt' } } })(dir);
  }, async (d) => {
    const cases: Array<[string, string]> = [
      ['<alice@cust1.dom>', '250'],
      ['<ALICE@cust1.dom>', '250'],
      ['<anyone@sub.cust1.dom>', '250'],
      ['<bob@cust1.dom>', '550 5.1.1'],
      ['<x@nosuch.cust1.dom>', '550 5.1.1'],
      ['<x@far.example>', '550 5.7.1'],
    ];
    for (const [rcpt, want] of cases) {
      const r = await transaction(d.port, OUTSIDE, 'victim@far.example', rcpt);
      assert.ok(r.rcpt.text.startsWith(want), `${rcpt}: ${r.rcpt.text}`);
    }
    assert.match((await transaction(d.port, OUTSIDE, 'victim@far.example', '<bob@cust1.dom>')).rcpt.text, /^550 5\.1\.1 Recipient address rejected: user unknown/);
    await fs.writeFile(list, 'alice@cust1.dom\nbob@cust1.dom\n');
    await d.waitLog((l) => l.msg === 'routes reloaded' && String(l.reason).endsWith('CustDoms.rcpt changed'), 'reload of the recipient list', 15_000);
    assert.equal((await transaction(d.port, OUTSIDE, 'victim@far.example', '<bob@cust1.dom>')).final?.code, 250);
    assert.match((await transaction(d.port, OUTSIDE, 'victim@far.example', '<anyone@sub.cust1.dom>')).rcpt.text, /^550 5\.1\.1/);
  }, [s.lan, s.customer, s.wan]);
});

test('a DSN about mail from outside carries the headers only, never the body; one about LAN mail the whole message [needs daemon.ts notify() wiring]', { timeout: 60_000 }, async () => {
  const s = { lan: await startSink(), customer: await startSink({ rcpt: () => ({ code: 550, text: '5.1.1 No such user here' }) }), wan: await startSink({ host: OUTSIDE }) };
  await gateway({}, setup(s), async (d) => {
    assert.equal((await transaction(d.port, OUTSIDE, 'victim@far.example', '<x@cust1.dom>', ' RET=FULL')).final?.code, 250);
    assert.equal((await transaction(d.port, '127.0.0.1', 'alice@office.example', '<y@cust1.dom>', ' RET=FULL')).final?.code, 250);
    assert.match((await etrn(d.port, 'cust1.dom'))[0], /^253 OK, 2 pending/);
    await s.wan.waitMessages(1);
    await s.lan.waitMessages(1);
    const outside = s.wan.messages[0];
    assert.deepEqual([outside.from, outside.to], ['', ['victim@far.example']]);
    assert.match(outside.body, /Content-Type: text\/rfc822-headers/);
    assert.match(outside.body, /Subject: probe/);
    assert.ok(!outside.body.includes(PAYLOAD), 'the attacker\'s body is not sent on to the forged sender');
    const lan = s.lan.messages[0];
    assert.deepEqual(lan.to, ['alice@office.example']);
    assert.match(lan.body, /Content-Type: message\/rfc822/);
    assert.ok(lan.body.includes(PAYLOAD), 'a LAN sender gets its message back (RET=FULL)');
  }, [s.lan, s.customer, s.wan]);
});

test('RCPT TO:<postmaster> from outside is accepted and reaches the local domain\'s postmaster on the LAN, never the WAN [needs intake wiring]', { timeout: 60_000 }, async () => {
  const s = await sinks();
  await gateway({}, setup(s), async (d, config) => {
    for (const form of ['<postmaster>', '<Postmaster>', '<POSTMASTER>']) {
      assert.equal((await transaction(d.port, OUTSIDE, 'victim@far.example', form)).final?.code, 250, form);
    }
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    await s.lan.waitMessages(3);
    assert.deepEqual(s.lan.messages.flatMap((m) => m.to), ['postmaster@office.example', 'postmaster@office.example', 'postmaster@office.example']);
    assert.equal(s.wan.messages.length, 0);
  }, [s.lan, s.customer, s.wan]);
});
