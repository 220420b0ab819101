/**
 * dns/cache.ts — the resolver's cache (the one owner of cached answers):
 * entries by name and type, fresh while their TTL lasts, usable as stale
 * answers for `serveStale` after that (RFC 8767), evicted least recently
 * used beyond a count and a byte budget. Negative answers are entries too
 * (RFC 2308). Time comes from the caller.
 */

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  [field: string]: unknown;
}

export interface CacheEntry {
  rcode: number;
  answers: DnsRecord[];
  storedAt: number;
  /** Seconds the entry is fresh. */
  ttl: number;
  bytes: number;
}

export type Lookup = { kind: 'fresh' | 'stale'; entry: CacheEntry } | { kind: 'none' };

export class DnsCache {
  private readonly map = new Map<string, CacheEntry>();
  private bytes = 0;

  constructor(private readonly maxEntries = 10_000, private readonly maxBytes = 16 * 1024 * 1024) {}

  static key(name: string, type: number): string {
    return `${name.toLowerCase().replace(/\.$/, '')}|${type}`;
  }

  get(key: string, now: number, serveStaleMs: number): Lookup {
    const e = this.map.get(key);
    if (!e) return { kind: 'none' };
    const age = now - e.storedAt;
    if (age < e.ttl * 1000) {
      // most recently used goes last
      this.map.delete(key);
      this.map.set(key, e);
      return { kind: 'fresh', entry: e };
    }
    if (age < e.ttl * 1000 + serveStaleMs) return { kind: 'stale', entry: e };
    this.delete(key);
    return { kind: 'none' };
  }

  set(key: string, entry: Omit<CacheEntry, 'bytes'>): void {
    this.delete(key);
    const bytes = key.length + JSON.stringify(entry.answers).length + 64;
    this.map.set(key, { ...entry, bytes });
    this.bytes += bytes;
    for (const [k] of this.map) {
      if (this.map.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.delete(k);
    }
  }

  private delete(key: string): void {
    const e = this.map.get(key);
    if (!e) return;
    this.bytes -= e.bytes;
    this.map.delete(key);
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.map.size, bytes: this.bytes };
  }
}

/** RFC 2308: a negative answer lives min(SOA TTL, SOA minimum) seconds; 60 s without an SOA. */
export function negativeTtl(authorities: readonly DnsRecord[]): number {
  const soa = authorities.find((r) => r.type === 6);
  if (!soa) return 60;
  return Math.min(soa.ttl, Number(soa.minimum ?? soa.ttl));
}

/** A positive answer lives as long as its shortest record. */
export function positiveTtl(answers: readonly DnsRecord[]): number {
  return answers.length ? Math.min(...answers.map((a) => a.ttl)) : 0;
}
