/**
 * route() (SPEC §3), pure: the mailertable lookup order, smartHost and MX,
 * the link default of each host, hold classes (exact class entries, issue
 * 15) and mayAttempt(). Tables of cases; no I/O.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRouteTable, lookupKeys, parseHosts, route } from '../../src/routing/route.js';
import { mayAttempt, type AttemptPolicy } from '../../src/routing/may-attempt.js';
import { parseMailertable } from '../../src/config/classic-files.js';
import { parseConfigText } from '../../src/config/load.js';
import { parseHosts as parseHostsFile } from '../../src/dns/hosts-file.js';

const MAILERTABLE = `office.example   relay:[192.168.1.10]
.example.com     esmtp:[ext-mta.example.com]
backup.com       esmtp:secondary-mta.example.net
cust1.dom        qsmtp:[cust1-gw.isp.example]
.                relay:[primary.mta.example.com],[backup1.mta.example.com]:587,[backup2.mta.example.com]
`;

function table(extra = '', mailertable = MAILERTABLE, hostsFile = '') {
  const config = parseConfigText(`lanNetworks: [192.168.1.0/24]\nclasses:\n  CustDoms: { domains: [cust1.dom, cust2.dom] }\n${extra}`, '/etc/q.yaml');
  return buildRouteTable(config, parseMailertable(mailertable, 'mt').entries, new Map([['CustDoms', new Set(config.classes.CustDoms.domains)]]), parseHostsFile(hostsFile));
}

test('lookupKeys() goes a.b.c, .b.c, .c, .', () => {
  assert.deepEqual(lookupKeys('A.B.C'), ['a.b.c', '.b.c', '.c', '.']);
});

test('route() follows the mailertable lookup order with "." as the default', () => {
  const t = table();
  const cases: Array<[string, string, string]> = [
    ['office.example', 'office.example', 'relay:[192.168.1.10]:25'],
    ['sub.office.example', '.', 'relay:[primary.mta.example.com]:25,[backup1.mta.example.com]:587,[backup2.mta.example.com]:25'],
    ['www.example.com', '.example.com', 'esmtp:[ext-mta.example.com]:25'],
    ['a.b.example.com', '.example.com', 'esmtp:[ext-mta.example.com]:25'],
    ['example.com', '.', 'relay:[primary.mta.example.com]:25,[backup1.mta.example.com]:587,[backup2.mta.example.com]:25'],
    ['backup.com', 'backup.com', 'esmtp:secondary-mta.example.net:25'],
  ];
  for (const [domain, key, nexthop] of cases) {
    const r = route(domain, t);
    assert.equal(r.key, key, domain);
    assert.equal(r.nexthop, nexthop, domain);
  }
  assert.equal(route('backup.com', t).hosts[0].mx, true, 'a bare host means an MX lookup');
  assert.equal(route('office.example', t).hosts[0].mx, false, '[host] means no MX lookup');
});

test('inline routes come before the file for the same key; a more specific file key wins', () => {
  const t = table('routes:\n  - { domain: office.example, esmtp: "[10.9.9.9]" }\n  - { domain: ".", relay: "[10.0.0.1]" }\n');
  assert.equal(route('office.example', t).via, 'routes');
  assert.equal(route('office.example', t).nexthop, 'esmtp:[10.9.9.9]:25');
  assert.equal(route('www.example.com', t).via, 'mailertable');
  assert.equal(route('anything.example', t).via, 'routes');
});

test('without a match: smartHost in order, else MX of the domain', () => {
  const smart = table('smartHost: ["[primary.isp.example]", "[backup.isp.example]:587"]\n', '');
  assert.equal(route('far.example', smart).via, 'smartHost');
  assert.deepEqual(route('far.example', smart).hosts.map((h) => `${h.host}:${h.port}`), ['primary.isp.example:25', 'backup.isp.example:587']);
  const mx = table('', '');
  const r = route('far.example', mx);
  assert.equal(r.via, 'mx');
  assert.deepEqual(r.hosts, [{ host: 'far.example', port: 25, mx: true }]);
});

test('without dns.hosts, link is true unless every host is an address inside lanNetworks; qsmtp and hold classes', () => {
  const t = table();
  assert.equal(route('office.example', t).link, false);
  assert.equal(route('www.example.com', t).link, true);
  assert.equal(route('far.example', table('', '')).link, true, 'MX needs the link');
  const held = route('cust1.dom', t);
  assert.deepEqual([held.mailer, held.expensive, held.holdUntilEtrn, held.nexthop], ['qsmtp', true, true, 'qsmtp:[cust1-gw.isp.example]:25']);
  const heldCust2 = route('cust2.dom', t);
  assert.deepEqual([heldCust2.mailer, heldCust2.holdUntilEtrn, heldCust2.via], ['qsmtp', true, 'mx'], 'a held domain never takes the "." default');
  const sub = route('mail.cust2.dom', t);
  assert.deepEqual([sub.mailer, sub.holdUntilEtrn, sub.via], ['relay', false, 'mailertable'], 'an unlisted subdomain of a hold domain is not held (class entries match exactly)');
});

test('parseHosts() reads [host], host, :port and IPv6 literals', () => {
  assert.deepEqual(parseHosts('[10.0.0.1]:2525,mx.example,[IPv6:::1]'), [
    { host: '10.0.0.1', port: 2525, mx: false },
    { host: 'mx.example', port: 25, mx: true },
    { host: '::1', port: 25, mx: false },
  ]);
});

test('mayAttempt() follows deliveryMode, HoldExpensive and hold until ETRN', () => {
  const t = table();
  const lan = route('office.example', t);
  const wan = route('www.example.com', t);
  const held = route('cust1.dom', t);
  const expensive = { ...wan, expensive: true };
  const p = (deliveryMode: AttemptPolicy['deliveryMode'], extra: Partial<AttemptPolicy> = {}): AttemptPolicy => ({ deliveryMode, holdExpensive: false, linkAvailable: true, ...extra });
  const intake = { kind: 'intake' } as const;
  const cases: Array<[boolean, boolean, string]> = [
    [mayAttempt(lan, intake, p('deferred')), true, 'deferred: LAN at once'],
    [mayAttempt(wan, intake, p('deferred')), false, 'deferred: link route waits'],
    [mayAttempt(wan, intake, p('background')), true, 'background: link route at once'],
    [mayAttempt(wan, intake, p('background', { linkAvailable: false })), false, 'background: not without the link'],
    [mayAttempt(lan, intake, p('queue')), false, 'queue: nothing at intake'],
    [mayAttempt(wan, intake, p('interactive')), true, 'interactive'],
    [mayAttempt(expensive, intake, p('interactive', { holdExpensive: true })), false, 'HoldExpensive'],
    [mayAttempt(expensive, { kind: 'run' }, p('deferred', { holdExpensive: true })), true, 'expensive on a run'],
    [mayAttempt(held, { kind: 'run' }, p('deferred')), false, 'held: runs pass it by'],
    [mayAttempt(held, { kind: 'flush', names: false }, p('deferred')), false, 'held: a plain flush passes it by'],
    [mayAttempt(held, { kind: 'flush', names: true }, p('deferred')), true, 'held: a flush naming it'],
    [mayAttempt(held, { kind: 'etrn' }, p('deferred')), true, 'held: ETRN'],
  ];
  for (const [got, want, what] of cases) assert.equal(got, want, what);
});

const HOSTS_FILE = `192.168.1.20   mailhost.office.example mailhost
203.0.113.7    dmz.office.example
192.168.1.21   two.office.example
203.0.113.8    two.office.example
192.168.1.22   v6.office.example
fd00::22       v6.office.example
`;

test('link follows what each host is: IP literal or dns.hosts name inside lanNetworks, else the link; an explicit link: wins', () => {
  // [relay hosts of an inline route for lan.test, its explicit link: (or none), link, linkReason]
  const cases: Array<[string, boolean | undefined, boolean, string]> = [
    ['[192.168.1.10]', undefined, false, '[192.168.1.10] is inside lanNetworks'],
    ['192.168.1.10:2525', undefined, false, '[192.168.1.10] is inside lanNetworks'],
    ['[203.0.113.5]', undefined, true, '[203.0.113.5] is outside lanNetworks'],
    ['[mailhost.office.example]', undefined, false, 'mailhost.office.example is 192.168.1.20 (dns.hosts), inside lanNetworks'],
    ['[MailHost.Office.Example.]:2525', undefined, false, 'MailHost.Office.Example. is 192.168.1.20 (dns.hosts), inside lanNetworks'],
    ['mailhost.office.example', undefined, false, 'mailhost.office.example is 192.168.1.20 (dns.hosts), inside lanNetworks'],
    ['mailhost', undefined, false, 'mailhost is 192.168.1.20 (dns.hosts), inside lanNetworks'],
    ['[dmz.office.example]', undefined, true, 'dmz.office.example is 203.0.113.7 (dns.hosts), 203.0.113.7 is outside lanNetworks'],
    ['[two.office.example]', undefined, true, 'two.office.example is 192.168.1.21 and 203.0.113.8 (dns.hosts), 203.0.113.8 is outside lanNetworks'],
    ['[v6.office.example]', undefined, true, 'v6.office.example is 192.168.1.22 and fd00::22 (dns.hosts), fd00::22 is outside lanNetworks'],
    ['[smarthost.isp.example]', undefined, true, 'smarthost.isp.example needs a DNS lookup over the link'],
    ['other.isp.example', undefined, true, 'other.isp.example needs an MX lookup over the link'],
    ['[192.168.1.10],[mailhost.office.example]', undefined, false, '[192.168.1.10] is inside lanNetworks; mailhost.office.example is 192.168.1.20 (dns.hosts), inside lanNetworks'],
    ['[192.168.1.10],[smarthost.isp.example],[203.0.113.5]', undefined, true, 'smarthost.isp.example needs a DNS lookup over the link'],
    ['[smarthost.isp.example]', false, false, 'set by the route (link: false)'],
    ['[mailhost.office.example]', true, true, 'set by the route (link: true)'],
  ];
  for (const [hosts, link, wantLink, wantReason] of cases) {
    const t = table(`routes:\n  - { domain: lan.test, relay: "${hosts}"${link === undefined ? '' : `, link: ${link}`} }\n`, '', HOSTS_FILE);
    const r = route('lan.test', t);
    assert.deepEqual([r.link, r.linkReason], [wantLink, wantReason], `${hosts} link: ${link}`);
  }
});

test('the same link rule holds for mailertable entries, smartHost and the MX of an unrouted domain', () => {
  const mt = 'office.example relay:[mailhost.office.example]\nfar.example esmtp:[dmz.office.example]\nbare.example relay:mailhost\n';
  const t = table('', mt, HOSTS_FILE);
  const cases: Array<[string, string, boolean, string]> = [
    ['office.example', 'mailertable', false, 'mailhost.office.example is 192.168.1.20 (dns.hosts), inside lanNetworks'],
    ['far.example', 'mailertable', true, 'dmz.office.example is 203.0.113.7 (dns.hosts), 203.0.113.7 is outside lanNetworks'],
    ['bare.example', 'mailertable', false, 'mailhost is 192.168.1.20 (dns.hosts), inside lanNetworks'],
    ['mailhost.office.example', 'mx', false, 'mailhost.office.example is 192.168.1.20 (dns.hosts), inside lanNetworks'],
    ['elsewhere.example', 'mx', true, 'elsewhere.example needs an MX lookup over the link'],
  ];
  for (const [domain, via, link, reason] of cases) {
    const r = route(domain, t);
    assert.deepEqual([r.via, r.link, r.linkReason], [via, link, reason], domain);
  }
  const lanSmart = route('far.example', table('smartHost: ["[mailhost.office.example]", "[192.168.1.11]:587"]\n', '', HOSTS_FILE));
  assert.deepEqual([lanSmart.via, lanSmart.link, lanSmart.linkReason], ['smartHost', false, 'mailhost.office.example is 192.168.1.20 (dns.hosts), inside lanNetworks; [192.168.1.11] is inside lanNetworks']);
  const wanSmart = route('far.example', table('smartHost: ["[smarthost.isp.example]"]\n', '', HOSTS_FILE));
  assert.deepEqual([wanSmart.via, wanSmart.link, wanSmart.linkReason], ['smartHost', true, 'smarthost.isp.example needs a DNS lookup over the link']);
  const noHostsFile = route('office.example', table('', mt));
  assert.deepEqual([noHostsFile.link, noHostsFile.linkReason], [true, 'mailhost.office.example needs a DNS lookup over the link'], 'without dns.hosts a name needs the link');
});
