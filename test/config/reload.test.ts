/**
 * config/reload.ts: what a reload may change now, and what waits for a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../src/config/schema.js';
import { mergeReload } from '../../src/config/reload.js';

test('mergeReload(): listeners, spool, hostname and timeouts wait for a restart; routes and flush windows take effect now', () => {
  const current = configSchema.parse({ hostname: 'gw.a.example', spool: '/s', smtp: { listen: ['127.0.0.1:25'] }, flush: { cron: ['0 * * * *'] } });
  const next = configSchema.parse({ hostname: 'gw.b.example', spool: '/t', smtp: { listen: ['127.0.0.1:26'] }, smartHost: ['[127.0.0.9]'], flush: { cron: ['*/5 * * * *'] }, etrn: { poll: ['0 */3 * * *'] } });
  const m = mergeReload(current, next);
  assert.deepEqual(m.fixed.sort(), ['hostname', 'smtp', 'spool']);
  assert.equal(m.config.hostname, 'gw.a.example');
  assert.equal(m.config.spool, '/s');
  assert.deepEqual(m.config.smtp.listen, ['127.0.0.1:25']);
  assert.deepEqual(m.config.smartHost, ['[127.0.0.9]']);
  assert.equal(m.rescheduled, true);
  assert.equal(mergeReload(current, current).rescheduled, false);
  assert.deepEqual(mergeReload(current, current).fixed, []);
});
