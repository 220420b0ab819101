/**
 * late-bound.ts — a named place for a part that is built after the parts
 * that call it (daemon.ts: the runner's notices need the next scheduled
 * window before the triggers exist; the maildrop pickup hands its messages
 * to the submissions, which drive it). Calling it before bind() is a bug
 * and throws, naming the part; binding twice throws too.
 */
import { QuietlinkError } from './errors.js';

export interface LateBound<T> {
  /** The part; throws when it has not been bound yet. */
  get(): T;
  bind(value: T): T;
}

export function lateBound<T>(what: string): LateBound<T> {
  let value: { v: T } | null = null;
  return {
    get() {
      if (!value) throw new QuietlinkError(`The ${what} was used before it was built`);
      return value.v;
    },
    bind(v) {
      if (value) throw new QuietlinkError(`The ${what} was bound twice`);
      value = { v };
      return v;
    },
  };
}
