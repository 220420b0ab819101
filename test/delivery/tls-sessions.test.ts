/**
 * TLS session resumption across connections and windows
 * (delivery/tls-sessions.ts, used by delivery/smtp-connect.ts at STARTTLS):
 * the cache's decisions as tables, then a real next hop on 127.0.0.1 —
 * smtp-server with the self-signed certificate of test/fixtures — that
 * reports, for every STARTTLS, whether the TLS session was resumed
 * (`isSessionReused()` on the server's socket).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SMTPServer } from 'smtp-server';
import { SmtpSession, type SessionEvent, type Timeouts } from '../../src/delivery/smtp-session.js';
import { hopKey, keep, putBack, TlsSessions, MAX_AGE } from '../../src/delivery/tls-sessions.js';
import { runCli } from '../helpers/daemon.js';
import { gateway } from '../helpers/gateway.js';
import { sendMail } from '../helpers/smtp-client.js';

const T: Timeouts = { iconnect: 5000, connect: 5000, helo: 5000, mail: 5000, rcpt: 5000, datainit: 5000, datablock: 5000, datafinal: 5000, command: 5000 };
const FIX = new URL('../fixtures/', import.meta.url);

interface TlsHop {
  port: number;
  /** One entry per STARTTLS, in order: was the session resumed? */
  resumed: boolean[];
  messages: Array<{ to: string[]; body: string }>;
  close(): Promise<void>;
}

