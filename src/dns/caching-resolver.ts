/**
 * dns/caching-resolver.ts — the link-gated caching resolver (SPEC §6) and the
 * Resolver that delivery uses. Answers, in this order: the gateway's own
 * name and the dns.hosts names (locally, never forwarded; NODATA with an SOA
 * for other types); the cache while the TTL lasts; the upstream servers —
 * only when `mayForward()` says the link is up or a window is open; else a
 * stale answer within serveStale (TTL 30 s, RFC 8767) or SERVFAIL at once,
 * without a packet. Every type is forwarded and cached as wire bytes
 * (answer.ts), keyed by name, type, class, DO and CD. Identical queries in
 * flight share one upstream query. NXDOMAIN and NODATA are cached for
 * min(SOA TTL, SOA minimum) with their SOA (RFC 2308). Inside a window, an
 * upstream query that gets no answer is asked once more after the window's
 * DialDelay (the line may still be dialing). A lookup refused because the
 * link is down fails delivery with LinkDownError ("waiting for the link"),
 * not a DNS error.
 */
import dns2 from 'dns2';
import { LinkDownError, MailError } from '../errors.js';
import type { Resolver } from '../delivery/resolver.js';
import { DnsCache } from './cache.js';
import { fromUpstream, localAnswer, render, type WireAnswer } from './answer.js';
import type { HostsMap } from './hosts-file.js';
import type { Upstream } from './upstream.js';
import { RCODE, TYPE, encodeName, makeQuery, queryName, type Query } from './wire.js';

export { RCODE };
const TYPES = (dns2 as unknown as { Packet: { TYPE: Record<string, number> } }).Packet.TYPE;
const parsePacket = (dns2 as unknown as { Packet: { parse(b: Buffer): { answers: DnsRecord[] } } }).Packet.parse;

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  [field: string]: unknown;
}

/** What the gateway's own lookups get (decoded records). */
export interface Answer {
  rcode: number;
  answers: DnsRecord[];
  /** Answered from the gateway's own data (hostname, dns.hosts). */
  local: boolean;
  stale: boolean;
  /** Not forwarded: the link is down (and nothing stale was at hand). */
  linkDown?: boolean;
}

/** What the DNS server gets: a wire answer to render (received `age` seconds ago), or an RCODE alone. */
export type Reply =
  | { answer: WireAnswer; age: number; stale: boolean; local: boolean }
  | { rcode: number; linkDown: boolean };

export interface ResolverCounters {
  hits: number;
  misses: number;
  stale: number;
  refusedForwards: number;
  upstreamFailures: number;
  local: number;
}

export interface CachingResolverDeps {
  upstream: Upstream;
  /** The link module's answer: may a query go out now? */
  mayForward: () => boolean;
  /** The open window's DialDelay: after an unanswered query, true when it is worth asking once more. */
  dialRetry?: (what: string) => Promise<boolean>;
  now: () => number;
  serveStale: number;
  /** The gateway's own names and dns.hosts (reloaded by the caller). */
  local: () => { names: ReadonlySet<string>; hosts: HostsMap };
  cache?: DnsCache;
}

export function typeName(type: number): string {
  return Object.keys(TYPES).find((k) => TYPES[k] === type) ?? `TYPE${type}`;
}

type LocalAddresses = { a: readonly string[]; aaaa: readonly string[] };
const LOOPBACK: LocalAddresses = { a: ['127.0.0.1'], aaaa: ['::1'] };

export class CachingResolver implements Resolver {
  readonly counters: ResolverCounters = { hits: 0, misses: 0, stale: 0, refusedForwards: 0, upstreamFailures: 0, local: 0 };
  private readonly inflight = new Map<string, Promise<Reply>>();
  private readonly cache: DnsCache;
  /** The local names by wire name, for the names and hosts objects they were made from. */
  private localByKey: { names: ReadonlySet<string>; hosts: HostsMap; map: Map<string, LocalAddresses> } | null = null;

  constructor(private readonly deps: CachingResolverDeps) {
    this.cache = deps.cache ?? new DnsCache();
  }

  private localFor(q: Query): LocalAddresses | undefined {
    const { names, hosts } = this.deps.local();
    if (this.localByKey?.names !== names || this.localByKey.hosts !== hosts) {
      const map = new Map<string, LocalAddresses>();
      const add = (name: string, e: LocalAddresses) => {
        try {
          map.set(encodeName(name).toString('latin1'), e);
        } catch {
          // a name that cannot be a DNS name is never asked for
        }
      };
      for (const n of names) add(n, LOOPBACK);
      for (const [n, e] of hosts) add(n, e);
      this.localByKey = { names, hosts, map };
    }
    return this.localByKey.map.get(q.nameKey);
  }

  /** The answer at hand without waiting: a local one or a fresh cache hit; null when it needs more. */
  cached(q: Query): Reply | null {
    const local = this.localFor(q);
    if (local) {
      this.counters.local++;
      return { answer: localAnswer(q, local), age: 0, stale: false, local: true };
    }
    const now = this.deps.now();
    const hit = this.cache.fresh(q.key, now);
    if (!hit) return null;
    this.counters.hits++;
    return { answer: hit.answer, age: Math.floor((now - hit.storedAt) / 1000), stale: false, local: false };
  }

