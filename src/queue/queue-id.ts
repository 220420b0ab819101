/**
 * queue/queue-id.ts — queue IDs: unique, sortable by arrival, safe in file names.
 *
 * 16 characters of Crockford base32: 9 for the millisecond clock, 3 for a
 * counter within the millisecond (so one process never repeats or reorders),
 * 4 random (so the CLI writing to maildrop and the daemon never collide).
 * A split envelope gets `-2`, `-3`… after the ID of the message it came from.
 */

export type QueueId = string & { readonly __brand: 'QueueId' };

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ID_RE = /^[0-9A-HJKMNP-TV-Z]{16}(-[1-9][0-9]{0,3})?$/;

function base32(n: number, width: number): string {
  let s = '';
  for (let i = 0; i < width; i++) {
    s = ALPHABET[n % 32] + s;
    n = Math.floor(n / 32);
  }
  return s;
}

export function isQueueId(text: string): text is QueueId {
  return ID_RE.test(text);
}

export function asQueueId(text: string): QueueId {
  if (!isQueueId(text)) throw new Error(`Invalid queue ID "${text}"`);
  return text;
}

/** The ID of part `n` (2, 3, …) of a split envelope. */
export function partId(base: QueueId, n: number): QueueId {
  return (n <= 1 ? base : `${base.replace(/-\d+$/, '')}-${n}`) as QueueId;
}

/** The millisecond time an ID was made at. */
export function idTime(id: QueueId): number {
  let t = 0;
  for (const ch of id.slice(0, 9)) t = t * 32 + ALPHABET.indexOf(ch);
  return t;
}

export function createIdGenerator(now: () => number = Date.now, random: () => number = Math.random): () => QueueId {
  let lastMs = -1;
  let seq = 0;
  return () => {
    let ms = now();
    if (ms <= lastMs) {
      ms = lastMs;
      seq++;
      if (seq >= 32 ** 3) {
        ms = lastMs + 1;
        seq = 0;
      }
    } else {
      seq = 0;
    }
    lastMs = ms;
    return (base32(ms, 9) + base32(seq, 3) + base32(Math.floor(random() * 32 ** 4), 4)) as QueueId;
  };
}
