/**
 * SMTP intake against a real daemon process on 127.0.0.1: every reply code
 * of SPEC §9 that intake gives, smuggling variants, 8-bit data, DSN
 * parameters kept in the envelope. The liberal side of §9 (bare LF, 8-bit
 * sent on, unbracketed addresses, added headers) with a next hop:
 * liberal-intake.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir, writeConfig, startDaemon, runCli, type Daemon } from '../helpers/daemon.js';
import { RawSmtp, sendMail } from '../helpers/smtp-client.js';

let dir: string;
let daemon: Daemon;
let config: string;

before(async () => {
  dir = await tempDir();
  config = await writeConfig(dir, {
    classes: { CustDoms: { domains: ['cust1.dom'] } },
    smtp: { maxMessageSize: '4KB', maxRecipients: 3, mynetworks: ['127.0.0.1/32'] },
  });
  daemon = await startDaemon(config);
});

after(async () => {
  await daemon.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

/** Date and Message-ID: mail from the LAN without them gets them (liberal-intake.test.ts), these tests compare bytes. */
const HDRS = 'Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <t1@client.test>\r\n';
const MSG = `Subject: test\r\n${HDRS}\r\nhello\r\n`;

/** The envelope as the admin sees it (mailq --json), and the body once the daemon wrote it to its file. */
async function envelopeOf(id: string) {
  return JSON.parse((await runCli(['mailq', '-c', config, '--json', '-qI', id])).stdout).messages[0];
}

async function bodyOf(id: string): Promise<Buffer> {
  await daemon.waitLog((l) => l.msg === 'settled' && (l.ids as string[] | undefined)?.includes(id) === true, `${id} settled`);
  return fs.readFile(path.join(dir, 'spool', 'data', id));
}

test('a message from mynetworks is queued with 250 and shows in mailq and --json', async () => {
  const r = await sendMail(daemon.port, 'alice@office.example', ['bob@far.example', 'carol@far.example'], MSG);
  assert.equal(r.code, 250);
  const id = /queued as (\S+)/.exec(r.text)![1];
  assert.match(r.text, /^250 2\.0\.0 /);
  const q = await runCli(['mailq', '-c', config, '-qI', id]);
  assert.equal(q.code, 0);
  assert.match(q.stdout, new RegExp(`^${id} `, 'm'));
  assert.match(q.stdout, /<bob@far\.example>/);
  assert.match(q.stdout, /Total requests: 1\n$/);
  const j = JSON.parse((await runCli(['mailq', '-c', config, '--json', `-qI${id}`])).stdout);
  assert.equal(j.total, 1);
  assert.deepEqual(j.messages[0].recipients.map((x: { address: string }) => x.address), ['bob@far.example', 'carol@far.example']);
  const body = (await bodyOf(id)).toString();
  assert.match(body, /^Received: from client\.test \(\[127\.0\.0\.1\]\)/);
  assert.ok(body.endsWith(MSG));
  const logged = await daemon.waitLog((l) => l.qid === id && l.msg === 'queued', 'queued log line');
  assert.equal(logged.from, 'alice@office.example');
  assert.equal(logged.nrcpts, 2);
});

test('relaying for an outside client to a foreign domain gets 550 5.7.1; local and CustDoms domains are open, their subdomains not', async () => {
  // 127.0.0.2 is outside mynetworks (127.0.0.1/32 only)
  const c = await RawSmtp.connect(daemon.port, '127.0.0.2');
  try {
    assert.equal((await c.reply()).code, 220);
    await c.cmd('EHLO outside.test');
    assert.equal((await c.cmd('MAIL FROM:<x@outside.test>')).code, 250);
    const denied = await c.cmd('RCPT TO:<victim@far.example>');
    assert.equal(denied.code, 550);
    assert.match(denied.text, /^550 5\.7\.1 Relaying denied/);
    assert.equal((await c.cmd('RCPT TO:<bob@office.example>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<bob@cust1.dom>')).code, 250);
    // the class lists cust1.dom, not .cust1.dom (sendmail's class semantics)
    assert.match((await c.cmd('RCPT TO:<bob@mail.cust1.dom>')).text, /^550 5\.7\.1 Relaying denied/);
  } finally {
    c.close();
  }
});

