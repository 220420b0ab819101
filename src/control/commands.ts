/**
 * control/commands.ts — every control command, typed once: its name, the
 * shape of its arguments (checked here on the daemon side: a malformed
 * request is a usage error, exit 64, whoever sent it), the shape of its
 * reply and of the events it streams, and who may ask (SPEC §11: reading
 * the queue, flushing, submitting and ETRN to the configured relay are for
 * everyone; changing the queue or the link, or ETRN to another relay, needs
 * root, the daemon's user or group quietlink-admin).
 *
 * Used by both sides: control/client.ts (the CLI) and control/server.ts /
 * handlers.ts (the daemon), so a command cannot mean one thing to one side
 * and another to the other. Pure: no I/O here.
 */
import { UsageError } from '../errors.js';
import type { Selection, Selector } from '../queue/select.js';
import { isQueueId, type QueueId } from '../queue/queue-id.js';
import type { MessageSummary } from '../queue/summary.js';
import type { RunEvent, RunSummary } from '../scheduler/queue-runner.js';
import type { WindowRecord } from '../scheduler/windows.js';
import type { EtrnResult } from '../etrn/etrn-client.js';
import type { LinkSnapshot } from '../link/link-state.js';
import type { DeliveryWish } from '../intake/submissions.js';
import type { Status } from '../observability/status.js';

export type Privilege = 'anyone' | 'admin';
type Args = Record<string, unknown>;

/** One command's contract. `reply` and `event` are types only (never set): what the daemon answers and streams. */
export interface Command<A, R, E = never> {
  privilege: (args: A) => Privilege;
  /** The arguments as sent, checked; throws UsageError. */
  parse: (raw: Args) => A;
  readonly reply?: R;
  readonly event?: E;
}

function command<A, R, E = never>(privilege: Privilege | ((args: A) => Privilege), parse: (raw: Args) => A): Command<A, R, E> {
  return { privilege: typeof privilege === 'function' ? privilege : () => privilege, parse };
}

// ---- argument checks (pure; a bad shape is the sender's mistake) ----

function ids(raw: Args, cmd: string): QueueId[] {
  if (!Array.isArray(raw.ids) || raw.ids.length === 0) throw new UsageError(`${cmd}: no queue IDs given`);
  const bad = raw.ids.find((s) => typeof s !== 'string' || !isQueueId(s));
  if (bad !== undefined) throw new UsageError(`${cmd}: ${JSON.stringify(bad)} is not a queue ID`);
  return raw.ids as QueueId[];
}

function optionalString(raw: Args, key: string, cmd: string): string | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new UsageError(`${cmd}: ${key} must be text`);
  return v;
}

function optionalBoolean(raw: Args, key: string, cmd: string): boolean | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new UsageError(`${cmd}: ${key} must be true or false`);
  return v;
}

function isSelector(s: unknown): s is Selector {
  const x = s as Selector;
  return typeof x === 'object' && x !== null && ['R', 'S', 'I', 'G'].includes(x.kind) && typeof x.value === 'string' && typeof x.negate === 'boolean';
}

function selection(raw: Args, cmd: string, required = true): Selection {
  const s = raw.selection as Selection | undefined;
  if (s === undefined && !required) return { selectors: [], quarantined: false };
  if (typeof s !== 'object' || s === null || !Array.isArray(s.selectors) || !s.selectors.every(isSelector) || typeof s.quarantined !== 'boolean') {
    throw new UsageError(`${cmd}: malformed queue selection`);
  }
  return { selectors: s.selectors, quarantined: s.quarantined };
}

const WISHES: readonly DeliveryWish[] = ['interactive', 'background', 'queue', 'deferred'];
const none = () => ({});

// ---- the commands ----

export interface FlushArgs { selection: Selection; wait: boolean; verbose: boolean; dryRun: boolean }
export type FlushReply = RunSummary | WindowRecord | { started: true };
export type StatusReport = Awaited<ReturnType<Status['report']>>;
/** `odmr: true` pulls by ODMR (RFC 2645) whatever etrn.mode says; absent or false, etrn.mode decides. */
export interface EtrnArgs { relay?: string; domains: string[]; odmr?: boolean }
export interface PickupReply { picked: string[]; queued: Record<string, QueueId[]>; refused: string[] }

