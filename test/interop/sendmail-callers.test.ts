/**
 * Interop: the `sendmail` entry point as its real callers invoke it
 * (SPEC §11), each run by a real non-root user made for the test, in no
 * group but its own: first with the daemon down (the message waits in the
 * maildrop, the spool laid out as install.sh leaves it: 0711, maildrop
 * 1733), then the daemon is started, then with the daemon up. Every message
 * reaches the next hop, every caller sees exit 0, and the daemon's "queued"
 * line names the real user (uid, `user@localhost`).
 *
 * The callers, with the arguments and the message text they really produce:
 * - Debian's cron: `sendmail -FCronDaemon -i -B8BITMIME -oem USER` (the
 *   format string in /usr/sbin/cron), an 8-bit UTF-8 job output;
 * - cronie (Fedora, RHEL, Arch): `sendmail -FCronDaemon -i -odi -oem -oi -t`;
 *   -odi means delivered before sendmail returns (with the daemon up);
 * - PHP's mail(): sendmail_path `sendmail -t -i`, headers ending in CRLF and
 *   the body in LF (PHP 8); the real `php` when installed;
 * - mdadm --monitor: `sendmail -t`, `From: mdadm monitoring <root>`;
 * - s-nail (mailx): `mail -s SUBJECT ADDR` with `-Smta=` naming quietlink's
 *   sendmail; s-nail calls it as `sendmail -i -- ADDR`;
 * - git send-email: `sendmail -f FROM -i ADDR` (git puts -f first); the real
 *   `git send-email` when installed;
 * - unattended-upgrades: `sendmail -oi -t`, Python's quoted-printable mail;
 * - `sendmail -bs` driven by `swaks --pipe`.
 * Programs are reached through a script named `sendmail` that runs
 * quietlink's (test/helpers/interop.ts); it notes the arguments each caller
 * passed. Skipped when not root (useradd) or when the caller's program
 * (s-nail, swaks) is missing.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runProcess, type CliResult } from '../helpers/daemon.js';
import {
  bySubject, findProgram, header, interop, localQueued, need, needRoot, sendmailWrapper, withLocalUser,
  type Interop, type LocalUser, type Recorded, type Wrapper,
} from '../helpers/interop.js';

const HOST = 'gw.test.example';

type Phase = 'down' | 'up';

interface Caller {
  /** What the test title says. */
  title: string;
  /** Programs without which the case cannot run at all. */
  needs?: string[];
  /** Runs the caller as user `u`; the subject carries `marker`. */
  run(c: { u: LocalUser; g: Interop; w: Wrapper; marker: string; t: TestContext }): Promise<CliResult>;
  /** The argument vector the wrapper must have seen (after `sendmail`). */
  argv(u: LocalUser): string;
  /** Checks the message the next hop got. */
  check(m: Recorded, u: LocalUser): void;
  /** Checked right after the caller's exit, before waiting for anything. */
  afterExit?(c: { g: Interop; marker: string; phase: Phase }): void;
}

function callerTest(id: string, caller: Caller): void {
  test(`sendmail as ${caller.title}, run by a user in no group: exit 0 with the daemon down, delivered once it starts, and with it up; the envelope names the user`, { timeout: 120_000 }, async (t) => {
    if (!needRoot(t)) return;
    for (const p of caller.needs ?? []) if (!need(t, p)) return;
    const g = await interop({}, { start: false });
    try {
      await withLocalUser(async (u) => {
        const w = await sendmailWrapper(g.dir, g.config);
        const run = async (phase: Phase) => {
          const marker = `QLS-${id}-${phase}`;
          const r = await caller.run({ u, g, w, marker, t });
          assert.equal(r.code, 0, `${id} (${phase}) exit ${r.code}\n${r.stdout}\n${r.stderr}`);
          caller.afterExit?.({ g, marker, phase });
          return marker;
        };
        const down = await run('down');
        assert.equal((await fs.readdir(path.join(g.dir, 'spool', 'maildrop'))).length, 1, 'the message waits in the maildrop');
        assert.equal(g.sink.messages.length, 0);
        const d = await g.start();
        caller.check(await g.sink.waitFor(bySubject(down), `${down} at the next hop`), u);
        const up = await run('up');
        caller.check(await g.sink.waitFor(bySubject(up), `${up} at the next hop`), u);

        const queued = localQueued(d);
        assert.equal(queued.length, 2, JSON.stringify(queued));
        for (const q of queued) {
          assert.equal(q.uid, u.uid, 'the envelope names the real user');
          assert.equal(q.relay, `${u.name}@localhost`);
        }
        assert.deepEqual(await w.calls(), [caller.argv(u), caller.argv(u)], 'the arguments the caller passed');
        assert.equal(g.sink.messages.length, 2, 'each message once');
      });
    } finally {
      await g.close();
    }
  });
}

