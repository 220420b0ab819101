/**
 * dns/system-nameservers.ts — the nameservers of /etc/resolv.conf, for
 * when dns.upstream is empty; never the gateway's own listeners (that
 * would ask itself). A missing file means none.
 */
import fsp from 'node:fs/promises';

export async function systemNameservers(ownListen: readonly string[], file = '/etc/resolv.conf'): Promise<string[]> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  const own = new Set(ownListen.map((l) => l.replace(/:\d+$/, '')));
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]).filter((ip) => !own.has(ip));
}