export const COMMANDS = {
  ping: command<Record<string, never>, { pid: number }>('anyone', none),
  flush: command<FlushArgs, FlushReply, RunEvent>('anyone', (raw) => ({
    selection: selection(raw, 'flush', false), wait: Boolean(raw.wait), verbose: Boolean(raw.verbose), dryRun: Boolean(raw.dryRun),
  })),
  link: command<{ state: 'up' | 'down'; iface?: string }, LinkSnapshot & { changed: boolean }>('admin', (raw) => {
    if (raw.state !== 'up' && raw.state !== 'down') throw new UsageError('link: say up or down');
    return { state: raw.state, iface: optionalString(raw, 'iface', 'link') };
  }),
  // ETRN to the configured relay is for everyone (by ODMR too); to another relay, an administrator's
  etrn: command<EtrnArgs, EtrnResult | null>((a) => (a.relay === undefined ? 'anyone' : 'admin'), (raw) => {
    if (raw.domains !== undefined && !(Array.isArray(raw.domains) && raw.domains.every((d) => typeof d === 'string'))) throw new UsageError('etrn: domains must be a list of names');
    return { relay: optionalString(raw, 'relay', 'etrn'), domains: (raw.domains as string[] | undefined) ?? [], odmr: optionalBoolean(raw, 'odmr', 'etrn') };
  }),
  pickup: command<{ name?: string; deliveryMode?: DeliveryWish }, PickupReply>('anyone', (raw) => ({
    name: optionalString(raw, 'name', 'pickup'), deliveryMode: WISHES.find((m) => m === raw.deliveryMode),
  })),
  /** `mailq --json`: the summaries. */
  mailq: command<{ selection: Selection }, MessageSummary[]>('anyone', (raw) => ({ selection: selection(raw, 'mailq') })),
  /** `mailq`: sendmail's layout, streamed in pieces from the daemon's in-memory listing. */
  'mailq-text': command<{ selection: Selection }, { streamed: true }, { text: string }>('anyone', (raw) => ({ selection: selection(raw, 'mailq') })),
  /** `mailq -bP`: entries per queue group (every configured group, 0 included). */
  'queue-groups': command<{ selection: Selection }, Record<string, number>>('anyone', (raw) => ({ selection: selection(raw, 'mailq -bP') })),
  hold: command<{ ids: QueueId[]; reason?: string }, { changed: QueueId[] }>('admin', (raw) => ({ ids: ids(raw, 'hold'), reason: optionalString(raw, 'reason', 'hold') })),
  release: command<{ ids: QueueId[] }, { changed: QueueId[] }>('admin', (raw) => ({ ids: ids(raw, 'release') })),
  quarantine: command<{ reason: string; ids?: QueueId[]; selection?: Selection }, { changed: QueueId[] }>('admin', (raw) => {
    const reason = optionalString(raw, 'reason', 'quarantine') ?? '';
    return raw.selection !== undefined ? { reason, selection: selection(raw, 'quarantine') } : { reason, ids: ids(raw, 'quarantine') };
  }),
  status: command<Record<string, never>, StatusReport>('anyone', none),
  /** sendmail -bi / newaliases: the aliases (and every other classic file) now. */
  reload: command<Record<string, never>, { reloaded: true; aliases: number }>('anyone', none),
} as const;

export type CommandName = keyof typeof COMMANDS;
type Spec<N extends CommandName> = (typeof COMMANDS)[N];
export type ArgsOf<N extends CommandName> = Spec<N> extends Command<infer A, unknown, unknown> ? A : never;
export type ReplyOf<N extends CommandName> = NonNullable<Spec<N>['reply']> | (null extends Spec<N>['reply'] ? null : never);
export type EventOf<N extends CommandName> = NonNullable<Spec<N>['event']>;

export function isCommandName(name: unknown): name is CommandName {
  return typeof name === 'string' && Object.hasOwn(COMMANDS, name);
}

/** Pure: whether these arguments of this command need an administrator. */
export function needsAdmin<N extends CommandName>(name: N, args: ArgsOf<N>): boolean {
  return (COMMANDS[name] as unknown as Command<ArgsOf<N>, unknown, unknown>).privilege(args) === 'admin';
}

/** Pure: `mailq -bP`'s count, every configured group first (0 included), then any other the listing has. */
export function countByGroup(groups: readonly string[], listed: Iterable<{ group: string }>): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(['mqueue', ...groups].map((g) => [g, 0]));
  for (const l of listed) counts[l.group] = (counts[l.group] ?? 0) + 1;
  return counts;
}
