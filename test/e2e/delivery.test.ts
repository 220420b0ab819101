/**
 * Delivery against real next hops: smtp-server sinks on 127.0.0.1 with
 * scripted replies, a real daemon process, real SMTP in both directions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir, writeConfig, startDaemon, runCli, type Daemon } from '../helpers/daemon.js';
import { RawSmtp, sendMail } from '../helpers/smtp-client.js';
import { startSink, closedPort, type Sink } from '../helpers/sink.js';
import { gateway as runGateway } from '../helpers/gateway.js';

type Tree = Record<string, unknown>;

/** Demand mode: a flush window has the link (pppd would dial it), intake does not. */
const gateway = (over: Tree, body: Parameters<typeof runGateway>[2], sinks: Sink[] = []) =>
  runGateway({ lanNetworks: ['127.0.0.0/8'], queue: { minQueueAge: '0s' }, link: { mode: 'demand' } }, over, body, sinks);

const MSG = (subject: string) => `Subject: ${subject}\r\nFrom: <alice@office.example>\r\n\r\nbody of ${subject}\r\n`;
const idOf = (text: string) => /queued as (\S+)/.exec(text)![1];

async function queueJson(config: string, ...args: string[]) {
  return JSON.parse((await runCli(['mailq', '-c', config, '--json', ...args])).stdout) as { total: number; messages: Array<{ id: string; recipients: Array<{ address: string; state: string; lastReply?: string }>; attempts: number; warned?: boolean }> };
}

test('deferred mode: a LAN route goes out at once after the 250, a link route waits for a flush', async () => {
  const lan = await startSink();
  const wan = await startSink();
  await gateway({
    routes: [
      { domain: 'lan.example', relay: `[127.0.0.1]:${lan.port}` },
      { domain: 'far.example', esmtp: `[127.0.0.1]:${wan.port}`, link: true },
    ],
  }, async (d, config) => {
    const r1 = await sendMail(d.port, 'alice@office.example', ['bob@lan.example'], MSG('lan'));
    assert.equal(r1.code, 250);
    await lan.waitMessages(1);
    const sent = await d.waitLog((l) => l.msg === 'delivered' && l.qid === idOf(r1.text), 'delivered log');
    assert.match(String(sent.relay), /^127\.0\.0\.1 \[127\.0\.0\.1\]$/);
    assert.match(String(sent.dsn), /^2\.\d\.\d$/);
    assert.match(String(sent.stat), /^Sent \(250 /);

    const r2 = await sendMail(d.port, 'alice@office.example', ['carol@far.example'], MSG('wan'));
    assert.equal(r2.code, 250);
    assert.equal(wan.connections, 0, 'no connection toward the link route at intake');
    assert.equal((await queueJson(config)).total, 1);
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 0, f.stdout + f.stderr);
    assert.equal(wan.messages.length, 1);
    assert.deepEqual(wan.messages[0].to, ['carol@far.example']);
    assert.match(wan.messages[0].body, /body of wan/);
    assert.equal((await queueJson(config)).total, 0, 'delivered mail leaves the queue');
  }, [lan, wan]);
});

test('failover: a refused connection and a 421 greeting move to the next host of the route', async () => {
  const good = await startSink();
  const busy = await startSink({ greeting: 421 });
  const dead = await closedPort();
  await gateway({
    routes: [
      { domain: 'a.example', relay: `[127.0.0.1]:${dead},[127.0.0.1]:${good.port}` },
      { domain: 'b.example', relay: `[127.0.0.1]:${busy.port},[127.0.0.1]:${good.port}` },
    ],
  }, async (d) => {
    assert.equal((await sendMail(d.port, 'alice@office.example', ['x@a.example'], MSG('a'))).code, 250);
    assert.equal((await sendMail(d.port, 'alice@office.example', ['y@b.example'], MSG('b'))).code, 250);
    await good.waitMessages(2);
    assert.equal(busy.connections, 1, 'the busy host was tried first');
    assert.deepEqual(good.messages.map((m) => m.to[0]).sort(), ['x@a.example', 'y@b.example']);
  }, [good, busy]);
});

