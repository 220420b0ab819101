/**
 * The sendmail entry point's flags and the exit codes of issue 14, with real
 * processes: -bi / newaliases (checked only without a daemon, 78 with
 * file:line for a broken file), -bv (aliases, then the route), -odi (the
 * command returns once the attempt is over), -odq (no attempt), mailq -Am /
 * -Ac, `flush -v` prefixing each dialogue line with its connection, and the
 * exit codes of `etrn` (a table).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir, writeConfig, startDaemon, runCli, withTimeout, BIN } from '../helpers/daemon.js';
import { gateway } from '../helpers/gateway.js';
import { startSink } from '../helpers/sink.js';
import { sendMail } from '../helpers/smtp-client.js';
import { etrnExitCode } from '../../src/cli/admin.js';

test('sendmail -bi and newaliases without a daemon: 0 after checking, 78 with file:line for a broken file', async () => {
  const dir = await tempDir();
  try {
    await fs.writeFile(path.join(dir, 'aliases'), 'root: admin@office.example\n');
    const config = await writeConfig(dir, { aliases: 'aliases' });
    const ok = await runCli(['sendmail', '-c', config, '-bi']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /aliases: OK \(no daemon running: checked only\)/);
    await fs.symlink(BIN, path.join(dir, 'newaliases'));
    const byName = await runCli(['-c', config], { argv0: path.join(dir, 'newaliases') });
    assert.equal(byName.code, 0, byName.stderr);
    await fs.writeFile(path.join(dir, 'aliases'), '# ok\nroot: admin@office.example\ncron: "|/usr/local/bin/log-cron"\n');
    const bad = await runCli(['sendmail', '-c', config, '-bi']);
    assert.equal(bad.code, 78);
    assert.equal(bad.stderr, `${path.join(dir, 'aliases')}:3: delivery to a command is not supported (|/usr/local/bin/log-cron): quietlink relays mail and delivers none locally\n`);
    const none = await runCli(['sendmail', '-c', await writeConfig(dir, {}), '-bi']);
    assert.equal(none.code, 0, 'package scripts call newaliases: no aliases file is no error');
    assert.match(none.stdout, /no aliases file is configured/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('sendmail -bv shows what the aliases make of each address, then where each result goes', async () => {
  const dir = await tempDir();
  try {
    await fs.writeFile(path.join(dir, 'aliases'), 'root: admin, ops@far.example\nadmin: admin@office.example\n');
    const config = await writeConfig(dir, {
      aliases: 'aliases', masquerade: 'office.example', lanNetworks: ['192.168.1.0/24'],
      routes: [{ domain: 'office.example', relay: '[192.168.1.10]' }],
    });
    const r = await runCli(['sendmail', '-c', config, '-bv', 'root', 'nobody', 'bob@far.example']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^root: aliased to admin@office\.example, ops@far\.example$/m);
    assert.match(r.stdout, /^nobody: local name, qualified as nobody@office\.example$/m);
    const reports = r.stdout.split('\n\n').slice(1);
    assert.deepEqual(reports.map((b) => b.split('\n')[0]), ['admin@office.example', 'ops@far.example', 'nobody@office.example', 'bob@far.example']);
    assert.match(reports[0], /matched: +routes entry "office\.example"/);
    assert.match(reports[0], /hosts: +\[192\.168\.1\.10\]:25/);
    assert.match(reports[1], /matched: +MX of far\.example/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('sendmail -odi returns only when the message\'s delivery attempt is over, even with deliveryMode queue', async () => {
  let rcptSeen!: () => void;
  const atRcpt = new Promise<void>((resolve) => (rcptSeen = resolve));
  let release!: () => void;
  const sink = await startSink({ rcpt: () => (rcptSeen(), null), holdData: new Promise<void>((resolve) => (release = resolve)) });
  await gateway({ deliveryMode: 'queue', lanNetworks: ['127.0.0.1/32'] }, { routes: [{ domain: 'office.example', relay: `[127.0.0.1]:${sink.port}` }] }, async (_d, config) => {
    let exited = false;
    const run = runCli(['sendmail', '-c', config, '-odi', '-oi', 'admin@office.example'], { input: 'Subject: interactive\n\nnow\n' })
      .finally(() => (exited = true));
    await withTimeout(atRcpt, 20_000, 'the attempt at the sink');
    assert.equal(exited, false, 'the command still waits while the next hop holds the data');
    release();
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sink.messages.length, 1, 'delivered before the command returned');
    assert.match(sink.messages[0].body, /^Subject: interactive\r$/m);
  }, [sink]);
});

test('sendmail -odq only queues, even in deliveryMode background; -odi next to it delivers its own message only', async () => {
  const sink = await startSink();
  await gateway({ deliveryMode: 'background', lanNetworks: ['127.0.0.1/32'] }, { routes: [{ domain: 'office.example', relay: `[127.0.0.1]:${sink.port}` }] }, async (d, config) => {
    const q = await runCli(['sendmail', '-c', config, '-odq', 'a@office.example'], { input: 'Subject: queue only\n\nlater\n' });
    assert.equal(q.code, 0, q.stderr);
    const i = await runCli(['sendmail', '-c', config, '-O', 'DeliveryMode=i', 'b@office.example'], { input: 'Subject: at once\n\nnow\n' });
    assert.equal(i.code, 0, i.stderr);
    assert.deepEqual(sink.messages.map((m) => m.to), [['b@office.example']]);
    assert.equal(sink.connections, 1);
    const listed = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout) as { messages: Array<{ recipients: Array<{ address: string }> }> };
    assert.deepEqual(listed.messages.map((m) => m.recipients[0].address), ['a@office.example']);
    assert.ok(!d.logs.some((l) => l.to === 'a@office.example' && (l.msg === 'delivered' || l.msg === 'deferred')), 'never attempted');
    // a flag that names no delivery mode is a usage error
    assert.equal((await runCli(['sendmail', '-c', config, '-odx', 'a@office.example'], { input: 'x\n' })).code, 64);
  }, [sink]);
});

test('mailq -Am lists the queue as plain mailq does; -Ac the maildrop; sendmail -bp takes both', async () => {
  const dir = await tempDir();
  const config = await writeConfig(dir, { deliveryMode: 'queue' });
  const d = await startDaemon(config);
  try {
    assert.equal((await sendMail(d.port, 'alice@office.example', ['bob@far.example'], 'Subject: q\r\n\r\nx\r\n')).code, 250);
    const plain = await runCli(['mailq', '-c', config]);
    const mta = await runCli(['mailq', '-c', config, '-Am']);
    assert.equal(mta.code, 0, mta.stderr);
    assert.equal(mta.stdout, plain.stdout);
    assert.match(mta.stdout, /<bob@far\.example>/);
    assert.equal((await runCli(['sendmail', '-c', config, '-bp', '-Am'])).stdout, plain.stdout);
    const client = await runCli(['sendmail', '-c', config, '-Ac', '-bp']);
    assert.equal(client.code, 0, client.stderr);
    assert.doesNotMatch(client.stdout, /bob@far\.example/, 'the maildrop is empty: the daemon took the message');
  } finally {
    await d.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('flush -v prefixes every dialogue line with its connection, so two connections can be told apart', async () => {
  const a = await startSink();
  const b = await startSink();
  await gateway({ deliveryMode: 'queue', lanNetworks: ['127.0.0.1/32'] }, {
    routes: [{ domain: 'a.example', relay: `[127.0.0.1]:${a.port}` }, { domain: 'b.example', relay: `[127.0.0.1]:${b.port}` }],
  }, async (d, config) => {
    assert.equal((await sendMail(d.port, 'alice@office.example', ['x@a.example'], 'Subject: a\r\n\r\nx\r\n')).code, 250);
    assert.equal((await sendMail(d.port, 'alice@office.example', ['y@b.example'], 'Subject: b\r\n\r\ny\r\n')).code, 250);
    const r = await runCli(['flush', '-c', config, '-v']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const dialogue = r.stdout.split('\n').filter((l) => / (>>>|<<<|---) /.test(l) || /^(>>>|<<<|---) /.test(l));
    assert.ok(dialogue.length >= 10, r.stdout);
    const labels = new Map<string, string[]>();
    for (const line of dialogue) {
      const m = /^\[(c\d+) 127\.0\.0\.1:(\d+)\] (>>>|<<<|---) /.exec(line);
      assert.ok(m, `unprefixed dialogue line: ${line}`);
      labels.set(m[1], [...(labels.get(m[1]) ?? []), m[2]]);
    }
    assert.equal(labels.size, 2, 'one label per connection');
    assert.deepEqual([...labels.values()].map((ports) => [...new Set(ports)].length), [1, 1], 'a label stays with its connection');
    assert.deepEqual(new Set([...labels.values()].map((p) => Number(p[0]))), new Set([a.port, b.port]));
    for (const [, ports] of labels) {
      const lines = dialogue.filter((l) => l.includes(`127.0.0.1:${ports[0]}]`));
      assert.ok(lines.some((l) => /<<< 250 /.test(l)) && lines.some((l) => />>> QUIT/.test(l)), 'each connection has its whole dialogue');
    }
    assert.match(r.stdout, /to=<x@a\.example>, relay=.*stat=delivered/);
  }, [a, b]);
});

test('etrn exit codes: 0 for 2xx, 69 for 459 and 5xx, 75 for 458, other 4xx and no answer', () => {
  const reply = (...codes: number[]) => ({ replies: codes.map((code) => ({ domain: 'd.example', code, text: `${code} x` })) });
  const table: Array<[ReturnType<typeof reply> & { error?: string }, number]> = [
    [reply(250, 251, 252, 253), 0],
    [reply(459), 69],
    [reply(500), 69],
    [reply(501, 250), 69],
    [reply(458), 75],
    [reply(421), 75],
    [reply(450, 459), 75],
    [{ ...reply(), error: 'Timeout after 2m' }, 75],
  ];
  for (const [result, code] of table) assert.equal(etrnExitCode(result), code, JSON.stringify(result));
});

test('a broken aliases file does not lose mail: sendmail warns with file:line and takes the message; -bi still refuses with 78', async () => {
  const dir = await tempDir();
  try {
    await fs.writeFile(path.join(dir, 'aliases'), 'root: admin@office.example\nthis line is broken\n');
    const config = await writeConfig(dir, { aliases: 'aliases' });
    const r = await runCli(['sendmail', '-c', config, 'ops@far.example'], { input: 'Subject: cron output\n\nx\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: .*aliases:2: .*taken all the same/);
    const names = (await fs.readdir(path.join(dir, 'spool', 'maildrop'))).filter((n) => !n.startsWith('.'));
    assert.equal(names.length, 1, 'the message waits in the maildrop');
    const bi = await runCli(['sendmail', '-c', config, '-bi']);
    assert.equal(bi.code, 78);
    assert.match(bi.stderr, /aliases:2: /);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
