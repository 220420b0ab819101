/**
 * CHUNKING at intake (issue 17, RFC 3030 BDAT) against a real daemon: raw
 * loopback sessions write exactly the bytes of each case, the next hop is a
 * counting sink (smtp-server, DATA only), and every test checks what reached
 * the sink, not only the replies. Bodies are compared by SHA-256 after our
 * Received: field is taken off. Every error case is followed by a
 * transaction that must succeed in the same session.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { RawSmtp, sendMail, type Reply } from '../helpers/smtp-client.js';
import { closedPort, startSink, type Sink } from '../helpers/sink.js';
import { gateway as runGateway } from '../helpers/gateway.js';
import { startDaemon, tempDir, writeConfig } from '../helpers/daemon.js';
import { messageFor } from '../helpers/messages.js';
import { INSIDE, OUTSIDE, flushWait, mailq, marker } from '../helpers/security.js';

type Tree = Record<string, unknown>;
const HDRS = 'Date: Wed, 02 Dec 2026 08:00:00 +0000\r\nMessage-ID: <bdat@client.test>\r\n';
const MAX_SIZE = 8000;

/** A gateway whose LAN is 127.0.0.1, relaying everything to `sink` at once. */
function gateway(sink: Sink, smtp: Tree, over: Tree, body: Parameters<typeof runGateway>[2]) {
  return runGateway(
    { hostname: 'gw.office.example', deliveryMode: 'background', lanNetworks: ['127.0.0.1/32'], queue: { minQueueAge: '0s' }, link: { mode: 'permanent' }, smartHost: [`[127.0.0.1]:${sink.port}`] },
    { smtp: { mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'], maxMessageSize: MAX_SIZE, ...smtp }, ...over },
    body,
    [sink],
  );
}

/** `BDAT <n>[ LAST]` and its octets, as the bytes of one write. */
function bdat(data: string | Buffer, last = false): Buffer {
  const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  return Buffer.concat([Buffer.from(`BDAT ${b.length}${last ? ' LAST' : ''}\r\n`), b]);
}

const sha = (s: string | Buffer) => crypto.createHash('sha256').update(s).digest('hex');

/** The message as the next hop got it, less the `n` Received: fields the gateways put on top. */
function untraced(body: string, n = 1): string {
  let out = body;
  for (let i = 0; i < n; i++) {
    const m = /^Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*/.exec(out);
    assert.ok(m, `Received: field ${i + 1} on top of ${JSON.stringify(out.slice(0, 80))}`);
    out = out.slice(m[0].length);
  }
  return out;
}

async function open(port: number, from = INSIDE): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, from);
  assert.equal((await c.reply()).code, 220);
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  return c;
}

async function envelope(c: RawSmtp, tag: string): Promise<void> {
  assert.equal((await c.cmd(`MAIL FROM:<${tag}@office.example>`)).code, 250, tag);
  assert.equal((await c.cmd(`RCPT TO:<${tag}@far.example>`)).code, 250, tag);
}

async function send(c: RawSmtp, bytes: Buffer | string): Promise<Reply> {
  c.write(bytes);
  return c.reply();
}

/** A transaction that must succeed in this session: its message `ok-<tag>` goes as one BDAT LAST. */
async function ok(c: RawSmtp, tag: string): Promise<void> {
  await envelope(c, `ok-${tag}`);
  const r = await send(c, bdat(`${HDRS}Subject: ok ${tag}\r\n\r\nOK-${tag}\r\n`, true));
  assert.match(r.text, /^250 2\.0\.0 Ok: queued as \S+$/, `${tag}: the next transaction`);
}

const bySubject = (sink: Sink, subject: string) => sink.messages.filter((m) => m.body.includes(`Subject: ${subject}\r\n`));

