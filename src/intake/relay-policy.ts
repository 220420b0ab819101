/**
 * intake/relay-policy.ts — may this client send to this recipient? (pure)
 *
 * Relay (SPEC §9): clients in smtp.mynetworks and authenticated clients may
 * send anywhere; anyone may send to localDomains and to the domains of the
 * hold classes. Those match as sendmail's classes do (config/classic-files.ts
 * matchesClass): `cust1.dom` is that domain only, `.cust1.dom` adds its
 * subdomains. Everything else: 550 5.7.1 Relaying denied.
 *
 * Backscatter (SPEC §9): a class with `recipients` (Postfix's
 * relay_recipient_maps) takes only the listed users or `@domain` catch-alls
 * of its domains; any other recipient of that class gets 550 5.1.1 at RCPT,
 * from every client, so no one's mail to an unknown user is bounced later.
 *
 * Postmaster (RFC 5321 §4.5.1): a bare `postmaster` is accepted from anyone;
 * from outside it means the postmaster of the first localDomain and routes
 * like any mail to that domain (normally its LAN route), never to the WAN
 * (postmasterAddress).
 *
 * Callers: SMTP intake at RCPT (through the sets the daemon builds and
 * rebuilds on reload) and `quietlink route`. No I/O, nothing thrown.
 */
import type { NetworkList } from '../config/cidr.js';
import { classEntry, matchesClass } from '../config/classic-files.js';
import { MailError } from '../errors.js';

export interface RelayPolicy {
  mynetworks: NetworkList;
  /** localDomains plus every domain of the hold classes, as classEntry() writes them. */
  openDomains: ReadonlySet<string>;
}

/** The domains anyone may send to: localDomains and every entry of the hold classes (`.dom` kept). */
export function openDomainsOf(localDomains: readonly string[], holdClasses: readonly string[], classes: ReadonlyMap<string, ReadonlySet<string>>): Set<string> {
  const open = new Set<string>(localDomains.map(classEntry));
  for (const cls of holdClasses) for (const d of classes.get(cls) ?? []) open.add(classEntry(d));
  return open;
}

/** Whether `domain` is in the set: exactly, or under a `.dom` entry (sendmail's class semantics). */
export function inDomainSet(domain: string, set: ReadonlySet<string>): boolean {
  return matchesClass(domain, set);
}

export function mayRelay(
  facts: { clientIp: string; authenticated: boolean; recipientDomain: string },
  policy: RelayPolicy,
): boolean {
  return facts.authenticated || policy.mynetworks.has(facts.clientIp) || inDomainSet(facts.recipientDomain, policy.openDomains);
}

/** One class that has a recipient list: its domain entries and its `user@dom` / `@dom` entries (lower case). */
export interface ClassRecipients {
  name: string;
  domains: ReadonlySet<string>;
  recipients: ReadonlySet<string>;
}

/**
 * The classes that have a recipient list, from the class domains and the
 * parsed lists (class name → entries). A class without a list is absent:
 * its recipients are not checked.
 */
export function recipientListsOf(
  classes: ReadonlyMap<string, ReadonlySet<string>>,
  recipients: ReadonlyMap<string, Iterable<string>>,
): ClassRecipients[] {
  return [...recipients].map(([name, list]) => ({
    name,
    domains: new Set([...(classes.get(name) ?? [])].map(classEntry)),
    recipients: new Set([...list].map((e) => e.toLowerCase())),
  }));
}

/**
 * Whether `address` may be accepted as far as the recipient lists go: true
 * when no class with a list covers its domain, or when one that does lists
 * the address or `@domain`. Addresses compare in lower case.
 */
export function recipientAllowed(address: string, lists: readonly ClassRecipients[]): boolean {
  const a = address.toLowerCase().replace(/\.$/, '');
  const domain = a.slice(a.lastIndexOf('@') + 1);
  let covered = false;
  for (const cls of lists) {
    if (!matchesClass(domain, cls.domains)) continue;
    if (cls.recipients.has(a) || cls.recipients.has(`@${domain}`)) return true;
    covered = true;
  }
  return !covered;
}

/** The RCPT reply for a recipient recipientAllowed() refused. */
export function userUnknown(): MailError {
  return new MailError(550, '5.1.1', 'Recipient address rejected: user unknown');
}

/**
 * What a bare `RCPT TO:<postmaster>` means. From smtp.mynetworks or an
 * authenticated client: the gateway's own postmaster, `postmaster@hostname`,
 * which the aliases file sends on (`postmaster: root`). From outside: the
 * postmaster of the first localDomain (a `.dom` entry names dom), an open
 * domain that routes like all its mail (normally a LAN route) and that the
 * aliases never expand, so an outsider cannot send it to the WAN; with no
 * localDomains, `postmaster@hostname` as well.
 */
export function postmasterAddress(localDomains: readonly string[], hostname: string, fromOutside: boolean): string {
  const first = localDomains[0];
  if (!fromOutside || first === undefined) return `postmaster@${hostname}`;
  return `postmaster@${classEntry(first).replace(/^\./, '')}`;
}
