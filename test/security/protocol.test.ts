/**
 * Protocol abuse from outside (SPEC §7 ETRN server, §9 "Abuse"; issue 15):
 * plaintext pipelined behind STARTTLS is discarded, never run inside the TLS
 * session (CVE-2011-0411's class); AUTH is neither offered nor taken before
 * TLS, and nothing authenticated in plaintext survives the upgrade; ETRN
 * from a network not in etrnServer.allow, for a node not allowed, with odd
 * syntax, before EHLO and in a flood (458 after 10 a minute, the error
 * limit's 421 after 20 errors) flushes nothing it should not. Clients from
 * 127.0.0.2 are outside (smtp.mynetworks and lanNetworks are 127.0.0.1/32);
 * outcomes are counted at the sinks and in the queue, not read off replies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { startSink, type Sink } from '../helpers/sink.js';
import { gateway } from '../helpers/gateway.js';
import { INSIDE, OUTSIDE, TlsSmtp, flushWait, mailq, repliesUntilClosed } from '../helpers/security.js';

const FIX = path.join(ROOT, 'test', 'fixtures');
const HDRS = 'Date: Tue, 01 Dec 2026 08:00:00 +0000\r\nMessage-ID: <protocol@outside.test>\r\n';
const plain = (user: string, pass: string) => Buffer.from(`\0${user}\0${pass}`).toString('base64');

/** A gateway with STARTTLS and AUTH (test/fixtures), delivering everything at once to `wan` (the smart host on 127.0.0.2). */
function tlsGateway(wan: Sink, body: Parameters<typeof gateway>[2]) {
  return gateway({}, {
    hostname: 'gw.office.example',
    deliveryMode: 'background',
    lanNetworks: ['127.0.0.1/32'],
    smtp: {
      listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'],
      tls: { cert: path.join(FIX, 'tls.crt'), key: path.join(FIX, 'tls.key') },
      auth: { users: path.join(FIX, 'users') },
    },
    smartHost: [`[${OUTSIDE}]:${wan.port}`],
    link: { mode: 'permanent' },
    queue: { minQueueAge: '0s' },
  }, body, [wan]);
}

/** MAIL, RCPT, DATA and a message in an open (TLS) session; the final reply's code. */
async function transaction(c: TlsSmtp, from: string, to: string): Promise<number> {
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250, from);
  assert.equal((await c.cmd(`RCPT TO:<${to}>`)).code, 250, to);
  assert.equal((await c.cmd('DATA')).code, 354);
  return (await c.cmd(`${HDRS}Subject: from ${from}\r\n\r\nhello\r\n.`)).code;
}