test('a SIZE above maxMessageSize gets 552, and so does oversized data', async () => {
  const c = await RawSmtp.connect(daemon.port);
  try {
    await c.reply();
    const ehlo = await c.cmd('EHLO client.test');
    assert.match(ehlo.text, /SIZE 4096/);
    const r = await c.cmd('MAIL FROM:<a@office.example> SIZE=100000');
    assert.equal(r.code, 552);
  } finally {
    c.close();
  }
  const big = `Subject: big\r\n\r\n${'x'.repeat(70).concat('\r\n').repeat(100)}`;
  const r2 = await sendMail(daemon.port, 'a@office.example', ['b@far.example'], big);
  assert.equal(r2.code, 552);
});

test('more than maxRecipients recipients get 452', async () => {
  const c = await RawSmtp.connect(daemon.port);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@office.example>');
    for (let i = 0; i < 3; i++) assert.equal((await c.cmd(`RCPT TO:<r${i}@far.example>`)).code, 250);
    assert.equal((await c.cmd('RCPT TO:<r4@far.example>')).code, 452);
  } finally {
    c.close();
  }
});

test('malformed addresses get 501 with the right enhanced code', async () => {
  const c = await RawSmtp.connect(daemon.port);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    assert.match((await c.cmd('MAIL FROM:<not an address>')).text, /^5\d\d /);
    const m = await c.cmd('MAIL FROM:<a@office.example>');
    assert.equal(m.code, 250);
    assert.match((await c.cmd('RCPT TO:<bad..dots@far.example>')).text, /^501 5\.1\.3 /);
    const r = await c.cmd('RCPT TO:<user@-bad-.example>');
    assert.equal(r.code, 501);
    assert.match(r.text, /^501 5\.1\.3 .*Bad recipient address syntax/);
  } finally {
    c.close();
  }
});

test('a bare CR anywhere in data gets 554 5.6.0 and nothing is queued (SMTP smuggling)', async () => {
  const before = (await runCli(['mailq', '-c', config, '--json'])).stdout;
  const variants = [
    'Subject: a\r\n\r\nfirst\r\n.\r\r\nMAIL FROM:<evil@x>\r\n',
    'Subject: a\r\n\r\nfirst\r.\rMAIL FROM:<evil@x>\r\n',
    'Subject: a\r\n\r\nfirst\r\n.\rRCPT TO:<evil@x>\r\n',
    'Subject: a\rbare: cr\r\n\r\nbody\r\n',
    'Subject: a\r\n\r\nbare lf\nand bare cr\r.\r\n',
  ];
  for (const data of variants) {
    const r = await sendMail(daemon.port, 'a@office.example', ['b@far.example'], data);
    assert.equal(r.code, 554, JSON.stringify(data));
    assert.match(r.text, /^554 5\.6\.0 .*bare <CR>/);
  }
  assert.equal((await runCli(['mailq', '-c', config, '--json'])).stdout, before);
});

test('a bare LF in data is a line end: a LAN client\'s message is stored with CRLF only', async () => {
  const r = await sendMail(daemon.port, 'a@office.example', ['b@far.example'], `${HDRS}Subject: a\nbare: lf\r\n\nfirst\r\n\n.\r\nMAIL FROM:<evil@x>\r\n`);
  assert.equal(r.code, 250, r.text);
  const body = (await bodyOf(/queued as (\S+)/.exec(r.text)![1])).toString('latin1');
  assert.ok(body.endsWith(`${HDRS}Subject: a\r\nbare: lf\r\n\r\nfirst\r\n\r\n.\r\nMAIL FROM:<evil@x>\r\n`), JSON.stringify(body));
  assert.doesNotMatch(body, /[^\r]\n/);
});

