/**
 * SPEC §9 "Bad input" and issue 15's strict bytes against a real daemon:
 * unknown MAIL/RCPT parameters (555 5.5.4), non-ASCII and invalid UTF-8 in
 * addresses (553, never rewritten to U+FFFD), NUL bytes in the data
 * (554 5.6.0), more than 30 Received: fields (554 5.4.6), and a client that
 * half-closes after its last command (it still gets every reply). Clients
 * from 127.0.0.2 are outside the LAN; the next hop is a counting sink, and
 * what reached it (or the queue) is checked after every refusal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { withTimeout } from '../helpers/daemon.js';
import { RawSmtp, sendMail, type Reply } from '../helpers/smtp-client.js';
import { startSink, type Sink } from '../helpers/sink.js';
import { gateway as runGateway } from '../helpers/gateway.js';
import { marker } from '../helpers/security.js';

const OUTSIDE = '127.0.0.2';
const HDRS = 'Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <bytes@client.test>\r\n';

function gateway(sink: Sink, body: Parameters<typeof runGateway>[2]) {
  return runGateway(
    { lanNetworks: ['127.0.0.1/32'], queue: { minQueueAge: '0s' }, link: { mode: 'demand' }, smartHost: [`[127.0.0.1]:${sink.port}`] },
    { smtp: { mynetworks: ['127.0.0.1/32'] } },
    body,
    [sink],
  );
}

/** Greeting and EHLO from `from`, then each line (latin1, so '\xff' is one byte) with its reply. */
async function session(port: number, from: string, lines: string[]): Promise<{ c: RawSmtp; replies: Reply[] }> {
  const c = await RawSmtp.connect(port, from);
  await c.reply();
  await c.cmd('EHLO bytes.test');
  const replies: Reply[] = [];
  for (const line of lines) replies.push(await c.cmd(line));
  return { c, replies };
}


test('unknown MAIL/RCPT parameters get 555 5.5.4; the known ones (SIZE BODY SMTPUTF8 RET ENVID, NOTIFY ORCPT) pass', async () => {
  const sink = await startSink();
  await gateway(sink, async (d, config) => {
    const { c, replies } = await session(d.port, OUTSIDE, [
      'MAIL FROM:<p@outside.test> FOO=bar XYZ',
      'MAIL FROM:<p@outside.test> XYZ',
      'MAIL FROM:<p@outside.test> REQUIRETLS',
      'MAIL FROM:<p@outside.test> SIZE=200 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=e1',
      'RCPT TO:<bob@office.example> FOO=bar',
      'RCPT TO:<bob@office.example> NOTIFY=FAILURE ORCPT=rfc822;bob@office.example',
      'DATA',
    ]);
    try {
      assert.deepEqual(replies.map((r) => r.code), [555, 555, 555, 250, 555, 250, 354]);
      assert.match(replies[0].text, /^555 5\.5\.4 Unsupported MAIL FROM parameter FOO$/);
      assert.match(replies[4].text, /^555 5\.5\.4 Unsupported RCPT TO parameter FOO$/);
      assert.equal((await c.cmd(`${HDRS}Subject: params\r\n\r\nhi\r\n.`)).code, 250);
    } finally {
      c.close();
    }
    await sink.waitMessages(1);
    assert.deepEqual(sink.messages.map((m) => [m.from, m.to]), [['p@outside.test', ['bob@office.example']]]);
    await marker(d, sink, config, 2, HDRS);
  });
});

test('invalid UTF-8 in MAIL and RCPT is refused with 553 and never rewritten; valid UTF-8 with SMTPUTF8 arrives byte for byte', async () => {
  const sink = await startSink();
  await gateway(sink, async (d, config) => {
    const refused: Array<[from: string, lines: string[], reply: RegExp]> = [
      [OUTSIDE, ['MAIL FROM:<\xff\xfe@far.example> SMTPUTF8'], /^553 5\.1\.7 .*not valid UTF-8/],
      [OUTSIDE, ['MAIL FROM:<\xff\xfe@far.example>'], /^553 5\.6\.7 /],
      [OUTSIDE, ['MAIL FROM:<caf\xc3\xa9@far.example>'], /^553 5\.6\.7 /],
      [OUTSIDE, ['MAIL FROM:<a@far.example> SMTPUTF8', 'RCPT TO:<x@\xff.office.example>'], /^553 5\.1\.3 .*not valid UTF-8/],
      [OUTSIDE, ['MAIL FROM:<a@far.example> SMTPUTF8', 'RCPT TO:<\xc3@office.example>'], /^553 5\.1\.3 /],
      [OUTSIDE, ['MAIL FROM:<a@far.example>', 'RCPT TO:<\xc3\xa9@office.example>'], /^553 5\.6\.7 /],
      ['127.0.0.1', ['MAIL FROM:<a@office.example> SMTPUTF8', 'RCPT TO:<x@\xff.far.example>'], /^553 5\.1\.3 /],
    ];
    for (const [from, lines, reply] of refused) {
      const { c, replies } = await session(d.port, from, lines);
      c.close();
      assert.match(replies.at(-1)!.text, reply, JSON.stringify(lines));
      for (const r of replies.slice(0, -1)) assert.equal(r.code, 250, JSON.stringify(lines));
    }
    const { c, replies } = await session(d.port, OUTSIDE, ['MAIL FROM:<jos\xc3\xa9@far.example> SMTPUTF8', 'RCPT TO:<caf\xc3\xa9@office.example>', 'DATA']);
    try {
      assert.deepEqual(replies.map((r) => r.code), [250, 250, 354]);
      assert.equal((await c.cmd(`${HDRS}Subject: utf8\r\n\r\nhi\r\n.`)).code, 250);
    } finally {
      c.close();
    }
    await marker(d, sink, config, 2, HDRS);
    const utf8 = sink.messages.find((m) => m.to[0] !== 'bob@far.example')!;
    assert.deepEqual([utf8.from, utf8.to], ['josé@far.example', ['café@office.example']]);
    assert.ok(!sink.messages.some((m) => JSON.stringify(m).includes('\ufffd')), 'no U+FFFD reached the next hop');
    assert.ok(!d.logs.some((l) => l.msg === 'queued' && JSON.stringify(l).includes('\ufffd')), 'none was queued');
  });
});