test('STARTTLS with plaintext pipelined behind it: the plaintext is discarded, never run in the TLS session; only the client\'s own mail arrives', { timeout: 60_000 }, async (t) => {
  const wan = await startSink({ host: OUTSIDE });
  await tlsGateway(wan, async (d, config) => {
    const injections: Array<{ name: string; extra: string; sameWrite: boolean }> = [
      { name: 'MAIL and RCPT in the STARTTLS write', extra: 'MAIL FROM:<injected1@evil.example>\r\nRCPT TO:<injected1@office.example>\r\n', sameWrite: true },
      { name: 'EHLO, MAIL, RCPT, DATA in the STARTTLS write', extra: 'EHLO evil.example\r\nMAIL FROM:<injected2@evil.example>\r\nRCPT TO:<injected2@office.example>\r\nDATA\r\n', sameWrite: true },
      { name: 'RSET, MAIL, RCPT in a write right after STARTTLS', extra: 'RSET\r\nMAIL FROM:<injected3@evil.example>\r\nRCPT TO:<injected3@office.example>\r\n', sameWrite: false },
    ];
    const sent: number[] = [];
    const outcomes: string[] = [];
    for (const [i, inj] of injections.entries()) {
      const c = await TlsSmtp.connect(d.port, OUTSIDE);
      try {
        await c.reply();
        assert.match((await c.cmd('EHLO victim.test')).text, /STARTTLS/);
        if (inj.sameWrite) c.write(`STARTTLS\r\n${inj.extra}`);
        else {
          c.write('STARTTLS\r\n');
          c.write(inj.extra);
        }
        assert.equal((await c.reply()).code, 220, inj.name);
        assert.equal(c.pending, '', `${inj.name}: no plaintext reply to the injected commands`);
        // plaintext that arrives after the server turned to TLS is no ClientHello: the handshake may fail, which is safe too
        const secure = await c.handshake().then(() => true, () => false);
        outcomes.push(`${inj.name}: ${secure ? 'discarded, TLS session clean' : 'handshake failed, connection closed'}`);
        if (!secure) {
          assert.equal(inj.sameWrite, false, `${inj.name}: the handshake must work when the plaintext came with STARTTLS`);
          continue;
        }
        // the first replies in TLS are to our own commands: an injected MAIL/RCPT/DATA run there would answer first
        assert.match((await c.cmd('DATA')).text, /^503 /, `${inj.name}: no transaction carried into TLS`);
        const ehlo = await c.cmd('EHLO victim.test');
        assert.ok(ehlo.code === 250 && /AUTH PLAIN LOGIN/.test(ehlo.text), `${inj.name}: our EHLO's reply (${ehlo.text})`);
        assert.equal(await transaction(c, `legit${i}@outside.test`, `legit${i}@office.example`), 250, inj.name);
        sent.push(i);
        assert.equal(c.pending, '', `${inj.name}: no reply left over`);
        assert.equal((await c.cmd('QUIT')).code, 221);
      } finally {
        c.close();
      }
    }
    t.diagnostic(`STARTTLS injection: ${outcomes.join('; ')}`);
    await wan.waitMessages(sent.length);
    await flushWait(config);
    assert.equal((await mailq(config)).total, 0);
    assert.deepEqual(wan.messages.map((m) => [m.from, m.to]).sort(), sent.map((i) => [`legit${i}@outside.test`, [`legit${i}@office.example`]]));
    assert.ok(!wan.messages.some((m) => JSON.stringify(m).includes('injected')), 'nothing of the injections was sent on');
  });
});

test('AUTH before TLS: not offered, refused with the right password too (LAN and outside), and no plaintext AUTH carries across STARTTLS', { timeout: 60_000 }, async () => {
  const wan = await startSink({ host: OUTSIDE });
  await tlsGateway(wan, async (d, config) => {
    const right = plain('office', 's3cret');
    for (const client of [OUTSIDE, INSIDE]) {
      const c = await TlsSmtp.connect(d.port, client);
      try {
        await c.reply();
        const ehlo = await c.cmd('EHLO plain.test');
        assert.match(ehlo.text, /STARTTLS/, client);
        assert.doesNotMatch(ehlo.text, /AUTH/, `${client}: AUTH is not offered before TLS`);
        for (const line of [`AUTH PLAIN ${right}`, 'AUTH PLAIN', 'AUTH LOGIN', `AUTH LOGIN ${Buffer.from('office').toString('base64')}`, 'AUTH CRAM-MD5']) {
          const r = await c.cmd(line);
          assert.ok(r.code >= 500 && r.code < 600, `${client} ${line}: ${r.text}`);
        }
        // nothing was authenticated: from outside, relaying stays denied
        assert.equal((await c.cmd('MAIL FROM:<office@outside.test>')).code, 250);
        const relay = await c.cmd('RCPT TO:<victim@far.example>');
        assert.equal(relay.code, client === OUTSIDE ? 550 : 250, `${client}: ${relay.text}`);
      } finally {
        c.close();
      }
    }
    // AUTH pipelined in front of STARTTLS: refused, and the TLS session is not authenticated
    const c = await TlsSmtp.connect(d.port, OUTSIDE);
    try {
      await c.reply();
      await c.cmd('EHLO plain.test');
      c.write(`AUTH PLAIN ${right}\r\nSTARTTLS\r\n`);
      assert.ok((await c.reply()).code >= 500, 'AUTH before STARTTLS');
      assert.equal((await c.reply()).code, 220);
      await c.handshake();
      assert.match((await c.cmd('EHLO plain.test')).text, /AUTH PLAIN LOGIN/, 'offered once in TLS');
      assert.equal((await c.cmd('MAIL FROM:<office@outside.test>')).code, 250);
      assert.match((await c.cmd('RCPT TO:<victim@far.example>')).text, /^550 5\.7\.1 /, 'not authenticated by the plaintext AUTH');
      assert.equal((await c.cmd('RSET')).code, 250);
      // the control: the same credentials in TLS authenticate and relay
      assert.equal((await c.cmd(`AUTH PLAIN ${right}`)).code, 235);
      assert.equal(await transaction(c, 'office@outside.test', 'victim@far.example'), 250);
    } finally {
      c.close();
    }
    await wan.waitMessages(1);
    await flushWait(config);
    assert.equal((await mailq(config)).total, 0);
    assert.deepEqual(wan.messages.map((m) => [m.from, m.to]), [['office@outside.test', ['victim@far.example']]], 'only the authenticated relay reached the WAN');
  });
});

