/**
 * queue/select.ts — sendmail's queue selectors (`-qR`, `-qS`, `-qI`, `-qG`,
 * `-qQ`, negated with `!`: `-q!Rseattle`). Parsing and matching are pure.
 */
import type { Envelope } from './envelope.js';

export interface Selector {
  kind: 'R' | 'S' | 'I' | 'G';
  value: string;
  negate: boolean;
}

export interface Selection {
  selectors: Selector[];
  /** -qQ: select quarantined items instead of the others. */
  quarantined: boolean;
}

/** Parses one `-q…` flag (without the leading `-q`); null when it is not a selector. */
export function parseSelectorFlag(flag: string, value: string | undefined): Selector | 'Q' | null {
  const m = /^(!?)([RSIGQ])(.*)$/s.exec(flag);
  if (!m) return null;
  if (m[2] === 'Q') return 'Q';
  const v = m[3] || value;
  if (v === undefined || v === '') return null;
  return { kind: m[2] as Selector['kind'], value: v, negate: m[1] === '!' };
}

/** Whether the flag `-qX` consumes the next argument as its value. */
export function selectorTakesNext(flag: string): boolean {
  return /^!?[RSIG]$/.test(flag);
}

/** What selectors look at: an envelope, or mailq's listing of one (queue/listing.ts). */
type Selectable = Pick<Envelope, 'id' | 'sender' | 'group'> & {
  quarantine?: unknown;
  recipients: ReadonlyArray<{ address: string; state: string }>;
};

function matchOne(s: Selector, env: Selectable): boolean {
  const v = s.value.toLowerCase();
  switch (s.kind) {
    case 'R': return env.recipients.some((r) => r.state === 'pending' && r.address.toLowerCase().includes(v));
    case 'S': return env.sender.toLowerCase().includes(v);
    case 'I': return env.id.toLowerCase().includes(v);
    case 'G': return env.group.toLowerCase() === v;
  }
}

/** As sendmail: selectors of one kind are ORed, different kinds ANDed. */
export function matches(sel: Selection, env: Selectable): boolean {
  if (sel.quarantined !== Boolean(env.quarantine)) return false;
  const kinds = new Set(sel.selectors.map((s) => s.kind));
  for (const kind of kinds) {
    if (!sel.selectors.some((s) => s.kind === kind && matchOne(s, env) !== s.negate)) return false;
  }
  return true;
}
