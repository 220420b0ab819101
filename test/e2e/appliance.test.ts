/**
 * The appliance's machine policies and its window on itself (SPEC §9, §12,
 * §13): load (QueueLA / RefuseLA, the load set through QUIETLINK_LOADAVG),
 * a full spool file system (a tmpfs the test mounts), SIGHUP reloads of the
 * YAML file, the Prometheus endpoint and `status --json`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { stringify } from 'yaml';
import { runCli, startDaemon, tempDir, writeConfig } from '../helpers/daemon.js';
import { RawSmtp, sendMail } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';
import { gateway } from '../helpers/gateway.js';

const MSG = (subject: string) => `Subject: ${subject}\r\nFrom: <alice@far.example>\r\n\r\nbody of ${subject}\r\n`;
const LAN = { lanNetworks: ['127.0.0.0/8'], queue: { minQueueAge: '0s' }, link: { mode: 'demand' } };

async function status(config: string) {
  const r = await runCli(['status', '-c', config, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function get(port: number, urlPath: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    }).on('error', reject);
  });
}

test('load: above queueLA a message waits when priority > queueFactor / (load - queueLA + 1); at refuseLA new connections get 421 4.3.2; status shows it', async () => {
  const sink = await startSink();
  const dir = await tempDir();
  const la = path.join(dir, 'loadavg');
  const setLoad = (v: number) => fs.writeFile(la, `${v.toFixed(2)} 0.00 0.00 1/100 100\n`);
  await setLoad(0.1);
  const config = await writeConfig(dir, {
    ...LAN,
    deliveryMode: 'background',
    routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${sink.port}` }],
    queue: { minQueueAge: '0s', queueLA: 2, refuseLA: 5, queueFactor: 100_000 },
  });
  const d = await startDaemon(config, { env: { QUIETLINK_LOADAVG: la } });
  try {
    let s = await status(config);
    assert.deepEqual({ ...s.load, cpus: 0 }, { average: 0.1, cpus: 0, queueLA: 2, refuseLA: 5, queueFactor: 100_000, queueing: false, refusing: false, queuedForLoad: 0 });
    // load 3: the limit is 100000 / (3 - 2 + 1) = 50000; one recipient (priority ~30,300) goes, two (~60,300) wait
    await setLoad(3);
    assert.equal((await sendMail(d.port, 'alice@far.example', ['one@far.example'], MSG('one'))).code, 250);
    await sink.waitMessages(1);
    const two = await sendMail(d.port, 'alice@far.example', ['a@far.example', 'b@far.example'], MSG('two'));
    assert.equal(two.code, 250);
    const qid = /queued as (\S+)/.exec(two.text)![1];
    const why = await d.waitLog((l) => l.msg === 'queued for a later run: load too high' && l.qid === qid, 'the log says why');
    assert.match(String(why.reason), /^load average 3\.00 > queueLA 2 and priority 6\d{4} > queueFactor \/ \(load - queueLA \+ 1\) = 50000$/);
    s = await status(config);
    assert.equal(s.load.queueing, true);
    assert.equal(s.load.queuedForLoad, 1);
    assert.equal(s.queue.queued, 1);
    // at refuseLA: new connections are turned away before the greeting
    await setLoad(5);
    const c = await RawSmtp.connect(d.port);
    const greeting = await c.reply();
    c.close();
    assert.equal(greeting.code, 421);
    assert.match(greeting.text, /4\.3\.2 .*load average 5\.00 >= refuseLA 5/);
    assert.equal((await status(config)).load.refusing, true);
    // the load falls: mail is taken again, and a flush (never load-gated) sends what waited
    await setLoad(0.5);
    assert.equal((await sendMail(d.port, 'alice@far.example', ['three@far.example'], MSG('three'))).code, 250);
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    await sink.waitMessages(3);
  } finally {
    await d.stop();
    await sink.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('metrics endpoint and status --json after a few deliveries', async () => {
  const sink = await startSink({ rcpt: (a) => (a.startsWith('nobody@') ? { code: 550, text: '5.1.1 No such user' } : null) });
  await gateway(LAN, {
    deliveryMode: 'queue',
    routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${sink.port}` }],
    metrics: { listen: '127.0.0.1:0' },
  }, async (d, config) => {
    const ready = await d.waitLog((l) => l.msg === 'ready', 'ready');
    const port = (ready.metrics as { port: number }).port;
    for (const to of ['a', 'b', 'c', 'nobody']) assert.equal((await sendMail(d.port, 'alice@far.example', [`${to}@far.example`], MSG(to))).code, 250);
    // the first window delivers three and bounces one; the second carries the bounce to alice
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    assert.equal((await runCli(['flush', '-c', config, '--wait'])).code, 0);
    await sink.waitMessages(4);
    const m = await get(port, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.type, /^text\/plain; version=0\.0\.4/);
    const value = (name: string) => {
      const line = m.body.split('\n').find((l) => l.startsWith(`${name} `));
      assert.ok(line, `${name} in\n${m.body}`);
      return Number(line.split(' ')[1]);
    };
    assert.equal(value('quietlink_messages_accepted_total{via="smtp"}'), 4);
    assert.equal(value('quietlink_messages_accepted_total{via="dsn"}'), 1);
    assert.equal(value('quietlink_recipients_delivered_total'), 4);
    assert.equal(value('quietlink_recipients_bounced_total'), 1);
    assert.equal(value('quietlink_recipients_deferred_total'), 0);
    assert.equal(value('quietlink_flush_windows_total{cause="operator"}'), 2);
    assert.equal(value('quietlink_queue_messages{state="queued"}'), 0);
    for (const name of ['quietlink_link_seconds_total', 'quietlink_link_wakeups_total', 'quietlink_etrn_sent_total', 'quietlink_etrn_received_total',
      'quietlink_load_queued_total', 'quietlink_dns_cache_hits_total', 'quietlink_dns_cache_misses_total', 'quietlink_dns_stale_answers_total',
      'quietlink_dns_refused_forwards_total', 'quietlink_load_average', 'quietlink_spool_free_bytes', 'quietlink_link_up']) {
      assert.match(m.body, new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'), name);
    }
    assert.equal((await get(port, '/')).status, 404);

    const s = await status(config);
    for (const key of ['pid', 'startedAt', 'hostname', 'spool', 'deliveryMode', 'listen', 'queue', 'link', 'window', 'nextWindow', 'lastWindow', 'held', 'dns', 'load', 'disk', 'counters', 'lastErrors']) {
      assert.ok(key in s, `status has ${key}`);
    }
    assert.deepEqual(s.counters, { accepted: 5, delivered: 4, deferred: 0, bounced: 1, windows: 2, odmrServed: 0, odmrMade: 0, odmrDelivered: 0, odmrReceived: 0 });
    assert.deepEqual(Object.keys(s.queue).sort(), ['corrupt', 'held', 'quarantined', 'queued']);
    assert.equal(s.link.state, 'down');
    assert.equal(typeof s.disk.freeBytes, 'number');
    assert.equal(s.disk.accepting, true);
    assert.equal(s.lastWindow.delivered, 1);
    assert.ok(Array.isArray(s.lastErrors));
    const human = await runCli(['status', '-c', config]);
    assert.match(human.stdout, /^load: +\d+\.\d\d \(\d+ CPUs; queueLA \d+, refuseLA \d+\)/m);
    assert.match(human.stdout, /^disk: +[\d.]+ MB free/m);
  }, [sink]);
});

test('SIGHUP reloads the YAML configuration; an invalid one is refused with file:line and the old one stays', async () => {
  const one = await startSink();
  const two = await startSink();
  const base = { ...LAN, deliveryMode: 'background' };
  await gateway(base, { routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${one.port}` }] }, async (d, config, dir) => {
    assert.equal((await sendMail(d.port, 'alice@far.example', ['x@far.example'], MSG('before'))).code, 250);
    await one.waitMessages(1);
    await writeConfig(dir, { ...base, routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${two.port}` }] });
    d.proc.kill('SIGHUP');
    await d.waitLog((l) => l.msg === 'routes reloaded', 'reload after SIGHUP');
    assert.equal((await sendMail(d.port, 'alice@far.example', ['y@far.example'], MSG('after'))).code, 250);
    await two.waitMessages(1);
    // a key that does not exist, on a known line: refused, the routes to two stay
    const text = stringify({ hostname: 'gw.test.example', spool: 'spool', smtp: { listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.0/8'] }, routes: [{ domain: 'far.example', relay: `[127.0.0.1]:${one.port}` }] });
    await fs.writeFile(config, `${text}deliveryMood: background\n`);
    const badLine = text.split('\n').length;
    d.proc.kill('SIGHUP');
    const refused = await d.waitLog((l) => String(l.msg).startsWith('reload refused: '), 'an invalid config is refused');
    assert.match(String(refused.msg), new RegExp(`^reload refused: ${config.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:${badLine}: `));
    assert.equal((await sendMail(d.port, 'alice@far.example', ['z@far.example'], MSG('still two'))).code, 250);
    await two.waitMessages(2);
    assert.equal(one.messages.length, 1, 'the old configuration stays in force');
  }, [one, two]);
});

test('disk: below queue.minFreeBlocks intake answers 452 4.3.1 and sendmail exits 75, nothing half-kept; it recovers when space returns', async (t) => {
  const dir = await tempDir();
  const spool = path.join(dir, 'spool');
  await fs.mkdir(spool);
  // a 4 MB file system of the test's own (root only: CI runs as root)
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', spool], { encoding: 'utf8' });
  if (mount.status !== 0) {
    await fs.rm(dir, { recursive: true, force: true });
    t.skip(`cannot mount a tmpfs here (${mount.stderr.trim()}); this test needs root`);
    return;
  }
  const config = await writeConfig(dir, { ...LAN, deliveryMode: 'queue', queue: { minQueueAge: '0s', minFreeBlocks: '1MB' }, smtp: { maxMessageSize: '8MB' } });
  const d = await startDaemon(config);
  const filler = path.join(spool, 'filler');
  const free = async () => (await fs.statfs(spool)).bavail * 4096;
  /** Fills the file system until `left` bytes are free. */
  const leave = async (left: number) => {
    await fs.rm(filler, { force: true });
    await fs.writeFile(filler, Buffer.alloc(Math.max(0, (await free()) - left)));
  };
  const filesUnder = async (sub: string) => (await fs.readdir(path.join(spool, sub)).catch(() => [] as string[])).length;
  try {
    assert.equal((await sendMail(d.port, 'alice@far.example', ['a@far.example'], MSG('room'))).code, 250);
    await leave(512 * 1024);
    const refused = await sendMail(d.port, 'alice@far.example', ['b@far.example'], MSG('no room'));
    assert.equal(refused.code, 452);
    assert.match(refused.text, /^452 4\.3\.1 Insufficient system storage/);
    const sm = await runCli(['sendmail', '-c', config, '-i', 'b@far.example'], { input: MSG('no room either') });
    assert.equal(sm.code, 75, sm.stderr);
    assert.match(sm.stderr, /Insufficient system storage/);
    assert.equal(await filesUnder('maildrop'), 0, 'sendmail left nothing in maildrop');
    // 1.5 MB free, 1 MB kept in reserve: a declared SIZE that would eat the reserve is refused at MAIL
    await leave(1536 * 1024);
    assert.equal((await sendMail(d.port, 'alice@far.example', ['c@far.example'], MSG('big'), 'SIZE=1000000')).code, 452);
    // undeclared, it passes MAIL; writing it fills the disk: 452 4.3.1 and nothing of it stays
    const huge = `Subject: huge\r\n\r\n${`${'z'.repeat(998)}\r\n`.repeat(2100)}`;
    const enospc = await sendMail(d.port, 'alice@far.example', ['d@far.example'], huge);
    assert.equal(enospc.code, 452, enospc.text);
    assert.match(enospc.text, /^452 4\.3\.1 Insufficient system storage/);
    assert.ok(d.logs.some((l) => /ENOSPC/.test(JSON.stringify(l.err))), 'the write itself ran out of space');
    // space returns: mail is taken again, without a restart
    await fs.rm(filler, { force: true });
    assert.equal((await sendMail(d.port, 'alice@far.example', ['e@far.example'], MSG('room again'))).code, 250);
    assert.equal((await runCli(['sendmail', '-c', config, '-i', 'f@far.example'], { input: MSG('sendmail again') })).code, 0);
    const q = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout) as { messages: Array<{ recipients: Array<{ address: string }> }> };
    assert.deepEqual(q.messages.flatMap((m) => m.recipients.map((r) => r.address)).sort(), ['a@far.example', 'e@far.example', 'f@far.example']);
    assert.equal((await status(config)).disk.accepting, true);
  } finally {
    await d.stop();
    spawnSync('umount', [spool]);
    await fs.rm(dir, { recursive: true, force: true });
  }
});
