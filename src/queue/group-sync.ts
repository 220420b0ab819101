/**
 * queue/group-sync.ts — group commit for directory fsyncs.
 *
 * sync(dir) resolves after an fsync of `dir` that began after the call. While
 * one fsync runs, every new request waits for the next one, and that next
 * one serves all of them: N concurrent commits cost about two fsyncs, not N.
 */
import fs from 'node:fs/promises';

interface DirState {
  running: Promise<void> | null;
  next: Promise<void> | null;
}

export class GroupSync {
  private readonly dirs = new Map<string, DirState>();

  sync(dir: string): Promise<void> {
    let st = this.dirs.get(dir);
    if (!st) {
      st = { running: null, next: null };
      this.dirs.set(dir, st);
    }
    const state = st;
    if (!state.running) {
      state.running = fsyncDir(dir).finally(() => {
        state.running = null;
      });
      return state.running;
    }
    if (!state.next) {
      state.next = state.running.catch(() => undefined).then(() => {
        state.next = null;
        return this.sync(dir);
      });
    }
    return state.next;
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
