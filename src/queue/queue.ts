/**
 * queue/queue.ts — the queue: the only module that changes a message's state.
 *
 * Allowed transitions (anything else throws IllegalTransitionError):
 *
 *   (new)        → queued        commit(): body and envelope fsynced, then visible
 *   queued       → held          hold()
 *   held         → queued        release()
 *   queued|held  → quarantined   quarantine(reason)
 *   quarantined  → quarantined   quarantine(newReason)   (reason changed)
 *   quarantined  → queued|held   unquarantine()          (back where it was)
 *   queued       → queued        update()                (delivery results)
 *   queued       → (removed)     finish()                (no recipient pending)
 *   any          → corrupt       an envelope that cannot be decoded
 *
 * Callers: intake (commit), maildrop pickup, control (admin commands),
 * delivery (update/finish). Errors from the store propagate; a corrupt
 * envelope is moved aside, logged with its ID, and the walk goes on.
 */
import type { Logger } from 'pino';
import type { QueueGroupConfig } from '../config/schema.js';
import { CorruptEnvelopeError, IllegalTransitionError, QuietlinkError, EX } from '../errors.js';
import { decodeEnvelope, encodeEnvelope, ENVELOPE_VERSION, type Envelope, type Recipient } from './envelope.js';
import { DEFAULT_GROUP, splitByGroup } from './groups.js';
import { priority } from './priority.js';
import { partId, type QueueId } from './queue-id.js';
import { matches, type Selection } from './select.js';
import type { BodyWriter, Place, QueueState, QueueStore } from './store.js';

export interface MessageDraft {
  sender: string;
  recipients: Array<Pick<Recipient, 'address' | 'orcpt' | 'notify'>>;
  bodyType: Envelope['bodyType'];
  smtputf8: boolean;
  dsn: Envelope['dsn'];
  client: Envelope['client'];
  class?: number;
}

export interface QueueOptions {
  groups: readonly QueueGroupConfig[];
  log: Logger;
  now?: () => number;
  /** Read-only: a CLI looking at the spool of a daemon that is not running. */
  readOnly?: boolean;
}

export interface Located {
  env: Envelope;
  place: Place;
}

export class NotInQueueError extends QuietlinkError {
  constructor(id: string) {
    super(`Message ${id} is not in the queue`, { exitCode: EX.DATAERR });
  }
}

export class Queue {
  private readonly now: () => number;
  private readonly groups: readonly QueueGroupConfig[];
  private readonly log: Logger;

  constructor(readonly store: QueueStore, private readonly opts: QueueOptions) {
    this.now = opts.now ?? Date.now;
    this.groups = opts.groups;
    this.log = opts.log;
  }

  async init(): Promise<void> {
    await this.store.init([DEFAULT_GROUP, ...this.groups.map((g) => g.name)]);
  }

  /** Starts a new message whose body the caller streams into the returned writer. */
  begin(id: QueueId): Promise<BodyWriter> {
    return this.store.create(id);
  }

  /**
   * Makes a fully written message durable and visible: the body is fsynced,
   * the recipients are split into envelopes by queue group, and each envelope
   * is written and renamed into queue/GROUP/. Only after this resolves may
   * anyone answer 250.
   */
  async commit(body: BodyWriter, size: number, draft: MessageDraft): Promise<Envelope[]> {
    await body.finish();
    const parts = splitByGroup(
      draft.recipients.map((r) => ({ ...r, state: 'pending' as const })),
      this.groups,
    );
    const arrival = new Date(this.now()).toISOString();
    const envelopes = parts.map((part, i): Envelope => {
      const cls = draft.class ?? 0;
      return {
        version: ENVELOPE_VERSION,
        id: partId(body.id, i + 1),
        group: part.group,
        sender: draft.sender,
        recipients: part.recipients,
        arrivalTime: arrival,
        size,
        class: cls,
        priority: priority({ size, recipients: part.recipients.length, class: cls, attempts: 0 }),
        attempts: 0,
        nextAttempt: null,
        bodyType: draft.bodyType,
        smtputf8: draft.smtputf8,
        dsn: draft.dsn,
        client: draft.client,
      };
    });
    await Promise.all(envelopes.slice(1).map((e) => this.store.shareBody(body.id, e.id)));
    await Promise.all(envelopes.map((e) => this.store.putEnvelope({ state: 'queued', group: e.group }, e.id, encodeEnvelope(e))));
    return envelopes;
  }

  private places(groups: readonly string[]): Place[] {
    return [...groups.map((g): Place => ({ state: 'queued', group: g })), { state: 'held' }, { state: 'quarantined' }];
  }

  /** Reads one envelope; a corrupt one is moved aside (unless read-only) and null returned. */
  private async read(id: QueueId, place: Place): Promise<Envelope | null> {
    let bytes: Buffer;
    try {
      bytes = await this.store.readEnvelope(id, place);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      const env = decodeEnvelope(bytes);
      if (env.id !== id) throw new CorruptEnvelopeError(`Invalid envelope: file ${id} holds id ${env.id}`);
      return env;
    } catch (err) {
      if (!(err instanceof CorruptEnvelopeError)) throw err;
      if (this.opts.readOnly) {
        this.log.warn({ qid: id, err: err.message }, 'corrupt envelope (left in place: daemon not running)');
        return null;
      }
      await this.store.move(id, place, { state: 'corrupt' });
      this.log.error({ qid: id, from: place.state, reason: err.message }, `Cannot read envelope of ${id}: moved to corrupt`);
      return null;
    }
  }

