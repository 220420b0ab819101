/**
 * Aliases and masquerade through the whole gateway (SPEC §11): cron's mail
 * to root arrives at the aliased address with qualified headers; SMTP
 * recipients at the gateway's own name are aliased (the masquerade domain's
 * are not); the aliases are reloaded when the file changes, on SIGHUP and by
 * `newaliases`, and a broken file keeps the old ones. Real daemon, real
 * sendmail commands, a real SMTP sink on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli, BIN, type Daemon } from '../helpers/daemon.js';
import { gateway } from '../helpers/gateway.js';
import { startSink, type Sink } from '../helpers/sink.js';
import { sendMail } from '../helpers/smtp-client.js';

const ALIASES = '# aliases(5)\nroot: admin\nadmin: admin@office.example\npostmaster: root\n';

/** A gateway whose office.example and far.example routes end at one LAN sink. */
async function withAliases(body: (d: Daemon, config: string, dir: string, sink: Sink) => Promise<void>): Promise<void> {
  const sink = await startSink();
  await gateway({}, (dir) => {
    writeFileSync(path.join(dir, 'aliases'), ALIASES);
    return {
      lanNetworks: ['127.0.0.1/32'],
      masquerade: 'office.example',
      aliases: 'aliases',
      routes: [
        { domain: 'office.example', relay: `[127.0.0.1]:${sink.port}` },
        { domain: 'far.example', relay: `[127.0.0.1]:${sink.port}` },
      ],
    };
  }, (d, config, dir) => body(d, config, dir, sink), [sink]);
}

test('cron mail to root (sendmail -FCronDaemon -i -B8BITMIME -oem root) arrives at the aliased address with qualified headers', async () => {
  await withAliases(async (_d, config, _dir, sink) => {
    const input = 'From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@gw> run-parts /etc/cron.daily\nContent-Type: text/plain; charset=UTF-8\n\nGrüße from logrotate\n';
    const r = await runCli(['sendmail', '-c', config, '-FCronDaemon', '-i', '-B8BITMIME', '-oem', 'root'], { input: Buffer.from(input) });
    assert.equal(r.code, 0, r.stderr);
    await sink.waitMessages(1);
    const m = sink.messages[0];
    assert.deepEqual(m.to, ['admin@office.example'], 'root -> admin -> admin@office.example');
    assert.match(m.from, /^[^@]+@office\.example$/, 'the envelope sender is the real user at the masquerade domain');
    assert.match(m.body, /^From: root@office\.example \(Cron Daemon\)\r$/m);
    assert.match(m.body, /^To: root@office\.example\r$/m);
    assert.match(m.body, /^Subject: Cron <root@gw> run-parts \/etc\/cron\.daily\r$/m, 'only address fields are rewritten');
    assert.match(m.body, /^Date: /m);
    assert.match(m.body, /^Message-ID: <[^>]+@gw\.test\.example>\r$/m);
    assert.match(m.body, /Grüße from logrotate/);
  });
});

test('SMTP recipients at the gateway\'s own name and postmaster are aliased; the masquerade domain\'s are not', async () => {
  await withAliases(async (d, _config, _dir, sink) => {
    const r = await sendMail(d.port, 'alice@office.example', ['root@gw.test.example', 'root@office.example', 'postmaster', 'nobody@localhost'], 'Subject: hook\r\n\r\nx\r\n');
    assert.equal(r.code, 250, r.text);
    // an expanded recipient keeps what was asked for as its ORCPT: one transaction each here
    await sink.waitMessages(3);
    assert.deepEqual(sink.messages.flatMap((m) => m.to).sort(), ['admin@office.example', 'nobody@office.example', 'root@office.example']);
    assert.ok(d.logs.some((l) => l.msg === 'recipient expanded' && l.to === 'root@gw.test.example'));
  });
});

test('the aliases are reloaded when the file changes, on SIGHUP and by newaliases; a broken file keeps the old ones', async () => {
  await withAliases(async (d, config, dir, sink) => {
    const file = path.join(dir, 'aliases');
    const rootGoesTo = async (n: number) => {
      assert.equal((await sendMail(d.port, 'alice@office.example', ['root@gw.test.example'], `Subject: ${n}\r\n\r\nx\r\n`)).code, 250);
      await sink.waitMessages(n);
      return sink.messages[n - 1].to;
    };
    assert.deepEqual(await rootGoesTo(1), ['admin@office.example']);

    // a changed file is noticed (fs.watchFile) and reloaded
    await fs.writeFile(file, 'root: ops@far.example\n');
    await d.waitLog((l) => l.msg === 'routes reloaded' && String(l.reason).endsWith('aliases changed'), 'reload after the file changed');
    assert.deepEqual(await rootGoesTo(2), ['ops@far.example']);

    // SIGHUP
    await fs.writeFile(file, 'root: hup@far.example\n');
    d.proc.kill('SIGHUP');
    await d.waitLog((l) => l.msg === 'routes reloaded' && l.reason === 'SIGHUP', 'reload on SIGHUP');
    assert.deepEqual(await rootGoesTo(3), ['hup@far.example']);

    // newaliases (the entry point by its name): checks, then the daemon reloads before it answers
    const newaliases = path.join(dir, 'newaliases');
    await fs.symlink(BIN, newaliases);
    await fs.writeFile(file, 'root: new@far.example\n');
    const ok = await runCli(['-c', config], { argv0: newaliases });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /aliases: OK; the daemon reloaded it/);
    assert.deepEqual(await rootGoesTo(4), ['new@far.example']);

    // a broken file: 78 with file:line, and the daemon keeps what it had
    await fs.writeFile(file, 'root: new@far.example\nbackup: :include:/etc/mail/backup\n');
    const bad = await runCli(['-c', config], { argv0: newaliases });
    assert.equal(bad.code, 78);
    assert.match(bad.stderr, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2: ":include:" lists are not supported`, 'm'));
    await d.waitLog((l) => String(l.msg).startsWith(`reload refused: ${file}:2: ":include:" lists are not supported`), 'the watcher refuses the broken file');
    assert.deepEqual(await rootGoesTo(5), ['new@far.example']);
  });
});
