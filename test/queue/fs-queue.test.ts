import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { FsStore } from '../../src/queue/fs-store.js';
import { Queue, type MessageDraft } from '../../src/queue/queue.js';
import { createIdGenerator } from '../../src/queue/queue-id.js';
import { decodeEnvelope, encodeEnvelope } from '../../src/queue/envelope.js';
import { IllegalTransitionError } from '../../src/errors.js';
import { tempDir } from '../helpers/daemon.js';
import { listingOf } from '../../src/queue/listing.js';

const draft = (rcpts: string[]): MessageDraft => ({
  sender: 'alice@office.example', recipients: rcpts.map((address) => ({ address })), bodyType: '7BIT', smtputf8: false,
  dsn: { ret: 'HDRS', envid: 'E1' }, client: { via: 'smtp', ip: '127.0.0.1' },
});

async function setup(groups = [] as Array<{ name: string; runners: number; match: string[]; recipients?: number }>) {
  const dir = await tempDir();
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const queue = new Queue(new FsStore(dir), { groups, log, now: () => Date.UTC(2026, 10, 23, 12) });
  await queue.init();
  return { dir, queue, lines, newId: createIdGenerator() };
}

async function put(q: Queue, id: ReturnType<ReturnType<typeof createIdGenerator>>, body: string, rcpts: string[]) {
  const w = await q.begin(id);
  await w.write(Buffer.from(body));
  return q.commit(w, body.length, draft(rcpts));
}

test('commit() makes body and envelope durable and visible in queue/GROUP', async () => {
  const { dir, queue, newId } = await setup();
  const id = newId();
  const [env] = await put(queue, id, 'Subject: x\r\n\r\nhi\r\n', ['bob@example.com']);
  const onDisk = decodeEnvelope(await fs.readFile(path.join(dir, 'queue', 'mqueue', `${id}.json`)));
  assert.deepEqual(onDisk, JSON.parse(encodeEnvelope(env).toString()));
  assert.equal(onDisk.dsn.ret, 'HDRS');
  assert.equal(onDisk.recipients[0].state, 'pending');
  assert.equal((await fs.readFile(path.join(dir, 'data', id))).toString(), 'Subject: x\r\n\r\nhi\r\n');
  assert.deepEqual(await fs.readdir(path.join(dir, 'tmp')), []);
  await fs.rm(dir, { recursive: true });
});

test('commit() splits recipients into envelopes by group and limit, sharing the body', async () => {
  const { dir, queue, newId } = await setup([{ name: 'relayq', runners: 1, match: ['cust1.dom'], recipients: 1 }]);
  const id = newId();
  const envs = await put(queue, id, 'body', ['a@cust1.dom', 'b@cust1.dom', 'c@else.example']);
  assert.deepEqual(envs.map((e) => [e.id, e.group]), [[id, 'relayq'], [`${id}-2`, 'relayq'], [`${id}-3`, 'mqueue']]);
  for (const e of envs) assert.equal((await queue.store.readBody(e.id)).toString(), 'body');
  await fs.rm(dir, { recursive: true });
});

test('hold, release and quarantine are atomic moves between state folders', async () => {
  const { dir, queue, newId } = await setup();
  const id = newId();
  await put(queue, id, 'b', ['x@y.example']);
  await queue.hold(id);
  assert.equal((await queue.find(id))?.place.state, 'held');
  await assert.doesNotReject(fs.access(path.join(dir, 'hold', `${id}.json`)));
  await queue.release(id);
  assert.equal((await queue.find(id))?.place.state, 'queued');
  await queue.quarantine(id, 'virus suspected');
  const q = await queue.find(id);
  assert.equal(q?.place.state, 'quarantined');
  assert.equal(q?.env.quarantine?.reason, 'virus suspected');
  await queue.quarantine(id, 'new reason');
  assert.equal((await queue.find(id))?.env.quarantine?.reason, 'new reason');
  const visible = await queue.list({ selectors: [], quarantined: false });
  assert.equal(visible.length, 0, 'plain listing hides quarantined mail');
  await assert.rejects(queue.release(id), IllegalTransitionError);
  await queue.quarantine(id, '');
  assert.equal((await queue.find(id))?.place.state, 'queued');
  assert.equal((await queue.find(id))?.env.quarantine, undefined);
  await fs.rm(dir, { recursive: true });
});

