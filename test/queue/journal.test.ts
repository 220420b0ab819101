import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { decodeSegment, encodeRecord, IntakeJournal } from '../../src/queue/journal.js';
import { FsStore } from '../../src/queue/fs-store.js';
import { JournaledStore } from '../../src/queue/journaled-store.js';
import { Queue } from '../../src/queue/queue.js';
import { createIdGenerator } from '../../src/queue/queue-id.js';
import { tempDir } from '../helpers/daemon.js';

const rec = (n: number) => ({ envelopes: Buffer.from(`[${n}]`), body: Buffer.from(`body ${n}\r\n`) });

test('decodeSegment() reads whole records and stops at a torn or damaged one', () => {
  const whole = Buffer.concat([...encodeRecord(rec(1)), ...encodeRecord(rec(2))]);
  assert.deepEqual(decodeSegment(whole).records.map((r) => r.body.toString()), ['body 1\r\n', 'body 2\r\n']);
  assert.equal(decodeSegment(whole).tornAt, null);
  const torn = whole.subarray(0, whole.length - 3);
  assert.equal(decodeSegment(torn).records.length, 1);
  assert.ok(decodeSegment(torn).tornAt! > 0);
  const flipped = Buffer.from(whole);
  flipped[flipped.length - 2] ^= 0xff;
  assert.equal(decodeSegment(flipped).records.length, 1, 'a crc mismatch ends the segment');
});

async function setup(dir: string) {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const journal = new IntakeJournal(dir);
  const store = new JournaledStore(new FsStore(dir), journal, { log, settleIdle: 60_000 });
  const queue = new Queue(store, { groups: [], log });
  await queue.init();
  return { queue, store, journal, lines };
}

const draft = { sender: 'a@office.example', recipients: [{ address: 'b@far.example' }], bodyType: '7BIT' as const, smtputf8: false, dsn: {}, client: { via: 'smtp' as const } };

async function commit(queue: Queue, id: ReturnType<ReturnType<typeof createIdGenerator>>, body: string) {
  const w = await queue.begin(id);
  await w.write(Buffer.from(body));
  return queue.commit(w, body.length, draft);
}

test('a committed message is durable in the journal and visible before its own files exist', async () => {
  const dir = await tempDir();
  const { queue, store } = await setup(dir);
  const id = createIdGenerator()();
  await commit(queue, id, 'Subject: j\r\n\r\nhi\r\n');
  assert.equal((await queue.find(id))?.place.state, 'queued');
  assert.equal((await queue.readBody(id)).toString(), 'Subject: j\r\n\r\nhi\r\n');
  await assert.rejects(fs.access(path.join(dir, 'data', id)));
  const segments = (await fs.readdir(path.join(dir, 'journal'))).filter((f) => f.endsWith('.wal'));
  const { records } = decodeSegment(await fs.readFile(path.join(dir, 'journal', segments[0])));
  assert.equal(records.length, 1);
  await store.settleAll();
  assert.equal((await fs.readFile(path.join(dir, 'data', id))).toString(), 'Subject: j\r\n\r\nhi\r\n');
  await fs.access(path.join(dir, 'queue', 'mqueue', `${id}.json`));
  await assert.rejects(fs.access(path.join(dir, 'journal', segments[0])), 'the settled segment is deleted');
  await fs.rm(dir, { recursive: true });
});

test('after a crash, replay rewrites missing and damaged files from the journal', async () => {
  const dir = await tempDir();
  const first = await setup(dir);
  const ids = Array.from({ length: 3 }, createIdGenerator());
  for (const [i, id] of ids.entries()) await commit(first.queue, id, `message ${i}\r\n`);
  // "crash": the process is gone without settling; one message's files were half written
  await fs.writeFile(path.join(dir, 'queue', 'mqueue', `${ids[1]}.json`), '');
  await fs.writeFile(path.join(dir, 'data', ids[1]), 'mess');
  const second = await setup(dir);
  // the damaged one is rewritten at once; the two without files are served from memory, then written back
  assert.equal((await fs.readFile(path.join(dir, 'data', ids[1]))).toString(), 'message 1\r\n');
  for (const [i, id] of ids.entries()) {
    assert.equal((await second.queue.find(id))?.env.id, id);
    assert.equal((await second.queue.readBody(id)).toString(), `message ${i}\r\n`);
  }
  assert.ok(second.lines.some((l) => l.msg?.toString().startsWith('intake journal replayed') && l.messages === 3 && l.fromJournal === 2));
  await second.store.settleAll();
  for (const [i, id] of ids.entries()) assert.equal((await fs.readFile(path.join(dir, 'data', id))).toString(), `message ${i}\r\n`);
  assert.deepEqual((await fs.readdir(path.join(dir, 'journal'))).filter((f) => f.endsWith('.wal')).length, 1, 'only the new, empty segment');
  await fs.rm(dir, { recursive: true });
});