test('per-recipient 250/450/550 in one transaction; the 4xx one is delivered by a later run; the 5xx one bounces with a DSN', async () => {
  let tempFail = true;
  const sink = await startSink({
    rcpt: (a) => a.startsWith('later@') && tempFail ? { code: 450, text: '4.2.1 Mailbox busy, try later' }
      : a.startsWith('nobody@') ? { code: 550, text: '5.1.1 No such user here' } : null,
  });
  await gateway({
    smartHost: [`[127.0.0.1]:${sink.port}`],
  }, async (d, config) => {
    const r = await sendMail(d.port, 'alice@office.example', ['ok@x.example', 'later@x.example', 'nobody@x.example'], MSG('mix'), 'RET=HDRS ENVID=E42');
    const id = idOf(r.text);
    // the original (to ok@) and the bounce (to alice@) arrive
    await sink.waitMessages(2);
    const original = sink.messages.find((m) => m.from === 'alice@office.example')!;
    assert.deepEqual(original.to, ['ok@x.example'], 'one transaction, only the accepted recipient got it');
    const dsn = sink.messages.find((m) => m.from === '')!;
    assert.deepEqual(dsn.to, ['alice@office.example']);
    assert.match(dsn.body, /Content-Type: multipart\/report; report-type=delivery-status/i);
    assert.match(dsn.body, /Content-Type: message\/delivery-status/i);
    assert.match(dsn.body, /Original-Envelope-Id: E42/);
    assert.match(dsn.body, /Final-Recipient: rfc822; nobody@x\.example/);
    assert.match(dsn.body, /Action: failed/);
    assert.match(dsn.body, /Status: 5\.1\.1/);
    assert.match(dsn.body, /Diagnostic-Code: smtp; 550 5\.1\.1 No such user here/);
    assert.match(dsn.body, /Content-Type: text\/rfc822-headers/i, 'RET=HDRS returns only the headers');
    assert.doesNotMatch(dsn.body, /Final-Recipient: rfc822; later@/);
    const q = await queueJson(config);
    assert.equal(q.total, 1);
    const later = q.messages[0].recipients.find((x) => x.address === 'later@x.example')!;
    assert.equal(later.state, 'pending');
    assert.match(later.lastReply!, /^450 4\.2\.1/);
    assert.deepEqual(q.messages[0].recipients.map((x) => x.state), ['delivered', 'pending', 'failed']);
    tempFail = false;
    const f = await runCli(['flush', '-c', config, '--wait', '-qI', id]);
    assert.equal(f.code, 0, f.stdout);
    assert.equal((await queueJson(config)).total, 0);
    assert.deepEqual(sink.messages.at(-1)!.to, ['later@x.example']);
  }, [sink]);
});

