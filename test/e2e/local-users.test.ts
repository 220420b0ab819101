/**
 * Every local user can hand over mail (SPEC §11): real non-root users made
 * with useradd for this test (removed after), in no group, running the real
 * `sendmail` with the daemon up and with it down; the envelope names the
 * user the kernel says wrote the file; a user cannot read another's
 * maildrop file, cannot pass a forged file off as someone else's, and may
 * read the queue but not change it unless in group quietlink-admin.
 * Skipped with a clear message only when not root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { BIN, runProcess, startDaemon, tempDir, writeConfig, type CliResult } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';

const isRoot = process.getuid?.() === 0;
const suffix = crypto.randomBytes(3).toString('hex');
const USER = `qlu${suffix}`;
const ADMIN = `qla${suffix}`;

async function ids(name: string): Promise<{ uid: number; gid: number }> {
  const r = await runProcess('id', ['-u', name]);
  const g = await runProcess('id', ['-g', name]);
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Runs the real CLI as `user` (spawned with its uid and gid; no supplementary groups but the ones given). */
async function as(user: string, args: string[], input = ''): Promise<CliResult> {
  return runProcess('setpriv', ['--reuid', user, '--regid', user, '--init-groups', '--', process.execPath, BIN, ...args], { input, env: { HOME: '/', LOGNAME: user, USER: user } });
}

