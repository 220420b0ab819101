/**
 * link/link-state.ts — the link's state, `down | dialing | up`, and the only
 * place that changes it (SPEC §5). Learned from `quietlink link up|down`
 * (PPP hooks), the interface watcher, and quietlink's own dial command.
 * Others subscribe with onChange(); repeated reports of the same state are
 * merged (a hook and the watcher may both say "up").
 *
 * Allowed transitions: any state → any other; a report of the current state
 * changes nothing.
 */

export type Link = 'down' | 'dialing' | 'up';

export interface LinkSnapshot {
  state: Link;
  since: number;
  iface?: string;
  cause: string;
}

export class LinkState {
  private snap: LinkSnapshot;
  private readonly listeners: Array<(now: LinkSnapshot, before: LinkSnapshot) => void> = [];

  constructor(initial: Link, now: number, cause: string) {
    this.snap = { state: initial, since: now, cause };
  }

  get current(): LinkSnapshot {
    return this.snap;
  }

  /** Reports a state; returns whether it changed. */
  set(state: Link, now: number, cause: string, iface?: string): boolean {
    if (state === this.snap.state) {
      if (iface && !this.snap.iface) this.snap = { ...this.snap, iface };
      return false;
    }
    const before = this.snap;
    this.snap = { state, since: now, cause, iface: iface ?? (state === 'down' ? undefined : before.iface) };
    for (const l of this.listeners) l(this.snap, before);
    return true;
  }

  /** Subscribes; returns the unsubscribe. */
  onChange(listener: (now: LinkSnapshot, before: LinkSnapshot) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }
}
