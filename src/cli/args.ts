/**
 * cli/args.ts — argument helpers shared by the subcommands: the global
 * `-c FILE` (before or after the subcommand), and sendmail's queue selectors
 * (`-qR STR`, `-qRSTR`, `-q!R STR`, `-qG GROUP`, `-qQ`), and sendmail's
 * delivery-mode letters (`-odi`, `-O DeliveryMode=q`).
 */
import { UsageError } from '../errors.js';
import { parseSelectorFlag, selectorTakesNext, type Selection } from '../queue/select.js';

/** Removes `-c FILE` / `-cFILE` / `--config FILE` from argv. */
export function extractConfig(argv: readonly string[]): { config?: string; rest: string[] } {
  const rest: string[] = [];
  let config: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { rest.push(...argv.slice(i)); break; }
    if (a === '-c' || a === '--config') {
      if (argv[i + 1] === undefined) throw new UsageError(`${a} needs a file name`);
      config = argv[++i];
    } else if (a.startsWith('--config=')) config = a.slice(9);
    else rest.push(a);
  }
  return { config, rest };
}

/**
 * Takes the selector flags out of argv: returns the selection and the other
 * arguments. `-q` alone (no selector letter) is left in place.
 */
export function extractSelection(argv: readonly string[]): { selection: Selection; rest: string[] } {
  const selection: Selection = { selectors: [], quarantined: false };
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('-q') && a.length > 2) {
      const flag = a.slice(2);
      const takesNext = selectorTakesNext(flag);
      const value = takesNext ? argv[i + 1] : undefined;
      const sel = parseSelectorFlag(flag, value);
      if (sel === null) {
        if (/^!?[RSIG]/.test(flag)) throw new UsageError(`${a} needs a value`);
        rest.push(a);
        continue;
      }
      if (takesNext) i++;
      if (sel === 'Q') selection.quarantined = true;
      else selection.selectors.push(sel);
    } else {
      rest.push(a);
    }
  }
  return { selection, rest };
}

/** Pulls boolean flags out; returns which were present. */
export function takeFlags<T extends string>(argv: string[], names: readonly T[]): Record<T, boolean> {
  const found = {} as Record<T, boolean>;
  for (const n of names) {
    const i = argv.indexOf(n);
    found[n] = i >= 0;
    if (i >= 0) argv.splice(i, 1);
  }
  return found;
}

export function rejectUnknownFlags(argv: readonly string[], command: string): void {
  const bad = argv.find((a) => a.startsWith('-'));
  if (bad) throw new UsageError(`${command}: unknown option ${bad}`);
}

/** sendmail's -od letters; 'deferred' is quietlink's (SPEC §3): LAN routes at once, link routes in a window. */
export type DeliveryWish = 'interactive' | 'background' | 'queue' | 'deferred';
const DELIVERY_MODES: Record<string, DeliveryWish> = { i: 'interactive', b: 'background', q: 'queue', d: 'deferred' };

export function deliveryWish(letter: string): DeliveryWish {
  const mode = DELIVERY_MODES[letter.toLowerCase()];
  if (!mode) throw new UsageError(`sendmail: unknown delivery mode "${letter}" (use i, b, q or d)`);
  return mode;
}
