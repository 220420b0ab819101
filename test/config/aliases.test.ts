/**
 * The aliases file and masquerade, as tables: parseAliases() (format,
 * continuation lines, comments, refused targets with file:line),
 * expandRecipient() (local names, recursion, loops, depth), and the
 * masquerade of local submissions (qualifyAddressList(),
 * prepareLocalSubmission()).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aliasMap, expandRecipient, localPartOf, MAX_DEPTH, parseAliases } from '../../src/config/aliases.js';
import { composeLocalSubmission, prepareLocalSubmission, qualifyAddressList } from '../../src/intake/local-submission.js';

const FILE = '/etc/quietlink/aliases';
const parse = (text: string) => parseAliases(text, FILE);

test('parseAliases() reads names, lists, continuation lines and comments; names are case-insensitive', () => {
  const { entries, problems } = parse([
    '# See aliases(5)',
    'Root:  admin@office.example',
    'staff: alice, bob@office.example,',
    '       carol@far.example,',
    '   # a comment inside a continued list',
    '\tdave',
    '',
    'webmaster: \\webmaster, "Jane Doe" <jane@office.example>',
    'postmaster : root\r',
  ].join('\n'));
  assert.deepEqual(problems, []);
  assert.deepEqual(entries.map((e) => [e.name, e.line, e.targets.map((t) => `${t.final ? '\\' : ''}${t.address}`)]), [
    ['root', 2, ['admin@office.example']],
    ['staff', 3, ['alice', 'bob@office.example', 'carol@far.example', 'dave']],
    ['webmaster', 8, ['\\webmaster', 'jane@office.example']],
    ['postmaster', 9, ['root']],
  ]);
});

test('parseAliases() refuses :include:, commands, files and bad syntax with file:line and a reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['root: :include:/etc/mail/staff', /":include:" lists are not supported/],
    ['root: "|/usr/bin/procmail"', /delivery to a command is not supported/],
    ['root: |/usr/bin/vacation root', /delivery to a command is not supported/],
    ['root: /var/mail/root', /delivery to a file is not supported/],
    ['root admin@office.example', /expected "name: address, \.\.\."/],
    ['root:', /alias "root" has no address/],
    ['root@gw.example: admin', /must be a local name, without @/],
    ['root: admin # the admin', /invalid address "admin # the admin"/],
    ['root: not valid@x..example', /invalid address/],
    ['root: \\admin@office.example', /"\\" marks a local name/],
    ['  admin@office.example', /continuation line with no alias before it/],
  ];
  for (const [text, message] of cases) {
    const { problems } = parse(`# header\n${text}\n`);
    assert.equal(problems.length, 1, text);
    assert.equal(problems[0].file, FILE);
    assert.equal(problems[0].line, 2, text);
    assert.match(problems[0].message, message, text);
  }
  const twice = parse('root: a\nROOT: b\n').problems;
  assert.deepEqual(twice.map((p) => [p.line, p.message]), [[2, 'alias "ROOT" is defined twice (first at line 1)']]);
});

test(`parseAliases() refuses nesting deeper than ${MAX_DEPTH} at the line of the name; loops are no error`, () => {
  const chain = Array.from({ length: MAX_DEPTH + 2 }, (_, i) => `a${i}: a${i + 1}`).join('\n');
  const deep = parse(`${chain}\n`).problems;
  assert.equal(deep[0].line, 1);
  assert.match(deep[0].message, /alias "a0" nests more than 10 deep \(a0 -> a1 -> /);
  assert.deepEqual(parse(`${Array.from({ length: MAX_DEPTH }, (_, i) => `a${i}: a${i + 1}`).join('\n')}\n`).problems, []);
  assert.deepEqual(parse('a: b\nb: a, c@x.example\nroot: root, admin@x.example\n').problems, []);
});

test('localPartOf(): bare names and names at hostname or localhost are local; the masquerade domain is not', () => {
  const table: Array<[string, string | null]> = [
    ['root', 'root'],
    ['root@gw.office.example', 'root'],
    ['Root@GW.Office.Example', 'Root'],
    ['root@localhost', 'root'],
    ['root@office.example', null],
    ['root@far.example', null],
  ];
  for (const [address, local] of table) assert.equal(localPartOf(address, 'gw.office.example'), local, address);
});

test('expandRecipient(): aliases for local names, recursively; loops stop at the name; unaliased names get masquerade', () => {
  const { entries, problems } = parse([
    'root: admin, ops@far.example',
    'admin: alice@office.example, \\admin',
    'postmaster: root',
    'staff: alice, bob',
    'alice: alice@office.example',
    'loop1: loop2',
    'loop2: loop1, x@far.example',
    'self: self, y@far.example',
    'MixedCase: z@far.example',
    'local: root@localhost, root@gw.office.example',
  ].join('\n'));
  assert.deepEqual(problems, []);
  const map = aliasMap(entries);
  const names = { hostname: 'gw.office.example', masquerade: 'office.example' };
  const table: Array<[string, string[] | null]> = [
    ['root', ['alice@office.example', 'admin@office.example', 'ops@far.example']],
    ['ROOT@gw.office.example', ['alice@office.example', 'admin@office.example', 'ops@far.example']],
    ['postmaster@localhost', ['alice@office.example', 'admin@office.example', 'ops@far.example']],
    ['staff', ['alice@office.example', 'bob@office.example']],
    ['loop1', ['loop1@office.example', 'x@far.example']],
    ['self', ['self@office.example', 'y@far.example']],
    ['mixedcase', ['z@far.example']],
    ['local', ['alice@office.example', 'admin@office.example', 'ops@far.example']],
    ['nobody', ['nobody@office.example']],
    ['Nobody@localhost', ['Nobody@office.example']],
    // not local: as written, never aliased (the masquerade domain is the LAN mail server's)
    ['root@office.example', null],
    ['root@far.example', null],
  ];
  for (const [address, expected] of table) assert.deepEqual(expandRecipient(address, map, names), expected, address);
  assert.deepEqual(expandRecipient('root', aliasMap([]), { hostname: 'gw.example', masquerade: 'gw.example' }), ['root@gw.example']);
});

test('qualifyAddressList() qualifies bare local parts and keeps names, comments and groups as written', () => {
  const table: Array<[string, string]> = [
    [' root (Cron Daemon)', ' root@office.example (Cron Daemon)'],
    [' root', ' root@office.example'],
    [' Root <root>, bob@x.example, carl', ' Root <root@office.example>, bob@x.example, carl@office.example'],
    [' "Doe, Jane" <jane>', ' "Doe, Jane" <jane@office.example>'],
    [' "john doe"', ' "john doe"@office.example'],
    [' undisclosed-recipients:;', ' undisclosed-recipients:;'],
    [' team: a, b@x.example;, c', ' team: a@office.example, b@x.example;, c@office.example'],
    [' root,\r\n\tadmin (x, y)', ' root@office.example,\r\n\tadmin@office.example (x, y)'],
    [' <>', ' <>'],
    [' Cron Daemon', ' Cron Daemon'],
    [' a@x.example (root)', ' a@x.example (root)'],
  ];
  for (const [value, expected] of table) assert.equal(qualifyAddressList(value, 'office.example'), expected, JSON.stringify(value));
});

test('prepareLocalSubmission(): cron-like headers and envelope qualified with masquerade, -t recipients aliased, Bcc removed', () => {
  const aliases = aliasMap(parse('root: admin@office.example\n').entries);
  const expand = (a: string) => expandRecipient(a, aliases, { hostname: 'gw.office.example', masquerade: 'office.example' });
  const cron = prepareLocalSubmission({
    raw: Buffer.from('From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@gw> run-parts\n\noutput\n'),
    ignoreDots: true, extractRecipients: false, recipients: ['root'], masquerade: 'office.example', expandRecipient: expand,
  });
  assert.deepEqual(cron.recipients, ['admin@office.example']);
  assert.equal(cron.raw.toString(), 'From: root@office.example (Cron Daemon)\r\nTo: root@office.example\r\nSubject: Cron <root@gw> run-parts\r\n\r\noutput\r\n');
  const t = prepareLocalSubmission({
    raw: Buffer.from('To: root, far@far.example\nCc: Bob <bob>\nBcc: carl\nSubject: x\n\nbody\n.\nnot this\n'),
    ignoreDots: false, extractRecipients: true, recipients: [], masquerade: 'office.example', expandRecipient: expand,
  });
  assert.deepEqual(t.recipients, ['admin@office.example', 'far@far.example', 'bob@office.example', 'carl@office.example']);
  assert.equal(t.raw.toString(), 'To: root@office.example, far@far.example\r\nCc: Bob <bob@office.example>\r\nSubject: x\r\n\r\nbody\r\n');
  // submit.ts runs composeLocalSubmission() on the prepared text: it adds headers and changes nothing else
  const composed = composeLocalSubmission({
    raw: cron.raw, ignoreDots: true, extractRecipients: false, recipients: cron.recipients, sender: 'cron@office.example',
    hostname: 'gw.office.example', id: 'ID1', now: Date.UTC(2026, 10, 23, 8),
  });
  assert.deepEqual(composed.recipients, ['admin@office.example']);
  assert.equal(composed.body.toString(), 'From: root@office.example (Cron Daemon)\r\nTo: root@office.example\r\nSubject: Cron <root@gw> run-parts\r\n'
    + 'Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <ID1@gw.office.example>\r\n\r\noutput\r\n');
});
