import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseConfigText, loadAll } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { ROOT, tempDir } from '../helpers/daemon.js';

function problems(text: string): string[] {
  try {
    parseConfigText(text, '/etc/q.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.exitCode, 78);
    return err.problems.map((p) => `${p.file}:${p.line}: ${p.message}`);
  }
  return [];
}

test('the example configuration is valid and works on loopback', async () => {
  const { config } = await loadAll(path.join(ROOT, 'etc', 'quietlink.yaml'));
  assert.deepEqual(config.smtp.listen, ['127.0.0.1:2525']);
  assert.equal(config.spool, path.join(ROOT, 'var', 'spool'));
  assert.equal(config.smartHost.length, 0);
  assert.equal(config.dns.upstream.length, 0);
});

test('the SPEC §12 example parses with every key typed', () => {
  const text = `
hostname: gw.office.example
spool: /var/spool/quietlink
deliveryMode: delay
lanNetworks: [192.168.1.0/24]
smtp:
  listen: ["127.0.0.1:25", "192.168.1.1:25"]
  mynetworks: [127.0.0.0/8, 192.168.1.0/24]
  localDomains: [office.example]
  maxMessageSize: 25MB
  maxRecipients: 100
  greetPause: 0s
  maxConnections: 100
  tls: { cert: /etc/quietlink/tls.crt, key: /etc/quietlink/tls.key }
  auth: { users: /etc/quietlink/users }
smartHost: ["[primary.mta.example.com]", "[backup1.mta.example.com]:587"]
routes:
  - { domain: office.example, relay: "[192.168.1.10]" }
mailertable: /etc/quietlink/mailertable
authinfo: /etc/quietlink/authinfo
classes:
  CustDoms: { domains: [cust1.dom], file: /etc/quietlink/CustDoms, optional: true }
holdClasses: [CustDoms]
dialDelay: 10s
timeout: { iconnect: 1m, connect: 1m, helo: 5m, mail: 10m, rcpt: 1h, datainit: 5m, datablock: 1h, datafinal: 1h, command: 1h }
queue:
  minQueueAge: 30m
  queueWarn: 4h
  queueReturn: 5d
  queueLA: 8
  refuseLA: 12
  queueFactor: 600000
  maxQueueChildren: 16
  minFreeBlocks: 100
  groups: [{ name: relayq, runners: 2, interval: 1m, jobs: 1000, match: ["cust1.dom"] }]
flush:
  interval: 0
  cron: ["*/15 8-18 * * 1-5", "0 0-7,19-23 * * *"]
  timezone: Europe/Berlin
  onLinkUp: true
etrn: { relay: "[smtprelay.isp.example]", domains: [office.example] }
etrnServer: { allow: [0.0.0.0/0] }
link: { mode: managed, interface: ppp0, poll: 5s, dialTimeout: 2m, dial: "pon isp", hangup: "poff isp" }
dns:
  listen: ["127.0.0.53:53"]
  upstream: ["192.0.2.53", "198.51.100.53:5353"]
  serveStale: 1d
  hosts: /etc/hosts
  allow: [127.0.0.0/8, 192.168.1.0/24]
metrics: { listen: "127.0.0.1:9725" }
`;
  const c = parseConfigText(text, '/etc/quietlink/quietlink.yaml');
  assert.equal(c.deliveryMode, 'deferred');
  assert.equal(c.smtp.maxMessageSize, 25 * 1024 * 1024);
  assert.equal(c.queue.minQueueAge, 1_800_000);
  assert.equal(c.timeout.rcpt, 3_600_000);
  assert.deepEqual(c.queue.minFreeBlocks, { blocks: 100 });
  assert.equal(c.queue.groups[0].name, 'relayq');
  assert.equal(c.link.dialTimeout, 120_000);
});

test('an unknown key is reported with its file and line', () => {
  assert.deepEqual(problems('hostname: a.example\nsmtp:\n  listen: ["127.0.0.1:25"]\n  maxMesageSize: 10MB\n'), [
    '/etc/q.yaml:4: unknown key "smtp.maxMesageSize"',
  ]);
});

test('wrong types and bad values are reported with their lines', () => {
  const p = problems('hostname: a.example\nqueue:\n  minQueueAge: soon\n  maxQueueChildren: -1\ndeliveryMode: fast\nflush:\n  cron: ["61 * * * *"]\nlanNetworks: [10.0.0.0/33]\n');
  assert.equal(p.length, 5, p.join('\n'));
  assert.ok(p.some((l) => l.startsWith('/etc/q.yaml:3: queue.minQueueAge: invalid duration')), p.join('\n'));
  assert.ok(p.some((l) => l.startsWith('/etc/q.yaml:4: queue.maxQueueChildren')), p.join('\n'));
  assert.ok(p.some((l) => l.startsWith('/etc/q.yaml:5: deliveryMode')), p.join('\n'));
  assert.ok(p.some((l) => l.startsWith('/etc/q.yaml:7: flush.cron.0: invalid cron expression')), p.join('\n'));
  assert.ok(p.some((l) => l.startsWith('/etc/q.yaml:8: lanNetworks.0: invalid network')), p.join('\n'));
});

test('YAML syntax errors carry the line', () => {
  const p = problems('hostname: a.example\nsmtp:\n  listen: [127.0.0.1:25\n');
  assert.ok(p.length >= 1);
  assert.match(p[0], /^\/etc\/q\.yaml:\d+: /);
});

test('a route names exactly one mailer', () => {
  const p = problems('routes:\n  - { domain: a.example, relay: "[10.0.0.1]", esmtp: "[10.0.0.2]" }\n');
  assert.match(p[0], /^\/etc\/q\.yaml:2: routes\.0: a route names exactly one mailer/);
});

test('holdClasses must name a defined class', () => {
  const p = problems('classes:\n  CustDoms: { domains: [a.example] }\nholdClasses: [CustDoms, Missing]\n');
  assert.deepEqual(p, ['/etc/q.yaml:3: holdClasses names unknown class "Missing"']);
});

test('relative paths are resolved against the configuration file', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'q.yaml');
  await fs.writeFile(file, 'spool: ./s\nmailertable: mt\n');
  await fs.writeFile(path.join(dir, 'mt'), '');
  const { config } = await loadAll(file);
  assert.equal(config.spool, path.join(dir, 's'));
  assert.equal(config.mailertable, path.join(dir, 'mt'));
  await fs.rm(dir, { recursive: true });
});
