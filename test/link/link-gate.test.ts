/**
 * link/link-gate.ts: the one answer to "may the link be used now?", as tables.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { etrnStartedFlush, linkPlan, lingerLeft, mayDeliverLinkRoutes, mayForwardDns, windowWantsLink, type GateFacts } from '../../src/link/link-gate.js';

const f = (mode: GateFacts['mode'], state: GateFacts['state'], window: boolean | null): GateFacts => ({ mode, state, window: window === null ? null : { hasLink: window } });

test('mayDeliverLinkRoutes() / mayForwardDns(): a window with the link, the line up at intake in background mode, permanent always', () => {
  const cases: Array<[GateFacts, 'intake' | 'window', string, boolean, boolean]> = [
    // facts, at, deliveryMode, deliver?, dns?
    [f('managed', 'down', null), 'window', 'deferred', false, false],
    [f('managed', 'up', null), 'window', 'deferred', false, true],
    [f('managed', 'up', true), 'window', 'deferred', true, true],
    [f('managed', 'down', true), 'window', 'deferred', false, false], // the line dropped mid-window
    [f('managed', 'dialing', false), 'window', 'deferred', false, false],
    [f('demand', 'down', true), 'window', 'deferred', true, true], // the window's first packet dials
    [f('demand', 'down', false), 'window', 'deferred', false, false],
    [f('demand', 'down', null), 'intake', 'background', false, false],
    [f('managed', 'up', null), 'intake', 'background', true, true],
    [f('managed', 'up', null), 'intake', 'interactive', true, true],
    [f('managed', 'up', null), 'intake', 'deferred', false, true],
    [f('managed', 'up', null), 'intake', 'queue', false, true],
    [f('permanent', 'down', null), 'intake', 'deferred', true, true],
    [f('permanent', 'up', null), 'window', 'deferred', true, true],
  ];
  for (const [facts, at, mode, deliver, dns] of cases) {
    assert.equal(mayDeliverLinkRoutes(facts, at, mode), deliver, `deliver ${JSON.stringify(facts)} ${at} ${mode}`);
    assert.equal(mayForwardDns(facts), dns, `dns ${JSON.stringify(facts)}`);
  }
});

test('windowWantsLink() and linkPlan(): dial only for due link mail or a poll with ETRN to send', () => {
  assert.equal(windowWantsLink({ dueLinkMail: false, poll: false, etrnConfigured: true }), false);
  assert.equal(windowWantsLink({ dueLinkMail: true, poll: false, etrnConfigured: false }), true);
  assert.equal(windowWantsLink({ dueLinkMail: false, poll: true, etrnConfigured: true }), true);
  assert.equal(windowWantsLink({ dueLinkMail: false, poll: true, etrnConfigured: false }), false);
  const cases: Array<[GateFacts['mode'], GateFacts['state'], boolean, boolean, string]> = [
    ['managed', 'down', true, true, 'dial'],
    ['managed', 'down', true, false, 'none'],
    ['managed', 'down', false, true, 'none'],
    ['managed', 'up', false, true, 'have'],
    ['demand', 'down', true, false, 'have'],
    ['demand', 'down', false, false, 'none'],
    ['permanent', 'down', false, false, 'have'],
  ];
  for (const [mode, state, wants, canDial, plan] of cases) assert.equal(linkPlan({ mode, state, wants, canDial }), plan, `${mode} ${state} wants=${wants} canDial=${canDial}`);
});

test('lingerLeft(): linger after ETRN and after the last inbound session, never past lingerMax; open sessions keep it', () => {
  const base = { etrnAt: 0, openInbound: 0, lastInboundEnd: null, linger: 60_000, lingerMax: 900_000 };
  assert.equal(lingerLeft({ ...base, now: 0 }), 60_000, 'the ISP gets linger to connect back');
  assert.equal(lingerLeft({ ...base, now: 60_000 }), 0);
  assert.equal(lingerLeft({ ...base, now: 70_000, lastInboundEnd: 50_000 }), 40_000);
  assert.ok(lingerLeft({ ...base, now: 200_000, openInbound: 1, lastInboundEnd: 10_000 }) > 0, 'a session in progress keeps the link');
  assert.equal(lingerLeft({ ...base, now: 900_000, openInbound: 1 }), 0, 'never past lingerMax');
  assert.equal(lingerLeft({ ...base, now: 880_000, lastInboundEnd: 870_000 }), 20_000, 'lingerMax cuts the quiet time');
  assert.equal(lingerLeft({ ...base, linger: 0, now: 0 }), 0);
});

test('etrnStartedFlush(): 250, 252 and 253 start a flush; 251 and errors do not', () => {
  assert.equal(etrnStartedFlush([{ code: 250 }]), true);
  assert.equal(etrnStartedFlush([{ code: 251 }, { code: 253 }]), true);
  assert.equal(etrnStartedFlush([{ code: 252 }]), true);
  assert.equal(etrnStartedFlush([{ code: 251 }, { code: 458 }, { code: 501 }]), false);
  assert.equal(etrnStartedFlush([]), false);
});