  async find(id: QueueId): Promise<Located | null> {
    for (const place of this.places(await this.store.groups())) {
      const env = await this.read(id, place);
      if (env) return { env, place };
    }
    return null;
  }

  /** Whether any state holds an envelope with this ID (maildrop pickup is idempotent by it). */
  async has(id: QueueId): Promise<boolean> {
    return (await this.find(id)) !== null;
  }

  /** Every envelope at the given states, read and validated. */
  async *walk(states: readonly QueueState[] = ['queued', 'held', 'quarantined']): AsyncIterable<Located> {
    const places = this.places(await this.store.groups()).filter((p) => states.includes(p.state));
    for (const place of places) {
      for await (const id of this.store.walk(place)) {
        const env = await this.read(id, place);
        if (env) yield { env, place };
      }
    }
  }

  /** Envelopes matching a selection, oldest first. */
  async list(sel: Selection): Promise<Located[]> {
    const out: Located[] = [];
    for await (const loc of this.walk(sel.quarantined ? ['quarantined'] : ['queued', 'held'])) {
      if (matches(sel, loc.env)) out.push(loc);
    }
    return out.sort((a, b) => (a.env.id < b.env.id ? -1 : a.env.id > b.env.id ? 1 : 0));
  }

  async counts(): Promise<Record<'queued' | 'held' | 'quarantined' | 'corrupt', number>> {
    const counts = { queued: 0, held: 0, quarantined: 0, corrupt: 0 };
    const groups = await this.store.groups();
    for (const place of [...this.places(groups), { state: 'corrupt' } as Place]) {
      for await (const id of this.store.walk(place)) {
        void id;
        counts[place.state]++;
      }
    }
    return counts;
  }

  private async locate(id: QueueId): Promise<Located> {
    const loc = await this.find(id);
    if (!loc) throw new NotInQueueError(id);
    return loc;
  }

  private stamp(reason: string) {
    return { reason, since: new Date(this.now()).toISOString() };
  }

  async hold(id: QueueId, reason = 'held by operator'): Promise<Envelope> {
    const { env, place } = await this.locate(id);
    if (place.state === 'held') return env;
    if (place.state !== 'queued') throw new IllegalTransitionError(`Cannot hold message ${id}: it is ${place.state}`);
    const next = { ...env, hold: this.stamp(reason) };
    await this.store.move(id, place, { state: 'held' }, encodeEnvelope(next));
    this.log.info({ qid: id, reason }, 'held');
    return next;
  }

  async release(id: QueueId): Promise<Envelope> {
    const { env, place } = await this.locate(id);
    if (place.state === 'queued') return env;
    if (place.state !== 'held') throw new IllegalTransitionError(`Cannot release message ${id}: it is ${place.state} (use quarantine -Q "")`);
    const next = { ...env, hold: undefined, nextAttempt: null };
    await this.store.move(id, place, { state: 'queued', group: env.group }, encodeEnvelope(next));
    this.log.info({ qid: id }, 'released');
    return next;
  }

  /** Quarantines with a reason; an empty reason releases from quarantine. */
  async quarantine(id: QueueId, reason: string): Promise<Envelope> {
    if (reason === '') return this.unquarantine(id);
    const { env, place } = await this.locate(id);
    const next = { ...env, quarantine: this.stamp(reason) };
    if (place.state === 'corrupt') throw new IllegalTransitionError(`Cannot quarantine message ${id}: it is corrupt`);
    await this.store.move(id, place, { state: 'quarantined' }, encodeEnvelope(next));
    this.log.info({ qid: id, reason }, 'quarantined');
    return next;
  }

  async unquarantine(id: QueueId): Promise<Envelope> {
    const { env, place } = await this.locate(id);
    if (place.state !== 'quarantined') return env;
    const next = { ...env, quarantine: undefined };
    const to: Place = env.hold ? { state: 'held' } : { state: 'queued', group: env.group };
    await this.store.move(id, place, to, encodeEnvelope(next));
    this.log.info({ qid: id }, 'released from quarantine');
    return next;
  }

  /** Rewrites a queued envelope (delivery results, next attempt). */
  async update(env: Envelope): Promise<void> {
    await this.store.putEnvelope({ state: 'queued', group: env.group }, env.id, encodeEnvelope(env));
  }

  /** Removes a message none of whose recipients is pending any more. */
  async finish(env: Envelope): Promise<void> {
    if (env.recipients.some((r) => r.state === 'pending')) {
      throw new IllegalTransitionError(`Cannot remove message ${env.id}: recipients are still pending`);
    }
    await this.store.remove(env.id, { state: 'queued', group: env.group });
  }

  /** Sweeps leftovers of interrupted writes; returns how many files went. */
  async recover(): Promise<number> {
    const referenced = new Set<string>();
    for await (const { env } of this.walk(['queued', 'held', 'quarantined'])) referenced.add(env.id);
    for await (const id of this.store.walk({ state: 'corrupt' })) referenced.add(id);
    return this.store.recover((id) => referenced.has(id));
  }
}
