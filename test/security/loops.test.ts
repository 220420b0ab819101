/**
 * Loop protection (SPEC §9, issue 15 "Loops"): MX records that name the
 * gateway itself — its hostname, a listen address, a name resolving to one
 * — and every record of the same or a worse preference are pruned, as
 * sendmail and Postfix do; with nothing left, 554 5.4.6 "mail for DOMAIN
 * loops back to myself". First the real caching resolver against a real
 * DNS server (dns2 on 127.0.0.3), then a real daemon whose mail would come
 * back to itself.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CachingResolver } from '../../src/dns/caching-resolver.js';
import { Upstream } from '../../src/dns/upstream.js';
import { expandHosts, selfIdentity } from '../../src/delivery/resolver.js';
import { parseHosts } from '../../src/routing/route.js';
import type { MailError } from '../../src/errors.js';
import { startDns, type CountingDns } from '../helpers/wan.js';
import { closedPort, startSink } from '../helpers/sink.js';
import { sendMail } from '../helpers/smtp-client.js';
import { gateway } from '../helpers/gateway.js';
import { runCli } from '../helpers/daemon.js';

let dns: CountingDns;
before(async () => {
  dns = await startDns('127.0.0.3', {
    // the ISP relay (relay.isp.example, 127.0.0.1:25) is the customer's backup MX
    'cust1.dom': { mx: [[10, 'mx.cust1.dom'], [20, 'relay.isp.example'], [30, 'mx3.cust1.dom']] },
    'mx.cust1.dom': { a: ['127.0.0.40'] },
    'mx3.cust1.dom': { a: ['127.0.0.43'] },
    'relay.isp.example': { a: ['127.0.0.1'] },
    'only.example': { mx: [[20, 'relay.isp.example']] },
    'alias.example': { mx: [[10, 'mail.alias.example'], [20, 'mx.cust1.dom']] },
    'mail.alias.example': { a: ['127.0.0.1'] },
    'better.example': { mx: [[5, 'mx.cust1.dom'], [10, 'mail.alias.example']] },
    'tie.example': { mx: [[10, 'mx.cust1.dom'], [10, 'mail.alias.example']] },
    'noloop.example': { mx: [[10, 'mx.cust1.dom'], [20, 'mx3.cust1.dom']] },
    'selfa.example': { a: ['127.0.0.1'] },
    // for the daemon (gw.test.example, 127.0.0.1 on a port of its own)
    'loop.example': { mx: [[10, 'gw.test.example']] },
    'backup.example': { mx: [[10, 'mx.backup.example'], [20, 'gw.test.example']] },
    'mx.backup.example': { a: ['127.0.0.1'] },
    'byaddr.example': { mx: [[10, 'ours.byaddr.example']] },
    'ours.byaddr.example': { a: ['127.0.0.1'] },
  });
});
after(() => dns.close());

function resolver() {
  return new CachingResolver({
    upstream: new Upstream([`127.0.0.3:${dns.port}`], 2000),
    mayForward: () => true,
    now: Date.now,
    serveStale: 0,
    local: () => ({ names: new Set<string>(), hosts: new Map() }),
  });
}

test('the caching resolver\'s MX lists are pruned at the gateway (by name or by an address it resolves to) and below', async () => {
  const r = resolver();
  const self = selfIdentity('relay.isp.example', [{ host: '127.0.0.1', port: 25 }]);
  // [route hosts, ip:port left or the error]
  const cases: Array<[string, string[] | string]> = [
    ['cust1.dom', ['127.0.0.40:25']],
    ['only.example', '554 5.4.6 mail for only.example loops back to myself'],
    ['alias.example', '554 5.4.6 mail for alias.example loops back to myself'],
    ['better.example', ['127.0.0.40:25']],
    ['tie.example', '554 5.4.6 mail for tie.example loops back to myself'],
    ['noloop.example', ['127.0.0.40:25', '127.0.0.43:25']],
    ['selfa.example', '554 5.4.6 mail for selfa.example loops back to myself'],
    ['alias.example:2525', ['127.0.0.1:2525', '127.0.0.40:2525']],
    ['only.example,cust1.dom', ['127.0.0.40:25']],
  ];
  for (const [hosts, want] of cases) {
    const got = await expandHosts(parseHosts(hosts), r, self).then(
      (targets) => targets.map((t) => `${t.ip}:${t.port}`),
      (err: MailError) => `${err.code} ${err.enhanced} ${err.message}`,
    );
    assert.deepEqual(got, want, hosts);
  }
});

test('records after the gateway\'s own preference are never looked up', async () => {
  const r = resolver();
  const from = dns.queries.length;
  await expandHosts(parseHosts('cust1.dom'), r, selfIdentity('relay.isp.example', []));
  assert.ok(dns.queries.slice(from).includes('MX cust1.dom'));
  assert.ok(!dns.queries.slice(from).some((q) => q.endsWith(' mx3.cust1.dom') || q.endsWith(' relay.isp.example')), dns.queries.slice(from).join(', '));
});

test('a gateway whose MX lists lead back to itself bounces with 5.4.6 instead of looping; a better MX still gets the mail [needs the resolver wiring]', { timeout: 90_000 }, async () => {
  const lan = await startSink();
  const backup = await startSink();
  const closed = await closedPort();
  let mailertable = '';
  const routes = (selfPort: number) => [
    `loop.example esmtp:loop.example:${closed}`,
    `backup.example esmtp:backup.example:${backup.port}`,
    ...(selfPort ? [`byaddr.example esmtp:byaddr.example:${selfPort}`] : []),
    '',
  ].join('\n');
  await gateway({}, (dir) => {
    mailertable = path.join(dir, 'mailertable');
    writeFileSync(mailertable, routes(0));
    return {
      deliveryMode: 'background',
      lanNetworks: ['127.0.0.1/32'],
      smtp: { listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'] },
      routes: [{ domain: 'office.example', relay: `[127.0.0.1]:${lan.port}` }],
      mailertable,
      dns: { upstream: [`127.0.0.3:${dns.port}`] },
      link: { mode: 'permanent' },
      queue: { minQueueAge: '0s' },
    };
  }, async (d, config) => {
    // the daemon's own port is known only now: a route that reaches it by address
    writeFileSync(mailertable, routes(d.port));
    d.proc.kill('SIGHUP');
    await d.waitLog((l) => l.msg === 'routes reloaded' && l.reason === 'SIGHUP', 'reload');

    assert.equal((await sendMail(d.port, 'alice@office.example', ['bob@backup.example'], 'Subject: backup\r\n\r\nx\r\n')).code, 250);
    await backup.waitMessages(1);
    assert.deepEqual(backup.messages[0].to, ['bob@backup.example'], 'the better MX is used');

    assert.equal((await sendMail(d.port, 'alice@office.example', ['carol@loop.example'], 'Subject: by name\r\n\r\nx\r\n')).code, 250);
    await lan.waitMessages(1, 30_000);
    assert.equal((await sendMail(d.port, 'alice@office.example', ['dave@byaddr.example'], 'Subject: by address\r\n\r\nx\r\n')).code, 250);
    await lan.waitMessages(2, 30_000);
    const dsns = lan.messages.map((m) => m.body);
    for (const [i, domain] of [[0, 'loop.example'], [1, 'byaddr.example']] as const) {
      assert.match(dsns[i], /Status: 5\.4\.6/, domain);
      assert.match(dsns[i], new RegExp(`mail for ${domain.replace('.', '\\.')} loops back to myself`), domain);
    }
    assert.equal(lan.messages.every((m) => m.from === ''), true, 'bounces, with the null sender');
    const q = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout) as { total: number };
    assert.equal(q.total, 0, 'nothing is left going round');
  }, [lan, backup]);
});
