/**
 * queue/groups.ts — queue-group assignment and envelope splitting (pure).
 *
 * Like sendmail's QGRP: access entries, a group's `match` list holds domains
 * (`cust1.dom`, which also covers its subdomains when written `.cust1.dom`)
 * or full addresses. Recipients of one message that fall into different
 * groups, or more recipients than a group's `recipients` limit, are split
 * into several envelopes.
 */
import type { QueueGroupConfig } from '../config/schema.js';

export const DEFAULT_GROUP = 'mqueue';

export function groupFor(address: string, groups: readonly QueueGroupConfig[]): string {
  const lower = address.toLowerCase();
  const domain = lower.slice(lower.lastIndexOf('@') + 1);
  for (const g of groups) {
    for (const m of g.match) {
      const pat = m.toLowerCase();
      if (pat.includes('@') ? pat === lower : pat.startsWith('.') ? domain.endsWith(pat) || domain === pat.slice(1) : domain === pat) {
        return g.name;
      }
    }
  }
  return DEFAULT_GROUP;
}

/** Splits recipients into envelopes: one per group, at most `recipients` each. */
export function splitByGroup<R extends { address: string }>(
  recipients: readonly R[],
  groups: readonly QueueGroupConfig[],
): Array<{ group: string; recipients: R[] }> {
  const byGroup = new Map<string, R[]>();
  for (const r of recipients) {
    const g = groupFor(r.address, groups);
    byGroup.set(g, [...(byGroup.get(g) ?? []), r]);
  }
  const parts: Array<{ group: string; recipients: R[] }> = [];
  for (const [group, list] of byGroup) {
    const limit = groups.find((g) => g.name === group)?.recipients ?? Infinity;
    for (let i = 0; i < list.length; i += limit) parts.push({ group, recipients: list.slice(i, i + limit) });
  }
  return parts;
}
