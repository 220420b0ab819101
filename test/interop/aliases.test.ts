/**
 * Interop: cron's mail to `root` with an aliases file and masquerade
 * (SPEC §11): the system crontab's job (sendmail run by root) and a user's
 * job with MAILTO=root (sendmail run by a user in no group), both with
 * Debian cron's exact arguments (`-FCronDaemon -i -B8BITMIME -oem root`),
 * arrive at the aliased address, with the envelope sender and the
 * `From:` / `To:` headers qualified with the masquerade domain.
 * `sendmail -bi` (newaliases, as package scripts call it) checks and
 * reloads the file, and a changed alias applies to the next message;
 * `sendmail -bv root` says where root's mail goes. Needs root (useradd).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runProcess } from '../helpers/daemon.js';
import { bySubject, header, interop, localQueued, needRoot, sendmailArgs, withLocalUser } from '../helpers/interop.js';

const cronMail = (owner: string, mailto: string, marker: string) =>
  `From: ${owner} (Cron Daemon)\nTo: ${mailto}\nSubject: Cron <${owner}@gw> test -x /usr/sbin/anacron || run-parts --report /etc/cron.daily ${marker}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <LOGNAME=${owner}>\n\n/etc/cron.daily/logrotate:\nerror: skipping "/var/log/app.log" because parent directory has insecure permissions\n`;

const CRON_ARGS = ['-FCronDaemon', '-i', '-B8BITMIME', '-oem'];

test('aliases: cron mail to root (from root\'s crontab and a user\'s MAILTO=root) arrives at the aliased address with masqueraded envelope and headers; -bi reloads, -bv shows it', { timeout: 120_000 }, async (t) => {
  if (!needRoot(t)) return;
  const g = await interop((dir) => ({ aliases: path.join(dir, 'aliases'), masquerade: 'office.example' }), { start: false });
  try {
    await fs.writeFile(path.join(g.dir, 'aliases'), '# /etc/aliases\npostmaster: root\nroot: admin@office.example\n', { mode: 0o644 });
    const d = await g.start();

    // the system crontab's job: cron runs sendmail as root
    const root = await runProcess(process.execPath, [...sendmailArgs(g.config, ...CRON_ARGS, 'root')], { input: cronMail('root', 'root', 'QLA1') });
    assert.equal(root.code, 0, root.stderr);
    const m1 = await g.sink.waitFor(bySubject('QLA1'), "root's cron mail at the next hop");
    assert.deepEqual(m1.to, ['admin@office.example'], 'root is aliased');
    assert.equal(m1.from, 'root@office.example', 'the envelope sender is masqueraded');
    assert.match(header(m1.body, 'From') ?? '', /^root@office\.example \(Cron Daemon\)$|^"?Cron Daemon"? <root@office\.example>$/, 'From: qualified');
    assert.equal(header(m1.body, 'To'), 'root@office.example', 'To: qualified (headers name the address as written, qualified, not the alias target)');

    await withLocalUser(async (u) => {
      // a user's crontab with MAILTO=root: cron runs sendmail as that user
      const r = await u.run(process.execPath, sendmailArgs(g.config, ...CRON_ARGS, 'root'), { input: cronMail(u.name, 'root', 'QLA2') });
      assert.equal(r.code, 0, r.stderr);
      const m2 = await g.sink.waitFor(bySubject('QLA2'), "the user's cron mail at the next hop");
      assert.deepEqual(m2.to, ['admin@office.example']);
      assert.equal(m2.from, `${u.name}@office.example`);
      assert.match(header(m2.body, 'From') ?? '', new RegExp(`${u.name}@office\\.example`));
      assert.equal(header(m2.body, 'To'), 'root@office.example');
      const q = localQueued(d).find((l) => (l.to as string[]).includes('admin@office.example') && l.uid === u.uid);
      assert.ok(q, 'queued as the user');

      // sendmail -bv: where root's mail goes, for any user
      const bv = await u.run(process.execPath, sendmailArgs(g.config, '-bv', 'root'));
      assert.equal(bv.code, 0, bv.stderr);
      assert.match(bv.stdout, /admin@office\.example/);
    });

    // a package script edits the aliases and runs newaliases (sendmail -bi): the next message follows it
    await fs.writeFile(path.join(g.dir, 'aliases'), '# /etc/aliases\npostmaster: root\nroot: admin@office.example, oncall@far.example\n');
    const bi = await runProcess(process.execPath, sendmailArgs(g.config, '-bi'));
    assert.equal(bi.code, 0, bi.stdout + bi.stderr);
    const again = await runProcess(process.execPath, [...sendmailArgs(g.config, ...CRON_ARGS, 'root')], { input: cronMail('root', 'root', 'QLA3') });
    assert.equal(again.code, 0, again.stderr);
    await g.sink.waitFor(bySubject('QLA3'), 'the mail after newaliases');
    assert.deepEqual(g.sink.messages.filter(bySubject('QLA3')).flatMap((m) => m.to).sort(), ['admin@office.example', 'oncall@far.example']);
  } finally {
    await g.close();
  }
});
