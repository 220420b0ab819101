/**
 * intake/address.ts — envelope address syntax (RFC 5321 §4.1.2), pure.
 * Used by SMTP intake and the sendmail command alike.
 */
import net from 'node:net';
import { isHostname } from '../config/cidr.js';

const ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
const DOT_ATOM = new RegExp(`^${ATOM}(\\.${ATOM})*$`);
const QUOTED = /^"([\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"$/;

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** A mailbox `local@domain`; `allowUtf8` for SMTPUTF8 sessions. */
export function isValidMailbox(address: string, allowUtf8 = false): boolean {
  if (address.length > 254 || /[\x00-\x1f\x7f]/.test(address)) return false;
  if (!allowUtf8 && /[^\x00-\x7f]/.test(address)) return false;
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > 64) return false;
  const localOk = DOT_ATOM.test(local) || QUOTED.test(local) || (allowUtf8 && /^[^\s@"()<>[\]\\,;:]+$/.test(local));
  if (!localOk) return false;
  const literal = /^\[(?:IPv6:)?([^\]]+)\]$/i.exec(domain);
  if (literal) return net.isIP(literal[1]) !== 0;
  return isHostname(domain) || (allowUtf8 && /^[^\s@]+\.[^\s@.]+$/.test(domain));
}
