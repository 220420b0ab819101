/**
 * sendmail's classic files, parsed as text (pure): mailertable, class files
 * (with `.dom` entries), authinfo and the per-class recipient lists
 * (classes.NAME.recipients, issue 15).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAuthinfo, parseClassFile, parseMailertable, parseRecipientList } from '../../src/config/classic-files.js';
import { parseConfigText } from '../../src/config/load.js';

test('parseMailertable() reads sendmail mailertable lines', () => {
  const { entries, problems } = parseMailertable(`# comment
office.example   relay:[192.168.1.10]
.example.com     esmtp:[ext-mta.example.com]
backup.com       esmtp:secondary-mta.example.net
.                relay:[primary.mta.example.com],[backup1.mta.example.com]:587,[backup2.mta.example.com]
cust1.dom qsmtp:[cust1-gw.isp.example]
`, 'mt');
  assert.deepEqual(problems, []);
  assert.deepEqual(entries.map((e) => [e.key, e.mailer, e.hosts, e.line]), [
    ['office.example', 'relay', '[192.168.1.10]', 2],
    ['.example.com', 'esmtp', '[ext-mta.example.com]', 3],
    ['backup.com', 'esmtp', 'secondary-mta.example.net', 4],
    ['.', 'relay', '[primary.mta.example.com],[backup1.mta.example.com]:587,[backup2.mta.example.com]', 5],
    ['cust1.dom', 'qsmtp', '[cust1-gw.isp.example]', 6],
  ]);
});

test('parseMailertable() reports bad lines with file:line and keeps the good ones', () => {
  const { entries, problems } = parseMailertable('good.example relay:[10.0.0.1]\nbad.example local:x\nno-value.example\nx..y relay:[a]\nz.example relay:[a] extra\n', '/etc/mt');
  assert.equal(entries.length, 1);
  assert.deepEqual(problems.map((p) => `${p.file}:${p.line}`), ['/etc/mt:2', '/etc/mt:3', '/etc/mt:4', '/etc/mt:5']);
  assert.match(problems[0].message, /unknown mailer "local"/);
});

test('parseClassFile() reads one domain a line with comments', () => {
  const { entries, problems } = parseClassFile('# CustDoms\ncust1.dom\nCUST2.dom   # second\n\nbad_domain!\n', '/etc/CustDoms');
  assert.deepEqual(entries, ['cust1.dom', 'cust2.dom']);
  assert.deepEqual(problems, [{ file: '/etc/CustDoms', line: 5, message: 'invalid domain "bad_domain!"' }]);
});

test('parseAuthinfo() reads sendmail AuthInfo entries', () => {
  const { entries, problems } = parseAuthinfo(`AuthInfo:smtp.isp.example "U:office" "P:s3cret word" "M:PLAIN LOGIN"
AuthInfo:10.0.0.1 "U:x" "P=cGFzcw==" "T:plain"
AuthInfo:bad.example "U:nopass"
something else
`, '/etc/authinfo');
  assert.equal(entries.length, 2);
  assert.deepEqual(entries[0], { host: 'smtp.isp.example', user: 'office', password: 's3cret word', mechanisms: ['PLAIN', 'LOGIN'], allowPlaintext: false, line: 1 });
  assert.equal(entries[1].password, 'pass');
  assert.equal(entries[1].allowPlaintext, true);
  assert.deepEqual(problems.map((p) => p.line), [3, 4]);
});

test('parseRecipientList() reads user@domain and @domain lines with comments, in lower case', () => {
  const { entries, problems } = parseRecipientList([
    '# customers of cust1.dom (relay_recipient_maps)',
    'Alice@Cust1.Dom',
    'bob@cust1.dom   # bob',
    '@Cust2.Dom',
    'carol@cust1.dom. dave@cust1.dom',
    '',
    'nobody',
    '@',
    'a b@cust1.dom',
    '@bad_domain!',
  ].join('\n'), '/etc/quietlink/CustDoms.rcpt');
  assert.deepEqual(entries, ['alice@cust1.dom', 'bob@cust1.dom', '@cust2.dom', 'carol@cust1.dom', 'dave@cust1.dom', 'b@cust1.dom'], 'several words a line, as in a class file');
  assert.deepEqual(problems.map((p) => [p.line, p.message]), [
    [7, 'invalid recipient "nobody" (use user@domain or @domain)'],
    [8, 'invalid recipient "@" (use user@domain or @domain)'],
    [9, 'invalid recipient "a" (use user@domain or @domain)'],
    [10, 'invalid recipient "@bad_domain!" (use user@domain or @domain)'],
  ]);
});

test('classes.NAME.recipients names the list file; the class file keeps ".dom" entries', () => {
  const c = parseConfigText('classes:\n  CustDoms: { domains: [cust1.dom], recipients: CustDoms.rcpt }\n', '/etc/quietlink/quietlink.yaml');
  assert.match(c.classes.CustDoms.recipients ?? '', /(^|\/)CustDoms\.rcpt$/, 'as written, or resolved against the configuration\'s folder');
  assert.deepEqual(parseClassFile('.Cust1.Dom.\n', 'f').entries, ['.cust1.dom']);
});