test('EHLO offers CHUNKING, not BINARYMIME; BODY=BINARYMIME gets 555 5.5.4; a message in 3 BDAT chunks reaches the next hop byte-identical', async () => {
  const sink = await startSink();
  await gateway(sink, { maxMessageSize: 100_000 }, {}, async (d) => {
    const c = await RawSmtp.connect(d.port);
    try {
      await c.reply();
      const ehlo = await c.cmd('EHLO client.test');
      assert.match(ehlo.text, /^250[- ]CHUNKING$/m);
      assert.doesNotMatch(ehlo.text, /BINARYMIME/);
      assert.match((await c.cmd('MAIL FROM:<a@office.example> BODY=BINARYMIME')).text, /^555 5\.5\.4 /);
      await envelope(c, 'three');
      const msg = Buffer.from(`${messageFor(3)}.\r\n..leading dots\r\n.\r\n`, 'latin1');
      // cut between a CR and its LF, and in the middle of a line
      const cr = msg.indexOf('\r\n', 300) + 1;
      const parts = [msg.subarray(0, cr), msg.subarray(cr, cr + 1001), msg.subarray(cr + 1001)];
      assert.equal((await send(c, bdat(parts[0]))).text, `250 2.0.0 ${parts[0].length} octets received`);
      assert.equal((await send(c, bdat(parts[1]))).text, `250 2.0.0 ${parts[1].length} octets received`);
      assert.match((await send(c, bdat(parts[2], true))).text, /^250 2\.0\.0 Ok: queued as \S+$/);
      assert.equal((await c.cmd('QUIT')).code, 221);
      await sink.waitMessages(1);
      assert.equal(sha(untraced(sink.messages[0].body)), sha(msg), 'the body at the next hop is the one sent in 3 chunks');
      assert.deepEqual(sink.messages[0].to, ['three@far.example']);
    } finally {
      c.close();
    }
  });
});

test('chunk octets are data: lines ".", "QUIT", "RSET" and "MAIL FROM" inside a chunk run no command; BDAT 0 LAST ends the message', async () => {
  const sink = await startSink();
  await gateway(sink, {}, {}, async (d) => {
    const c = await open(d.port);
    try {
      await envelope(c, 'dots');
      const msg = `${HDRS}Subject: dots\r\n\r\nbefore\r\n.\r\nQUIT\r\nRSET\r\nMAIL FROM:<evil@outside.test>\r\n.\r\nafter\r\n`;
      assert.equal((await send(c, bdat(msg))).code, 250);
      assert.match((await send(c, 'BDAT 0 LAST\r\n')).text, /queued as/);
      assert.equal((await c.cmd('NOOP')).code, 250, 'the QUIT inside the chunk did not end the session');
      await sink.waitMessages(1);
      assert.equal(sink.messages.length, 1);
      assert.equal(sha(untraced(sink.messages[0].body)), sha(msg));
    } finally {
      c.close();
    }
  });
});

test('a whole session pipelined in one write: MAIL, RCPT, three BDATs to LAST, RSET and a second transaction, QUIT', async () => {
  const sink = await startSink();
  await gateway(sink, {}, {}, async (d) => {
    const c = await open(d.port);
    try {
      const first = `${HDRS}Subject: piped 1\r\n\r\n${'a'.repeat(500)}\r\n.\r\n`;
      const second = `${HDRS}Subject: piped 2\r\n\r\nsecond\r\n`;
      c.write(Buffer.concat([
        Buffer.from('MAIL FROM:<p@office.example>\r\nRCPT TO:<p1@far.example>\r\n'),
        bdat(first.slice(0, 10)), bdat(first.slice(10, 300)), bdat(first.slice(300), true),
        Buffer.from('RSET\r\nMAIL FROM:<p@office.example>\r\nRCPT TO:<p2@far.example>\r\n'), bdat(second, true),
        Buffer.from('QUIT\r\n'),
      ]));
      const replies: Reply[] = [];
      for (let i = 0; i < 10; i++) replies.push(await c.reply());
      assert.deepEqual(replies.map((r) => r.code), [250, 250, 250, 250, 250, 250, 250, 250, 250, 221], replies.map((r) => r.text).join(' | '));
      assert.deepEqual([replies[2].text, replies[3].text], ['250 2.0.0 10 octets received', '250 2.0.0 290 octets received']);
      assert.match(replies[4].text, /queued as/);
      assert.match(replies[8].text, /queued as/);
      await sink.waitMessages(2);
      assert.equal(sha(untraced(bySubject(sink, 'piped 1')[0].body)), sha(first));
      assert.equal(sha(untraced(bySubject(sink, 'piped 2')[0].body)), sha(second));
    } finally {
      c.close();
    }
  });
});

