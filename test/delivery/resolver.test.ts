import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expandHosts, type Resolver } from '../../src/delivery/resolver.js';
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
