/**
 * link/link-gate.ts — the one question delivery and the resolver ask the
 * link module: may a link route (or a DNS query) go out now? The link
 * module (link state, flush windows, SPEC §4–§5) will own the answer; until
 * it exists every queue run may use the link.
 */

export interface LinkGate {
  mayUseLink(): boolean;
}

export const alwaysUp: LinkGate = { mayUseLink: () => true };