interface ErrorCase {
  name: string;
  /** Runs the case in a session that has said EHLO; the session must be usable afterwards. */
  run(c: RawSmtp): Promise<void>;
}

const PARTIAL = 'PARTIAL-NEVER-DELIVERED';

const ERROR_CASES: ErrorCase[] = [
  ...['BDAT 1e3 LAST', 'BDAT +5', 'BDAT 0x10', 'BDAT -1', 'BDAT 5 MORE', 'BDAT', 'BDAT 123456789012345678901 LAST'].map((line) => ({
    name: `"${line}": 501 5.5.4 and the transaction is over`,
    async run(c: RawSmtp) {
      await envelope(c, 'syntax');
      assert.match((await c.cmd(line)).text, /^501 5\.5\.4 /);
    },
  })),
  {
    name: 'BDAT without MAIL: 503, its octets (a QUIT among them) read and thrown away',
    async run(c) {
      assert.match((await send(c, bdat('QUIT\r\nMAIL FROM:<evil@outside.test>\r\n', true))).text, /^503 5\.5\.1 /);
      assert.equal((await c.cmd('NOOP')).code, 250);
    },
  },
  {
    name: 'BDAT after MAIL with no accepted RCPT: 503, octets thrown away',
    async run(c) {
      assert.equal((await c.cmd('MAIL FROM:<n@office.example>')).code, 250);
      assert.equal((await c.cmd('RCPT TO:<bad address@far.example>')).code, 501);
      assert.match((await send(c, bdat(`QUIT\r\n${PARTIAL}\r\n`, true))).text, /^503 5\.5\.1 /);
      assert.equal((await c.cmd('RSET')).code, 250);
    },
  },
  {
    name: `over smtp.maxMessageSize (${MAX_SIZE}) across chunks: 552 5.3.4, the chunk thrown away, a pipelined BDAT LAST after it finds no transaction`,
    async run(c) {
      await envelope(c, 'big');
      assert.equal((await send(c, bdat(`${HDRS}Subject: big\r\n\r\n${PARTIAL}\r\n${'x'.repeat(5000)}`))).code, 250);
      c.write(Buffer.concat([bdat(`QUIT\r\n${'y'.repeat(4000)}`), bdat('tail\r\n', true)]));
      assert.match((await c.reply()).text, /^552 5\.3\.4 /);
      assert.match((await c.reply()).text, /^503 5\.5\.1 /);
    },
  },
  {
    name: 'one chunk over the limit: 552 5.3.4',
    async run(c) {
      await envelope(c, 'big1');
      assert.match((await send(c, bdat(`QUIT\r\n${PARTIAL}${'z'.repeat(MAX_SIZE)}`, true))).text, /^552 5\.3\.4 /);
    },
  },
  {
    name: 'DATA after BDAT: 503, the transaction and its chunks discarded',
    async run(c) {
      await envelope(c, 'mixed');
      assert.equal((await send(c, bdat(`${HDRS}Subject: mixed\r\n\r\n${PARTIAL}\r\n`))).code, 250);
      assert.match((await c.cmd('DATA')).text, /^503 5\.5\.1 /);
      assert.match((await send(c, 'BDAT 0 LAST\r\n')).text, /^503 5\.5\.1 /);
    },
  },
  {
    name: 'RSET after a chunk: the partial message is discarded',
    async run(c) {
      await envelope(c, 'reset');
      assert.equal((await send(c, bdat(`${HDRS}Subject: reset\r\n\r\n${PARTIAL}\r\n`))).code, 250);
      assert.equal((await c.cmd('RSET')).code, 250);
    },
  },
  {
    name: 'BDAT after a finished DATA: no transaction (503), its octets thrown away',
    async run(c) {
      await envelope(c, 'data-first');
      assert.equal((await c.cmd('DATA')).code, 354);
      assert.equal((await send(c, `${HDRS}Subject: data first\r\n\r\nby DATA\r\n.\r\n`)).code, 250);
      assert.match((await send(c, bdat(`QUIT\r\n${PARTIAL}\r\n`, true))).text, /^503 5\.5\.1 /);
    },
  },
  {
    name: 'BDAT after BDAT LAST: 503',
    async run(c) {
      await envelope(c, 'after-last');
      assert.match((await send(c, bdat(`${HDRS}Subject: after last\r\n\r\nbody\r\n`, true))).text, /queued as/);
      assert.match((await send(c, bdat(PARTIAL, true))).text, /^503 5\.5\.1 /);
    },
  },
  {
    name: 'RCPT after a chunk: 503, the message goes to its first recipients only',
    async run(c) {
      await envelope(c, 'late-rcpt');
      assert.equal((await send(c, bdat(`${HDRS}Subject: late rcpt\r\n\r\n`))).code, 250);
      assert.match((await c.cmd('RCPT TO:<late@far.example>')).text, /^503 5\.5\.1 /);
      assert.match((await send(c, bdat('body\r\n', true))).text, /queued as/);
    },
  },
  {
    name: 'a NUL in a chunk: 554 5.6.0 at LAST, as in DATA',
    async run(c) {
      await envelope(c, 'nul');
      assert.equal((await send(c, bdat(`${HDRS}Subject: nul\r\n\r\n${PARTIAL}\x00\r\n`))).code, 250);
      assert.match((await send(c, bdat('end\r\n', true))).text, /^554 5\.6\.0 /);
    },
  },
  {
    name: 'a bare CR in a chunk: 554 5.6.0, as in DATA',
    async run(c) {
      await envelope(c, 'cr');
      assert.match((await send(c, bdat(`${HDRS}Subject: cr\r\n\r\n${PARTIAL}\r.\r\n`, true))).text, /^554 5\.6\.0 /);
    },
  },
];

