/**
 * Class semantics (SPEC §9 "Backscatter", issue 15): a domain in a hold
 * class or in smtp.localDomains matches only itself unless the class or
 * the list has `.dom` (then dom and its subdomains). One table, asked of
 * every place that matches: the class matcher, the relay policy (from
 * outside), the hold decision of route() and the ETRN server's node check.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchesClass, parseClassFile } from '../../src/config/classic-files.js';
import { parseConfigText } from '../../src/config/load.js';
import { inDomainSet, mayRelay, openDomainsOf } from '../../src/intake/relay-policy.js';
import { buildRouteTable, isHeld, route } from '../../src/routing/route.js';
import { parseEtrnArgument, targetAllowed } from '../../src/etrn/etrn-server.js';
import { NetworkList } from '../../src/config/cidr.js';
import { ConfigError } from '../../src/errors.js';

/** [class entries as written, domain, matches] */
const CASES: Array<[string[], string, boolean]> = [
  [['cust1.dom'], 'cust1.dom', true],
  [['cust1.dom'], 'CUST1.DOM', true],
  [['cust1.dom'], 'cust1.dom.', true],
  [['cust1.dom'], 'nosuch.cust1.dom', false],
  [['cust1.dom'], 'a.b.cust1.dom', false],
  [['cust1.dom'], 'xcust1.dom', false],
  [['cust1.dom'], 'cust1.dom.evil.example', false],
  [['cust1.dom'], 'dom', false],
  [['.cust1.dom'], 'cust1.dom', true],
  [['.cust1.dom'], 'sub.cust1.dom', true],
  [['.cust1.dom'], 'A.B.Cust1.Dom', true],
  [['.cust1.dom'], 'sub.cust1.dom.', true],
  [['.cust1.dom'], 'xcust1.dom', false],
  [['.cust1.dom'], 'cust1.dom.evil.example', false],
  [['office.example'], 'gw.office.example', false],
  [['office.example'], 'sub.office.example', false],
  [['Office.Example.'], 'office.example', true],
  [['.office.example', 'far.example'], 'gw.office.example', true],
  [['.office.example', 'far.example'], 'mx.far.example', false],
  [['cust1.dom'], '', false],
  [['cust1.dom'], '[127.0.0.1]', false],
];

test('matchesClass(): "dom" is that domain only, ".dom" adds its subdomains', () => {
  for (const [entries, domain, want] of CASES) {
    const set = new Set(entries.map((e) => e.toLowerCase().replace(/\.$/, '')));
    assert.equal(matchesClass(domain, set), want, `${entries.join(',')} ∋ ${domain}`);
  }
});

test('the relay policy, route() holds and ETRN agree with the class table', () => {
  const outside = { clientIp: '203.0.113.9', authenticated: false };
  for (const [entries, domain, want] of CASES) {
    const what = `${entries.join(',')} ∋ ${domain}`;
    const classes = new Map([['CustDoms', new Set(entries)]]);
    const asLocal = { mynetworks: new NetworkList(['192.168.1.0/24']), openDomains: openDomainsOf(entries, [], new Map()) };
    const asHold = { mynetworks: asLocal.mynetworks, openDomains: openDomainsOf([], ['CustDoms'], classes) };
    assert.equal(mayRelay({ ...outside, recipientDomain: domain }, asLocal), want, `localDomains ${what}`);
    assert.equal(mayRelay({ ...outside, recipientDomain: domain }, asHold), want, `hold class ${what}`);
    assert.equal(inDomainSet(domain, asHold.openDomains), want, `inDomainSet ${what}`);
    const config = parseConfigText('classes:\n  CustDoms: {}\n', '/etc/q.yaml');
    const table = buildRouteTable(config, [], classes);
    assert.equal(isHeld(domain, table.holdDomains), want, `isHeld ${what}`);
    if (domain && !domain.startsWith('[')) {
      assert.equal(route(domain, table).holdUntilEtrn, want, `route ${what}`);
      const etrn = parseEtrnArgument(domain.replace(/\.$/, ''));
      assert.ok(etrn, domain);
      assert.equal(targetAllowed(etrn, table.holdDomains, []), want, `ETRN ${what}`);
    }
  }
});

test('from the LAN or authenticated, any domain relays; from outside only the listed ones', () => {
  const policy = { mynetworks: new NetworkList(['127.0.0.1/32']), openDomains: openDomainsOf(['office.example'], ['CustDoms'], new Map([['CustDoms', new Set(['cust1.dom'])]])) };
  const cases: Array<[string, boolean, string, boolean]> = [
    ['127.0.0.1', false, 'sub.office.example', true],
    ['127.0.0.2', true, 'sub.office.example', true],
    ['127.0.0.2', false, 'sub.office.example', false],
    ['127.0.0.2', false, 'nosuch.cust1.dom', false],
    ['127.0.0.2', false, 'cust1.dom', true],
    ['::ffff:127.0.0.2', false, 'office.example', true],
  ];
  for (const [ip, auth, domain, want] of cases) assert.equal(mayRelay({ clientIp: ip, authenticated: auth, recipientDomain: domain }, policy), want, `${ip} ${auth} ${domain}`);
});

test('".dom" is accepted in localDomains, class domains and class files; "@dom" in a class is refused', () => {
  const c = parseConfigText('smtp:\n  localDomains: [Office.Example., .lan.example]\nclasses:\n  CustDoms: { domains: [.Cust1.Dom, cust2.dom.] }\n', '/etc/q.yaml');
  assert.deepEqual(c.smtp.localDomains, ['office.example', '.lan.example']);
  assert.deepEqual(c.classes.CustDoms.domains, ['.cust1.dom', 'cust2.dom']);
  for (const bad of ['classes:\n  CustDoms: { domains: ["@cust1.dom"] }\n', 'smtp:\n  localDomains: ["..office.example"]\n', 'smtp:\n  localDomains: ["."]\n']) {
    assert.throws(() => parseConfigText(bad, '/etc/q.yaml'), (e: ConfigError) => /invalid domain name/.test(e.message), bad);
  }
  const file = parseClassFile('cust1.dom\n.cust2.dom   # and its subdomains\n.\n', '/etc/CustDoms');
  assert.deepEqual(file.entries, ['cust1.dom', '.cust2.dom']);
  assert.deepEqual(file.problems.map((p) => p.line), [3]);
});
