/**
 * Interop: fetchmail's ODMR mode (`fetchmail --protocol ODMR`, RFC 2645
 * client, AUTH CRAM-MD5) against quietlink's ODMR server. fetchmail pipes
 * the turned connection to its smtphost (here a recording sink): the held
 * mail for cust1.dom arrives there; a wrong secret gets 535 and nothing is
 * flushed; a domain the user may not take is refused (450); with nothing
 * waiting, 453. fetchmail's ODMR mode never does STARTTLS, so the ISP here
 * runs with the test-only odmr.insecureAuth. Skipped only when fetchmail
 * is not installed (.ci/run installs it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, runProcess, startDaemon, tempDir, writeConfig } from '../helpers/daemon.js';
import { RawSmtp, fromOutside } from '../helpers/smtp-client.js';
import { closedPort, startSink } from '../helpers/sink.js';
import { need } from '../helpers/interop.js';

test('fetchmail --protocol ODMR: delivered to its smtphost; wrong secret 535 and nothing flushed; a foreign domain refused; no mail 453', { timeout: 120_000 }, async (t) => {
  const fetchmail = need(t, 'fetchmail');
  if (!fetchmail) return;
  const sink = await startSink();
  const odmrPort = await closedPort();
  const dir = await tempDir('ql-odmr-fm-');
  await fs.writeFile(path.join(dir, 'odmr-users'), 'cust1 s3cret-1\n', { mode: 0o600 });
  const config = await writeConfig(dir, {
    hostname: 'smtprelay.isp.test',
    smtp: { mynetworks: ['127.0.0.1/32'] },
    classes: { CustDoms: { domains: ['cust1.dom', 'cust2.dom'] }, cust1: { domains: ['cust1.dom'] } },
    routes: [{ domain: 'cust1.dom', qsmtp: `[127.0.0.1]:${await closedPort()}` }, { domain: 'cust2.dom', qsmtp: `[127.0.0.1]:${await closedPort()}` }],
    odmr: { listen: [`127.0.0.1:${odmrPort}`], users: 'odmr-users', insecureAuth: true },
    link: { mode: 'managed' },
  });
  const isp = await startDaemon(config);
  const home = path.join(dir, 'fetchmail');
  await fs.mkdir(home, { mode: 0o700 });
  const run = async (secret: string, domains: string) => {
    const rc = path.join(home, 'fetchmailrc');
    await fs.writeFile(rc, `poll 127.0.0.1 service ${odmrPort} protocol ODMR user "cust1" password "${secret}" fetchdomains ${domains} smtphost "127.0.0.1/${sink.port}"\n`, { mode: 0o600 });
    const r = await runProcess(fetchmail, ['--nosyslog', '-f', rc, '--pidfile', path.join(home, 'fetchmail.pid'), '-v', '-v'], { env: { FETCHMAILHOME: home, HOME: home }, ms: 60_000 });
    return r.stdout + r.stderr;
  };
  const queued = async (dom: string) => JSON.parse((await runCli(['mailq', '-c', config, '--json', `-qR${dom}`])).stdout).total;
  try {
    await fromOutside(isp.port, 'boss@cust1.dom', 'fetchmail odmr A');
    await fromOutside(isp.port, 'ceo@cust2.dom', 'fetchmail odmr B');
    const wrong = await run('not-the-secret', 'cust1.dom');
    assert.match(wrong, /535/, wrong);
    assert.equal(await queued('cust1.dom'), 1, 'nothing flushed after a failed AUTH');
    const foreign = await run('s3cret-1', 'cust2.dom');
    assert.match(foreign, /ATRN request refused/, foreign);
    assert.equal(await queued('cust2.dom'), 1);
    const ok = await run('s3cret-1', 'cust1.dom');
    await sink.waitMessages(1, 30_000);
    assert.deepEqual(sink.messages[0].to, ['boss@cust1.dom'], ok);
    await isp.waitLog((l) => l.msg === 'odmr: session done', 'the ODMR session to end');
    assert.equal(await queued('cust1.dom'), 0);
    const none = await run('s3cret-1', 'cust1.dom');
    assert.match(none, /You have no mail/, none);
  } finally {
    await isp.stop();
    await sink.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
