/**
 * queue/memory-store.ts — a queue backend in memory: for tests, for a
 * daemonless dry run, and as the second implementation that keeps
 * queue/store.ts honest (test/queue/conformance.test.ts runs on both).
 * Nothing survives the process. Writes are atomic because they are
 * synchronous once their promise runs.
 */
import { notFound, type BodyWriter, type NewMessage, type Place, type QueueStore } from './store.js';
import type { QueueId } from './queue-id.js';

const key = (place: Place) => (place.state === 'queued' ? `queued/${place.group ?? 'mqueue'}` : place.state);

class MemoryBody implements BodyWriter {
  chunks: Buffer[] = [];
  aborted = false;
  constructor(readonly id: QueueId) {}
  async write(chunk: Buffer): Promise<void> {
    this.chunks.push(Buffer.from(chunk));
  }
  async abort(): Promise<void> {
    this.aborted = true;
    this.chunks = [];
  }
}

export class MemoryStore implements QueueStore {
  private readonly places = new Map<string, Map<QueueId, Buffer>>();
  private readonly bodies = new Map<QueueId, { bytes: Buffer; at: number }>();
  private readonly knownGroups = new Set<string>();

  constructor(private readonly now: () => number = Date.now) {}

  private at(place: Place): Map<QueueId, Buffer> {
    let m = this.places.get(key(place));
    if (!m) this.places.set(key(place), (m = new Map()));
    return m;
  }

  async init(groups: readonly string[]): Promise<void> {
    for (const g of groups) this.knownGroups.add(g);
  }

  async create(id: QueueId): Promise<BodyWriter> {
    return new MemoryBody(id);
  }

  async put(messages: readonly NewMessage[]): Promise<void> {
    for (const m of messages) {
      if (!Buffer.isBuffer(m.body) && (!(m.body instanceof MemoryBody) || m.body.aborted)) throw new Error('MemoryStore.put: the body was not created by this store');
      const bytes = Buffer.isBuffer(m.body) ? Buffer.from(m.body) : Buffer.concat(m.body.chunks);
      for (const e of m.envelopes) {
        this.bodies.set(e.id, { bytes, at: this.now() });
        this.at(e.place).set(e.id, Buffer.from(e.bytes));
      }
    }
  }

  async putEnvelope(place: Place, id: QueueId, bytes: Buffer): Promise<void> {
    this.at(place).set(id, Buffer.from(bytes));
  }

  async move(id: QueueId, from: Place, to: Place, bytes?: Buffer): Promise<void> {
    const source = this.at(from);
    const current = source.get(id);
    if (!current) throw notFound(`envelope ${id}`);
    source.delete(id);
    this.at(to).set(id, bytes ? Buffer.from(bytes) : current);
  }

  async remove(id: QueueId, place: Place): Promise<void> {
    if (!this.at(place).delete(id)) throw notFound(`envelope ${id}`);
    this.bodies.delete(id);
  }

  async readEnvelope(id: QueueId, place: Place): Promise<Buffer> {
    const b = this.at(place).get(id);
    if (!b) throw notFound(`envelope ${id}`);
    return b;
  }

  async readBody(id: QueueId): Promise<Buffer> {
    const b = this.bodies.get(id);
    if (!b) throw notFound(`body ${id}`);
    return b.bytes;
  }

  async *walk(place: Place): AsyncIterable<QueueId> {
    yield* [...this.at(place).keys()];
  }

  async groups(): Promise<string[]> {
    return [...this.knownGroups].sort();
  }

  async recover(isReferenced: (id: QueueId) => boolean, before: number): Promise<number> {
    let removed = 0;
    for (const [id, b] of this.bodies) {
      if (isReferenced(id) || b.at >= before) continue;
      this.bodies.delete(id);
      removed++;
    }
    return removed;
  }

  async close(): Promise<void> {}
}
