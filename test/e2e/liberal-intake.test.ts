/**
 * "Be liberal where Postfix is" (SPEC §9, issue 14) end to end: a real
 * daemon, real SMTP clients on 127.0.0.1 (LAN, smtp.mynetworks
 * 127.0.0.1/32) and 127.0.0.2 (outside), real smtp-server next hops.
 * 8-bit data without BODY=8BITMIME, bare LF in data (normalize / reject),
 * a bare-LF "." inside the data that must not end the next hop's DATA,
 * MAIL/RCPT without angle brackets, Date: and Message-ID: added for LAN
 * clients only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SMTPServer } from 'smtp-server';
import { runCli, withTimeout } from '../helpers/daemon.js';
import { RawSmtp, sendMail, type Reply } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';
import { gateway as runGateway } from '../helpers/gateway.js';

type Tree = Record<string, unknown>;

/** Only 127.0.0.1 is the LAN; 127.0.0.2 plays a client from outside. */
const gateway = (over: Tree, body: Parameters<typeof runGateway>[2], sinks: Array<{ close(): Promise<void> }> = []) =>
  runGateway({ lanNetworks: ['127.0.0.0/8'], queue: { minQueueAge: '0s' }, link: { mode: 'demand' } }, over, body, sinks);

const smtp = (extra: Tree = {}) => ({ smtp: { mynetworks: ['127.0.0.1/32'], ...extra } });
const idOf = (r: Reply) => /queued as (\S+)/.exec(r.text)![1];
const HDRS = 'Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <t1@client.test>\r\n';

/** One transaction from `from` (a 127/8 address), data sent as given (latin1), returning the final reply. */
async function submit(port: number, localAddress: string, mail: string, rcpt: string, data: string): Promise<Reply> {
  const c = await RawSmtp.connect(port, localAddress);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    for (const line of [mail, rcpt, 'DATA']) {
      const r = await c.cmd(line);
      if (r.code >= 400) return r;
    }
    c.write(`${data}.\r\n`);
    return await c.reply();
  } finally {
    c.close();
  }
}