test('a temporary failure makes flush --wait exit 75; queueWarn sends one delay warning; queueReturn bounces', async () => {
  const bounceBox = await startSink();
  const busy = await startSink({ rcpt: () => ({ code: 451, text: '4.3.0 Try again later' }) });
  await gateway({
    routes: [
      { domain: 'busy.example', relay: `[127.0.0.1]:${busy.port}`, link: true },
      { domain: 'office.example', relay: `[127.0.0.1]:${bounceBox.port}` },
    ],
    queue: { queueWarn: '0s', queueReturn: '5d' },
  }, async (d, config) => {
    await sendMail(d.port, 'alice@office.example', ['x@busy.example'], MSG('slow'));
    const first = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(first.code, 75, first.stdout + first.stderr);
    await bounceBox.waitMessages(1);
    assert.match(bounceBox.messages[0].body, /Action: delayed/);
    assert.match(bounceBox.messages[0].body, /Will-Retry-Until: /);
    const second = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(second.code, 75, second.stdout + second.stderr);
    const q = await queueJson(config);
    assert.equal(q.messages[0].attempts, 2);
    assert.equal(q.messages[0].warned, true);
    // one warning only, however many runs
    await runCli(['flush', '-c', config, '--wait', '-qGmqueue']);
    assert.equal(bounceBox.messages.length, 1);
  }, [bounceBox, busy]);

  const box = await startSink();
  const busy2 = await startSink({ rcpt: () => ({ code: 451, text: '4.3.0 Try again later' }) });
  await gateway({
    routes: [
      { domain: 'busy.example', relay: `[127.0.0.1]:${busy2.port}`, link: true },
      { domain: 'office.example', relay: `[127.0.0.1]:${box.port}` },
    ],
    queue: { queueReturn: '0s' },
  }, async (d, config) => {
    await sendMail(d.port, 'alice@office.example', ['x@busy.example'], MSG('expires'));
    await runCli(['flush', '-c', config, '--wait']);
    await box.waitMessages(1);
    assert.match(box.messages[0].body, /Action: failed/);
    assert.match(box.messages[0].body, /Status: 4\.4\.7/);
    assert.match(box.messages[0].body, /Content-Type: message\/rfc822/i, 'RET not given: the whole message comes back');
    assert.equal((await queueJson(config)).total, 0);
  }, [box, busy2]);
});

test('a failure of a null-sender message is logged and dropped, never bounced', async () => {
  const sink = await startSink({ rcpt: () => ({ code: 550, text: '5.1.1 No such user' }) });
  await gateway({ smartHost: [`[127.0.0.1]:${sink.port}`] }, async (d, config) => {
    const r = await sendMail(d.port, '', ['nobody@x.example'], MSG('bounce of a bounce'));
    assert.equal(r.code, 250);
    const dropped = await d.waitLog((l) => l.qid === idOf(r.text) && /never bounce a bounce/.test(String(l.msg)), 'double bounce dropped');
    assert.deepEqual(dropped.to, ['nobody@x.example']);
    assert.equal((await queueJson(config)).total, 0);
    assert.equal(sink.messages.length, 0);
  }, [sink]);
});

test('AUTH from authinfo goes over STARTTLS; credentials are never sent in cleartext', async () => {
  const tlsHost = await startSink({ tls: true, auth: { user: 'office', pass: 'pw 1' } });
  const plainHost = await startSink({ auth: { user: 'office', pass: 'pw 1' } });
  const dir = await tempDir();
  await fs.writeFile(path.join(dir, 'authinfo'), 'AuthInfo:127.0.0.1 "U:office" "P:pw 1" "M:PLAIN LOGIN"\n');
  await gateway({
    authinfo: path.join(dir, 'authinfo'),
    routes: [
      { domain: 'tls.example', relay: `[127.0.0.1]:${tlsHost.port}` },
      { domain: 'plain.example', relay: `[127.0.0.1]:${plainHost.port}` },
    ],
  }, async (d, config) => {
    await sendMail(d.port, 'alice@office.example', ['a@tls.example'], MSG('secret'));
    await tlsHost.waitMessages(1);
    assert.equal(tlsHost.messages[0].user, 'office');
    assert.equal(tlsHost.messages[0].secure, true);
    const r = await sendMail(d.port, 'alice@office.example', ['b@plain.example'], MSG('open'));
    await d.waitLog((l) => l.qid === idOf(r.text) && l.msg === 'deferred', 'deferred without AUTH');
    assert.equal(plainHost.authAttempts, 0, 'no AUTH over an unencrypted connection');
    assert.equal(plainHost.messages.length, 0);
    assert.equal((await queueJson(config)).total, 1);
  }, [tlsHost, plainHost]);
  await fs.rm(dir, { recursive: true, force: true });
});

