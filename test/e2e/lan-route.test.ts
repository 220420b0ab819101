/**
 * A LAN host written as a name: a route to `[name]` that dns.hosts maps into
 * lanNetworks is a LAN route. With link.mode managed and the link down, its
 * mail is delivered at once, the name is answered locally (no DNS query
 * reaches the upstream), `quietlink route` says link: no and why, and a
 * change to the dns.hosts file rebuilds the routes without a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir, writeConfig, startDaemon, runCli } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';
import { startDns } from '../helpers/wan.js';

const MSG = 'Subject: lan\r\n\r\nbody\r\n';

test('a route to a dns.hosts name inside lanNetworks delivers at once with the link down, and no DNS query leaves', async () => {
  const sink = await startSink();
  const upstream = await startDns('127.0.0.3', {});
  const dir = await tempDir();
  const hostsFile = path.join(dir, 'hosts');
  await fs.writeFile(hostsFile, '127.0.0.1 mailhost.office.example\n');
  const config = await writeConfig(dir, {
    lanNetworks: ['127.0.0.1/32'],
    queue: { minQueueAge: '0s' },
    link: { mode: 'managed' },
    routes: [
      { domain: 'lan.example', relay: `[mailhost.office.example]:${sink.port}` },
      { domain: 'later.example', relay: `[later.office.example]:${sink.port}` },
    ],
    dns: { hosts: hostsFile, upstream: [`127.0.0.3:${upstream.port}`] },
  });
  const d = await startDaemon(config);
  try {
    await sendMail(d.port, 'alice@office.example', ['x@lan.example'], MSG);
    await sink.waitMessages(1, 10_000);
    assert.deepEqual(sink.messages[0].to, ['x@lan.example']);
    const status = JSON.parse((await runCli(['status', '-c', config, '--json'])).stdout);
    assert.equal(status.link.state, 'down', 'delivered with the link still down, no flush');
    assert.ok(status.dns.local > 0, 'the name was answered from dns.hosts');
    assert.deepEqual(upstream.queries, [], 'no DNS query left the box');

    const human = await runCli(['route', '-c', config, 'x@lan.example']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /link: no \(mailhost\.office\.example is 127\.0\.0\.1 \(dns\.hosts\), inside lanNetworks\)/);
    const [json] = JSON.parse((await runCli(['route', '-c', config, '--json', 'x@lan.example'])).stdout);
    assert.deepEqual([json.link, json.linkReason], [false, 'mailhost.office.example is 127.0.0.1 (dns.hosts), inside lanNetworks']);

    // a name dns.hosts does not know waits for the link, until the file maps it into the LAN
    await sendMail(d.port, 'alice@office.example', ['y@later.example'], MSG);
    await fs.writeFile(hostsFile, '127.0.0.1 mailhost.office.example\n127.0.0.1 later.office.example\n');
    await d.waitLog((l) => l.msg === 'dns.hosts loaded, routes rebuilt' && l.names === 2, 'the changed dns.hosts reloaded', 15_000);
    await sendMail(d.port, 'alice@office.example', ['z@later.example'], MSG);
    await sink.waitMessages(2, 10_000);
    assert.deepEqual(sink.messages.map((m) => m.to.join()), ['x@lan.example', 'z@later.example'], 'y was queued for the link before the change');
    const mailq = await runCli(['mailq', '-c', config]);
    assert.match(mailq.stdout, /y@later\.example/);
    assert.match(mailq.stdout, /Total requests: 1\n$/);
    assert.deepEqual(upstream.queries, [], 'still no DNS query');
  } finally {
    await d.stop();
    await sink.close();
    await upstream.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