test(`BDAT errors (${ERROR_CASES.length} cases): each gets its reply, nothing of it is kept, and the next transaction in the session succeeds`, { timeout: 120_000 }, async () => {
  const sink = await startSink();
  await gateway(sink, {}, {}, async (d, config) => {
    for (const [i, k] of ERROR_CASES.entries()) {
      const c = await open(d.port);
      try {
        await k.run(c);
        await ok(c, String(i));
        assert.equal((await c.cmd('QUIT')).code, 221, k.name);
      } catch (err) {
        throw new Error(`${k.name}: ${(err as Error).message}`, { cause: err });
      } finally {
        c.close();
      }
    }
    // the ok- messages, DATA's, the one after LAST, the late RCPT's
    const want = ERROR_CASES.length + 3;
    await sink.waitMessages(want);
    await flushWait(config);
    assert.equal((await mailq(config)).total, 0, 'nothing left in the queue');
    assert.equal(sink.messages.length, want);
    assert.deepEqual(sink.messages.filter((m) => m.body.includes(PARTIAL)).map((m) => m.to), [], 'no discarded chunk reached the next hop');
    assert.deepEqual(bySubject(sink, 'late rcpt').map((m) => m.to), [['late-rcpt@far.example']]);
  });
});

test('bare LF in a chunk follows smtp.bareNewline as DATA does: refused from outside under reject, made CRLF from the LAN', async () => {
  const sink = await startSink();
  await gateway(sink, { bareNewline: 'reject', localDomains: ['office.example'] }, {}, async (d) => {
    const msg = (who: string) => `${HDRS}Subject: lf ${who}\r\n\r\nbare\nline\r\n`;
    const out = await open(d.port, OUTSIDE);
    try {
      assert.equal((await out.cmd('MAIL FROM:<x@outside.test>')).code, 250);
      assert.equal((await out.cmd('RCPT TO:<bob@office.example>')).code, 250);
      assert.match((await send(out, bdat(msg('outside'), true))).text, /^554 5\.6\.0 .*bare <LF>/);
      assert.equal((await out.cmd('NOOP')).code, 250);
    } finally {
      out.close();
    }
    const lan = await open(d.port, INSIDE);
    try {
      await envelope(lan, 'lf');
      assert.match((await send(lan, bdat(msg('lan'), true))).text, /queued as/);
    } finally {
      lan.close();
    }
    await sink.waitMessages(1);
    assert.equal(untraced(sink.messages[0].body), msg('lan').replace('bare\n', 'bare\r\n'));
    assert.equal(bySubject(sink, 'lf outside').length, 0);
  });
});

