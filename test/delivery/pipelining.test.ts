/**
 * Pipelining across transactions (RFC 2920 §3.1) and BDAT (RFC 3030) in
 * delivery/smtp-session.ts: correctness, not time. Every next hop is a real
 * server on 127.0.0.1 — a scripted one in this file that speaks BDAT (the
 * smtp-server of test/helpers/sink.ts has no CHUNKING) and holds its
 * replies back, so a client that waited where it should not would hang and
 * fail the bounded wait; smtp-server itself for the DATA path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { SmtpSession, type RcptResult, type Timeouts } from '../../src/delivery/smtp-session.js';
import { wireBody } from '../../src/delivery/smtp-wire.js';
import { runCli, withTimeout } from '../helpers/daemon.js';
import { gateway } from '../helpers/gateway.js';
import { startSink } from '../helpers/sink.js';
import { sendMail } from '../helpers/smtp-client.js';

const T: Timeouts = { iconnect: 5000, connect: 5000, helo: 5000, mail: 5000, rcpt: 5000, datainit: 5000, datablock: 5000, datafinal: 5000, command: 5000 };
const sha = (b: Buffer | string) => crypto.createHash('sha256').update(b).digest('hex');

interface Received { from: string; to: string[]; body: Buffer; via: 'BDAT' | 'DATA'; /** The transaction's number on its connection (its MAIL's). */ n: number }

interface Script {
  chunking?: boolean;
  /** Replies for transaction `i` (the i-th MAIL) of a connection (null: 250). */
  mail?: (i: number) => string | null;
  rcpt?: (i: number, to: string) => string | null;
  final?: (i: number) => string | null;
  /** Hold every reply of a connection until it has this many whole transactions (BDAT: proves they were not waited for). */
  holdUntil?: number;
  /** DATA: hold the reply to a final dot until the next command arrives, for all but the last `lastDot` transaction. */
  dotBeforeNext?: number;
  /** Called when transaction `i` of connection `c` is complete: 'cut' closes the connection instead of replying, 'silent' stalls (no reply to it or anything after it). */
  onTx?: (c: number, i: number, tx: Received) => 'cut' | 'silent' | void;
}