test('replay keeps an envelope that moved on (held) and never duplicates it', async () => {
  const dir = await tempDir();
  const first = await setup(dir);
  const id = createIdGenerator()();
  await commit(first.queue, id, 'x\r\n');
  await first.queue.hold(id);
  const second = await setup(dir);
  assert.equal((await second.queue.find(id))?.place.state, 'held');
  await assert.rejects(fs.access(path.join(dir, 'queue', 'mqueue', `${id}.json`)));
  await fs.rm(dir, { recursive: true });
});

test('finish() settles the journal first, so a removed message never comes back', async () => {
  const dir = await tempDir();
  const first = await setup(dir);
  const id = createIdGenerator()();
  const [env] = await commit(first.queue, id, 'x\r\n');
  await first.queue.finish({ ...env, recipients: [{ ...env.recipients[0], state: 'delivered' }] });
  const second = await setup(dir);
  assert.equal(await second.queue.find(id), null);
  await fs.rm(dir, { recursive: true });
});

test('a large message bypasses the journal and is fsynced to its own files', async () => {
  const dir = await tempDir();
  const { queue } = await setup(dir);
  const id = createIdGenerator()();
  const big = 'x'.repeat(1024 * 1024 + 10);
  await commit(queue, id, big);
  assert.equal((await fs.stat(path.join(dir, 'data', id))).size, big.length);
  await fs.access(path.join(dir, 'queue', 'mqueue', `${id}.json`));
  await fs.rm(dir, { recursive: true });
});

test('a message updated, then finished, never comes back from the journal', async () => {
  const dir = await tempDir();
  const first = await setup(dir);
  const id = createIdGenerator()();
  const [env] = await commit(first.queue, id, 'x\r\n');
  const attempted = { ...env, attempts: 1 };
  await first.queue.update(attempted);
  await first.queue.finish({ ...attempted, recipients: [{ ...env.recipients[0], state: 'delivered' }] });
  // crash: no close(), no settle; the next start replays what the journal still holds
  const second = await setup(dir);
  assert.equal(await second.queue.find(id), null);
  await fs.rm(dir, { recursive: true });
});

test('concurrent hold and quarantine of one message leave it in exactly one place', async () => {
  const dir = await tempDir();
  const { queue, store } = await setup(dir);
  const newId = createIdGenerator();
  for (let i = 0; i < 10; i++) {
    const id = newId();
    await commit(queue, id, `m${i}\r\n`);
    await store.settleAll();
    await Promise.allSettled([queue.hold(id), queue.quarantine(id, 'race'), queue.hold(id)]);
    const places = [];
    for (const d of ['queue/mqueue', 'hold', 'quarantine']) {
      if (await fs.access(path.join(dir, d, `${id}.json`)).then(() => true, () => false)) places.push(d);
    }
    assert.equal(places.length, 1, `${id} is in ${places.join(' and ')}`);
  }
  await fs.rm(dir, { recursive: true });
});

test('messages replayed into memory survive a second crash before they are written back', async () => {
  const dir = await tempDir();
  const first = await setup(dir);
  const ids = Array.from({ length: 3 }, createIdGenerator());
  for (const [i, id] of ids.entries()) await commit(first.queue, id, `message ${i}\r\n`);
  // crash, restart (replayed into memory, not yet written back), crash again
  const second = await setup(dir);
  assert.equal((await second.queue.find(ids[0]))?.env.id, ids[0]);
  const third = await setup(dir);
  for (const [i, id] of ids.entries()) assert.equal((await third.queue.readBody(id)).toString(), `message ${i}\r\n`);
  await third.store.settleAll();
  for (const [i, id] of ids.entries()) assert.equal((await fs.readFile(path.join(dir, 'data', id))).toString(), `message ${i}\r\n`);
  const segments = (await fs.readdir(path.join(dir, 'journal'))).filter((f) => f.endsWith('.wal'));
  assert.equal(segments.length, 1, `only the newest, empty segment is left: ${segments}`);
  await fs.rm(dir, { recursive: true });
});
