/**
 * The queue backend contract (src/queue/store.ts), run on every backend: the
 * spool (FsStore), memory (MemoryStore) and the spool behind the intake
 * journal (JournaledStore). Then the queue's transitions and index over each.
 * The spool's crash points are in test/queue/crash-points.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import pino from 'pino';
import { FsStore } from '../../src/queue/fs-store.js';
import { MemoryStore } from '../../src/queue/memory-store.js';
import { JournaledStore } from '../../src/queue/journaled-store.js';
import { IntakeJournal } from '../../src/queue/journal.js';
import { Queue, type MessageDraft } from '../../src/queue/queue.js';
import { createIdGenerator, type QueueId } from '../../src/queue/queue-id.js';
import type { Place, QueueStore } from '../../src/queue/store.js';
import { listingOf } from '../../src/queue/listing.js';
import { IllegalTransitionError } from '../../src/errors.js';
import { tempDir } from '../helpers/daemon.js';

const log = pino({ level: 'silent' });
interface Backend { name: string; open(): Promise<{ store: QueueStore; reopen: () => QueueStore; done: () => Promise<void> }> }

const backends: Backend[] = [
  { name: 'memory', async open() { const store = new MemoryStore(); return { store, reopen: () => store, done: async () => undefined }; } },
  { name: 'fs', async open() {
    const dir = await tempDir();
    return { store: new FsStore(dir), reopen: () => new FsStore(dir), done: () => fs.rm(dir, { recursive: true, force: true }) };
  } },
  { name: 'journaled fs', async open() {
    const dir = await tempDir();
    const make = () => new JournaledStore(new FsStore(dir), new IntakeJournal(dir), { log, settleIdle: 60_000 });
    return { store: make(), reopen: make, done: () => fs.rm(dir, { recursive: true, force: true }) };
  } },
];

const Q: Place = { state: 'queued', group: 'mqueue' };
const R: Place = { state: 'queued', group: 'relayq' };
const H: Place = { state: 'held' };
const bytes = (s: string) => Buffer.from(s);
const ids = async (store: QueueStore, p: Place) => { const out: QueueId[] = []; for await (const id of store.walk(p)) out.push(id); return out.sort(); };
const enoent = (p: Promise<unknown>) => assert.rejects(p, (e: NodeJS.ErrnoException) => e.code === 'ENOENT');

async function newMessage(store: QueueStore, id: QueueId, body: string, envelopes: Array<{ place: Place; id: QueueId }>) {
  const w = await store.create(id);
  await w.write(bytes(body));
  await store.put([{ id, body: w, envelopes: envelopes.map((e) => ({ ...e, bytes: bytes(`{"id":"${e.id}"}`) })) }]);
}

for (const b of backends) {
  test(`${b.name}: put, read, walk, move, remove`, async () => {
    const { store, done } = await b.open();
    await store.init(['mqueue', 'relayq']);
    const newId = createIdGenerator();
    const a = newId();
    await newMessage(store, a, 'body a', [{ place: R, id: a }, { place: Q, id: `${a}-2` as QueueId }]);
    assert.deepEqual(await ids(store, R), [a]);
    assert.deepEqual(await ids(store, Q), [`${a}-2`]);
    assert.equal((await store.readBody(a)).toString(), 'body a');
    assert.equal((await store.readBody(`${a}-2` as QueueId)).toString(), 'body a', 'parts share the body');
    assert.equal((await store.readEnvelope(a, R)).toString(), `{"id":"${a}"}`);
    await enoent(store.readEnvelope(a, Q));
    await store.putEnvelope(R, a, bytes('{"v":2}'));
    assert.equal((await store.readEnvelope(a, R)).toString(), '{"v":2}');
    await store.move(a, R, H, bytes('{"v":3}'));
    await enoent(store.readEnvelope(a, R));
    assert.equal((await store.readEnvelope(a, H)).toString(), '{"v":3}');
    assert.deepEqual(await ids(store, H), [a]);
    await store.move(a, H, { state: 'corrupt' });
    assert.equal((await store.readEnvelope(a, { state: 'corrupt' })).toString(), '{"v":3}');
    await store.remove(`${a}-2` as QueueId, Q);
    await enoent(store.readEnvelope(`${a}-2` as QueueId, Q));
    await enoent(store.readBody(`${a}-2` as QueueId));
    assert.equal((await store.readBody(a)).toString(), 'body a', 'the other part keeps its body');
    await enoent(store.remove(newId(), Q));
    assert.ok((await store.groups()).includes('relayq'));
    await store.close();
    await done();
  });

  test(`${b.name}: an aborted body is never seen; recover keeps what is referenced`, async () => {
    const { store, done } = await b.open();
    await store.init(['mqueue']);
    const newId = createIdGenerator();
    const kept = newId();
    await newMessage(store, kept, 'kept', [{ place: Q, id: kept }]);
    const aborted = newId();
    const w = await store.create(aborted);
    await w.write(bytes('half'));
    await w.abort();
    await enoent(store.readBody(aborted));
    await store.recover(() => false, 0);
    await store.recover((id) => id === kept, Date.now() + 1000);
    assert.equal((await store.readBody(kept)).toString(), 'kept');
    assert.deepEqual(await ids(store, Q), [kept]);
    await store.close();
    await done();
  });

  test(`${b.name}: what was put is there after close and reopen (the memory backend: same process)`, async () => {
    const { store, reopen, done } = await b.open();
    await store.init(['mqueue']);
    const newId = createIdGenerator();
    const all = Array.from({ length: 20 }, () => newId());
    await Promise.all(all.map((id) => newMessage(store, id, `m ${id}`, [{ place: Q, id }])));
    await store.close();
    const again = reopen();
    await again.init(['mqueue']);
    assert.deepEqual(await ids(again, Q), [...all].sort());
    for (const id of all) assert.equal((await again.readBody(id)).toString(), `m ${id}`);
    await again.close();
    await done();
  });

  test(`${b.name}: the queue's transitions, and its index equal to a listing read from the store`, async () => {
    const { store, done } = await b.open();
    const queue = new Queue(store, { groups: [], log });
    await queue.init();
    await queue.recover(Date.now());
    const newId = createIdGenerator();
    const draft = (to: string[]): MessageDraft => ({ sender: 's@office.example', recipients: to.map((address) => ({ address })), bodyType: '7BIT', smtputf8: false, dsn: {}, client: { via: 'smtp' } });
    const commit = async (to: string[]) => { const w = await queue.begin(newId()); await w.write(bytes('x\r\n')); return (await queue.commit(w, 3, draft(to)))[0]; };
    const a = await commit(['1@cust1.dom', '2@cust1.dom']);
    const h = await commit(['3@cust2.dom']);
    const q = await commit(['4@sub.cust1.dom']);
    await queue.hold(h.id, 'customer asked');
    await assert.rejects(queue.release(q.id).then(() => queue.unquarantine(q.id)).then(() => queue.finish(q)), IllegalTransitionError);
    await queue.quarantine(q.id, 'spam?');
    await queue.update({ ...a, attempts: 1, recipients: [{ ...a.recipients[0], state: 'delivered' }, a.recipients[1]] });
    const all = { selectors: [], quarantined: false };
    const fromStore = async (sel: typeof all) => (await queue.list(sel)).map((l) => listingOf(l.env, l.place.state));
    assert.deepEqual(queue.listed(all), await fromStore(all));
    assert.deepEqual(queue.listed({ selectors: [], quarantined: true }), await fromStore({ selectors: [], quarantined: true }));
    assert.deepEqual(await queue.counts(), { queued: 1, held: 1, quarantined: 1, corrupt: 0 });
    assert.equal(queue.index.pendingFor('cust1.dom'), 1);
    assert.equal(queue.index.pendingFor('cust2.dom'), 0, 'held mail is not waiting for a flush');
    await queue.unquarantine(q.id);
    assert.equal(queue.index.pendingFor('cust1.dom', true), 2, '@cust1.dom counts its subdomains');
    await queue.finish({ ...a, recipients: a.recipients.map((r) => ({ ...r, state: 'delivered' as const })) });
    assert.equal(await queue.find(a.id), null);
    assert.equal(queue.index.pendingFor('cust1.dom'), 0);
    assert.deepEqual(queue.listed(all), await fromStore(all));
    await queue.close();
    await done();
  });
}