/** A next hop that does not offer 8BITMIME, keeping every message's bytes and its BODY= (smtp-server's bodyType). */
async function sinkWithout8BitMime() {
  const got: Array<{ body: Buffer; bodyType: string }> = [];
  let wake: () => void = () => undefined;
  const server = new SMTPServer({
    hide8BITMIME: true, disabledCommands: ['STARTTLS', 'AUTH'], authOptional: true, disableReverseLookup: true, logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        got.push({ body: Buffer.concat(chunks), bodyType: session.envelope.bodyType });
        wake();
        cb(null, '2.0.0 Ok');
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.server.address() as net.AddressInfo).port,
    got,
    wait: () => withTimeout(new Promise<void>((resolve) => (got.length ? resolve() : (wake = resolve))), 20_000, 'a message at the sink'),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

test('8-bit UTF-8 text without BODY=8BITMIME (msmtp, smtplib.send_message) is accepted and arrives byte for byte', async () => {
  const sink = await startSink();
  await gateway({ ...smtp(), smartHost: [`[127.0.0.1]:${sink.port}`] }, async (d) => {
    const text = `Subject: Grüße\r\n${HDRS}\r\nCafé, naïve, 東京\r\n`;
    const r = await sendMail(d.port, 'alice@office.example', ['bob@far.example'], Buffer.from(text, 'utf8').toString('latin1'));
    assert.equal(r.code, 250, r.text);
    await sink.waitMessages(1);
    assert.ok(Buffer.from(sink.messages[0].body, 'utf8').subarray(-Buffer.byteLength(text)).equals(Buffer.from(text, 'utf8')));
  }, [sink]);
});

test('8-bit mail goes as is to a next hop without 8BITMIME: same bytes, no BODY=8BITMIME, no bounce', async () => {
  const sink = await sinkWithout8BitMime();
  await gateway({ ...smtp(), smartHost: [`[127.0.0.1]:${sink.port}`] }, async (d, config) => {
    const text = `Subject: caf\xe9\r\n${HDRS}\r\ncaf\xe9 cr\xe8me\r\n`;
    const r = await sendMail(d.port, 'alice@office.example', ['bob@far.example'], text);
    assert.equal(r.code, 250, r.text);
    await sink.wait();
    assert.equal(sink.got.length, 1);
    assert.equal(sink.got[0].bodyType, '7bit', 'BODY=8BITMIME is not sent to a server that does not offer it');
    assert.ok(sink.got[0].body.subarray(-text.length).equals(Buffer.from(text, 'latin1')));
    await d.waitLog((l) => l.msg === 'delivered' && l.qid === idOf(r), 'delivered');
    assert.equal(JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout).total, 0);
  }, [sink]);
});

test('a bare-LF "." inside the data does not end it: the next hop gets one message with the line intact, nothing injected', async () => {
  const seen: string[] = [];
  const sink = await startSink({ rcpt: (a) => (seen.push(a), null) });
  await gateway({ ...smtp(), routes: [{ domain: 'far.example', esmtp: `[127.0.0.1]:${sink.port}`, link: true }] }, async (d, config) => {
    const smuggle = `${HDRS}Subject: smuggle\n\nfirst line\n.\nMAIL FROM:<evil@evil.example>\nRCPT TO:<victim@evil.example>\nDATA\n`
      + 'Subject: injected\n\ninjected text\n.\r\nQUIT\r\nafter the dot\r\n';
    const r1 = await sendMail(d.port, 'alice@office.example', ['bob@far.example'], smuggle);
    assert.equal(r1.code, 250, r1.text);
    const r2 = await sendMail(d.port, 'alice@office.example', ['carol@far.example'], `${HDRS}Subject: second\r\n\r\nsecond\r\n`);
    assert.equal(r2.code, 250, r2.text);
    // both go over one connection: anything smuggled out of the first would reach the sink before the second
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 0, f.stdout + f.stderr);
    await sink.waitMessages(2);
    assert.equal(sink.connections, 1);
    assert.equal(sink.messages.length, 2);
    assert.deepEqual(seen.sort(), ['bob@far.example', 'carol@far.example']);
    const first = sink.messages.find((m) => m.to[0] === 'bob@far.example')!;
    assert.equal(first.from, 'alice@office.example');
    const expected = 'Subject: smuggle\r\n\r\nfirst line\r\n.\r\nMAIL FROM:<evil@evil.example>\r\nRCPT TO:<victim@evil.example>\r\nDATA\r\n'
      + 'Subject: injected\r\n\r\ninjected text\r\n.\r\nQUIT\r\nafter the dot\r\n';
    assert.ok(first.body.endsWith(expected), JSON.stringify(first.body));
    assert.equal(sink.messages.filter((m) => m.body.includes('after the dot')).length, 1);
    assert.ok(!sink.messages.some((m) => m.from === 'evil@evil.example'));
  }, [sink]);
});

test('smtp.bareNewline: reject refuses bare LF from outside with 554 5.6.0; a LAN client is still normalized', async () => {
  const sink = await startSink();
  await gateway({ ...smtp({ bareNewline: 'reject' }), smartHost: [`[127.0.0.1]:${sink.port}`] }, async (d, config) => {
    const data = `${HDRS}Subject: lf\n\nline one\nline two\r\n`;
    const out = await submit(d.port, '127.0.0.2', 'MAIL FROM:<x@outside.test>', 'RCPT TO:<bob@office.example>', data);
    assert.equal(out.code, 554);
    assert.match(out.text, /^554 5\.6\.0 .*bare <LF>/);
    const lan = await submit(d.port, '127.0.0.1', 'MAIL FROM:<alice@office.example>', 'RCPT TO:<bob@office.example>', data);
    assert.equal(lan.code, 250, lan.text);
    await sink.waitMessages(1);
    assert.ok(sink.messages[0].body.endsWith(`${HDRS}Subject: lf\r\n\r\nline one\r\nline two\r\n`));
    await d.waitLog((l) => l.msg === 'delivered' && l.qid === idOf(lan), 'delivered');
    assert.equal(sink.messages.length, 1, 'the refused message was not kept');
    assert.equal(JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout).total, 0);
  }, [sink]);
});

