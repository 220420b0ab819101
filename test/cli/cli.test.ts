/**
 * The command line against real daemon processes: sendmail (with and without
 * a daemon), the sendmail/mailq entry points, mailq selectors, hold/release/
 * quarantine, check-config and the sysexits codes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir, writeConfig, startDaemon, runCli, BIN } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';

async function fixture() {
  const dir = await tempDir();
  const config = await writeConfig(dir, { queue: { groups: [{ name: 'relayq', match: ['cust1.dom'] }] } });
  return { dir, config, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}

async function jsonQueue(config: string, ...args: string[]) {
  const r = await runCli(['mailq', '-c', config, '--json', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { total: number; messages: Array<{ id: string; sender: string; state: string; group: string; recipients: Array<{ address: string }>; quarantine?: { reason: string }; hold?: { reason: string } }> };
}

test('a message by SMTP and one by sendmail -t both show in mailq; Total requests counts them', async () => {
  const { config, cleanup } = await fixture();
  const daemon = await startDaemon(config);
  try {
    assert.equal((await sendMail(daemon.port, 'alice@office.example', ['bob@far.example'], 'Subject: smtp\r\n\r\nx\r\n')).code, 250);
    const s = await runCli(['sendmail', '-c', config, '-t', '-i', '-f', 'cron@office.example'], { input: 'To: Carol <carol@far.example>\nSubject: from cron\n\nhello\n.\nstill body\n' });
    assert.equal(s.code, 0, s.stderr);
    const q = await jsonQueue(config);
    assert.equal(q.total, 2);
    assert.deepEqual(q.messages.map((m) => m.recipients.map((r) => r.address)).sort(), [['bob@far.example'], ['carol@far.example']]);
    const plain = await runCli(['mailq', '-c', config]);
    assert.match(plain.stdout, /<cron@office\.example>/);
    assert.match(plain.stdout, /<carol@far\.example>/);
    assert.match(plain.stdout, /\tTotal requests: 2\n$/);
    const id = q.messages.find((m) => m.sender === 'cron@office.example')!.id;
    await daemon.waitLog((l) => l.msg === 'settled' && (l.ids as string[] | undefined)?.includes(id) === true, 'settled');
    const body = await fs.readFile(path.join(path.dirname(config), 'spool', 'data', id), 'utf8');
    assert.match(body, /\r\nstill body\r\n$/, '-i keeps lines after a lone dot');
    assert.match(body, /^Message-ID: </m);
  } finally {
    await daemon.stop();
    await cleanup();
  }
});

test('with the daemon stopped, sendmail exits 0 and the message is in mailq after start', async () => {
  const { config, cleanup } = await fixture();
  try {
    const s = await runCli(['sendmail', '-c', config, 'dave@far.example'], { input: 'Subject: offline\n\nqueued while down\n' });
    assert.equal(s.code, 0, s.stderr);
    const drop = await fs.readdir(path.join(path.dirname(config), 'spool', 'maildrop'));
    assert.equal(drop.filter((f) => !f.startsWith('.')).length, 1);
    const daemon = await startDaemon(config);
    try {
      const q = await jsonQueue(config);
      assert.equal(q.total, 1);
      assert.equal(q.messages[0].recipients[0].address, 'dave@far.example');
      assert.notEqual(q.messages[0].id, drop[0], 'the daemon names what it queues, not the maildrop file');
      assert.deepEqual((await fs.readdir(path.join(path.dirname(config), 'spool', 'maildrop'))).filter((f) => !f.startsWith('.')), []);
    } finally {
      await daemon.stop();
    }
    // the spool can be read without the daemon too
    const offline = await jsonQueue(config);
    assert.equal(offline.total, 1);
  } finally {
    await cleanup();
  }
});

test('the sendmail and mailq entry points work through links of those names', async () => {
  const { dir, config, cleanup } = await fixture();
  const daemon = await startDaemon(config);
  try {
    await fs.symlink(BIN, path.join(dir, 'sendmail'));
    await fs.symlink(BIN, path.join(dir, 'mailq'));
    const s = await runCli(['-c', config, '-oi', '-FCron Daemon', 'root'], { argv0: path.join(dir, 'sendmail'), input: 'Subject: cron\n\nout\n' });
    assert.equal(s.code, 0, s.stderr);
    const q = await runCli(['-c', config], { argv0: path.join(dir, 'mailq') });
    assert.equal(q.code, 0);
    assert.match(q.stdout, /<root@gw\.test\.example>/, 'bare names are qualified with hostname');
    const bp = await runCli(['-c', config, '-bp'], { argv0: path.join(dir, 'sendmail') });
    assert.match(bp.stdout, /Total requests: 1/);
  } finally {
    await daemon.stop();
    await cleanup();
  }
});

test('arguments that could inject headers or options are refused with 64', async () => {
  const { config, cleanup } = await fixture();
  try {
    const cases: string[][] = [
      ['-f', 'a@office.example\nBcc: victim@far.example', 'b@far.example'],
      ['-F', 'Name\nBcc: victim@far.example', 'b@far.example'],
      ['--', '-oQ/tmp', 'b@far.example'],
      ['b@far.example\nBcc: victim@far.example'],
      ['-X', '/tmp/log', 'b@far.example'],
      ['-Z'],
    ];
    for (const args of cases) {
      const r = await runCli(['sendmail', '-c', config, ...args], { input: 'Subject: x\n\ny\n' });
      assert.equal(r.code, 64, `${JSON.stringify(args)}: ${r.stderr}`);
      assert.match(r.stderr, /^quietlink: /);
    }
    const none = await runCli(['sendmail', '-c', config, '-t'], { input: 'Subject: no rcpt\n\ny\n' });
    assert.equal(none.code, 64);
    const bad = await runCli(['sendmail', '-c', config, 'not an address@x'], { input: 'x\n' });
    assert.equal(bad.code, 65);
    const drop = await fs.readdir(path.join(path.dirname(config), 'spool', 'maildrop')).catch(() => []);
    assert.deepEqual(drop, [], 'nothing was half-kept');
  } finally {
    await cleanup();
  }
});

test('mailq selectors -qR/-qS/-qI/-qG with ! negation', async () => {
  const { config, cleanup } = await fixture();
  const daemon = await startDaemon(config);
  try {
    const send = (from: string, to: string) => sendMail(daemon.port, from, [to], 'Subject: s\r\n\r\nx\r\n');
    await send('alice@office.example', 'bob@seattle.example');
    await send('carol@office.example', 'dan@boston.example');
    await send('alice@office.example', 'eve@cust1.dom');
    const ids = (await jsonQueue(config)).messages.map((m) => m.id);
    const count = async (...a: string[]) => (await jsonQueue(config, ...a)).total;
    assert.equal(await count('-qRseattle'), 1);
    assert.equal(await count('-qR', 'seattle'), 1);
    assert.equal(await count('-q!Rseattle'), 2);
    assert.equal(await count('-qSalice'), 2);
    assert.equal(await count('-q!S', 'alice'), 1);
    assert.equal(await count('-qI', ids[1]), 1);
    assert.equal(await count(`-q!I${ids[1]}`), 2);
    assert.equal(await count('-qGrelayq'), 1);
    assert.equal(await count('-q!Grelayq'), 2);
    assert.equal(await count('-qSalice', '-qRboston'), 0);
    const r = await runCli(['mailq', '-c', config, '-qR']);
    assert.equal(r.code, 64);
  } finally {
    await daemon.stop();
    await cleanup();
  }
});

test('hold, release and quarantine from the command line', async () => {
  const { config, cleanup } = await fixture();
  const daemon = await startDaemon(config);
  try {
    await sendMail(daemon.port, 'alice@office.example', ['bob@far.example'], 'Subject: 1\r\n\r\nx\r\n');
    await sendMail(daemon.port, 'mallory@office.example', ['bob@far.example'], 'Subject: 2\r\n\r\nx\r\n');
    const [a, b] = (await jsonQueue(config)).messages.map((m) => m.id);
    assert.equal((await runCli(['hold', a, '-c', config])).code, 0);
    assert.equal((await jsonQueue(config, `-qI${a}`)).messages[0].state, 'held');
    assert.match((await runCli(['mailq', '-c', config])).stdout, new RegExp(`^${a} +\\d+!`, 'm'));
    assert.equal((await runCli(['release', '-c', config, a])).code, 0);
    assert.equal((await jsonQueue(config, `-qI${a}`)).messages[0].state, 'queued');

    const q = await runCli(['quarantine', '-c', config, '-Q', 'looks like spam', '-qS', 'mallory']);
    assert.equal(q.code, 0, q.stderr);
    assert.equal((await jsonQueue(config)).total, 1, 'quarantined mail is hidden from plain mailq');
    const qq = await jsonQueue(config, '-qQ');
    assert.deepEqual(qq.messages.map((m) => [m.id, m.quarantine?.reason]), [[b, 'looks like spam']]);
    assert.equal((await runCli(['quarantine', '-c', config, '-Q', 'confirmed spam', '-qQ', '-qSmallory'])).code, 0);
    assert.equal((await jsonQueue(config, '-qQ')).messages[0].quarantine?.reason, 'confirmed spam');
    assert.equal((await runCli(['quarantine', '-c', config, '-Q', '', b])).code, 0);
    assert.equal((await jsonQueue(config)).total, 2);

    assert.equal((await runCli(['hold', '-c', config, 'not-an-id'])).code, 64);
    const missing = await runCli(['hold', '-c', config, '0000000000000000']);
    assert.equal(missing.code, 65);
    assert.match(missing.stderr, /not in the queue/);
    await daemon.stop();
    const down = await runCli(['hold', '-c', config, '0000000000000000']);
    assert.equal(down.code, 69);
    assert.match(down.stderr, /daemon is not running/);
  } finally {
    await daemon.stop();
    await cleanup();
  }
});

test('hold -Q REASON keeps the reason: mailq shows HOLD: REASON under the message; a bad ID on the control socket is 64', async () => {
  const { config, cleanup } = await fixture();
  const daemon = await startDaemon(config);
  try {
    await sendMail(daemon.port, 'alice@office.example', ['bob@far.example'], 'Subject: 1\r\n\r\nx\r\n');
    const [a] = (await jsonQueue(config)).messages.map((m) => m.id);
    const held = await runCli(['hold', '-c', config, '-Q', 'waiting for the customer', a]);
    assert.equal(held.code, 0, held.stderr);
    assert.match(held.stdout, /held \(waiting for the customer\)/);
    assert.match((await runCli(['mailq', '-c', config])).stdout, /^ +HOLD: waiting for the customer$/m);
    assert.equal((await jsonQueue(config)).messages[0].hold?.reason, 'waiting for the customer');
    assert.equal((await runCli(['hold', '-c', config, '-Q', 'two\nlines', a])).code, 64);
    assert.equal((await runCli(['hold', '-c', config, '-Q'])).code, 64);
    // the daemon checks what it is sent, whatever client sends it
    const { controlRequest } = await import('../../src/control/client.js');
    const spool = path.join(path.dirname(config), 'spool');
    await assert.rejects(controlRequest(spool, 'release', { ids: ['../../etc/passwd'] }), (err: { exitCode?: number }) => err.exitCode === 64);
    await assert.rejects(controlRequest(spool, 'hold', { ids: 'not a list' }), (err: { exitCode?: number }) => err.exitCode === 64);
  } finally {
    await daemon.stop();
    await cleanup();
  }
});

test('status shows queue counts by state', async () => {
  const { config, cleanup } = await fixture();
  const daemon = await startDaemon(config);
  try {
    await sendMail(daemon.port, 'a@office.example', ['b@far.example'], 'Subject: 1\r\n\r\nx\r\n');
    const s = JSON.parse((await runCli(['status', '-c', config, '--json'])).stdout);
    assert.deepEqual(s.queue, { queued: 1, held: 0, quarantined: 0, corrupt: 0 });
    assert.match((await runCli(['status', '-c', config])).stdout, /queue: +queued 1, held 0/);
  } finally {
    await daemon.stop();
    await cleanup();
  }
});

test('check-config reports every problem as file:line and exits 78', async () => {
  const dir = await tempDir();
  try {
    await fs.writeFile(path.join(dir, 'mailertable'), 'ok.example relay:[127.0.0.1]\nbroken.example nomailer\n');
    await fs.writeFile(path.join(dir, 'CustDoms'), '# customers\ncust1.dom\nbad domain!\n');
    await fs.writeFile(path.join(dir, 'authinfo'), 'AuthInfo:smarthost.example "U:u"\n');
    const file = path.join(dir, 'q.yaml');
    await fs.writeFile(file, 'spool: spool\nmailertable: mailertable\nauthinfo: authinfo\nclasses:\n  CustDoms: { file: CustDoms }\n');
    const r = await runCli(['check-config', '-c', file]);
    assert.equal(r.code, 78);
    const lines = r.stderr.trim().split('\n');
    assert.deepEqual(lines.map((l) => l.replace(dir, 'DIR').replace(/: .*/, '')).sort(), ['DIR/CustDoms:3', 'DIR/authinfo:1', 'DIR/mailertable:2'].sort());
    await fs.writeFile(file, 'spool: spool\nsmtp:\n  listen: [nonsense]\n  colour: blue\n');
    const r2 = await runCli(['check-config', '-c', file]);
    assert.equal(r2.code, 78);
    assert.match(r2.stderr, new RegExp(`^${file}:3: smtp\\.listen\\.0: invalid listen address`, 'm'));
    assert.match(r2.stderr, new RegExp(`^${file}:4: unknown key "smtp\\.colour"`, 'm'));
    const started = await runCli(['start', '-c', file]);
    assert.equal(started.code, 78, 'start refuses a bad configuration with 78 too');
    const good = await runCli(['check-config', '-c', path.join(BIN, '..', '..', 'etc', 'quietlink.yaml')]);
    assert.equal(good.code, 0, good.stderr);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('unknown commands and options exit 64', async () => {
  assert.equal((await runCli(['frobnicate'])).code, 64);
  assert.equal((await runCli([])).code, 64);
});