/** A next hop that offers STARTTLS (fresh ticket keys per start, as a restarted server has). */
async function tlsHop(port = 0): Promise<TlsHop> {
  const hop: TlsHop = { port: 0, resumed: [], messages: [], close: async () => undefined };
  const server = new SMTPServer({
    key: fs.readFileSync(new URL('tls.key', FIX)),
    cert: fs.readFileSync(new URL('tls.crt', FIX)),
    name: 'tls-hop.test',
    disabledCommands: ['AUTH'],
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 1000,
    onSecure(socket, _session, cb) {
      hop.resumed.push((socket as TLSSocket).isSessionReused());
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        hop.messages.push({ to: session.envelope.rcptTo.map((r) => r.address), body: Buffer.concat(chunks).toString('latin1') });
        cb(null, 'Ok: queued at the TLS hop');
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  hop.port = (server.server.address() as net.AddressInfo).port;
  hop.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return hop;
}

/** A message of some size with lines that need care on the wire (a leading dot, 8-bit bytes kept out). */
const body = (n: number) => Buffer.from(`Subject: message ${n}\r\n\r\n${Array.from({ length: 200 }, (_, i) => `${i % 17 === 0 ? '.' : ''}line ${i} of message ${n}`).join('\r\n')}\r\n`);

/** One connection: STARTTLS, one message, QUIT; returns the dialogue's notes. */
async function deliverOnce(port: number, cache: TlsSessions, n: number): Promise<string[]> {
  const notes: string[] = [];
  const s = await SmtpSession.open({ name: '127.0.0.1', ip: '127.0.0.1', port }, {
    hostname: 'gw.test.example', timeouts: T, tlsSessions: cache,
    onEvent: (e: SessionEvent) => void (e.dir === 'note' && notes.push(e.line)),
  });
  assert.equal(s.secure, true, 'the connection went through STARTTLS');
  const b = body(n);
  const [r] = await s.send({ from: 'a@office.example', to: [`m${n}@far.example`], size: b.length, use8BitMime: false }, b);
  assert.equal(r.code, 250, r.text);
  s.quit();
  return notes;
}

test('keep(): tickets within 7 days, the newest PER_HOP of them, oldest first', () => {
  const t = (at: number) => ({ session: Buffer.from(String(at)), at });
  const now = MAX_AGE * 2;
  const cases: Array<[number[], number, number[]]> = [
    [[], 4, []],
    [[now - 1, now], 4, [now - 1, now]],
    [[now - MAX_AGE, now - MAX_AGE + 1], 4, [now - MAX_AGE + 1]],
    [[1, 2, 3, 4, 5, 6].map((x) => now - 10 + x), 4, [3, 4, 5, 6].map((x) => now - 10 + x)],
    [[now - 3, now - 2, now - 1], 1, [now - 1]],
  ];
  for (const [ats, perHop, want] of cases) assert.deepEqual(keep(ats.map(t), now, perHop).map((x) => x.at), want, `${ats} / ${perHop}`);
});

test('putBack(): only a resumed TLS 1.2 session that brought no new one goes back; a TLS 1.3 ticket is used once', () => {
  const s = Buffer.from('s');
  const cases: Array<[Buffer | undefined, boolean, string | null, boolean, Buffer | undefined]> = [
    [s, true, 'TLSv1.2', false, s],
    [s, true, 'TLSv1.2', true, undefined],
    [s, false, 'TLSv1.2', false, undefined],
    [s, true, 'TLSv1.3', false, undefined],
    [undefined, true, 'TLSv1.2', false, undefined],
    [s, true, null, false, undefined],
  ];
  for (const [offered, resumed, protocol, gotNew, want] of cases) assert.equal(putBack(offered, resumed, protocol, gotNew), want, `${resumed} ${protocol} ${gotNew}`);
});

test('TlsSessions: take() hands out the newest ticket once; hops and tickets a hop stay bounded', () => {
  const c = new TlsSessions({ hops: 2, perHop: 2, maxAge: 1000 });
  const a = hopKey('127.0.0.2', 25, 'mx.a.example');
  assert.equal(a, '127.0.0.2:25 mx.a.example');
  assert.equal(hopKey('::1', 25), '[::1]:25 ');
  c.put(a, Buffer.from('a1'), 0);
  c.put(a, Buffer.from('a2'), 1);
  c.put(a, Buffer.from('a3'), 2);
  assert.equal(c.count(a), 2);
  assert.equal(c.take(a, 3)?.toString(), 'a3');
  assert.equal(c.take(a, 3)?.toString(), 'a2');
  assert.equal(c.take(a, 3), undefined);
  c.put(a, Buffer.from('old'), 0);
  assert.equal(c.take(a, 1000), undefined, 'a ticket past maxAge is not offered');
  c.put('h1', Buffer.from('1'), 0);
  c.put('h2', Buffer.from('2'), 0);
  c.put('h3', Buffer.from('3'), 0);
  assert.deepEqual(['h1', 'h2', 'h3'].map((h) => c.count(h)), [0, 1, 1], 'the hop stored least recently goes first');
  assert.equal(c.count(hopKey('127.0.0.2', 25, 'mx.b.example')), 0, 'another SNI name is another hop');
});

test('STARTTLS resumes the TLS session on the next connection to the same hop; the message arrives intact', async () => {
  const hop = await tlsHop();
  try {
    const cache = new TlsSessions();
    const key = hopKey('127.0.0.1', hop.port);
    assert.deepEqual(await deliverOnce(hop.port, cache, 1), [], 'nothing to offer on the first connection');
    assert.ok(cache.count(key) >= 1, 'the hop\'s ticket is kept');
    assert.deepEqual(await deliverOnce(hop.port, cache, 2), ['TLS session resumed']);
    assert.deepEqual(hop.resumed, [false, true], 'the next hop saw a full handshake, then a resumed session');
    assert.deepEqual(hop.messages.map((m) => m.to), [['m1@far.example'], ['m2@far.example']]);
    assert.equal(hop.messages[1].body, body(2).toString('latin1'), 'the message over the resumed session is byte-identical');
    assert.equal(await deliverOnce(hop.port, cache, 3).then((n) => n.join()), 'TLS session resumed', 'a resumed session brings the ticket for the next');
  } finally {
    await hop.close();
  }
});

test('a next hop restarted with other ticket keys: the offered session is refused, the message still goes, new tickets replace the old', async () => {
  const first = await tlsHop();
  const port = first.port;
  const cache = new TlsSessions();
  await deliverOnce(port, cache, 1);
  await first.close();
  // the same address and port, a new server: new ticket keys
  const restarted = await tlsHop(port);
  try {
    assert.deepEqual(await deliverOnce(port, cache, 2), ['TLS session not resumed: full handshake']);
    assert.deepEqual(restarted.resumed, [false]);
    assert.equal(restarted.messages.length, 1);
    assert.equal(restarted.messages[0].body, body(2).toString('latin1'));
    assert.deepEqual(await deliverOnce(port, cache, 3), ['TLS session resumed'], 'the full handshake\'s ticket serves the next connection');
    assert.deepEqual(restarted.resumed, [false, true]);
  } finally {
    await restarted.close();
  }
});

test('through the daemon: the second flush window resumes the TLS session of the first', { timeout: 60_000 }, async () => {
  const hop = await tlsHop();
  await gateway({ lanNetworks: ['127.0.0.0/8'], link: { mode: 'demand' }, deliveryMode: 'queue' }, {
    routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${hop.port}` }],
  }, async (d, config) => {
    for (const n of [1, 2]) {
      assert.equal((await sendMail(d.port, 'alice@office.example', [`m${n}@far.example`], body(n).toString('latin1'))).code, 250);
      const f = await runCli(['flush', '-c', config, '--wait', '-v']);
      assert.equal(f.code, 0, f.stdout);
      assert.equal(hop.messages.length, n);
      // `flush -v` shows it in the dialogue
      assert.equal(f.stdout.includes('--- TLS session resumed'), n === 2, f.stdout);
    }
    assert.deepEqual(hop.resumed, [false, true], 'window 1: full handshake; window 2: resumed');
    assert.ok(hop.messages[1].body.endsWith(body(2).toString('latin1').split('\r\n\r\n')[1]), 'the second message\'s body arrived intact');
  }, [hop]);
});