test('one connection carries many messages; never more than the per-destination limit', async () => {
  const sink = await startSink();
  await gateway({ routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${sink.port}`, link: true }] }, async (d, config) => {
    for (let i = 0; i < 30; i++) assert.equal((await sendMail(d.port, 'alice@office.example', [`r${i}@far.example`], MSG(`m${i}`))).code, 250);
    assert.equal(sink.connections, 0);
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 0);
    assert.equal(sink.messages.length, 30);
    assert.ok(sink.connections <= 4, `${sink.connections} connections for 30 messages`);
    assert.match(f.stdout, /30 delivered, 0 deferred, 0 failed, 0 waiting for the link, \d connections/);
  }, [sink]);
});

test('interactive mode delivers before the 250; deferred mode only queues a link route', async () => {
  const sink = await startSink();
  await gateway({ deliveryMode: 'interactive', routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${sink.port}`, link: true }] }, async (d, config) => {
    // interactive mode sends link routes at intake when the line is up
    assert.equal((await runCli(['link', 'up', '-c', config])).code, 0);
    assert.equal((await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG('now'))).code, 250);
    assert.equal(sink.messages.length, 1, 'already delivered when the 250 came');
    const s = await runCli(['sendmail', '-c', config, 'y@far.example'], { input: 'Subject: cli\n\nnow\n' });
    assert.equal(s.code, 0);
    assert.equal(sink.messages.length, 2, 'sendmail returned after delivery');
  }, [sink]);
});

test('held and quarantined mail is never delivered until released; a queue group with runners 0 only when named (-qG)', async () => {
  const sink = await startSink();
  await gateway({
    routes: [{ domain: '.example', relay: `[127.0.0.1]:${sink.port}`, link: true }],
    queue: { groups: [{ name: 'frozen', runners: 0, match: ['frozen.example'] }] },
  }, async (d, config) => {
    const h = idOf((await sendMail(d.port, 'alice@office.example', ['a@far.example'], MSG('held'))).text);
    const q = idOf((await sendMail(d.port, 'alice@office.example', ['b@far.example'], MSG('quarantined'))).text);
    await sendMail(d.port, 'alice@office.example', ['c@frozen.example'], MSG('frozen'));
    assert.equal((await runCli(['hold', '-c', config, h])).code, 0);
    assert.equal((await runCli(['quarantine', '-c', config, '-Q', 'check', q])).code, 0);
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    assert.equal(sink.messages.length, 0, 'runners 0: not by a plain flush');
    // seed 004: a group named by the operator runs anyway (someone asked for it)
    assert.equal((await runCli(['flush', '-c', config, '--wait', '-qGfrozen'])).code, 0);
    assert.deepEqual(sink.messages.map((m) => m.to[0]), ['c@frozen.example']);
    await runCli(['release', '-c', config, h]);
    await runCli(['quarantine', '-c', config, '-Q', '', q]);
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    assert.deepEqual(sink.messages.map((m) => m.to[0]).sort(), ['a@far.example', 'b@far.example', 'c@frozen.example']);
    assert.equal((await queueJson(config)).total, 0);
  }, [sink]);
});

test('recipients are split into envelopes of queue.groups[].recipients, each delivered', async () => {
  const sink = await startSink();
  await gateway({
    smartHost: [`[127.0.0.1]:${sink.port}`],
    queue: { groups: [{ name: 'small', runners: 1, recipients: 2, match: ['x.example'] }] },
  }, async (d) => {
    const rcpts = ['1', '2', '3', '4', '5'].map((n) => `u${n}@x.example`);
    assert.equal((await sendMail(d.port, 'alice@office.example', rcpts, MSG('split'))).code, 250);
    await sink.waitMessages(3);
    assert.deepEqual(sink.messages.map((m) => m.to.length).sort(), [1, 2, 2]);
    assert.deepEqual(sink.messages.flatMap((m) => m.to).sort(), rcpts);
  }, [sink]);
});