const text = (m: Recorded) => m.body.toString('utf8');

// --- cron (Debian's cron 3.0pl1: MAILARGS "%s -FCronDaemon -i -B8BITMIME -oem  %s", run as the crontab's owner)
const CRON_OUTPUT = 'Sicherung abgeschlossen: 3 Dateien, größte 12 MB – keine Fehler\n';
callerTest('cron', {
  title: "Debian cron's mailer (-FCronDaemon -i -B8BITMIME -oem USER)",
  run: ({ u, w, marker }) => u.run(w.path, ['-FCronDaemon', '-i', '-B8BITMIME', '-oem', u.name], {
    input: Buffer.from(`From: ${u.name} (Cron Daemon)\nTo: ${u.name}\nSubject: Cron <${u.name}@gw> /usr/local/bin/backup --tag ${marker}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <HOME=${u.home}>\nX-Cron-Env: <PATH=/usr/bin:/bin>\nX-Cron-Env: <LOGNAME=${u.name}>\n\n${CRON_OUTPUT}`, 'utf8'),
  }),
  argv: (u) => `-FCronDaemon -i -B8BITMIME -oem ${u.name}`,
  check(m, u) {
    assert.equal(m.from, `${u.name}@${HOST}`);
    assert.deepEqual(m.to, [`${u.name}@${HOST}`], 'the bare user name is qualified');
    assert.equal(m.mailArgs.BODY, '8BITMIME', '-B8BITMIME is passed on');
    assert.ok(m.body.includes(Buffer.from(CRON_OUTPUT.replace(/\n/g, '\r\n'), 'utf8')), text(m));
    assert.match(header(m.body, 'From') ?? '', new RegExp(`${u.name}@${HOST.replace(/\./g, '\\.')}`), 'From: qualified');
    assert.match(header(m.body, 'To') ?? '', new RegExp(`${u.name}@${HOST.replace(/\./g, '\\.')}`), 'To: qualified');
  },
});

// --- cronie (Fedora, RHEL, Arch: MAILFMT "%s -FCronDaemon -i -odi -oem -oi -t"): -odi, delivered before sendmail returns
callerTest('cronie', {
  title: 'cronie\'s mailer (-FCronDaemon -i -odi -oem -oi -t)',
  run: ({ u, w, marker }) => u.run(w.path, ['-FCronDaemon', '-i', '-odi', '-oem', '-oi', '-t'], {
    input: `From: "(Cron Daemon)" <${u.name}>\nTo: ${u.name}\nSubject: Cron <${u.name}@gw> /usr/bin/certbot renew -q ${marker}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nAuto-Submitted: auto-generated\nPrecedence: bulk\nX-Cron-Env: <LANG=C.UTF-8>\nX-Cron-Env: <SHELL=/bin/sh>\n\nrenewal failed: connection refused\n`,
  }),
  argv: () => '-FCronDaemon -i -odi -oem -oi -t',
  afterExit({ g, marker, phase }) {
    // -odi (sendmail's interactive delivery): with the daemon up, the attempt is over when sendmail exits
    if (phase === 'up') assert.ok(g.sink.messages.some(bySubject(marker)), 'delivered before sendmail -odi returned');
  },
  check(m, u) {
    assert.equal(m.from, `${u.name}@${HOST}`);
    assert.deepEqual(m.to, [`${u.name}@${HOST}`], 'the recipient from To: (-t), qualified');
    assert.match(header(m.body, 'From') ?? '', new RegExp(`<${u.name}@${HOST.replace(/\./g, '\\.')}>`), 'From: qualified');
  },
});

