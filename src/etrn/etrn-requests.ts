/**
 * etrn/etrn-requests.ts — the gateway's ETRN client step (RFC 1985): ETRN
 * for etrn.domains to etrn.relay (a window's, or the operator's `quietlink
 * etrn [--odmr] [--relay HOST] DOMAIN...`), counted and logged once here;
 * an ODMR pull (odmr/client.ts) instead when etrn.mode is odmr or the
 * operator said --odmr. The exchange itself is etrn-client.ts; failures are
 * in the result, never thrown.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Resolver } from '../delivery/resolver.js';
import { sendEtrnToRelays, type EtrnResult } from './etrn-client.js';

export interface EtrnRequestDeps {
  config: () => Config;
  resolver: Resolver;
  log: Logger;
  /** Told how many ETRN commands got a reply (metrics). */
  onSent?: (replies: number) => void;
  /** etrn.mode odmr: the pull by ODMR (RFC 2645, odmr/client.ts) instead of ETRN. */
  pullByOdmr?: (relays: readonly string[], domains: readonly string[]) => Promise<EtrnResult>;
}

export class EtrnRequests {
  constructor(private readonly d: EtrnRequestDeps) {}

  /**
   * ETRN for the given domains (default etrn.domains) to the given relays
   * (default etrn.relay); null when there is nothing to ask. `odmr` true
   * pulls by ODMR whatever etrn.mode says (`quietlink etrn --odmr`).
   */
  async send(relays?: readonly string[], domains?: readonly string[], odmr?: boolean): Promise<EtrnResult | null> {
    const c = this.d.config();
    const pull = (odmr ?? c.etrn.mode === 'odmr') ? this.d.pullByOdmr : undefined;
    const to = relays ?? c.etrn.relay;
    const names = domains ?? c.etrn.domains;
    if (!to.length || !names.length) return null;
    const result = pull ? await pull(to, names) : await sendEtrnToRelays(to, names, c.hostname, c.timeout.etrn, this.d.resolver);
    if (result.replies.length) this.d.onSent?.(result.replies.length);
    this.d.log.info({ relay: result.relay, replies: result.replies, offersEtrn: result.offersEtrn, error: result.error }, 'etrn sent');
    return result;
  }
}
