/**
 * dns/caching-resolver.ts — the link-gated caching resolver (SPEC §6) and the
 * Resolver that delivery uses. Answers, in this order: the gateway's own
 * name and the dns.hosts names (locally, never forwarded); the cache while
 * the TTL lasts; the upstream servers — only when `mayForward()` says the
 * link is up or a window is open; else a stale answer within serveStale
 * (TTL 30 s, RFC 8767) or SERVFAIL at once, without a packet. Identical
 * queries in flight share one upstream query. NXDOMAIN and NODATA are cached
 * by the SOA minimum (RFC 2308). Inside a window, an upstream query that
 * gets no answer is asked once more after the window's DialDelay (the line
 * may still be dialing). A lookup refused because the link is down fails
 * delivery with LinkDownError ("waiting for the link"), not a DNS error.
 */
import dns2 from 'dns2';
import { LinkDownError, MailError } from '../errors.js';
import type { Resolver } from '../delivery/resolver.js';
import { DnsCache, negativeTtl, positiveTtl, type DnsRecord } from './cache.js';
import type { HostsMap } from './hosts-file.js';
import type { Upstream } from './upstream.js';

const TYPE = (dns2 as unknown as { Packet: { TYPE: Record<string, number> } }).Packet.TYPE;
export const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
const STALE_TTL = 30;

export interface Answer {
  rcode: number;
  answers: DnsRecord[];
  /** Answered from the gateway's own data (hostname, dns.hosts). */
  local: boolean;
  stale: boolean;
  /** Not forwarded: the link is down (and nothing stale was at hand). */
  linkDown?: boolean;
}

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
  return Object.keys(TYPE).find((k) => TYPE[k] === type) ?? String(type);
}

export class CachingResolver implements Resolver {
  readonly counters: ResolverCounters = { hits: 0, misses: 0, stale: 0, refusedForwards: 0, upstreamFailures: 0, local: 0 };
  private readonly inflight = new Map<string, Promise<Answer>>();
  private readonly cache: DnsCache;

  constructor(private readonly deps: CachingResolverDeps) {
    this.cache = deps.cache ?? new DnsCache();
  }

  private localAnswer(name: string, type: number): Answer | null {
    const n = name.toLowerCase().replace(/\.$/, '');
    const { names, hosts } = this.deps.local();
    const entry = hosts.get(n) ?? (names.has(n) ? { a: ['127.0.0.1'], aaaa: ['::1'] } : undefined);
    if (!entry) return null;
    this.counters.local++;
    const answers: DnsRecord[] = [];
    if (type === TYPE.A) for (const address of entry.a) answers.push({ name, type, class: 1, ttl: 300, address });
    if (type === TYPE.AAAA) for (const address of entry.aaaa) answers.push({ name, type, class: 1, ttl: 300, address });
    return { rcode: RCODE.NOERROR, answers, local: true, stale: false };
  }

  /**
   * One question, answered as SPEC §6 says. `own`: the gateway's own lookup
   * (delivery, ETRN), which may wait out a window's DialDelay; a LAN
   * client's query never does (it has its own timeout).
   */
  async lookup(name: string, type: number, own = false): Promise<Answer> {
    const local = this.localAnswer(name, type);
    if (local) return local;
    const key = DnsCache.key(name, type);
    const now = this.deps.now();
    const hit = this.cache.get(key, now, this.deps.serveStale);
    if (hit.kind === 'fresh') {
      this.counters.hits++;
      const left = Math.max(0, Math.floor(hit.entry.ttl - (now - hit.entry.storedAt) / 1000));
      return { rcode: hit.entry.rcode, answers: hit.entry.answers.map((a) => ({ ...a, ttl: Math.min(a.ttl, left) })), local: false, stale: false };
    }
    const stale = (): Answer | null => (hit.kind === 'stale'
      ? (this.counters.stale++, { rcode: hit.entry.rcode, answers: hit.entry.answers.map((a) => ({ ...a, ttl: STALE_TTL })), local: false, stale: true })
      : null);
    if (!this.deps.mayForward() || !this.deps.upstream.configured) {
      // the link is down: never a packet
      this.counters.refusedForwards++;
      return stale() ?? { rcode: RCODE.SERVFAIL, answers: [], local: false, stale: false, linkDown: this.deps.upstream.configured };
    }
    this.counters.misses++;
    const running = this.inflight.get(key);
    if (running) return running;
    const ask = (async (): Promise<Answer> => {
      try {
        const ask = () => this.deps.upstream.query(name, typeName(type));
        const r = await ask().catch(async (err) => {
          if (!own || !(await this.deps.dialRetry?.(`DNS ${typeName(type)} ${name}`))) throw err;
          return ask();
        });
        const relevant = r.answers.filter((a) => a.type === type || a.type === TYPE.CNAME);
        const ttl = r.rcode === RCODE.NOERROR && relevant.length ? positiveTtl(relevant) : negativeTtl(r.authorities);
        if (r.rcode === RCODE.NOERROR || r.rcode === RCODE.NXDOMAIN) {
          this.cache.set(key, { rcode: r.rcode, answers: relevant, storedAt: this.deps.now(), ttl });
        }
        return { rcode: r.rcode, answers: relevant, local: false, stale: false };
      } catch {
        this.counters.upstreamFailures++;
        return stale() ?? { rcode: RCODE.SERVFAIL, answers: [], local: false, stale: false };
      } finally {
        this.inflight.delete(key);
      }
    })();
    this.inflight.set(key, ask);
    return ask;
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

  /** At the start of a window: MX (for bare names) and addresses of every next hop with due mail, in one burst. */
  async prefetch(hosts: ReadonlyArray<{ name: string; mx: boolean }>): Promise<void> {
    await Promise.all(hosts.map(async ({ name, mx: withMx }) => {
      const mx = withMx ? await this.resolveMx(name).catch(() => []) : [];
      const names = mx.length ? mx.map((m) => m.exchange).filter((n) => n !== '.') : [name];
      await Promise.all(names.map((n) => this.resolveAddresses(n).catch(() => [])));
    }));
  }
}
