/**
 * SPEC §9 "Abuse" (issue 15) against a real daemon: clients outside the LAN
 * play from 127.0.0.2 (lanNetworks and smtp.mynetworks are 127.0.0.1/32),
 * the next hop is a counting sink, and every test checks what reached the
 * sink or the queue, not only the reply codes. Trickling clients write on a
 * timer that stops itself (when the server closes, when the test ends, or
 * after a bounded number of bytes); every wait is on an event with a bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT } from '../helpers/daemon.js';
import { RawSmtp, sendMail, type Reply } from '../helpers/smtp-client.js';
import { startSink, type Sink } from '../helpers/sink.js';
import { gateway as runGateway } from '../helpers/gateway.js';
import { marker, TlsSmtp } from '../helpers/security.js';

type Tree = Record<string, unknown>;
const OUTSIDE = '127.0.0.2';
const FIX = path.join(ROOT, 'test', 'fixtures');
const HDRS = 'Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <abuse@client.test>\r\n';

/** A gateway whose only LAN client is 127.0.0.1, delivering everything to `sink`. */
function gateway(sink: Sink, smtp: Tree, over: Tree, body: Parameters<typeof runGateway>[2]) {
  return runGateway(
    { lanNetworks: ['127.0.0.1/32'], queue: { minQueueAge: '0s' }, link: { mode: 'demand' }, smartHost: [`[127.0.0.1]:${sink.port}`] },
    { smtp: { mynetworks: ['127.0.0.1/32'], ...smtp }, ...over },
    body,
    [sink],
  );
}

/** Writes `text` one byte every `ms` until it is all written or the server closed; returns a stop(). */
function trickle(c: RawSmtp, text: string, ms: number): () => void {
  let i = 0;
  const timer = setInterval(() => {
    if (c.closed || i >= text.length) return clearInterval(timer);
    c.write(text[i++]);
  }, ms);
  return () => clearInterval(timer);
}

/** Reads replies until one has `code` (at most `max` of them); returns it. */
async function replyWith(c: RawSmtp, code: number, max = 200, ms = 20_000): Promise<Reply> {
  for (let i = 0; i < max; i++) {
    const r = await c.reply(ms);
    if (r.code === code) return r;
  }
  throw new Error(`no ${code} in ${max} replies`);
}

async function openTransaction(port: number, from: string, rcpt: string): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, OUTSIDE);
  await c.reply();
  await c.cmd('EHLO trickle.test');
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
  assert.equal((await c.cmd(`RCPT TO:<${rcpt}>`)).code, 250);
  return c;
}


test('a client that trickles its data below smtp.minDataRate gets 421 4.4.2 and nothing of the message is kept', async () => {
  const sink = await startSink();
  await gateway(sink, { minDataRate: 100 }, {}, async (d, config) => {
    const c = await openTransaction(d.port, 'slow@outside.test', 'bob@office.example');
    try {
      assert.equal((await c.cmd('DATA')).code, 354);
      const stop = trickle(c, `Subject: slow\r\n\r\n${'x'.repeat(400)}\r\n.\r\n`, 250);
      const r = await c.reply(30_000);
      stop();
      assert.match(r.text, /^421 4\.4\.2 Data rate too low/);
      assert.equal(await c.closedByServer(), true);
    } finally {
      c.close();
    }
    await d.waitLog((l) => l.msg === 'data rate too low: session closed' && l.client === OUTSIDE, 'the cut in the log');
    await marker(d, sink, config, 1, HDRS);
    assert.deepEqual(sink.messages.map((m) => m.from), ['alice@office.example']);
  });
});

