/**
 * odmr/policy.ts — the decisions of ODMR (RFC 2645, SPEC §7), as pure
 * functions: the customers' file (`odmr.users`), which domains a customer
 * may take, whether AUTH may be offered on this connection, the CRAM-MD5
 * check, the ATRN argument and the reply to ATRN. The server
 * (odmr/server-session.ts) gathers the facts and carries the answer out;
 * the client (odmr/client.ts) uses the CRAM-MD5 digest. No clock, disk or
 * network here.
 *
 * The customers' file, one customer a line (`#` comments):
 *
 *     # user   secret            domains it may take (optional)
 *     cust1    s3cret-1          cust1.dom,.cust1.dom
 *     CustTwo  "with space"
 *
 * With no domains the user takes the domains of the class of the same name
 * (a hold class `cust1` in `classes`, as a class file per customer); with
 * neither it takes nothing (every ATRN is refused). A domain entry follows
 * the class rules: `dom` is that domain only, `.dom` also its subdomains.
 * The secret is kept as written: CRAM-MD5 (RFC 2195), the mechanism
 * RFC 2645 names and the one fetchmail uses, needs it on both ends, as
 * authinfo does; keep the file 0600.
 */
import crypto from 'node:crypto';
import type { ConfigProblem } from '../errors.js';
import { classEntry, matchesClass } from '../config/classic-files.js';
import { isHostname } from '../config/cidr.js';

export interface OdmrUser {
  user: string;
  secret: string;
  /** Class entries (`dom`, `.dom`); absent: the class named like the user. */
  domains?: string[];
  line: number;
}

/** Parses the customers' file; bad lines are reported (file:line) and skipped. */
export function parseOdmrUsers(text: string, file: string): { entries: OdmrUser[]; problems: ConfigProblem[] } {
  const entries: OdmrUser[] = [];
  const problems: ConfigProblem[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const content = raw.replace(/^\s*#.*$/, '').trim();
    if (!content) return;
    const m = /^(\S+)\s+(?:"((?:[^"\\]|\\.)*)"|(\S+))(?:\s+(\S+))?$/.exec(content);
    if (!m) return void problems.push({ file, line, message: 'write: user secret [domain,domain...]' });
    const domains = m[4]?.split(',').filter(Boolean).map((d) => d.toLowerCase().replace(/\.$/, ''));
    const bad = domains?.find((d) => !isHostname(d.replace(/^\./, '')));
    if (bad !== undefined) return void problems.push({ file, line, message: `invalid domain "${bad}"` });
    entries.push({ user: m[1], secret: m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3], ...(domains ? { domains } : {}), line });
  });
  return { entries, problems };
}

/** The class entries a user may take: its listed domains, else the class named after it. */
export function domainsOfUser(user: OdmrUser | undefined, classes: ReadonlyMap<string, Iterable<string>>): Set<string> {
  if (!user) return new Set();
  return new Set([...(user.domains ?? classes.get(user.user) ?? [])].map(classEntry));
}

/** AUTH is offered and taken only over TLS, unless odmr.insecureAuth (tests). */
export function mayAuth(f: { secure: boolean; insecureAuth: boolean }): boolean {
  return f.secure || f.insecureAuth;
}

/** HMAC-MD5 of the challenge with the secret, hex (RFC 2195). */
export function cramMd5Digest(secret: string, challenge: string): string {
  return crypto.createHmac('md5', secret).update(challenge).digest('hex');
}

/** Whether a CRAM-MD5 answer (`user digest`, decoded) is right for this secret; constant time in the digest. */
export function cramMd5Matches(secret: string, challenge: string, digest: string): boolean {
  const want = Buffer.from(cramMd5Digest(secret, challenge));
  const got = Buffer.from(digest.toLowerCase());
  return want.length === got.length && crypto.timingSafeEqual(want, got);
}

/**
 * `ATRN [dom[,dom...]]`: the domains asked for, lower case, or an error
 * (501). An empty argument means every domain the user may take (RFC 2645
 * §5.2.1: "the server uses the domains associated with the customer").
 */
export function parseAtrn(arg: string): { domains: string[] } | { error: string } {
  const a = arg.trim();
  if (!a) return { domains: [] };
  const domains = a.split(',').map((d) => d.trim().toLowerCase().replace(/\.$/, ''));
  const bad = domains.find((d) => !isHostname(d));
  if (bad !== undefined) return { error: `5.5.4 Syntax: ATRN [domain[,domain...]] ("${bad}" is not a domain)` };
  return { domains: [...new Set(domains)] };
}

export interface AtrnFacts {
  authenticated: boolean;
  /** The domains asked for (parseAtrn); empty: all the user may take. */
  asked: readonly string[];
  /** Class entries the user may take (domainsOfUser). */
  allowed: ReadonlySet<string>;
  /** Whether a flush (ETRN or another ODMR session) is delivering this domain's mail right now. */
  isBusy: (domain: string) => boolean;
  /** Messages queued with a pending recipient in the taken domains. */
  pending: number;
}

export type AtrnDecision =
  | { code: 250; text: string; domains: string[] }
  | { code: 450 | 453 | 530; text: string };

/**
 * The reply to an ATRN whose argument parsed (RFC 2645 §5.2.1): 530 before
 * AUTH; 450 for a domain the user may not take (nothing is flushed, not
 * even the allowed ones: the customer asked for a set) or one being
 * flushed now (never a second flush); 453 nothing waiting; 250 turn the
 * connection round. Run twice: once without `pending` to know what to
 * count, once with it.
 */
export function decideAtrn(f: AtrnFacts): AtrnDecision {
  if (!f.authenticated) return { code: 530, text: '5.7.0 Authentication required' };
  const domains = f.asked.length ? [...f.asked] : [...f.allowed].map((e) => e.replace(/^\./, ''));
  if (!domains.length) return { code: 450, text: 'ATRN request refused: no domain for this user' };
  const refused = domains.filter((d) => !matchesClass(d, f.allowed));
  if (refused.length) return { code: 450, text: `ATRN request refused: not your domain ${refused.join(',')}` };
  const busy = domains.filter((d) => f.isBusy(d));
  if (busy.length) return { code: 450, text: `ATRN request refused: mail for ${busy.join(',')} is being delivered now, try again later` };
  if (f.pending === 0) return { code: 453, text: 'You have no mail' };
  return { code: 250, text: 'OK now reversing the connection', domains };
}

/**
 * Whether a recipient address falls under the domains an ATRN took: the
 * domain itself, and its subdomains where the user's class entry says
 * `.dom` (as the hold classes match).
 */
export function takenBy(domain: string, taken: readonly string[], allowed: ReadonlySet<string>): boolean {
  const d = domain.toLowerCase().replace(/\.$/, '');
  return taken.some((t) => d === t || d.endsWith(`.${t}`)) && matchesClass(d, allowed);
}