test('flush -v shows each result and the SMTP dialogue; --dry-run only shows the plan', async () => {
  const sink = await startSink();
  await gateway({ routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${sink.port}`, link: true }] }, async (d, config) => {
    const id = idOf((await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG('verbose'))).text);
    const dry = await runCli(['flush', '-c', config, '--dry-run']);
    assert.match(dry.stdout, new RegExp(`${id}: to=<x@far\\.example> via relay:\\[127\\.0\\.0\\.1\\]:${sink.port}`));
    assert.equal(sink.connections, 0);
    const v = await runCli(['flush', '-c', config, '-v']);
    assert.equal(v.code, 0);
    // each dialogue line names its connection
    assert.match(v.stdout, /^\[c\d+ [^\]]+\] >>> EHLO gw\.test\.example$/m);
    assert.match(v.stdout, /^\[c\d+ [^\]]+\] <<< 250 /m);
    assert.match(v.stdout, new RegExp(`^${id}: to=<x@far\\.example>, relay=127\\.0\\.0\\.1 \\[127\\.0\\.0\\.1\\], stat=delivered \\(250 `, 'm'));
  }, [sink]);
});

test('a changed mailertable and SIGHUP reload the routes without a restart', async () => {
  const one = await startSink();
  const two = await startSink();
  const dir = await tempDir();
  const mt = path.join(dir, 'mailertable');
  await fs.writeFile(mt, `far.example relay:[127.0.0.1]:${one.port}\n`);
  await gateway({ mailertable: mt }, async (d) => {
    await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG('before'));
    await one.waitMessages(1);
    await fs.writeFile(mt, `far.example relay:[127.0.0.1]:${two.port}\n`);
    await d.waitLog((l) => l.msg === 'routes reloaded' && String(l.reason).includes('mailertable'), 'reload after the file changed');
    await sendMail(d.port, 'alice@office.example', ['y@far.example'], MSG('after'));
    await two.waitMessages(1);
    await fs.writeFile(mt, `far.example relay:[127.0.0.1]:${one.port}\nbroken line here\n`);
    d.proc.kill('SIGHUP');
    const refused = await d.waitLog((l) => /^reload refused: .*mailertable:2: /.test(String(l.msg)), 'a bad file is refused with file:line');
    assert.ok(refused);
    await sendMail(d.port, 'alice@office.example', ['z@far.example'], MSG('still two'));
    await two.waitMessages(2);
    assert.equal(one.messages.length, 1, 'the old routes stay when the new file is bad');
  }, [one, two]);
  await fs.rm(dir, { recursive: true, force: true });
});

test('NOTIFY=SUCCESS: a next hop without DSN makes us send a "relayed" notice; one with DSN gets NOTIFY passed on', async () => {
  const box = await startSink();
  const old = await startSink({ noDsn: true });
  const modern = await startSink();
  await gateway({
    routes: [
      { domain: 'office.example', relay: `[127.0.0.1]:${box.port}` },
      { domain: 'old.example', relay: `[127.0.0.1]:${old.port}` },
      { domain: 'new.example', relay: `[127.0.0.1]:${modern.port}` },
    ],
  }, async (d) => {
    const send = async (to: string) => {
      const c = await RawSmtp.connect(d.port);
      try {
        await c.reply();
        await c.cmd('EHLO client.test');
        await c.cmd('MAIL FROM:<alice@office.example> ENVID=S1');
        assert.equal((await c.cmd(`RCPT TO:<${to}> NOTIFY=SUCCESS`)).code, 250);
        await c.cmd('DATA');
        c.write(`${MSG('success')}.\r\n`);
        assert.equal((await c.reply()).code, 250);
      } finally {
        c.close();
      }
    };
    await send('x@old.example');
    await old.waitMessages(1);
    await box.waitMessages(1);
    assert.match(box.messages[0].body, /Action: relayed/);
    assert.match(box.messages[0].body, /Final-Recipient: rfc822; x@old\.example/);
    await send('y@new.example');
    await modern.waitMessages(1);
    await d.waitLog((l) => l.msg === 'delivered' && l.to === 'y@new.example', 'delivered to the DSN-capable hop');
    assert.equal(box.messages.length, 1, 'no notice when the next hop offers DSN');
  }, [box, old, modern]);
});