/** A scripted next hop: PIPELINING, optionally CHUNKING; strict about transactions (a nested MAIL gets 503). */
async function scripted(s: Script) {
  const got: Received[] = [];
  const commands: string[][] = [];
  const socks = new Set<net.Socket>();
  let conns = 0;
  const server = net.createServer((sock) => {
    const c = conns++;
    const log: string[] = (commands[c] = []);
    socks.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => socks.delete(sock));
    let buf = Buffer.alloc(0);
    let held: string[] = [];
    let holding = false;
    let dead = false;
    let stalled = false;
    let awaitNext = false;
    let tx: Received | null = null;
    let txs = 0;
    let mails = 0;
    let accepted = 0;
    let chunkLeft = -1;
    let dataLines: Buffer[] | null = null;
    let mailOk = false;
    const say = (line: string) => {
      if (stalled) return;
      if (holding || awaitNext) held.push(line);
      else sock.write(`${line}\r\n`);
    };
    const release = () => {
      if (held.length) sock.write(held.map((l) => `${l}\r\n`).join(''));
      held = [];
    };
    const complete = (t: Received) => {
      const i = txs++;
      got.push(t);
      const what = s.onTx?.(c, i, t);
      if (what === 'cut') {
        // the replies already said leave, then the connection ends with nothing more
        dead = true;
        release();
        sock.end();
        return false;
      }
      mailOk = false;
      if (what === 'silent') stalled = true;
      say(s.final?.(t.n) ?? '250 2.0.0 Ok: queued');
      if (holding && txs >= (s.holdUntil ?? 0)) {
        holding = false;
        release();
      }
      return true;
    };
    sock.write('220 scripted.test ESMTP\r\n');
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (!sock.destroyed && !dead) {
        if (chunkLeft >= 0) {
          const take = Math.min(chunkLeft, buf.length);
          tx!.body = Buffer.concat([tx!.body, buf.subarray(0, take)]);
          buf = buf.subarray(take);
          chunkLeft -= take;
          if (chunkLeft > 0) return;
          chunkLeft = -1;
          const t = tx!;
          tx = null;
          if (!accepted) say('554 5.5.1 Error: no valid recipients');
          else if (!complete(t)) return;
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.subarray(0, nl).toString('latin1');
        buf = buf.subarray(nl + 2);
        if (dataLines) {
          if (line === '.') {
            const t = { ...tx!, body: Buffer.concat(dataLines) };
            dataLines = null;
            tx = null;
            if (s.dotBeforeNext !== undefined && txs < s.dotBeforeNext - 1) awaitNext = true;
            if (!complete(t)) return;
          } else dataLines.push(Buffer.from(`${line.startsWith('.') ? line.slice(1) : line}\r\n`, 'latin1'));
          continue;
        }
        if (awaitNext) {
          // the next transaction's command came before the reply to the previous final dot
          awaitNext = false;
          release();
        }
        log.push(line);
        const verb = line.split(/[ :]/)[0].toUpperCase();
        const i = verb === 'MAIL' ? mails++ : mails - 1;
        if (verb === 'EHLO') say(`250-scripted.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 100000000${s.chunking ? '\r\n250-CHUNKING' : ''}\r\n250 ENHANCEDSTATUSCODES`);
        else if (verb === 'MAIL') {
          if (s.holdUntil && !txs) holding = true;
          if (mailOk) say('503 5.5.1 Error: nested MAIL command');
          else {
            const r = s.mail?.(i) ?? null;
            mailOk = r === null;
            tx = { from: /<([^>]*)>/.exec(line)?.[1] ?? '', to: [], body: Buffer.alloc(0), via: 'DATA', n: i };
            accepted = 0;
            say(r ?? '250 2.1.0 Ok');
          }
        } else if (verb === 'RCPT') {
          const to = /<([^>]*)>/.exec(line)?.[1] ?? '';
          const r = mailOk ? s.rcpt?.(i, to) ?? null : '503 5.5.1 Error: need MAIL command';
          if (r === null) {
            accepted++;
            tx!.to.push(to);
          }
          say(r ?? '250 2.1.5 Ok');
        } else if (verb === 'BDAT') {
          chunkLeft = Number(line.split(' ')[1]);
          tx = tx ?? { from: '', to: [], body: Buffer.alloc(0), via: 'BDAT', n: i };
          tx.via = 'BDAT';
          if (!mailOk) accepted = 0;
        } else if (verb === 'DATA') {
          if (!mailOk || !accepted) say('554 5.5.1 Error: no valid recipients');
          else {
            dataLines = [];
            say('354 End data with <CR><LF>.<CR><LF>');
          }
        } else if (verb === 'RSET') {
          mailOk = false;
          tx = null;
          say('250 2.0.0 Ok');
        } else if (verb === 'QUIT') {
          release();
          sock.end('221 2.0.0 Bye\r\n');
          return;
        } else say('502 5.5.2 Error: command not recognized');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    got,
    commands,
    connections: () => conns,
    close: () => new Promise<void>((r) => {
      for (const x of socks) x.destroy();
      server.close(() => r());
    }),
  };
}

const open = (port: number) => SmtpSession.open({ name: '127.0.0.1', ip: '127.0.0.1', port }, { hostname: 'gw.test.example', timeouts: T });
const env = (to: string[], size = 0) => ({ from: 'alice@office.example', to, size, use8BitMime: true });

/** Bodies that test the encodings: dots at line starts, a lone dot line, 8-bit bytes, a long line. */
function bodies(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.concat([
    Buffer.from(`Subject: m${i}\r\nMessage-ID: <m${i}@office.example>\r\n\r\n.starts with a dot\r\n.\r\n..two\r\nmiddle . dot\r\n`),
    Buffer.from([0xc3, 0xa9, 0x0d, 0x0a]),
    Buffer.from(`${'x'.repeat(900)}\r\n`.repeat(i + 1)),
    Buffer.from('.\r\nlast line\r\n'),
  ]));
}

test('a next hop that offers CHUNKING gets every message as one BDAT LAST, byte-identical, all sent before the first reply', async () => {
  const N = 6;
  const srv = await scripted({ chunking: true, holdUntil: N });
  try {
    const s = await open(srv.port);
    assert.equal(s.streams, true);
    const msgs = bodies(N);
    // the server answers nothing until it has all six transactions: a client that waited would hang here
    const res = await withTimeout(Promise.all(msgs.map((b, i) => s.send(env([`r${i}@far.example`], b.length), b))), 10_000, 'results of six pipelined BDAT transactions');
    assert.deepEqual(res.map((r) => r.map((x) => x.code)), msgs.map(() => [250]));
    assert.deepEqual(srv.got.map((g) => g.via), msgs.map(() => 'BDAT'));
    assert.deepEqual(srv.got.map((g) => sha(g.body)), msgs.map((b) => sha(b)), 'the sink holds exactly the stored bytes');
    assert.deepEqual(srv.got.map((g) => g.to), msgs.map((_, i) => [`r${i}@far.example`]));
    // one BDAT per message, each transaction after the first led by RSET
    const cmds = srv.commands[0].map((c) => c.split(' ')[0]);
    assert.equal(cmds.filter((c) => c === 'BDAT').length, N);
    assert.equal(cmds.filter((c) => c === 'RSET').length, N - 1);
    assert.equal(cmds.filter((c) => c === 'DATA').length, 0);
    s.quit();
  } finally {
    await srv.close();
  }
});

test('a next hop without CHUNKING gets DATA with dot-stuffing, the next MAIL before the reply to the previous dot, and the same bytes (smtp-server)', async () => {
  const msgs = bodies(5);
  // smtp-server undoes the dot-stuffing: what it hands on is the stored message
  const sink = await startSink();
  try {
    const s = await open(sink.port);
    assert.equal(s.streams, false);
    const res = await withTimeout(Promise.all(msgs.map((b, i) => s.send(env([`d${i}@far.example`]), b))), 10_000, 'five messages over DATA');
    assert.deepEqual(res.map((r) => r[0].code), msgs.map(() => 250));
    assert.deepEqual(sink.messages.map((m) => sha(m.body)), msgs.map((b) => sha(b.toString())));
    s.quit();
  } finally {
    await sink.close();
  }
  // the scripted hop holds each dot's reply until the next transaction's MAIL is in: pipelined across transactions
  const srv = await scripted({ chunking: false, dotBeforeNext: msgs.length });
  try {
    const s = await open(srv.port);
    const res = await withTimeout(Promise.all(msgs.map((b, i) => s.send(env([`p${i}@far.example`]), b))), 10_000, 'five messages with the next MAIL before the dot reply');
    assert.deepEqual(res.map((r) => r[0].code), msgs.map(() => 250));
    assert.deepEqual(srv.got.map((g) => sha(g.body)), msgs.map((b) => sha(b)));
    assert.deepEqual(srv.got.map((g) => g.via), msgs.map(() => 'DATA'));
    s.quit();
  } finally {
    await srv.close();
  }
});

test('wireBody(): CRLF line ends, a dot doubled at line starts over DATA only, the ending dot', () => {
  const cases: Array<[string, string, string]> = [
    ['a\r\nb\r\n', 'a\r\nb\r\n.\r\n', 'a\r\nb\r\n'],
    ['.a\r\n.\r\n', '..a\r\n..\r\n.\r\n', '.a\r\n.\r\n'],
    ['bare\nlf\n.x', 'bare\r\nlf\r\n..x\r\n.\r\n', 'bare\r\nlf\r\n.x\r\n'],
    ['bare\rcr\r.y', 'bare\r\ncr\r\n..y\r\n.\r\n', 'bare\r\ncr\r\n.y\r\n'],
    ['no end', 'no end\r\n.\r\n', 'no end\r\n'],
    ['', '.\r\n', ''],
  ];
  for (const [input, data, bdat] of cases) {
    assert.equal(wireBody(Buffer.from(input), 'data').toString(), data, JSON.stringify(input));
    assert.equal(wireBody(Buffer.from(input), 'bdat').toString(), bdat, JSON.stringify(input));
  }
});

for (const chunking of [true, false]) {
  test(`a 4xx/5xx to one pipelined transaction affects only its own recipients (${chunking ? 'BDAT' : 'DATA'})`, async () => {
    const srv = await scripted({
      chunking,
      mail: (i) => (i === 1 ? '451 4.3.0 Mail refused for now' : null),
      rcpt: (i, to) => (i === 2 && to.startsWith('bad') ? '550 5.1.1 No such user' : i === 3 && to.startsWith('later') ? '452 4.2.2 Mailbox full' : null),
      final: (i) => (i === 4 ? '554 5.6.0 Message refused' : null),
    });
    try {
      const s = await open(srv.port);
      const b = bodies(1)[0];
      const sends = [
        ['a0@far.example'], ['b1@far.example', 'c1@far.example'], ['bad2@far.example', 'ok2@far.example'],
        ['later3@far.example', 'ok3@far.example'], ['x4@far.example'], ['y5@far.example'],
      ].map((to) => s.send(env(to), b));
      const res = await withTimeout(Promise.all(sends), 10_000, 'results of six transactions');
      const codes = (r: RcptResult[]) => Object.fromEntries(r.map((x) => [x.address, x.code]));
      assert.deepEqual(res.map(codes), [
        { 'a0@far.example': 250 },
        { 'b1@far.example': 451, 'c1@far.example': 451 },
        { 'bad2@far.example': 550, 'ok2@far.example': 250 },
        { 'later3@far.example': 452, 'ok3@far.example': 250 },
        { 'x4@far.example': 554 },
        { 'y5@far.example': 250 },
      ]);
      assert.match(res[2][0].text, /^5\.1\.1 No such user/);
      assert.match(res[4][0].text, /^5\.6\.0 Message refused/);
      // the sink took the four messages that were accepted, with the accepted recipients only
      assert.deepEqual(srv.got.filter((g) => g.to.length).map((g) => g.to), [['a0@far.example'], ['ok2@far.example'], ['ok3@far.example'], ['x4@far.example'], ['y5@far.example']]);
      s.quit();
    } finally {
      await srv.close();
    }
  });
}

test('a connection cut in the middle of a pipelined batch: the confirmed messages resolve, every unconfirmed one rejects', async () => {
  const srv = await scripted({ chunking: true, onTx: (_c, i) => (i === 3 ? 'cut' : undefined) });
  try {
    const s = await open(srv.port);
    const b = bodies(1)[0];
    const settled = await withTimeout(Promise.allSettled(Array.from({ length: 6 }, (_, i) => s.send(env([`m${i}@far.example`]), b))), 10_000, 'six sends settled');
    assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected', 'rejected']);
    assert.equal(s.broken, true);
    await assert.rejects(s.send(env(['later@far.example']), b), /Connection/);
  } finally {
    await srv.close();
  }
});

test('through the daemon: a cut mid-batch leaves every message without a 250 queued, and only those; the next run delivers them', { timeout: 60_000 }, async () => {
  const N = 8;
  const confirmed = new Set<string>();
  const srv = await scripted({
    chunking: true,
    // the first connection confirms three transactions, leaves the fourth unanswered and
    // drops when the fifth is in (its data may have arrived: still no 250, so it must stay queued)
    onTx: (c, i, tx) => {
      if (c === 0 && i >= 3) return i === 3 ? 'silent' : 'cut';
      for (const to of tx.to) confirmed.add(to);
    },
  });
  await gateway({ lanNetworks: ['127.0.0.0/8'], link: { mode: 'demand' }, deliveryMode: 'queue' }, {
    routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${srv.port}` }],
    // should the first connection carry fewer than five, the unanswered one times out instead
    timeout: { datafinal: '3s' },
  }, async (d, config) => {
    const all = Array.from({ length: N }, (_, i) => `m${i}@far.example`);
    for (const to of all) assert.equal((await sendMail(d.port, 'alice@office.example', [to], `Subject: ${to}\r\n\r\nbody\r\n`)).code, 250);
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 75, f.stdout);
    const q = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout) as { messages: Array<{ recipients: Array<{ address: string }> }> };
    const queued = q.messages.flatMap((m) => m.recipients.map((r) => r.address)).sort();
    assert.ok(confirmed.size >= 3, `three or more confirmed (${[...confirmed].join(' ')})`);
    assert.deepEqual(queued, all.filter((a) => !confirmed.has(a)).sort(), 'queued: exactly the messages the next hop never confirmed');
    const again = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(again.code, 0, again.stdout);
    assert.deepEqual([...confirmed].sort(), all.slice().sort());
  }, [srv]);
});
