/**
 * intake/disk-policy.ts — sendmail's MinFreeBlocks (SPEC §9): below
 * `queue.minFreeBlocks` free blocks (or a byte figure) on the spool's file
 * system, intake answers 452 4.3.1 and takes nothing it cannot keep. A
 * declared SIZE counts against the free space, as sendmail's
 * enoughdiskspace() does. The decision is pure; spoolSpace() reads statfs.
 */
import fs from 'node:fs';
import { MailError } from '../errors.js';

export interface Space {
  /** Blocks available to an unprivileged writer. */
  bavail: number;
  bsize: number;
}

export type MinFree = { blocks: number } | { bytes: number };

/** Is there room for a message of `need` bytes (0 = unknown) with the reserve kept? */
export function hasRoom(space: Space, min: MinFree, need = 0): boolean {
  const free = space.bavail * space.bsize - Math.max(0, need);
  const reserve = 'bytes' in min ? min.bytes : min.blocks * space.bsize;
  return free >= reserve;
}

/** Free space on the spool's file system; null when statfs fails (no spool yet): then nothing is refused for it. */
export function spoolSpace(spool: string): Space | null {
  try {
    const s = fs.statfsSync(spool);
    return { bavail: s.bavail, bsize: s.bsize };
  } catch {
    return null;
  }
}

/** The reply when the reserve is reached or a write ran out of space. */
export function insufficientStorage(cause?: unknown): MailError {
  return new MailError(452, '4.3.1', 'Insufficient system storage', { cause });
}

/** Did a write fail because the file system is full (or a quota is)? */
export function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