test('MAIL FROM:addr and RCPT TO:addr without brackets: accepted from the LAN, 501 5.5.4 from outside', async () => {
  const sink = await startSink();
  await gateway({ ...smtp(), smartHost: [`[127.0.0.1]:${sink.port}`] }, async (d) => {
    const r = await submit(d.port, '127.0.0.1', 'MAIL FROM:printer@office.example SIZE=100', 'RCPT TO:bob@far.example', `${HDRS}Subject: scan\r\n\r\nscan\r\n`);
    assert.equal(r.code, 250, r.text);
    await sink.waitMessages(1);
    assert.equal(sink.messages[0].from, 'printer@office.example');
    assert.deepEqual(sink.messages[0].to, ['bob@far.example']);

    const c = await RawSmtp.connect(d.port, '127.0.0.2');
    try {
      await c.reply();
      await c.cmd('EHLO outside.test');
      const mail = await c.cmd('MAIL FROM:x@outside.test');
      assert.equal(mail.code, 501);
      assert.match(mail.text, /^501 5\.5\.4 Syntax: MAIL FROM:<address> \(angle brackets are required\)$/);
      assert.equal((await c.cmd('MAIL FROM:<x@outside.test>')).code, 250);
      const rcpt = await c.cmd('RCPT TO:bob@office.example');
      assert.equal(rcpt.code, 501);
      assert.match(rcpt.text, /^501 5\.5\.4 Syntax: RCPT TO:<address>/);
      assert.equal((await c.cmd('RCPT TO:<bob@office.example>')).code, 250);
    } finally {
      c.close();
    }
  }, [sink]);
});

test('Date: and Message-ID: are added to LAN mail that lacks them, not to mail from outside; outside bare LF is normalized by default', async () => {
  const sink = await startSink();
  await gateway({ ...smtp(), smartHost: [`[127.0.0.1]:${sink.port}`] }, async (d) => {
    const lan = await submit(d.port, '127.0.0.1', 'MAIL FROM:<alice@office.example>', 'RCPT TO:<bob@far.example>', 'Subject: from lan\r\n\r\nhello\r\n');
    assert.equal(lan.code, 250, lan.text);
    const out = await submit(d.port, '127.0.0.2', 'MAIL FROM:<x@outside.test>', 'RCPT TO:<bob@office.example>', 'Subject: from outside\n\nhello\nend\r\n');
    assert.equal(out.code, 250, out.text);
    const kept = await submit(d.port, '127.0.0.1', 'MAIL FROM:<alice@office.example>', 'RCPT TO:<carol@far.example>', `Subject: has both\r\n${HDRS}\r\nhello\r\n`);
    assert.equal(kept.code, 250, kept.text);
    await sink.waitMessages(3);
    const bySubject = (s: string) => {
      const m = sink.messages.find((x) => x.body.includes(`Subject: ${s}\r\n`))!;
      const split = m.body.indexOf('\r\n\r\n');
      return { head: m.body.slice(0, split + 2), body: m.body.slice(split + 4) };
    };
    const l = bySubject('from lan');
    assert.match(l.head, /\r\nSubject: from lan\r\nDate: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\nMessage-ID: <([^>]+)>\r\n$/);
    assert.equal(/Message-ID: <([^>]+)>/.exec(l.head)![1], `${idOf(lan)}@gw.test.example`);
    assert.equal(l.body, 'hello\r\n');
    const o = bySubject('from outside');
    assert.doesNotMatch(o.head, /^(Date|Message-ID):/im);
    assert.equal(o.body, 'hello\r\nend\r\n');
    const k = bySubject('has both');
    assert.equal(k.head.match(/^Date:/gim)?.length, 1);
    assert.equal(k.head.match(/^Message-ID:/gim)?.length, 1);
    assert.match(k.head, /^Message-ID: <t1@client\.test>\r$/m);
  }, [sink]);
});