test('an unreadable envelope is moved to corrupt/ with a log line naming its ID; the rest goes on', async () => {
  const { dir, queue, lines, newId } = await setup();
  const good = newId();
  const bad = newId();
  const future = newId();
  await put(queue, good, 'g', ['a@b.example']);
  await put(queue, bad, 'b', ['a@b.example']);
  await put(queue, future, 'f', ['a@b.example']);
  await fs.writeFile(path.join(dir, 'queue', 'mqueue', `${bad}.json`), '{"version":1, "id": trunc');
  const fut = JSON.parse(await fs.readFile(path.join(dir, 'queue', 'mqueue', `${future}.json`), 'utf8'));
  await fs.writeFile(path.join(dir, 'queue', 'mqueue', `${future}.json`), JSON.stringify({ ...fut, version: 99 }));
  const listed = await queue.list({ selectors: [], quarantined: false });
  assert.deepEqual(listed.map((l) => l.env.id), [good]);
  assert.deepEqual((await fs.readdir(path.join(dir, 'corrupt'))).sort(), [`${bad}.json`, `${future}.json`].sort());
  const logged = lines.filter((l) => l.level === 50);
  assert.deepEqual(logged.map((l) => l.qid).sort(), [bad, future].sort());
  assert.match(String(logged.find((l) => l.qid === future)?.reason), /unknown version 99/);
  await fs.rm(dir, { recursive: true });
});

test('recover() removes bodies without an envelope and temp files, and nothing else', async () => {
  const { dir, queue, newId } = await setup();
  const kept = newId();
  await put(queue, kept, 'k', ['a@b.example']);
  const orphan = newId();
  const w = await queue.begin(orphan);
  await w.write(Buffer.from('half'));
  await fs.writeFile(path.join(dir, 'tmp', `${orphan}.1.1.json`), '{');
  assert.equal(await queue.recover(Date.now() + 1000), 2);
  assert.deepEqual(await fs.readdir(path.join(dir, 'data')), [kept]);
  await w.abort();
  await fs.rm(dir, { recursive: true });
});

test('finish() refuses a message with pending recipients and removes a done one', async () => {
  const { dir, queue, newId } = await setup();
  const [env] = await put(queue, newId(), 'x', ['a@b.example']);
  await assert.rejects(queue.finish(env), IllegalTransitionError);
  await queue.finish({ ...env, recipients: [{ ...env.recipients[0], state: 'delivered' }] });
  assert.equal(await queue.find(env.id), null);
  assert.deepEqual(await fs.readdir(path.join(dir, 'data')), []);
  await fs.rm(dir, { recursive: true });
});

test('the in-memory listing (mailq) follows every change and equals a listing read from the files', async () => {
  const { dir, queue, newId } = await setup();
  // what was on disk before this process: listed by the start-up walk
  const before = await put(queue, newId(), 'old\r\n', ['x@a.example']);
  const fresh = new Queue(new FsStore(dir), { groups: [], log: pino({ level: 'silent' }), now: () => Date.UTC(2026, 10, 23, 12) });
  await fresh.init();
  const all = { selectors: [], quarantined: false };
  assert.equal(fresh.listed(all), null, 'not complete before the walk');
  await fresh.recover(Date.now());
  const fromFiles = async (sel: typeof all) => (await fresh.list(sel)).map((l) => listingOf(l.env, l.place.state));
  assert.deepEqual(fresh.listed(all), await fromFiles(all));
  const [a] = await put(fresh, newId(), 'a\r\n', ['y@b.example', 'z@b.example']);
  const [b] = await put(fresh, newId(), 'b\r\n', ['w@c.example']);
  const [c] = await put(fresh, newId(), 'c\r\n', ['v@d.example']);
  await fresh.hold(b.id, 'look at it');
  await fresh.quarantine(c.id, 'spam?');
  await fresh.update({ ...a, attempts: 1, recipients: [{ ...a.recipients[0], state: 'delivered' }, { ...a.recipients[1], lastReply: '451 4.3.0 later' }] });
  await fresh.finish({ ...before[0], recipients: before[0].recipients.map((r) => ({ ...r, state: 'delivered' as const })) });
  const quarantined = { selectors: [], quarantined: true };
  for (const sel of [all, quarantined, { selectors: [{ kind: 'R' as const, value: 'b.example', negate: false }], quarantined: false }]) {
    assert.deepEqual(fresh.listed(sel), await fromFiles(sel), JSON.stringify(sel));
  }
  assert.deepEqual(fresh.listed(all)!.map((l) => [l.id, l.state, l.recipients.map((r) => r.address)]), [[a.id, 'queued', ['z@b.example']], [b.id, 'held', ['w@c.example']]]);
  await fresh.release(b.id);
  await fresh.unquarantine(c.id);
  assert.deepEqual(fresh.listed(all), await fromFiles(all));
  assert.equal(fresh.listed(all)!.length, 3);
  // counts from memory equal counts from the folders
  const cold = new Queue(new FsStore(dir), { groups: [], log: pino({ level: 'silent' }) });
  await cold.init();
  assert.deepEqual(await fresh.counts(), await cold.counts());
});
