/**
 * dns/cache.ts — the resolver's cache (the one owner of cached answers):
 * wire answers by key (name, type, class, DO, CD: answers with and without
 * DNSSEC records are kept apart), fresh while their TTL lasts, usable as
 * stale answers for `serveStale` after that (RFC 8767), evicted least
 * recently used (approximately: a hit moves an entry to the young end only
 * when it is in the older half) beyond a count and a byte budget. Negative answers are
 * entries too, with their SOA (RFC 2308). Time comes from the caller.
 */
import type { WireAnswer } from './answer.js';

export interface CacheEntry {
  answer: WireAnswer;
  storedAt: number;
  bytes: number;
  /** When it was last put at the young end (for the approximate LRU). */
  seq: number;
}

export type Lookup = { kind: 'fresh' | 'stale'; entry: CacheEntry } | { kind: 'none' };

const NONE: Lookup = { kind: 'none' };

export class DnsCache {
  private readonly map = new Map<string, CacheEntry>();
  private bytes = 0;
  private seq = 0;

  constructor(private readonly maxEntries = 10_000, private readonly maxBytes = 16 * 1024 * 1024) {}

  /** The entry while its TTL lasts (the path of every cache hit: no allocation). */
  fresh(key: string, now: number): CacheEntry | undefined {
    const e = this.map.get(key);
    if (!e || now - e.storedAt >= e.answer.ttl * 1000) return undefined;
    // used entries move to the young end; one already in the younger half stays (no churn on hot names)
    if (this.seq - e.seq > this.map.size >> 1) {
      this.map.delete(key);
      this.map.set(key, e);
      e.seq = ++this.seq;
    }
    return e;
  }

  get(key: string, now: number, serveStaleMs: number): Lookup {
    const e = this.fresh(key, now) ?? this.map.get(key);
    if (!e) return NONE;
    const age = now - e.storedAt;
    if (age < e.answer.ttl * 1000) return { kind: 'fresh', entry: e };
    if (age < e.answer.ttl * 1000 + serveStaleMs) return { kind: 'stale', entry: e };
    this.delete(key);
    return NONE;
  }

  set(key: string, answer: WireAnswer, now: number): void {
    this.delete(key);
    const bytes = key.length + answer.msg.length + answer.ttlAt.length * 16 + answer.cutAt.length * 16 + 128;
    this.map.set(key, { answer, storedAt: now, bytes, seq: ++this.seq });
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