test('NUL bytes in the data: 554 5.6.0 and nothing kept (from outside and from the LAN)', async () => {
  const sink = await startSink();
  await gateway(sink, async (d, config) => {
    for (const [from, data] of [[OUTSIDE, `${HDRS}Subject: nul\r\n\r\na\x00b\r\n`], ['127.0.0.1', `${HDRS}Subject: nul\r\n\r\nline\r\n\x00.\r\n`]]) {
      const { c, replies } = await session(d.port, from, ['MAIL FROM:<n@outside.test>', 'RCPT TO:<bob@office.example>', 'DATA']);
      try {
        assert.deepEqual(replies.map((r) => r.code), [250, 250, 354]);
        const r = await c.cmd(`${data}.`);
        assert.match(r.text, /^554 5\.6\.0 Message contains NUL bytes/);
        // the session goes on
        assert.equal((await c.cmd('NOOP')).code, 250);
      } finally {
        c.close();
      }
    }
    await marker(d, sink, config, 1, HDRS);
    assert.equal(sink.messages.length, 1);
  });
});

test('more than 30 Received: fields: 554 5.4.6 Too many hops at the end of DATA, nothing kept; 30 pass', async () => {
  const sink = await startSink();
  await gateway(sink, async (d, config) => {
    const hops = (n: number) => Array.from({ length: n }, (_, i) => `Received: from relay${i}.example by relay${i + 1}.example; Mon, 23 Nov 2026 08:00:00 +0000\r\n`).join('');
    const send = (n: number) => sendMail(d.port, 'alice@office.example', [`hops${n}@far.example`], `${hops(n)}${HDRS}Subject: ${n} hops\r\n\r\nloop?\r\n`);
    const r31 = await send(31);
    assert.match(r31.text, /^554 5\.4\.6 Too many hops/);
    const r30 = await send(30);
    assert.equal(r30.code, 250, r30.text);
    await marker(d, sink, config, 2, HDRS);
    assert.deepEqual(sink.messages.map((m) => m.to[0]).sort(), ['bob@far.example', 'hops30@far.example']);
    const kept = sink.messages.find((m) => m.to[0] === 'hops30@far.example')!;
    assert.equal(kept.body.match(/^Received:/gm)?.length, 31, 'the 30 and ours');
  });
});

/** Sends `script` after the greeting, half-closes (FIN), and reads everything until the server closes. */
async function halfClose(port: number, script: string): Promise<string> {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress: OUTSIDE });
  let got = '';
  sock.on('data', (b) => {
    if (!got) {
      sock.write(script);
      sock.end();
    }
    got += b.toString('latin1');
  });
  sock.on('error', () => undefined);
  await withTimeout(new Promise((resolve) => sock.on('close', resolve)), 20_000, 'the server to close after the half-close');
  return got;
}

test('a client that sends a whole transaction and QUIT and then half-closes still gets its 250 and 221', async () => {
  const sink = await startSink();
  await gateway(sink, async (d) => {
    const tx = (n: number) => `MAIL FROM:<half@outside.test>\r\nRCPT TO:<bob${n}@office.example>\r\nDATA\r\n${HDRS}Subject: half ${n}\r\n\r\nhi\r\n.\r\n`;
    const withQuit = await halfClose(d.port, `EHLO half.test\r\n${tx(1)}QUIT\r\n`);
    const codes = (s: string) => s.split('\r\n').filter((l) => /^\d{3} /.test(l)).map((l) => Number(l.slice(0, 3)));
    assert.deepEqual(codes(withQuit), [220, 250, 250, 250, 354, 250, 221], withQuit);
    assert.match(withQuit, /\r\n250 2\.0\.0 Ok: queued as \S+\r\n221 /);
    // no QUIT: every reply, then the server closes by itself
    const noQuit = await halfClose(d.port, `EHLO half.test\r\n${tx(2)}`);
    assert.deepEqual(codes(noQuit), [220, 250, 250, 250, 354, 250], noQuit);
    await sink.waitMessages(2);
    assert.deepEqual(sink.messages.flatMap((m) => m.to).sort(), ['bob1@office.example', 'bob2@office.example']);
  });
});