test('any local user submits with the daemon up or down; the envelope names the real user; admin commands need quietlink-admin', { skip: isRoot ? false : 'needs root to create users (useradd)', timeout: 120_000 }, async () => {
  const dir = await tempDir();
  // the users must reach the configuration and the spool, as under /etc and /var/spool
  await fs.chmod(dir, 0o755);
  const config = await writeConfig(dir, { queue: { minQueueAge: '0s' } });
  await fs.chmod(config, 0o644);
  const made: string[] = [];
  try {
    for (const u of [USER, ADMIN]) {
      const r = await runProcess('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', u]);
      assert.equal(r.code, 0, r.stderr);
      made.push(u);
    }
    const hadGroup = (await runProcess('getent', ['group', 'quietlink-admin'])).code === 0;
    if (!hadGroup) assert.equal((await runProcess('groupadd', ['quietlink-admin'])).code, 0);
    assert.equal((await runProcess('usermod', ['-aG', 'quietlink-admin', ADMIN])).code, 0);
    const user = await ids(USER);
    // the spool as install.sh lays it out: the daemon has not run yet
    await fs.mkdir(path.join(dir, 'spool', 'maildrop'), { recursive: true });
    await fs.chmod(path.join(dir, 'spool'), 0o711);
    await fs.chmod(path.join(dir, 'spool', 'maildrop'), 0o1733);

    // daemon down: the user's sendmail (cron's flags) exits 0; the file waits in the maildrop
    const down = await as(USER, ['sendmail', '-c', config, '-FCronDaemon', '-i', '-B8BITMIME', '-oem', 'ops@far.example'], 'Subject: while down\n\nbody\n');
    assert.equal(down.code, 0, down.stderr);
    const d = await startDaemon(config);
    try {
      const first = await d.waitLog((l) => l.msg === 'queued' && (l.to as string[])[0] === 'ops@far.example', 'the offline submission picked up');
      assert.equal(first.uid, user.uid);
      assert.equal(first.relay, `${USER}@localhost`);
      // daemon up: exit 0 only once it is queued
      const up = await as(USER, ['sendmail', '-c', config, '-t', '-i'], 'To: web@far.example\nSubject: from php\n\nhello\n');
      assert.equal(up.code, 0, up.stderr);
      const q = JSON.parse((await as(USER, ['mailq', '-c', config, '--json'])).stdout) as { messages: Array<{ id: string; recipients: Array<{ address: string }> }> };
      const web = q.messages.find((m) => m.recipients[0].address === 'web@far.example');
      assert.ok(web, 'queued before sendmail returned; mailq works for the user');
      const env = JSON.parse(await fs.readFile(path.join(dir, 'spool', 'queue', 'mqueue', `${web.id}.json`), 'utf8'));
      assert.deepEqual([env.client.via, env.client.user, env.client.uid], ['sendmail', USER, user.uid]);
      assert.match(await fs.readFile(path.join(dir, 'spool', 'data', web.id), 'utf8'), new RegExp(`^Received: from ${USER}@localhost|^Received: .*${USER}`, 'm'));

      // the user cannot list the maildrop or read the queue
      const list = await runProcess('setpriv', ['--reuid', USER, '--regid', USER, '--init-groups', '--', 'ls', path.join(dir, 'spool', 'maildrop')]);
      assert.notEqual(list.code, 0, 'the maildrop cannot be listed');
      const read = await runProcess('setpriv', ['--reuid', USER, '--regid', USER, '--init-groups', '--', 'cat', path.join(dir, 'spool', 'data', web.id)]);
      assert.notEqual(read.code, 0, 'queued mail cannot be read');

      // a forged maildrop file claiming root: the daemon believes the owner, not the text
      const name = crypto.randomBytes(12).toString('hex');
      const forged = `${JSON.stringify({ version: 2, sender: 'root@localhost', recipients: ['x@far.example'], time: new Date().toISOString(), bodyType: '7BIT', dsn: {}, user: 'root' })}\nSubject: forged\r\n\r\nx\r\n`;
      const w = await runProcess('setpriv', ['--reuid', USER, '--regid', USER, '--init-groups', '--', 'sh', '-c', `umask 022; cat > ${path.join(dir, 'spool', 'maildrop', name)}`], { input: forged });
      assert.equal(w.code, 0, w.stderr);
      const ping = await as(USER, ['sendmail', '-c', config, 'y@far.example'], 'Subject: poke\n\nx\n');
      assert.equal(ping.code, 0, ping.stderr);
      const f = await d.waitLog((l) => l.msg === 'queued' && (l.to as string[])[0] === 'x@far.example', 'the forged file picked up');
      assert.equal(f.uid, user.uid, 'the forged file counts as the user who wrote it');
      // a bad field: to corrupt/, never queued as written
      const bad = crypto.randomBytes(12).toString('hex');
      const evil = `${JSON.stringify({ version: 2, sender: 'a@b.example\r\nX-Injected: 1', recipients: ['z@far.example'], time: new Date().toISOString(), bodyType: '7BIT', dsn: {} })}\nx\r\n`;
      await runProcess('setpriv', ['--reuid', USER, '--regid', USER, '--init-groups', '--', 'sh', '-c', `cat > ${path.join(dir, 'spool', 'maildrop', bad)}`], { input: evil });
      await as(USER, ['sendmail', '-c', config, 'w@far.example'], 'Subject: poke\n\nx\n');
      const refused = await d.waitLog((l) => l.msg === 'maildrop file refused: moved to corrupt' && l.file === bad, 'the bad file refused');
      assert.equal(refused.user, USER);
      assert.ok((await fs.readdir(path.join(dir, 'spool', 'corrupt'))).includes(`maildrop-${bad}`));

      // privileges: reading and flushing for everyone; changing for root and quietlink-admin only
      const hold = await as(USER, ['hold', '-c', config, web.id]);
      assert.equal(hold.code, 77, hold.stderr);
      assert.match(hold.stderr, /needs root or the quietlink-admin group/);
      assert.equal((await as(USER, ['link', 'up', '-c', config])).code, 77);
      assert.equal((await as(USER, ['etrn', '-c', config, '--relay', '[127.0.0.1]:9', 'office.example'])).code, 77);
      assert.equal((await as(USER, ['flush', '-c', config, '--dry-run'])).code, 0);
      const adminHold = await as(ADMIN, ['hold', '-c', config, web.id]);
      assert.equal(adminHold.code, 0, adminHold.stderr);
      const held = JSON.parse((await as(USER, ['mailq', '-c', config, '--json'])).stdout) as { messages: Array<{ id: string; state: string }> };
      assert.equal(held.messages.find((m) => m.id === web.id)?.state, 'held');
      // an SMTP submission from the LAN still works as before
      assert.equal((await sendMail(d.port, 'alice@office.example', ['v@far.example'], 'Subject: smtp\r\n\r\nx\r\n')).code, 250);
    } finally {
      await d.stop();
    }
    if (!hadGroup) await runProcess('groupdel', ['quietlink-admin']);
  } finally {
    for (const u of made) await runProcess('userdel', [u]);
    await fs.rm(dir, { recursive: true, force: true });
  }
});
