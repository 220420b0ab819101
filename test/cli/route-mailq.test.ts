/**
 * `route` (sendmail -bt) at every lookup level, with no DNS packet, and why a
 * route needs the link or not (dns.hosts names inside lanNetworks are LAN
 * routes); `mailq -Ac` (the maildrop) and `mailq -bP` (entries per queue group).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir, writeConfig, startDaemon, runCli } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';
import { startDns } from '../helpers/wan.js';

test('route shows the matching entry at each lookup level, the mailer, hosts, flags, group and relay rights — without DNS', async () => {
  const dns = await startDns('127.0.0.3', {});
  const dir = await tempDir();
  await fs.writeFile(path.join(dir, 'mailertable'), `office.example relay:[192.168.1.10]\n.example.com esmtp:[ext-mta.example.com]\nbackup.com esmtp:secondary-mta.example.net\n. relay:[primary.mta.example.com],[backup1.mta.example.com]:587\n`);
  const config = await writeConfig(dir, {
    lanNetworks: ['192.168.1.0/24'],
    mailertable: 'mailertable',
    classes: { CustDoms: { domains: ['cust1.dom'] } },
    queue: { groups: [{ name: 'relayq', match: ['cust1.dom'] }] },
    dns: { upstream: [`127.0.0.3:${dns.port}`], listen: ['127.0.0.4:0'] },
  });
  const d = await startDaemon(config);
  try {
    const r = await runCli(['route', '-c', config, '--json', 'a@office.example', 'b@www.example.com', 'c@backup.com', 'd@far.example', 'e@cust1.dom']);
    assert.equal(r.code, 0, r.stderr);
    const [office, www, backup, far, cust] = JSON.parse(r.stdout);
    assert.deepEqual([office.via, office.key, office.mailer, office.link], ['mailertable', 'office.example', 'relay', false], 'a LAN route');
    assert.deepEqual([www.key, www.hosts[0].host, www.link], ['.example.com', 'ext-mta.example.com', true]);
    assert.deepEqual([backup.key, backup.hosts[0].mxLookup], ['backup.com', true]);
    assert.deepEqual([far.key, far.hosts.map((h: { host: string; port: number }) => `${h.host}:${h.port}`)], ['.', ['primary.mta.example.com:25', 'backup1.mta.example.com:587']]);
    assert.deepEqual([cust.mailer, cust.holdUntilEtrn, cust.expensive, cust.queueGroup, cust.relayFromOutside], ['qsmtp', true, true, 'relayq', true]);
    assert.equal(far.relayFromOutside, false);
    const human = await runCli(['route', '-c', config, 'd@far.example']);
    assert.match(human.stdout, /matched: +mailertable entry "\."/);
    assert.match(human.stdout, /hosts: +\[primary\.mta\.example\.com\]:25, then \[backup1\.mta\.example\.com\]:587/);
    const bt = await runCli(['sendmail', '-c', config, '-bt'], { input: '3,0 a@office.example\n' });
    assert.match(bt.stdout, /mailertable entry "office\.example"/);
    // the smart host, when nothing in the table matches
    await fs.writeFile(path.join(dir, 'mailertable'), '');
    const smart = await writeConfig(dir, { smartHost: ['[smarthost.isp.example]'] });
    assert.match((await runCli(['route', '-c', smart, 'x@far.example'])).stdout, /matched: +smartHost/);
    assert.deepEqual(dns.queries, [], 'route sends no DNS packet');
    const st = JSON.parse((await runCli(['status', '-c', config, '--json'])).stdout);
    assert.equal(st.dns.misses + st.dns.hits + st.dns.refusedForwards, 0, 'the resolver was not asked');
  } finally {
    await d.stop();
    await dns.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('route shows link: no and why for a dns.hosts name inside lanNetworks; an unreadable dns.hosts is a warning', async () => {
  const dir = await tempDir();
  await fs.writeFile(path.join(dir, 'hosts'), '192.168.1.20 mailhost.office.example\n');
  const config = await writeConfig(dir, {
    lanNetworks: ['192.168.1.0/24'],
    routes: [
      { domain: 'lan.example', relay: '[mailhost.office.example]' },
      { domain: 'wan.example', relay: '[smarthost.isp.example]' },
    ],
    dns: { hosts: 'hosts' },
  });
  try {
    const human = await runCli(['route', '-c', config, 'x@lan.example']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^ {2}link: no \(mailhost\.office\.example is 192\.168\.1\.20 \(dns\.hosts\), inside lanNetworks\) {3}expensive: no {3}holdUntilEtrn: no$/m);
    const json = await runCli(['route', '-c', config, '--json', 'x@lan.example', 'y@wan.example']);
    assert.equal(json.code, 0, json.stderr);
    const [lan, wan] = JSON.parse(json.stdout);
    assert.deepEqual([lan.link, lan.linkReason], [false, 'mailhost.office.example is 192.168.1.20 (dns.hosts), inside lanNetworks']);
    assert.deepEqual([wan.link, wan.linkReason], [true, 'smarthost.isp.example needs a DNS lookup over the link']);
    const permanent = await writeConfig(dir, { link: { mode: 'permanent' }, routes: [{ domain: 'wan.example', relay: '[smarthost.isp.example]' }] });
    const p = JSON.parse((await runCli(['route', '-c', permanent, '--json', 'y@wan.example'])).stdout)[0];
    assert.deepEqual([p.link, p.linkReason], [false, 'link.mode permanent']);
    // the daemon routes without an unreadable dns.hosts and says so in its log; route says so on stderr
    const missing = await writeConfig(dir, { lanNetworks: ['192.168.1.0/24'], routes: [{ domain: 'lan.example', relay: '[mailhost.office.example]' }], dns: { hosts: 'no-such-hosts' } });
    const m = await runCli(['route', '-c', missing, 'x@lan.example']);
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stderr, /warning: cannot read dns\.hosts .*no-such-hosts/);
    assert.match(m.stdout, /link: yes \(mailhost\.office\.example needs a DNS lookup over the link\)/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('mailq -Ac lists the maildrop; mailq -bP counts entries per queue group', async () => {
  const dir = await tempDir();
  const config = await writeConfig(dir, { queue: { groups: [{ name: 'relayq', match: ['cust1.dom'] }] } });
  try {
    assert.equal((await runCli(['sendmail', '-c', config, 'x@far.example'], { input: 'Subject: dropped\n\nx\n' })).code, 0);
    const ac = await runCli(['mailq', '-c', config, '-Ac']);
    assert.match(ac.stdout, /maildrop \(1 request\)/);
    assert.match(ac.stdout, /<x@far\.example>/);
    assert.match(ac.stdout, /Total requests: 1\n$/);
    const d = await startDaemon(config);
    try {
      await sendMail(d.port, 'a@office.example', ['y@cust1.dom'], 'Subject: g\r\n\r\nx\r\n');
      const bp = await runCli(['mailq', '-c', config, '-bP']);
      assert.match(bp.stdout, /^mqueue: 1 entry$/m);
      assert.match(bp.stdout, /^relayq: 1 entry$/m);
      assert.match(bp.stdout, /Total requests: 2\n$/);
      assert.match((await runCli(['mailq', '-c', config, '-Ac'])).stdout, /maildrop is empty/);
    } finally {
      await d.stop();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