// --- PHP's mail() (sendmail_path "sendmail -t -i"; PHP 8 ends header lines with CRLF and writes the body as given)
const PHP_BODY = 'Ihre Bestellung 4711 ist eingegangen.\nVielen Dank!\n';
callerTest('php', {
  title: "PHP's mail() (sendmail_path = sendmail -t -i)",
  run: ({ u, w, marker, t }) => {
    const php = findProgram('php');
    if (php) {
      t.diagnostic(`the real PHP: ${php}`);
      const code = `exit(mail('shop-orders@far.example', 'Order ${marker}', ${JSON.stringify(PHP_BODY)}, 'From: shop@office.example') ? 0 : 1);`;
      return u.run(php, ['-n', '-d', `sendmail_path=${w.path} -t -i`, '-r', code]);
    }
    t.diagnostic('php is not installed: PHP 8\'s mail() output is reproduced');
    return u.run(w.path, ['-t', '-i'], { input: `To: shop-orders@far.example\r\nSubject: Order ${marker}\r\nFrom: shop@office.example\r\n\r\n${PHP_BODY}\r\n` });
  },
  argv: () => '-t -i',
  check(m, u) {
    assert.equal(m.from, `${u.name}@${HOST}`, 'the envelope sender is the user (no -f)');
    assert.deepEqual(m.to, ['shop-orders@far.example'], 'the recipient from To: (-t)');
    assert.equal(header(m.body, 'From'), 'shop@office.example');
    assert.doesNotMatch(text(m), /\r\r|[^\r]\n/, 'CRLF headers and LF body both become CRLF lines');
    assert.match(text(m), /\r\n\r\nIhre Bestellung 4711 ist eingegangen\.\r\nVielen Dank!\r\n/);
  },
});

// --- mdadm --monitor (Monitor.c: popen("sendmail -t"), MAILADDR root)
callerTest('mdadm', {
  title: 'mdadm --monitor (-t)',
  run: ({ u, w, marker }) => u.run(w.path, ['-t'], {
    input: `From: mdadm monitoring <root>\nTo: root\nSubject: Fail event on /dev/md0:${marker}\n\nThis is an automatically generated mail message from mdadm\nrunning on gw\n\nA Fail event had been detected on md device /dev/md0.\n\nIt could be related to component device /dev/sdb1.\n\nFaithfully yours, etc.\n\nP.S. The /proc/mdstat file currently contains the following:\n\nPersonalities : [raid1]\nmd0 : active raid1 sda1[0] sdb1[1](F)\n      976630464 blocks super 1.2 [2/1] [U_]\n\nunused devices: <none>\n`,
  }),
  argv: () => '-t',
  check(m, u) {
    assert.equal(m.from, `${u.name}@${HOST}`);
    assert.deepEqual(m.to, [`root@${HOST}`], 'To: root, qualified');
    assert.match(header(m.body, 'From') ?? '', /<root@gw\.test\.example>/, 'From: <root> qualified');
    assert.match(text(m), /\r\nunused devices: <none>\r\n$/);
  },
});

// --- s-nail (mailx): `mail -s SUBJECT ADDR`; mta= names the sendmail it runs, sendwait makes its exit status count
callerTest('mailx', {
  title: 's-nail\'s mail -s SUBJECT ADDR (s-nail runs sendmail -i -- ADDR)',
  needs: ['s-nail'],
  run: ({ u, w, marker }) => u.run(findProgram('s-nail')!, ['-n', `-Smta=${w.path}`, '-Ssendwait', '-s', `disk report ${marker}`, 'ops@far.example'], { input: 'Filesystem      Size  Used Avail Use%\n/dev/sda1        30G   28G  2.0G  94%\n' }),
  argv: () => '-i -- ops@far.example',
  check(m, u) {
    assert.equal(m.from, `${u.name}@${HOST}`);
    assert.deepEqual(m.to, ['ops@far.example']);
    assert.match(header(m.body, 'From') ?? '', new RegExp(`${u.name}@${HOST.replace(/\./g, '\\.')}`), 'a From: is added for the user');
    assert.match(text(m), /\/dev\/sda1 {8}30G {3}28G {2}2\.0G {2}94%\r\n/);
  },
});

