/**
 * dns/hosts-file.ts — /etc/hosts-style names answered locally (pure parser):
 * `IP name [alias...]`, `#` comments. Names answer A or AAAA by the
 * address family; they are never forwarded.
 */
import net from 'node:net';

export type HostsMap = Map<string, { a: string[]; aaaa: string[] }>;

export function parseHosts(text: string): HostsMap {
  const map: HostsMap = new Map();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    const [ip, ...names] = line.split(/\s+/);
    const family = net.isIP(ip);
    if (!family) continue;
    for (const n of names) {
      const name = n.toLowerCase().replace(/\.$/, '');
      const e = map.get(name) ?? { a: [], aaaa: [] };
      (family === 4 ? e.a : e.aaaa).push(ip);
      map.set(name, e);
    }
  }
  return map;
}