/** The ISP gateway of the ETRN tests: cust1.dom and cust2.dom held for `customer`; ETRN from 127.0.0.1 and 127.0.0.3, for cust2.dom only. */
function etrnGateway(customer: Sink, body: Parameters<typeof gateway>[2]) {
  return gateway({}, (dir) => {
    writeFileSync(path.join(dir, 'mailertable'), `cust1.dom qsmtp:[127.0.0.1]:${customer.port}\ncust2.dom qsmtp:[127.0.0.1]:${customer.port}\n`);
    return {
      deliveryMode: 'background',
      lanNetworks: ['127.0.0.1/32'],
      smtp: { listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'] },
      mailertable: path.join(dir, 'mailertable'),
      classes: { CustDoms: { domains: ['cust1.dom', 'cust2.dom'] } },
      etrnServer: { allow: ['127.0.0.1/32', '127.0.0.3/32'], domains: ['cust2.dom'] },
      queue: { minQueueAge: '0s', groups: [{ name: 'grpa', match: ['cust1.dom'] }] },
      link: { mode: 'permanent' },
    };
  }, body, [customer]);
}

/** Mail from outside for the held customers: a@ and b@cust1.dom, c@ and d@cust2.dom. */
async function seed(port: number): Promise<void> {
  for (const to of ['a@cust1.dom', 'b@cust1.dom', 'c@cust2.dom', 'd@cust2.dom']) {
    const c = await RawSmtp.connect(port, OUTSIDE);
    try {
      await c.reply();
      await c.cmd('EHLO sender.outside.test');
      await c.cmd('MAIL FROM:<someone@outside.test>');
      assert.equal((await c.cmd(`RCPT TO:<${to}>`)).code, 250, to);
      await c.cmd('DATA');
      assert.equal((await c.cmd(`${HDRS}Subject: for ${to}\r\n\r\nheld\r\n.`)).code, 250, to);
    } finally {
      c.close();
    }
  }
}

/** One session from `client`: EHLO (unless `ehlo` is false), then `ETRN arg`; the reply text. */
async function etrnOnce(port: number, client: string, arg: string, ehlo = true): Promise<string> {
  const c = await RawSmtp.connect(port, client);
  try {
    await c.reply();
    if (ehlo) await c.cmd('EHLO customer.test');
    return (await c.cmd(`ETRN${arg === '' ? '' : ` ${arg}`}`)).text;
  } finally {
    c.close();
  }
}

test('ETRN abuses: a network not allowed, nodes not allowed, odd syntax, before EHLO, a flood (458, then 421 at the error limit) flush nothing they should not', { timeout: 90_000 }, async (t) => {
  const customer = await startSink();
  await etrnGateway(customer, async (d, config) => {
    await seed(d.port);
    await flushWait(config);
    assert.equal(customer.connections, 0, 'held until ETRN');
    const cases: Array<[client: string, arg: string, want: RegExp, ehlo?: boolean]> = [
      // a network outside etrnServer.allow: whatever the node
      ...['cust2.dom', '@cust2.dom', 'cust1.dom', '@dom', '#grpa', '#mqueue'].map((n): [string, string, RegExp] => [OUTSIDE, n, /^459 .*may not use ETRN/]),
      // nodes not allowed (cust1.dom is held but not in etrnServer.domains)
      ...['cust1.dom', '@cust1.dom', '@dom', 'far.example', 'sub.cust2.dom', '#mqueue', '#nosuch'].map((n): [string, string, RegExp] => [INSIDE, n, /^459 Node .* not allowed/]),
      // syntax
      ...['', '@', '#', 'a b', '<cust2.dom>', '@@cust2.dom', '#../cust2', '*', '.cust2.dom', '%cust2.dom', 'cust2.dom,cust1.dom', '"cust2.dom"', 'cust2.dom\x00',
        `${'a'.repeat(300)}.dom`, `@${'b'.repeat(64)}.cust2.dom`].map((n): [string, string, RegExp] => [INSIDE, n, /^501 /]),
      [INSIDE, 'x'.repeat(20_000), /^(421|500|501) /],
      // before EHLO/HELO, allowed or not
      [INSIDE, 'cust2.dom', /^503 /, false],
      [OUTSIDE, 'cust2.dom', /^503 /, false],
    ];
    const wrong: string[] = [];
    for (const [client, arg, want, ehlo] of cases) {
      const got = await etrnOnce(d.port, client, arg, ehlo ?? true);
      if (!want.test(got)) wrong.push(`${client} ETRN ${JSON.stringify(arg.slice(0, 40))}: ${got}`);
    }
    assert.deepEqual(wrong, []);
    await flushWait(config);
    assert.equal(customer.connections, 0, `${cases.length} refused ETRNs flushed nothing`);

    // a flood from an allowed network for an allowed node, pipelined: one flush, 458 after 10, 421 at 20 errors
    const c = await RawSmtp.connect(d.port, '127.0.0.3');
    let codes: number[];
    try {
      await c.reply();
      await c.cmd('EHLO flood.test');
      c.write('ETRN cust2.dom\r\n'.repeat(40));
      codes = (await repliesUntilClosed(c, 10_000)).map((r) => r.code);
    } finally {
      c.close();
    }
    const answered = codes.slice(0, 10);
    assert.equal(answered.filter((x) => x === 253).length, 1, `one flush started: ${codes.join(' ')}`);
    assert.ok(answered.every((x) => [250, 251, 253].includes(x)), codes.join(' '));
    assert.deepEqual(codes.slice(10), [...Array(20).fill(458), 421], 'ten a minute, then 458 until the error limit closes the session');
    await customer.waitMessages(2);
    await flushWait(config);
    t.diagnostic(`ETRN abuses: ${cases.length} refused forms, 1 flood of 40 (${codes.length} replies), customer sink ${customer.messages.length} messages`);
    assert.deepEqual(customer.messages.map((m) => m.to[0]).sort(), ['c@cust2.dom', 'd@cust2.dom'], 'only the allowed node, each message once');
    const q = await mailq(config);
    assert.deepEqual(q.messages.flatMap((m) => m.recipients.map((r) => r.address)).sort(), ['a@cust1.dom', 'b@cust1.dom'], 'the node not allowed is still held');
  });
});

// decided: etrnServer.domains bounds #group too — a group flushes only the allowed domains' mail in it
test('ETRN #group for a queue group whose mail is for a domain outside etrnServer.domains flushes nothing', { timeout: 60_000 }, async () => {
  const customer = await startSink();
  await etrnGateway(customer, async (d, config) => {
    await seed(d.port);
    const reply = await etrnOnce(d.port, INSIDE, '#grpa');
    assert.match(reply, /^251 /, 'nothing in the group that this ETRN may flush');
    await flushWait(config);
    assert.equal(customer.connections, 0, `cust1.dom was flushed through its group: ${customer.messages.map((m) => m.to).join(' ')}`);
  });
});