  /**
   * One question, answered as SPEC §6 says. `own`: the gateway's own lookup
   * (delivery, ETRN), which may wait out a window's DialDelay; a LAN
   * client's query never does (it has its own timeout).
   */
  resolve(q: Query, own = false): Promise<Reply> {
    const at = this.cached(q);
    if (at) return Promise.resolve(at);
    const hit = this.cache.get(q.key, this.deps.now(), this.deps.serveStale);
    const stale = (): Reply | null => (hit.kind === 'stale'
      ? (this.counters.stale++, { answer: hit.entry.answer, age: 0, stale: true, local: false })
      : null);
    if (!this.deps.mayForward() || !this.deps.upstream.configured) {
      // the link is down: never a packet
      this.counters.refusedForwards++;
      return Promise.resolve(stale() ?? { rcode: RCODE.SERVFAIL, linkDown: this.deps.upstream.configured });
    }
    this.counters.misses++;
    const running = this.inflight.get(q.key);
    if (running) return running;
    const asking = (async (): Promise<Reply> => {
      try {
        const ask = () => this.deps.upstream.ask(q);
        const r = await ask().catch(async (err) => {
          if (!own || !(await this.deps.dialRetry?.(`DNS ${typeName(q.type)} ${queryName(q)}`))) throw err;
          return ask();
        });
        const answer = fromUpstream(r.msg, r.index);
        if (answer.rcode === RCODE.NOERROR || answer.rcode === RCODE.NXDOMAIN) this.cache.set(q.key, answer, this.deps.now());
        else if (hit.kind === 'stale') return stale()!; // SERVFAIL and the like: a stale answer is better (RFC 8767)
        return { answer, age: 0, stale: false, local: false };
      } catch {
        this.counters.upstreamFailures++;
        return stale() ?? { rcode: RCODE.SERVFAIL, linkDown: false };
      } finally {
        this.inflight.delete(q.key);
      }
    })();
    this.inflight.set(q.key, asking);
    return asking;
  }

  /** The gateway's own lookup of one type, with the records decoded (A/AAAA/MX and CNAMEs; others as `data`). */
  async lookup(name: string, type: number, own = false): Promise<Answer> {
    let q: Query;
    try {
      q = makeQuery(name, type);
    } catch {
      // not a DNS name (a label over 63 bytes, a name over 255): no such domain
      return { rcode: RCODE.NXDOMAIN, answers: [], local: false, stale: false };
    }
    const r = await this.resolve(q, own);
    if (!('answer' in r)) return { rcode: r.rcode, answers: [], local: false, stale: false, linkDown: r.linkDown };
    let records: DnsRecord[] = [];
    try {
      records = parsePacket(render(r.answer, q, 65_535, r.age, r.stale)).answers;
    } catch {
      // a record dns2 cannot decode: the gateway's own lookups see no records
    }
    const answers = records.filter((a) => a.type === type || a.type === TYPE.CNAME);
    return { rcode: r.answer.rcode, answers, local: r.local, stale: r.stale };
  }

  private static fail(name: string, a: Answer, what: string): never {
    if (a.linkDown) throw new LinkDownError(`Waiting for the link: cannot look up ${what} of ${name} while the link is down`);
    if (a.rcode === RCODE.NXDOMAIN) throw new MailError(550, '5.1.2', `Host or domain name not found: ${name}`);
    throw new MailError(451, '4.4.3', `Cannot look up ${what} of ${name} now (DNS ${a.rcode === RCODE.SERVFAIL ? 'unavailable' : `rcode ${a.rcode}`})`);
  }

  async resolveMx(domain: string): Promise<Array<{ exchange: string; priority: number }>> {
    const a = await this.lookup(domain, TYPE.MX, true);
    if (a.rcode !== RCODE.NOERROR) CachingResolver.fail(domain, a, 'MX');
    return a.answers.filter((r) => r.type === TYPE.MX).map((r) => ({ exchange: String(r.exchange ?? '').replace(/\.$/, '') || '.', priority: Number(r.priority) }));
  }

  async resolveAddresses(host: string): Promise<string[]> {
    const [a4, a6] = await Promise.all([this.lookup(host, TYPE.A, true), this.lookup(host, TYPE.AAAA, true)]);
    const out = [...a4.answers, ...a6.answers].filter((r) => r.type === TYPE.A || r.type === TYPE.AAAA).map((r) => String(r.address));
    if (out.length) return out;
    if (a4.rcode === RCODE.NXDOMAIN || a6.rcode === RCODE.NXDOMAIN) CachingResolver.fail(host, { ...a4, rcode: RCODE.NXDOMAIN }, 'addresses');
    if (a4.rcode !== RCODE.NOERROR) CachingResolver.fail(host, a4, 'addresses');
    throw new MailError(550, '5.1.2', `Host ${host} has no address`);
  }

  /**
   * At the start of a window: the records every next hop with due mail
   * needs, in one burst — MX and then the exchangers' addresses for a bare
   * name, A and AAAA only for a `[name]` (mx: false).
   */
  async prefetch(hosts: ReadonlyArray<{ name: string; mx: boolean }>): Promise<void> {
    await Promise.all(hosts.map(async ({ name, mx: withMx }) => {
      const mx = withMx ? await this.resolveMx(name).catch(() => []) : [];
      const names = mx.length ? mx.map((m) => m.exchange).filter((n) => n !== '.') : [name];
      await Promise.all(names.map((n) => this.resolveAddresses(n).catch(() => [])));
    }));
  }
}
