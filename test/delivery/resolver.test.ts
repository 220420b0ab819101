/**
 * expandHosts() through the Resolver interface (a test zone, no sockets):
 * [host], IP literals, MX order, null MX, and the loop rule (SPEC §9, issue
 * 15): MX records naming the gateway and all worse ones pruned, 5.4.6 when
 * nothing is left. The real caching resolver runs in test/security/loops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expandHosts, selfIdentity, type Resolver } from '../../src/delivery/resolver.js';
import { parseHosts } from '../../src/routing/route.js';
import { MailError } from '../../src/errors.js';

/** A test zone served through the resolver interface. */
function zone(mx: Record<string, Array<[number, string]>>, a: Record<string, string[]>): Resolver & { queries: string[] } {
  const queries: string[] = [];
  return {
    queries,
    async resolveMx(d) {
      queries.push(`MX ${d}`);
      if (!(d in mx) && !(d in a)) throw new MailError(550, '5.1.2', `Host or domain name not found: ${d}`);
      return (mx[d] ?? []).map(([priority, exchange]) => ({ priority, exchange }));
    },
    async resolveAddresses(h) {
      queries.push(`A ${h}`);
      if (!(h in a)) throw new MailError(550, '5.1.2', `Host or domain name not found: ${h}`);
      return a[h];
    },
  };
}

test('[host] is its address with no MX lookup; a bare host is its MX by preference', async () => {
  const z = zone({ 'far.example': [[20, 'mx2.far.example'], [10, 'mx1.far.example']], 'mx.example': [[5, 'mx1.far.example']] }, {
    'mx1.far.example': ['127.0.0.11'], 'mx2.far.example': ['127.0.0.12'], 'relay.example': ['127.0.0.20'], 'mx.example': ['127.0.0.99'],
  });
  assert.deepEqual(await expandHosts(parseHosts('[relay.example]:2525'), z), [{ name: 'relay.example', ip: '127.0.0.20', port: 2525 }]);
  assert.deepEqual(z.queries, ['A relay.example']);
  assert.deepEqual((await expandHosts(parseHosts('far.example'), z)).map((t) => t.ip), ['127.0.0.11', '127.0.0.12']);
  assert.deepEqual((await expandHosts(parseHosts('mx.example'), z)).map((t) => t.ip), ['127.0.0.11'], 'MX, not the A record of the name');
});

test('an IP literal needs no lookup at all', async () => {
  const z = zone({}, {});
  assert.deepEqual(await expandHosts(parseHosts('[127.0.0.5]:25,127.0.0.6'), z), [
    { name: '127.0.0.5', ip: '127.0.0.5', port: 25 },
    { name: '127.0.0.6', ip: '127.0.0.6', port: 25 },
  ]);
  assert.deepEqual(z.queries, []);
});

test('no MX: the domain itself (RFC 5321 §5.1); null MX: permanent failure', async () => {
  const z = zone({ 'plain.example': [], 'nullmx.example': [[0, '.']] }, { 'plain.example': ['127.0.0.7'] });
  assert.deepEqual((await expandHosts(parseHosts('plain.example'), z)).map((t) => t.ip), ['127.0.0.7']);
  await assert.rejects(expandHosts(parseHosts('nullmx.example'), z), (e: MailError) => e.code === 556 && e.enhanced === '5.1.10');
  await assert.rejects(expandHosts(parseHosts('nowhere.example'), z), (e: MailError) => e.code === 550);
});

const SELF_ZONE = zone({
  'loop.example': [[10, 'gw.office.example']],
  'backup.example': [[10, 'mx1.backup.example'], [20, 'gw.office.example'], [30, 'mx3.backup.example']],
  'alias.example': [[10, 'mx1.alias.example'], [10, 'other-name-of-gw.example'], [20, 'mx3.alias.example']],
  'byaddr.example': [[5, 'mx1.byaddr.example'], [10, 'ours.byaddr.example'], [15, 'mx3.byaddr.example']],
  'otherport.example': [[10, 'ours.byaddr.example']],
  'down.example': [[10, 'broken.down.example'], [20, 'gw.office.example']],
  'v6.example': [[10, 'v6.mx.example']],
  'plainself.example': [],
}, {
  'gw.office.example': ['192.0.2.1'],
  'mx1.backup.example': ['127.0.0.11'], 'mx3.backup.example': ['127.0.0.13'],
  'mx1.alias.example': ['127.0.0.21'], 'other-name-of-gw.example': ['127.0.0.50', '192.0.2.1'], 'mx3.alias.example': ['127.0.0.23'],
  'mx1.byaddr.example': ['127.0.0.31'], 'ours.byaddr.example': ['192.0.2.2'], 'mx3.byaddr.example': ['127.0.0.33'],
  'v6.mx.example': ['2001:db8::25'],
  'plainself.example': ['192.0.2.1'],
});