test('a bare LF in a command line gets 500 5.5.2 and the connection is closed', async () => {
  const c = await RawSmtp.connect(daemon.port);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    c.write('MAIL FROM:<a@office.example>\nRCPT TO:<b@far.example>\r\n');
    const r = await c.reply();
    assert.equal(r.code, 500);
    assert.match(r.text, /5\.5\.2/);
    assert.ok(await c.closedByServer());
  } finally {
    c.close();
  }
});

test('8-bit data without BODY=8BITMIME is accepted and recorded as 8BITMIME; with it too', async () => {
  const data = `Subject: caf\xe9\r\n${HDRS}\r\ncaf\xe9\r\n`;
  for (const params of ['', 'BODY=8BITMIME']) {
    const r = await sendMail(daemon.port, 'a@office.example', ['b@far.example'], data, params);
    assert.equal(r.code, 250, `${params}: ${r.text}`);
    const id = /queued as (\S+)/.exec(r.text)![1];
    assert.equal((await envelopeOf(id)).bodyType, '8BITMIME');
    const body = await bodyOf(id);
    assert.ok(body.subarray(body.length - data.length).equals(Buffer.from(data, 'latin1')), 'stored byte for byte');
  }
  const plain = await sendMail(daemon.port, 'a@office.example', ['b@far.example'], MSG);
  assert.equal((await envelopeOf(/queued as (\S+)/.exec(plain.text)![1])).bodyType, '7BIT');
});

test('DSN parameters RET, ENVID, NOTIFY and ORCPT are kept in the envelope', async () => {
  const c = await RawSmtp.connect(daemon.port);
  try {
    await c.reply();
    assert.match((await c.cmd('EHLO client.test')).text, /DSN/);
    assert.equal((await c.cmd('MAIL FROM:<a@office.example> RET=HDRS ENVID=QQ314159')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<b@far.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@far.example')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write(`${MSG}.\r\n`);
    const r = await c.reply();
    assert.equal(r.code, 250);
    const env = await envelopeOf(/queued as (\S+)/.exec(r.text)![1]);
    assert.deepEqual(env.dsn, { ret: 'HDRS', envid: 'QQ314159' });
    assert.deepEqual(env.recipients[0].notify, ['SUCCESS', 'DELAY']);
    assert.equal(env.recipients[0].orcpt, 'rfc822;b@far.example');
  } finally {
    c.close();
  }
});

test('STARTTLS and AUTH are not offered without certificate and users', async () => {
  const c = await RawSmtp.connect(daemon.port);
  try {
    await c.reply();
    const ehlo = await c.cmd('EHLO client.test');
    assert.doesNotMatch(ehlo.text, /STARTTLS|AUTH/);
    assert.match(ehlo.text, /8BITMIME/);
    assert.match(ehlo.text, /PIPELINING/);
    assert.match(ehlo.text, /ENHANCEDSTATUSCODES/);
    assert.notEqual((await c.cmd('STARTTLS')).code, 220);
  } finally {
    c.close();
  }
});

test('the daemon never looks up the client: the log shows the IP', async () => {
  const l = daemon.logs.find((x) => x.msg === 'connect');
  assert.ok(l);
  assert.match(String(l.client), /^(::ffff:)?127\.0\.0\.\d$/);
});

test('RCPT TO:<postmaster> without a domain is accepted (RFC 5321 §4.5.1)', async () => {
  const c = await RawSmtp.connect(daemon.port, '127.0.0.2');
  try {
    await c.reply();
    await c.cmd('EHLO outside.test');
    await c.cmd('MAIL FROM:<someone@outside.test>');
    assert.equal((await c.cmd('RCPT TO:<Postmaster>')).code, 250);
  } finally {
    c.close();
  }
});
