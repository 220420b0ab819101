import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createIdGenerator, isQueueId, idTime, partId } from '../../src/queue/queue-id.js';
import { priority, precedenceClass, RETRY_FACTOR } from '../../src/queue/priority.js';
import { groupFor, splitByGroup } from '../../src/queue/groups.js';
import { matches, parseSelectorFlag, type Selection } from '../../src/queue/select.js';
import type { Envelope } from '../../src/queue/envelope.js';

test('queue IDs are unique, file-name safe and sort by arrival', () => {
  let t = 1_700_000_000_000;
  let r = 0;
  const next = createIdGenerator(() => t, () => (r = (r + 0.37) % 1));
  const ids = [];
  for (let i = 0; i < 2000; i++) {
    if (i % 500 === 0) t += 1;
    ids.push(next());
  }
  t -= 5; // the clock going back must not reorder
  ids.push(next());
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual([...ids].sort(), ids);
  for (const id of ids) assert.ok(isQueueId(id) && /^[0-9A-Z]+$/.test(id), id);
  assert.equal(idTime(ids[0]), 1_700_000_000_001);
  assert.equal(partId(ids[0], 2), `${ids[0]}-2`);
  assert.ok(isQueueId(partId(ids[0], 3)));
  assert.ok(!isQueueId('../etc/passwd'));
});

test('priority() follows sendmail: size, class, recipients, attempts', () => {
  const base = priority({ size: 1000, recipients: 1, class: 0, attempts: 0 });
  assert.equal(base, 1000 + 30_000);
  assert.equal(priority({ size: 1000, recipients: 1, class: 0, attempts: 2 }) - base, 2 * RETRY_FACTOR);
  assert.ok(priority({ size: 1000, recipients: 1, class: precedenceClass('bulk'), attempts: 0 }) > base);
  assert.ok(priority({ size: 1000, recipients: 1, class: precedenceClass('special-delivery'), attempts: 0 }) < base);
  assert.equal(precedenceClass(' Junk '), -100);
  assert.equal(precedenceClass('whatever'), 0);
});

test('groupFor() and splitByGroup() assign queue groups like QGRP: entries', () => {
  const groups = [
    { name: 'relayq', runners: 1, match: ['cust1.dom'], recipients: 2 },
    { name: 'subs', runners: 1, match: ['.sub.example', 'vip@x.example'] },
  ];
  assert.equal(groupFor('a@cust1.dom', groups), 'relayq');
  assert.equal(groupFor('a@other.cust1.dom', groups), 'mqueue');
  assert.equal(groupFor('a@deep.sub.example', groups), 'subs');
  assert.equal(groupFor('a@sub.example', groups), 'subs');
  assert.equal(groupFor('VIP@x.example', groups), 'subs');
  assert.equal(groupFor('a@x.example', groups), 'mqueue');
  const parts = splitByGroup(['1@cust1.dom', 'a@else.example', '2@cust1.dom', '3@cust1.dom'].map((address) => ({ address })), groups);
  assert.deepEqual(parts.map((p) => [p.group, p.recipients.map((r) => r.address)]), [
    ['relayq', ['1@cust1.dom', '2@cust1.dom']],
    ['relayq', ['3@cust1.dom']],
    ['mqueue', ['a@else.example']],
  ]);
});

function env(over: Partial<Envelope>): Envelope {
  return {
    version: 1, id: '1M84SX9NB000E5AW' as Envelope['id'], group: 'mqueue', sender: 'alice@office.example',
    recipients: [{ address: 'bob@seattle.example', state: 'pending' }], arrivalTime: new Date(0).toISOString(), size: 1,
    class: 0, priority: 0, attempts: 0, nextAttempt: null, bodyType: '7BIT', smtputf8: false, dsn: {}, client: { via: 'smtp' }, ...over,
  };
}

test('selectors match like sendmail -qR/-qS/-qI/-qG with ! negation', () => {
  const sel = (flags: Array<[string, string?]>, quarantined = false): Selection => ({
    quarantined,
    selectors: flags.map(([f, v]) => parseSelectorFlag(f, v)).filter((s): s is Exclude<typeof s, null | 'Q'> => s !== null && s !== 'Q'),
  });
  const e = env({});
  const cases: Array<[Selection, boolean, string]> = [
    [sel([['R', 'seattle']]), true, '-qR matches a recipient substring'],
    [sel([['Rseattle']]), true, '-qRseattle (joined)'],
    [sel([['!R', 'seattle']]), false, '-q!R negates'],
    [sel([['R', 'boston']]), false, '-qR without a match'],
    [sel([['!Rboston']]), true, '-q!Rboston'],
    [sel([['S', 'ALICE']]), true, '-qS is case-insensitive'],
    [sel([['I', '000E5']]), true, '-qI matches an ID substring'],
    [sel([['G', 'mqueue']]), true, '-qG names the group'],
    [sel([['G', 'relayq']]), false, '-qG other group'],
    [sel([['R', 'boston'], ['R', 'seattle']]), true, 'same kind ORs'],
    [sel([['R', 'seattle'], ['S', 'carol']]), false, 'different kinds AND'],
    [sel([], true), false, '-qQ shows only quarantined'],
  ];
  for (const [s, want, what] of cases) assert.equal(matches(s, e), want, what);
  assert.equal(matches(sel([], true), env({ quarantine: { reason: 'x', since: '' } })), true);
  assert.equal(matches(sel([]), env({ quarantine: { reason: 'x', since: '' } })), false, 'plain mailq hides quarantined');
  assert.equal(matches(sel([['R', 'seattle']]), env({ recipients: [{ address: 'bob@seattle.example', state: 'delivered' }] })), false, 'delivered recipients do not match');
});