test('MX records naming the gateway, and every one of the same or a worse preference, are pruned', async () => {
  const self = { names: new Set(['gw.office.example']), addresses: new Set(['192.0.2.1', '192.0.2.2:25', '[2001:db8::25]:25']) };
  // [route hosts, targets left (ip:port) or the error's code and enhanced code]
  const cases: Array<[string, string[] | string]> = [
    ['backup.example', ['127.0.0.11:25']],
    ['mx1.backup.example', ['127.0.0.11:25']],
    ['alias.example', '554 5.4.6'],
    ['byaddr.example', ['127.0.0.31:25']],
    ['byaddr.example:2525', ['127.0.0.31:2525', '192.0.2.2:2525', '127.0.0.33:2525']],
    ['otherport.example:2525', ['192.0.2.2:2525']],
    ['otherport.example', '554 5.4.6'],
    ['loop.example', '554 5.4.6'],
    ['plainself.example', '554 5.4.6'],
    ['v6.example', '554 5.4.6'],
    ['down.example', '554 5.4.6'], // the better MX does not exist: what is left is the gateway
    ['loop.example,backup.example', ['127.0.0.11:25']],
    ['[gw.office.example]', ['192.0.2.1:25']],
    ['[192.0.2.1]', ['192.0.2.1:25']],
  ];
  for (const [hosts, want] of cases) {
    const got = await expandHosts(parseHosts(hosts), SELF_ZONE, self).then(
      (targets) => targets.map((t) => `${t.ip}:${t.port}`),
      (err: MailError) => `${err.code} ${err.enhanced}`,
    );
    assert.deepEqual(got, want, hosts);
  }
  const loop = await expandHosts(parseHosts('alias.example'), SELF_ZONE, self).catch((e: MailError) => e);
  assert.equal((loop as MailError).message, 'mail for alias.example loops back to myself');
  assert.equal((loop as MailError).isTemporary, false);
});

test('without a self identity nothing is pruned (the default until the daemon passes one)', async () => {
  assert.deepEqual((await expandHosts(parseHosts('backup.example'), SELF_ZONE)).map((t) => t.ip), ['127.0.0.11', '192.0.2.1', '127.0.0.13']);
});

test('a better MX that cannot be looked up now defers; it never turns into a loop bounce', async () => {
  const z = zone({ 'temp.example': [[10, 'slow.temp.example'], [20, 'gw.office.example']] }, {});
  const flaky: Resolver = {
    resolveMx: z.resolveMx,
    async resolveAddresses(h) {
      if (h === 'slow.temp.example') throw new MailError(451, '4.4.3', 'DNS timeout');
      return z.resolveAddresses(h);
    },
  };
  const self = { names: new Set(['gw.office.example']), addresses: new Set<string>() };
  await assert.rejects(expandHosts(parseHosts('temp.example'), flaky, self), (e: MailError) => e.code === 451);
});

test('selfIdentity(): the hostname, and each listener as ip:port; a wildcard listener is every interface address', () => {
  const s = selfIdentity('GW.Office.Example.', [{ host: '127.0.0.1', port: 2525 }, { host: '0.0.0.0', port: 25 }, { host: '::1', port: 25 }], {
    lo: [{ address: '127.0.0.1' }, { address: '::1' }],
    eth0: [{ address: '192.168.1.1' }, { address: 'fe80::1%eth0' }],
  });
  assert.deepEqual([...s.names], ['gw.office.example']);
  assert.deepEqual([...s.addresses].sort(), ['127.0.0.1:25', '127.0.0.1:2525', '192.168.1.1:25', '[::1]:25', '[fe80::1]:25'].sort());
});