test('a BDAT chunk that trickles below smtp.minDataRate gets 421 4.4.2 Data rate too low; nothing of it is kept', { timeout: 60_000 }, async () => {
  const sink = await startSink();
  await gateway(sink, { minDataRate: 100 }, {}, async (d, config) => {
    const c = await open(d.port, OUTSIDE);
    let timer: NodeJS.Timeout | undefined;
    try {
      assert.equal((await c.cmd('MAIL FROM:<slow@outside.test>')).code, 250);
      assert.equal((await c.cmd('RCPT TO:<bob@office.example>')).code, 250);
      c.write(`BDAT 2000 LAST\r\n${HDRS}Subject: slow\r\n\r\n`);
      // one byte every 250 ms (4 bytes a second), stopped by the close or after 400 bytes
      let n = 0;
      timer = setInterval(() => (c.closed || n++ > 400 ? clearInterval(timer) : c.write('x')), 250);
      assert.match((await c.reply(30_000)).text, /^421 4\.4\.2 Data rate too low/);
      assert.equal(await c.closedByServer(), true);
    } finally {
      clearInterval(timer);
      c.close();
    }
    await d.waitLog((l) => l.msg === 'data rate too low: session closed' && l.client === OUTSIDE, 'the cut in the log');
    await marker(d, sink, config, 1, HDRS);
    assert.deepEqual(sink.messages.map((m) => m.from), ['alice@office.example']);
  });
});

test('a BDAT chunk that stalls is cut by timeout.session (421 4.4.2) when no data rate applies; nothing of it is kept', { timeout: 60_000 }, async () => {
  const sink = await startSink();
  await gateway(sink, { minDataRate: 0 }, { timeout: { session: '3s' } }, async (d, config) => {
    const c = await open(d.port, OUTSIDE);
    try {
      assert.equal((await c.cmd('MAIL FROM:<stall@outside.test>')).code, 250);
      assert.equal((await c.cmd('RCPT TO:<bob@office.example>')).code, 250);
      c.write(`BDAT 100 LAST\r\n${HDRS}`);
      assert.match((await c.reply(30_000)).text, /^421 4\.4\.2 Session timeout/);
      assert.equal(await c.closedByServer(), true);
    } finally {
      c.close();
    }
    await marker(d, sink, config, 1, HDRS);
    assert.deepEqual(sink.messages.map((m) => m.from), ['alice@office.example']);
  });
});

test('end to end: quietlink delivers to a quietlink next hop over BDAT (CHUNKING seen, BDAT LAST sent) and the message reaches the final sink intact', { timeout: 90_000 }, async () => {
  const sink = await startSink();
  const nextPort = await closedPort();
  const dirs = [await tempDir('ql-bdat-office-'), await tempDir('ql-bdat-next-')];
  const common = { deliveryMode: 'background', lanNetworks: ['127.0.0.1/32'], queue: { minQueueAge: '0s' }, link: { mode: 'permanent' } };
  const next = await startDaemon(await writeConfig(dirs[1], {
    ...common, hostname: 'gw.next.example', log: { level: 'debug' },
    smtp: { listen: [`127.0.0.1:${nextPort}`], mynetworks: ['127.0.0.1/32'], localDomains: ['next.example'] },
    smartHost: [`[127.0.0.1]:${sink.port}`],
  }));
  const office = await startDaemon(await writeConfig(dirs[0], {
    ...common, hostname: 'gw.office.example',
    smtp: { mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'] },
    smartHost: [`[127.0.0.1]:${nextPort}`],
  }));
  try {
    const msg = `${messageFor(11)}.\r\n..two dots\r\n.\r\n\r\nQUIT\r\n`;
    const r = await sendMail(office.port, 'alice@office.example', ['far@far.example'], msg.replace(/^\./gm, '..'));
    assert.equal(r.code, 250, r.text);
    await next.waitLog((l) => l.msg === 'message received by BDAT' && l.chunks === 1, 'the next hop took the message by BDAT', 30_000);
    await sink.waitMessages(1, 30_000);
    assert.equal(sha(untraced(sink.messages[0].body, 2)), sha(msg), 'the message at the final sink is the one sent');
    assert.deepEqual(sink.messages[0].to, ['far@far.example']);
  } finally {
    await office.stop();
    await next.stop();
    await sink.close();
    for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
  }
});
