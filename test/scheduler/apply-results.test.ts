import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyResults } from '../../src/scheduler/apply-results.js';
import { retryDelay, isDue } from '../../src/scheduler/next-attempt.js';
import { outcomeOf, enhancedCode } from '../../src/delivery/classify.js';
import type { Envelope } from '../../src/queue/envelope.js';

const T0 = Date.UTC(2026, 10, 23, 8);
const env = (over: Partial<Envelope> = {}): Envelope => ({
  version: 1, id: '1M84SX9NB000E5AW' as Envelope['id'], group: 'mqueue', sender: 'alice@office.example',
  recipients: [{ address: 'a@x.example', state: 'pending' }, { address: 'b@x.example', state: 'pending' }, { address: 'c@x.example', state: 'pending', notify: ['NEVER'] }],
  arrivalTime: new Date(T0).toISOString(), size: 100, class: 0, priority: 0, attempts: 0, nextAttempt: null,
  bodyType: '7BIT', smtputf8: false, dsn: {}, client: { via: 'smtp' }, ...over,
});
const clocks = (now: number) => ({ now, minQueueAge: 30 * 60_000, queueWarn: 4 * 3_600_000, queueReturn: 5 * 86_400_000 });

test('outcomeOf() and enhancedCode() classify replies', () => {
  assert.deepEqual([250, 251, 450, 421, 0, 550, 554].map(outcomeOf), ['delivered', 'delivered', 'deferred', 'deferred', 'deferred', 'failed', 'failed']);
  assert.equal(enhancedCode(550, '5.1.1 No such user'), '5.1.1');
  assert.equal(enhancedCode(550, 'No such user'), '5.0.0');
  assert.equal(enhancedCode(450, '5.1.1 mismatched class'), '4.0.0');
});

test('retryDelay() grows from minQueueAge and is capped', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => retryDelay(n, 30 * 60_000) / 60_000), [30, 60, 120, 240, 240, 240]);
  assert.equal(retryDelay(3, 0), 0);
  assert.equal(isDue(null, T0), true);
  assert.equal(isDue(new Date(T0 + 1).toISOString(), T0), false);
});

test('applyResults(): per-recipient states, notices as NOTIFY asks, next attempt', () => {
  const r = applyResults(env(), [
    { address: 'a@x.example', code: 250, text: '2.0.0 ok' },
    { address: 'b@x.example', code: 550, text: '5.1.1 unknown', relay: 'mx [127.0.0.1]' },
    { address: 'c@x.example', code: 550, text: '5.1.1 unknown' },
  ], clocks(T0));
  assert.deepEqual(r.env.recipients.map((x) => x.state), ['delivered', 'failed', 'failed']);
  assert.equal(r.done, true);
  assert.deepEqual(r.failed.map((n) => [n.address, n.status, n.remoteMta]), [['b@x.example', '5.1.1', 'mx [127.0.0.1]']], 'NOTIFY=NEVER gets no notice');
  const d = applyResults(env(), [{ address: 'a@x.example', code: 451, text: '4.3.0 later' }], clocks(T0));
  assert.equal(d.done, false);
  assert.equal(d.env.attempts, 1);
  assert.equal(d.env.nextAttempt, new Date(T0 + 30 * 60_000).toISOString());
  assert.deepEqual(d.delayed, []);
});

test('applyResults(): one warning after queueWarn, a bounce after queueReturn', () => {
  const late = T0 + 5 * 3_600_000;
  // first attempted on arrival (a LAN route, or a window that was open)
  const w = applyResults(env({ firstAttempt: new Date(T0).toISOString() }), [{ address: 'a@x.example', code: 451, text: '4.3.0 later' }], clocks(late));
  assert.deepEqual(w.delayed.map((n) => n.action), ['delayed']);
  assert.equal(w.env.warned, true);
  const again = applyResults(w.env, [{ address: 'a@x.example', code: 451, text: '4.3.0 later' }], clocks(late + 1));
  assert.deepEqual(again.delayed, [], 'only one warning');
  const gone = applyResults(w.env, [{ address: 'a@x.example', code: 451, text: '4.3.0 later' }], clocks(T0 + 6 * 86_400_000));
  assert.deepEqual(gone.failed.map((n) => [n.address, n.status]), [['a@x.example', '4.4.7'], ['b@x.example', '4.4.7']]);
  assert.equal(gone.done, true, 'the whole message gives up; c (NOTIFY=NEVER) silently');
});

test('applyResults(): clocks run from the first attempt, so a long link outage does not bounce', () => {
  // arrived Friday evening, the link was down all weekend, first window Monday 08:00
  const friday = T0 - 62 * 3_600_000;
  const monday = T0;
  const r = applyResults(env({ arrivalTime: new Date(friday).toISOString() }), [{ address: 'a@x.example', code: 451, text: '4.3.0 later' }],
    { now: monday, minQueueAge: 30 * 60_000, queueWarn: 4 * 3_600_000, queueReturn: 2 * 86_400_000 });
  assert.deepEqual(r.failed, [], 'no bounce');
  assert.deepEqual(r.delayed, [], 'no warning yet');
  assert.equal(r.env.firstAttempt, new Date(monday).toISOString());
  const later = applyResults(r.env, [{ address: 'a@x.example', code: 451, text: '4.3.0 later' }],
    { now: monday + 5 * 3_600_000, minQueueAge: 30 * 60_000, queueWarn: 4 * 3_600_000, queueReturn: 2 * 86_400_000 });
  assert.equal(later.delayed.length, 1, 'the warning comes 4 h after the first window');
});

test('applyResults(): NOTIFY=SUCCESS gets a "relayed" notice only when the next hop could not take the request on', () => {
  const e = env({ recipients: [{ address: 'a@x.example', state: 'pending', notify: ['SUCCESS', 'FAILURE'] }, { address: 'b@x.example', state: 'pending' }] });
  const plain = applyResults(e, [
    { address: 'a@x.example', code: 250, text: '2.0.0 ok', relay: 'mx [127.0.0.1]', dsnPassed: false },
    { address: 'b@x.example', code: 250, text: '2.0.0 ok', dsnPassed: false },
  ], clocks(T0));
  assert.deepEqual(plain.relayed.map((n) => [n.address, n.action, n.status]), [['a@x.example', 'relayed', '2.0.0']]);
  const passed = applyResults(e, [{ address: 'a@x.example', code: 250, text: '2.0.0 ok', dsnPassed: true }], clocks(T0));
  assert.deepEqual(passed.relayed, [], 'a DSN-capable next hop reports success itself');
});

test('applyResults(): a result that waits for the link is no attempt — no attempts, no backoff, no clocks, only the reason', () => {
  const e = env();
  const waiting = [{ address: 'a@x.example', code: 451, text: '4.4.1 Waiting for the link', waitsForLink: true }];
  const a = applyResults(e, waiting, clocks(T0 + 10 * 86_400_000));
  assert.equal(a.env.attempts, 0);
  assert.equal(a.env.nextAttempt, null);
  assert.equal(a.env.firstAttempt, undefined);
  assert.deepEqual([a.failed, a.delayed, a.relayed], [[], [], []], 'no bounce however old the message is');
  assert.equal(a.env.recipients[0].state, 'pending');
  assert.match(a.env.recipients[0].lastReply ?? '', /Waiting for the link/);
  assert.equal(a.done, false);
});
