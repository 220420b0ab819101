/**
 * A child for test/queue/crash-points.test.ts: commits messages to the spool
 * in argv[2] as fast as it can (journal, settling, large bodies, holds and
 * finishes mixed in) and prints one line per acknowledged change, until it
 * is killed. Every message's body is "body <id>" padded to its size.
 */
import pino from 'pino';
import { spoolQueue } from '../../src/queue/spool.js';
import { createIdGenerator } from '../../src/queue/queue-id.js';

const queue = spoolQueue(process.argv[2], { groups: [], log: pino({ level: 'silent' }), settleIdle: 1, settleBytes: 64 * 1024 });
await queue.init();
const newId = createIdGenerator();
for (let i = 0; ; i++) {
  const id = newId();
  const big = i % 13 === 5;
  const body = Buffer.alloc(big ? 1024 * 1024 + 100 : 2048, `body ${id} `);
  const w = await queue.begin(id);
  await w.write(body);
  const [env] = await queue.commit(w, body.length, { sender: 's@a.example', recipients: [{ address: 'r@b.example' }], bodyType: '7BIT', smtputf8: false, dsn: {}, client: { via: 'smtp' } });
  const next = i % 7 === 3 ? 'held' : i % 11 === 4 ? 'finished' : 'none';
  // what comes next for it is said now: a kill may land after that change and before its line
  process.stdout.write(`queued ${id} ${body.length} ${next}\n`);
  if (next === 'held') {
    await queue.hold(id);
    process.stdout.write(`held ${id}\n`);
  } else if (next === 'finished') {
    await queue.finish({ ...env, recipients: env.recipients.map((r) => ({ ...r, state: 'delivered' as const })) });
    process.stdout.write(`finished ${id}\n`);
  }
}
