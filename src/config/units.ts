/**
 * config/units.ts — durations (`30s 15m 4h 5d`) and sizes (`25MB`) as the
 * configuration writes them. Pure; callers report the error with file:line.
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const SIZE_UNITS: Record<string, number> = { b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };

/** Milliseconds for `30s`, `15m`, `1h30m`; a bare number is seconds (`0` means none). */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new Error(`invalid duration ${value}`);
    return value * 1000;
  }
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const re = /(\d+)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== text.length) {
    throw new Error(`invalid duration "${value}" (use e.g. 30s, 15m, 4h, 5d)`);
  }
  return total;
}

/** Bytes for `25MB`, `512k`, `1048576`. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) throw new Error(`invalid size ${value}`);
    return value;
  }
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(value.trim());
  const unit = m ? SIZE_UNITS[m[2].toLowerCase() || 'b'] : undefined;
  if (!m || unit === undefined) throw new Error(`invalid size "${value}" (use e.g. 512KB, 25MB)`);
  return Math.round(Number(m[1]) * unit);
}

/** `30m` back from milliseconds, for status and logs. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