test('a session that finishes no transaction within timeout.session is cut with 421 4.4.2, though it never idles', async () => {
  const sink = await startSink();
  await gateway(sink, {}, { timeout: { session: '2s' } }, async (d, config) => {
    const c = await openTransaction(d.port, 'noop@outside.test', 'bob@office.example');
    // one byte every 100 ms: timeout.command (idle time) never runs out
    const stop = trickle(c, 'NOOP\r\n'.repeat(200), 100);
    try {
      const r = await replyWith(c, 421);
      assert.match(r.text, /^421 4\.4\.2 Session timeout/);
      assert.equal(await c.closedByServer(), true);
    } finally {
      stop();
      c.close();
    }
    await marker(d, sink, config, 1, HDRS);
    assert.equal(sink.messages.length, 1);
  });
});

test('the session clock starts again at every final reply of DATA: a busy session outlives timeout.session', async () => {
  const sink = await startSink();
  await gateway(sink, {}, { timeout: { session: '4s' } }, async (d) => {
    const c = await RawSmtp.connect(d.port, OUTSIDE);
    try {
      await c.reply();
      await c.cmd('EHLO busy.test');
      // five transactions of about a second each: longer together than timeout.session
      for (let i = 0; i < 5; i++) {
        assert.equal((await c.cmd('MAIL FROM:<busy@outside.test>')).code, 250);
        assert.equal((await c.cmd(`RCPT TO:<bob${i}@office.example>`)).code, 250);
        assert.equal((await c.cmd('DATA')).code, 354);
        const stop = trickle(c, `${HDRS}Subject: ${i}\r\n\r\n${'line\r\n'.repeat(2)}.\r\n`, 15);
        const r = await c.reply(20_000);
        stop();
        assert.equal(r.code, 250, r.text);
      }
      assert.equal((await c.cmd('QUIT')).code, 221);
    } finally {
      c.close();
    }
    await sink.waitMessages(5);
    assert.deepEqual(sink.messages.flatMap((m) => m.to).sort(), [0, 1, 2, 3, 4].map((i) => `bob${i}@office.example`));
  });
});

/** Opens `n` connections from one outside address, each trickling a command line once greeted; counts 220 and 421. */
async function crowd(port: number, n: number): Promise<{ greeted: RawSmtp[]; refused: Reply[]; stop: () => void }> {
  const conns = await Promise.all(Array.from({ length: n }, () => RawSmtp.connect(port, OUTSIDE)));
  const greetings = await Promise.all(conns.map((c) => c.reply()));
  const greeted = conns.filter((_, i) => greetings[i].code === 220);
  const stops = greeted.map((c) => trickle(c, `EHLO crowd.test\r\nMAIL FROM:<${'x'.repeat(600)}`, 500));
  return {
    greeted,
    refused: greetings.filter((g) => g.code !== 220),
    stop: () => {
      for (const s of stops) s();
      for (const c of conns) c.close();
    },
  };
}

for (const { name, smtp, accepted } of [
  { name: 'maxConnectionsPerClient (default 10)', smtp: {}, accepted: 10 },
  { name: 'the LAN reserve (maxConnections 20, lanReserve 20%)', smtp: { maxConnections: 20, maxConnectionsPerClient: 100 }, accepted: 16 },
]) {
  test(`80 trickling connections from one outside address are held to ${name}; a LAN client is served every time`, async () => {
    const sink = await startSink();
    await gateway(sink, smtp, {}, async (d) => {
      const c = await crowd(d.port, 80);
      try {
        assert.equal(c.greeted.length, accepted);
        assert.equal(c.refused.length, 80 - accepted);
        for (const r of c.refused) assert.match(r.text, /^421 4\.(7\.0|3\.2) Too many connections/);
        for (let i = 0; i < 5; i++) {
          const r = await sendMail(d.port, 'alice@office.example', [`bob${i}@far.example`], `${HDRS}Subject: lan ${i}\r\n\r\nhi\r\n`);
          assert.equal(r.code, 250, `LAN try ${i}: ${r.text}`);
        }
        await sink.waitMessages(5);
        assert.equal(sink.messages.length, 5);
        assert.ok(sink.messages.every((m) => m.from === 'alice@office.example'));
        assert.ok(c.greeted.every((g) => !g.closed), 'the accepted outside sessions are still open');
      } finally {
        c.stop();
      }
    });
  });
}

