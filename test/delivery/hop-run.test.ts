/**
 * The pure decisions of one hop's delivery run (delivery/hop-run.ts,
 * delivery/deliverer.ts): pipeline depth, when another connection opens,
 * when the walk of the queue waits, and the deferral for a hop that is
 * unreachable or cannot be looked up. The runs themselves are tested against
 * real next hops in pipelining.test.ts, e2e/delivery.test.ts and
 * scheduler/queue-runner.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { depthOf, HANDFUL, isWalkHeldBack, needsAnotherWorker, unreachableReply } from '../../src/delivery/hop-run.js';
import { unresolvedReply } from '../../src/delivery/deliverer.js';
import { LinkDownError, MailError } from '../../src/errors.js';

test('depthOf(): 32 messages in flight when streaming BDAT, 3 with PIPELINING, 1 without', () => {
  assert.equal(depthOf({ streams: true, pipelining: true }), 32);
  assert.equal(depthOf({ streams: false, pipelining: true }), 3);
  assert.equal(depthOf({ streams: false, pipelining: false }), 1);
});

test('needsAnotherWorker() is true only with room under connections and more than a handful waiting per worker', () => {
  const cases: Array<[number, number, number, boolean]> = [
    [0, 4, 1, true],
    [0, 4, 0, false],
    [1, 4, HANDFUL, false],
    [1, 4, HANDFUL + 1, true],
    [2, 4, 2 * HANDFUL + 1, true],
    [4, 4, 1000, false],
    [0, 0, 1, false],
  ];
  for (const [workers, connections, pending, expected] of cases) {
    assert.equal(needsAnotherWorker(workers, connections, pending), expected, JSON.stringify({ workers, connections, pending }));
  }
});

test('isWalkHeldBack() is true from a handful of waiting jobs per connection, and only while a worker runs', () => {
  const cases: Array<[number, number, number, boolean]> = [
    [2 * HANDFUL, 2, 1, true],
    [2 * HANDFUL - 1, 2, 1, false],
    [2 * HANDFUL, 2, 0, false],
  ];
  for (const [pending, connections, workers, expected] of cases) {
    assert.equal(isWalkHeldBack(pending, connections, workers), expected, JSON.stringify({ pending, connections, workers }));
  }
});

test('unreachableReply(): no answer is 451 4.4.1, a refusal keeps its 4xx and turns a 5xx into 499', () => {
  assert.deepEqual(unreachableReply({ code: 0, reply: 'ECONNREFUSED' }), { code: 451, text: '4.4.1 No host answered: ECONNREFUSED' });
  assert.deepEqual(unreachableReply({ code: 421, reply: '421 busy' }), { code: 421, text: '4.4.1 All hosts refused: 421 busy' });
  assert.deepEqual(unreachableReply({ code: 554, reply: '554 go away' }), { code: 499, text: '4.4.1 All hosts refused: 554 go away' });
  assert.deepEqual(unreachableReply({ code: 999, reply: 'odd' }), { code: 451, text: '4.4.1 All hosts refused: odd' });
});

test('unresolvedReply(): a mail error keeps its codes, anything else is 451 4.4.3', () => {
  assert.deepEqual(unresolvedReply(new MailError(550, '5.1.2', 'No such domain')), { code: 550, text: '5.1.2 No such domain' });
  assert.deepEqual(unresolvedReply(new LinkDownError()), { code: 451, text: '4.4.1 Link is down, waiting for the next flush window' });
  assert.deepEqual(unresolvedReply(new Error('SERVFAIL')), { code: 451, text: '4.4.3 Cannot resolve the next hop: SERVFAIL' });
});