// --- git send-email (sendmail_parameters: -f ENVELOPE_SENDER -i RECIPIENTS)
function gitPatch(marker: string): string {
  return `From 5f0c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b Mon Sep 17 00:00:00 2001\nFrom: Dev Eloper <dev@office.example>\nDate: Mon, 23 Nov 2026 08:00:00 +0000\nSubject: [PATCH] backup: keep 14 days ${marker}\n\n---\n backup.conf | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n\ndiff --git a/backup.conf b/backup.conf\nindex 7898192..6178079 100644\n--- a/backup.conf\n+++ b/backup.conf\n@@ -1 +1 @@\n-keep=7\n+keep=14\n-- \n2.39.5\n\n`;
}
callerTest('git', {
  title: 'git send-email (-f FROM -i ADDR)',
  async run({ u, w, marker, t }) {
    const git = findProgram('git');
    const execPath = git ? (await runProcess(git, ['--exec-path'])).stdout.trim() : '';
    const sendEmail = git !== null && (await fs.access(path.join(execPath, 'git-send-email')).then(() => true, () => false));
    if (git && sendEmail) {
      t.diagnostic(`the real git send-email: ${git}`);
      const file = path.join(u.home, `${marker}.patch`);
      await fs.writeFile(file, gitPatch(marker));
      await fs.chown(file, u.uid, u.gid);
      // the developer's identity, as ~/.gitconfig would give it
      const env = { GIT_AUTHOR_NAME: 'Dev Eloper', GIT_AUTHOR_EMAIL: 'dev@office.example', GIT_COMMITTER_NAME: 'Dev Eloper', GIT_COMMITTER_EMAIL: 'dev@office.example' };
      return u.run(git, ['send-email', `--smtp-server=${w.path}`, '--to=review@far.example', '--envelope-sender=dev@office.example', '--confirm=never', '--suppress-cc=all', '--quiet', file], { env });
    }
    t.diagnostic('git send-email is not installed: its sendmail call is reproduced');
    const patch = gitPatch(marker).replace(/^From [0-9a-f]{40} .*\n/, '');
    return u.run(w.path, ['-f', 'dev@office.example', '-i', 'review@far.example'], { input: `${patch.replace(/\n\n/, `\nTo: review@far.example\nMessage-Id: <${marker}@office.example>\nX-Mailer: git-send-email 2.39.5\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n`)}` });
  },
  argv: () => '-f dev@office.example -i review@far.example',
  check(m) {
    assert.equal(m.from, 'dev@office.example', '-f sets the envelope sender');
    assert.deepEqual(m.to, ['review@far.example']);
    assert.match(text(m), /\r\n-keep=7\r\n\+keep=14\r\n-- \r\n2\.39\.5\r\n/);
  },
});

// --- unattended-upgrades (send_mail_using_sendmail: [sendmail, "-oi", "-t"], email.message with quoted-printable utf-8)
callerTest('uu', {
  title: 'unattended-upgrades (-oi -t)',
  run: ({ u, w, marker }) => u.run(w.path, ['-oi', '-t'], {
    input: `Subject: =?utf-8?q?unattended-upgrades_result_for_gw=3A_SUCCESS_${marker}?=\nFrom: root\nTo: root\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\nContent-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\nUnattended upgrade result: All upgrades installed\n\nPackages that were upgraded:\n libssl3 openssl=20\n\nPaketlisten werden gelesen=E2=80=A6 Fertig\n`,
  }),
  argv: () => '-oi -t',
  check(m, u) {
    assert.equal(m.from, `${u.name}@${HOST}`);
    assert.deepEqual(m.to, [`root@${HOST}`]);
    assert.equal(header(m.body, 'Auto-Submitted'), 'auto-generated');
    assert.match(text(m), /\r\n\r\nUnattended upgrade result: All upgrades installed\r\n/);
  },
});

// --- sendmail -bs, an SMTP dialogue on stdin and stdout, driven by swaks
callerTest('bs', {
  title: '-bs (an SMTP dialogue on stdin/stdout, driven by swaks --pipe)',
  needs: ['swaks'],
  run: ({ u, w, marker }) => u.run(findProgram('swaks')!, ['--pipe', `${w.path} -bs`, '--helo', 'localhost', '--from', `${u.name}@office.example`, '--to', 'ops@far.example', '--header', `Subject: via -bs ${marker}`, '--body', 'an SMTP dialogue on a pipe', '--timeout', '20s']),
  argv: () => '-bs',
  check(m, u) {
    assert.equal(m.from, `${u.name}@office.example`);
    assert.deepEqual(m.to, ['ops@far.example']);
    assert.match(text(m), /\r\n\r\nan SMTP dialogue on a pipe\r\n/);
  },
});