test('sendmail -bs: an SMTP conversation on stdin and stdout writes to maildrop; the daemon takes it in', async () => {
  const { config, cleanup } = await fixture();
  try {
    const session = [
      'EHLO app.local', 'MAIL FROM:<app@office.example>', 'RCPT TO:<bad address>', 'RCPT TO:<ops@far.example>', 'DATA',
      'Subject: by -bs', '', 'line one', '..a line that starts with a dot', '.', 'QUIT', '',
    ].join('\r\n');
    const r = await runCli(['sendmail', '-c', config, '-bs'], { input: session });
    assert.equal(r.code, 0, r.stderr);
    const codes = r.stdout.split('\r\n').filter(Boolean).map((l) => l.slice(0, 4));
    assert.deepEqual(codes.filter((c) => !c.startsWith('250-')), ['220 ', '250 ', '250 ', '501 ', '250 ', '354 ', '250 ', '221 ']);
    const id = /^250 2\.0\.0 Ok: queued as (\S+)/m.exec(r.stdout)![1];
    // a local program that ends its lines with LF alone is understood, and 8-bit text is recognised
    const lf = await runCli(['sendmail', '-c', config, '-bs'], { input: Buffer.from('HELO app\nMAIL FROM:<app@office.example>\nRCPT TO:<ops@far.example>\nDATA\nSubject: caf\u00e9\n\n\u00fcber\n.\nQUIT\n', 'utf8') });
    assert.equal(lf.code, 0, lf.stderr);
    assert.match(lf.stdout, /^250 2\.0\.0 Ok: queued as /m, lf.stdout);
    assert.match(lf.stdout, /^221 /m);
    const ac = await runCli(['mailq', '-c', config, '-Ac']);
    assert.match(ac.stdout, new RegExp(id));
    const daemon = await startDaemon(config);
    try {
      const q = await jsonQueue(config);
      // the maildrop name is not the queue ID: find the two by what they are
      assert.deepEqual(q.messages.map((m) => [m.sender, m.recipients.map((x) => x.address)]), [['app@office.example', ['ops@far.example']], ['app@office.example', ['ops@far.example']]]);
      assert.equal(q.total, 2);
      assert.deepEqual(q.messages.map((m) => (m as unknown as { bodyType: string }).bodyType).sort(), ['7BIT', '8BITMIME']);
    } finally {
      await daemon.stop();
    }
  } finally {
    await cleanup();
  }
});

test('the flags PHP, cron and mdadm pass are accepted; harmless unknown ones are ignored, others exit 64', async () => {
  const { config, cleanup } = await fixture();
  try {
    const ok: string[][] = [
      ['-t', '-i', '-f', 'www-data@office.example'], // PHP's mail() default sendmail_path with -f
      ['-t', '-i'], ['-oi', '-t'], ['-odi', '-t'], ['-oem', '-t'], ['-oee', '-t'], ['-v', '-t'], ['-Am', '-t'], ['-U', '-t'], ['-ti', '-ODeliveryMode=b'],
    ];
    for (const args of ok) {
      const r = await runCli(['sendmail', '-c', config, ...args], { input: 'To: ops@far.example\nSubject: flags\n\nx\n' });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    for (const args of [['-Z'], ['-bz'], ['-C', '/etc/mail/sendmail.cf']]) {
      const r = await runCli(['sendmail', '-c', config, ...args, 'ops@far.example'], { input: 'Subject: x\n\nx\n' });
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^quietlink: sendmail: /);
    }
  } finally {
    await cleanup();
  }
});
