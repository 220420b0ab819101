/**
 * config/cidr.ts — network lists (`192.168.1.0/24`, `127.0.0.1`, `::1/128`)
 * and host:port addresses as the configuration writes them. Pure.
 */
import net from 'node:net';

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

export function parseCidr(text: string): Cidr {
  const [address, prefixText, extra] = text.trim().split('/');
  const version = net.isIP(address);
  if (extra !== undefined || version === 0) throw new Error(`invalid network "${text}"`);
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
    throw new Error(`invalid prefix length in "${text}"`);
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** A matcher for a list of networks; IPv4-mapped IPv6 addresses match IPv4 networks. */
export class NetworkList {
  private readonly list = new net.BlockList();
  readonly size: number;
  constructor(networks: readonly string[]) {
    for (const n of networks) {
      const c = parseCidr(n);
      this.list.addSubnet(c.address, c.prefix, c.family);
    }
    this.size = networks.length;
  }
  has(ip: string): boolean {
    const plain = ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
    const version = net.isIP(plain);
    if (version === 0) return false;
    return this.list.check(plain, version === 4 ? 'ipv4' : 'ipv6');
  }
}

export interface HostPort {
  host: string;
  port: number;
}

/** `127.0.0.1:25`, `[::1]:25`, `host` (with defaultPort). */
export function parseHostPort(text: string, defaultPort?: number): HostPort {
  const t = text.trim();
  let host: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (bracket) {
    host = bracket[1];
    portText = bracket[2];
  } else if (net.isIPv6(t)) {
    host = t;
  } else {
    const i = t.lastIndexOf(':');
    host = i >= 0 ? t.slice(0, i) : t;
    portText = i >= 0 ? t.slice(i + 1) : undefined;
  }
  if (!host || !(net.isIP(host) || isHostname(host))) throw new Error(`invalid host in "${text}"`);
  const port = portText === undefined ? defaultPort : Number(portText);
  if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535 || (portText !== undefined && !/^\d+$/.test(portText))) {
    throw new Error(`invalid or missing port in "${text}"`);
  }
  return { host, port };
}

export function isHostname(name: string): boolean {
  return name.length <= 253 && /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$/.test(name);
}
