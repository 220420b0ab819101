/**
 * The resolver in the daemon: delivery resolves MX only through it (from the
 * test upstream, inside a window), a null MX fails the mail with a clear
 * reason in the DSN, and LAN clients get answers from dns.listen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { tempDir, writeConfig, startDaemon, runCli } from '../helpers/daemon.js';
import { sendMail } from '../helpers/smtp-client.js';
import { startSink } from '../helpers/sink.js';
import { startDns } from '../helpers/wan.js';

test('a null MX fails delivery with a clear DSN reason; the daemon answers LAN DNS from dns.hosts', async () => {
  const box = await startSink();
  const dns = await startDns('127.0.0.3', { 'nullmx.example': { mx: [[0, '']] } });
  const dir = await tempDir();
  await fs.writeFile(`${dir}/hosts`, '192.168.1.10 printer.office.example\n');
  const config = await writeConfig(dir, {
    lanNetworks: ['127.0.0.1/32'],
    routes: [{ domain: 'office.example', relay: `[127.0.0.1]:${box.port}` }],
    dns: { upstream: [`127.0.0.3:${dns.port}`], listen: ['127.0.0.4:0'], hosts: 'hosts' },
    link: { mode: 'demand' },
  });
  const d = await startDaemon(config);
  try {
    await sendMail(d.port, 'alice@office.example', ['someone@nullmx.example'], 'Subject: to a null MX\r\n\r\nx\r\n');
    assert.deepEqual(dns.queries, [], 'nothing looked up outside a window');
    await runCli(['flush', '-c', config, '--wait']);
    await box.waitMessages(1);
    assert.match(box.messages[0].body, /Status: 5\.1\.10/);
    assert.match(box.messages[0].body, /does not accept mail \(null MX\)/);
    assert.ok(dns.queries.includes('MX nullmx.example'));
    const dnsPort = ((d.logs.find((l) => l.msg === 'ready')!.dns as Array<{ port: number }>)[0]).port;
    const { default: dns2 } = await import('dns2');
    const ask = (dns2 as any).UDPClient({ dns: '127.0.0.4', port: dnsPort, timeout: 2000 });
    const r = await ask('printer.office.example', 'A');
    assert.equal(r.answers[0].address, '192.168.1.10');
    assert.ok(!dns.queries.includes('A printer.office.example'), 'dns.hosts names are never forwarded');
  } finally {
    await d.stop();
    await box.close();
    await dns.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