test('20 errors in a session: 421 4.7.0 Too many errors and the connection is closed; the log is not flooded', async () => {
  const sink = await startSink();
  await gateway(sink, {}, {}, async (d, config) => {
    const c = await RawSmtp.connect(d.port, OUTSIDE);
    const codes: number[] = [];
    try {
      await c.reply();
      await c.cmd('EHLO errors.test');
      // every kind counts: 555, 501, 503, 550
      for (const line of ['MAIL FROM:<e@outside.test> FOO=bar', 'VRFY', 'RCPT TO:<x@office.example>']) codes.push((await c.cmd(line)).code);
      assert.equal((await c.cmd('MAIL FROM:<e@outside.test>')).code, 250);
      for (let i = 0; i < 17; i++) codes.push((await c.cmd(`RCPT TO:<victim${i}@far.example>`)).code);
      const last = await c.reply();
      assert.match(last.text, /^421 4\.7\.0 Too many errors/);
      assert.equal(await c.closedByServer(), true);
    } finally {
      c.close();
    }
    assert.deepEqual(codes, [555, 501, 503, ...Array(17).fill(550)]);
    const closed = await d.waitLog((l) => String(l.msg).startsWith('session errors not logged'), 'the summary at close');
    assert.deepEqual(closed.unlogged, { 'relaying denied': 12 });
    assert.equal(d.logs.filter((l) => l.msg === 'relaying denied').length, 5);
    await d.waitLog((l) => l.msg === 'too many errors: session closed' && l.errors === 20, 'the cut in the log');
    await marker(d, sink, config, 1, HDRS);
    assert.equal(sink.messages.length, 1);
  });
});


const plain = (user: string, pass: string) => `AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`;

test('AUTH: three failures get 535 (known user or not), the fourth attempt 421 and close; the right password still works in a new session', async () => {
  const sink = await startSink();
  const auth = { tls: { cert: path.join(FIX, 'tls.crt'), key: path.join(FIX, 'tls.key') }, auth: { users: path.join(FIX, 'users') } };
  await gateway(sink, auth, {}, async (d) => {
    const c = await TlsSmtp.connect(d.port, OUTSIDE);
    const codes: number[] = [];
    try {
      await c.reply();
      await c.cmd('EHLO guess.test');
      await c.startTls();
      assert.match((await c.cmd('EHLO guess.test')).text, /AUTH PLAIN LOGIN/);
      for (const [user, pass] of [['office', 'wrong1'], ['nobody', 's3cret'], ['office', 'wrong3'], ['office', 's3cret']]) codes.push((await c.cmd(plain(user, pass))).code);
      assert.equal(await c.closedByServer(), true);
    } finally {
      c.close();
    }
    // the fourth attempt is refused without looking at the password, even a right one
    assert.deepEqual(codes, [535, 535, 535, 421]);
    await d.waitLog((l) => String(l.msg).startsWith('too many failed AUTH'), 'the lock in the log');

    const ok = await TlsSmtp.connect(d.port, OUTSIDE);
    try {
      await ok.reply();
      await ok.cmd('EHLO office.test');
      await ok.startTls();
      await ok.cmd('EHLO office.test');
      assert.equal((await ok.cmd(plain('office', 's3cret'))).code, 235);
      assert.equal((await ok.cmd('MAIL FROM:<office@outside.test>')).code, 250);
      assert.equal((await ok.cmd('RCPT TO:<bob@far.example>')).code, 250);
      assert.equal((await ok.cmd('DATA')).code, 354);
      assert.equal((await ok.cmd(`${HDRS}Subject: authed\r\n\r\nhi\r\n.`)).code, 250);
    } finally {
      ok.close();
    }
    await sink.waitMessages(1);
    assert.deepEqual(sink.messages.map((m) => [m.from, m.to]), [['office@outside.test', ['bob@far.example']]]);
  });
});
