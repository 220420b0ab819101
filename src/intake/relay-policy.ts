/**
 * intake/relay-policy.ts — may this client send to this recipient? (pure)
 *
 * Clients in smtp.mynetworks and authenticated clients may send anywhere;
 * anyone may send to localDomains and to the domains of the hold classes,
 * subdomains included (sendmail's relay_entire_domain for class m and
 * CustDoms). Everything else: 550 5.7.1 Relaying denied.
 */
import type { NetworkList } from '../config/cidr.js';

export interface RelayPolicy {
  mynetworks: NetworkList;
  /** localDomains plus every domain of the hold classes. */
  openDomains: ReadonlySet<string>;
}

/** The domains anyone may send to: localDomains and every domain of the hold classes. */
export function openDomainsOf(localDomains: readonly string[], holdClasses: readonly string[], classes: ReadonlyMap<string, ReadonlySet<string>>): Set<string> {
  const open = new Set<string>(localDomains);
  for (const cls of holdClasses) for (const d of classes.get(cls) ?? []) open.add(d);
  return open;
}

export function inDomainSet(domain: string, set: ReadonlySet<string>): boolean {
  let d = domain.toLowerCase();
  for (;;) {
    if (set.has(d) || set.has(`.${d}`)) return true;
    const dot = d.indexOf('.');
    if (dot < 0) return false;
    d = d.slice(dot + 1);
  }
}

export function mayRelay(
  facts: { clientIp: string; authenticated: boolean; recipientDomain: string },
  policy: RelayPolicy,
): boolean {
  return facts.authenticated || policy.mynetworks.has(facts.clientIp) || inDomainSet(facts.recipientDomain, policy.openDomains);
}
