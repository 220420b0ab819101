/**
 * intake/missing-headers.ts — the `Date:` and `Message-ID:` fields a message
 * from a LAN client or a local program gets when it has none (SPEC §9;
 * RFC 5322 §3.6 requires Date, and a Message-ID is what every later hop and
 * mail reader keys on). Pure: the caller passes the queue id, our hostname
 * and the time.
 *
 * Used by SMTP intake (addMissingHeaders() on the first block of a message
 * from smtp.mynetworks) and by local submission (missingHeaderFields(), so
 * both write the same fields). Mail from outside the LAN is left as it came,
 * as Postfix does (local_header_rewrite_clients).
 *
 * The fields go at the end of the header section, as Postfix's cleanup
 * puts them. A message whose header section is not followed by an empty
 * line gets one after the added fields. Known limit: a header section
 * longer than the block the caller holds (headerSection() null) is left
 * as it is.
 */
import { rfc5322Date } from './received.js';

export interface MessageFacts {
  /** The queue id: the Message-ID is `<id@hostname>`. */
  id: string;
  hostname: string;
  now: number;
}

/** The field lines (without CRLF) to add, given a test for the fields present (lower-case names). */
export function missingHeaderFields(has: (name: string) => boolean, f: MessageFacts): string[] {
  const added: string[] = [];
  if (!has('date')) added.push(`Date: ${rfc5322Date(f.now)}`);
  if (!has('message-id')) added.push(`Message-ID: <${f.id}@${f.hostname}>`);
  return added;
}

export interface HeaderSection {
  /** Offset where the header section ends (the empty line, the first body line, or the end of the text). */
  end: number;
  /** Lower-case names of the fields present. */
  names: Set<string>;
  /** An empty line follows the header section. */
  hasSeparator: boolean;
}

const FIELD = /^[!-9;-~]+:/;

/**
 * Finds the header section of CRLF text. With `isWhole` false (more data may
 * follow), null when the section has not ended inside `text`.
 */
export function headerSection(text: string, isWhole: boolean): HeaderSection | null {
  const names = new Set<string>();
  let pos = 0;
  let fields = 0;
  for (;;) {
    const eol = text.indexOf('\r\n', pos);
    if (eol === -1 && !isWhole) return null;
    const line = text.slice(pos, eol === -1 ? text.length : eol);
    if (line === '' && eol !== -1) return { end: pos, names, hasSeparator: true };
    if (line === '') return { end: pos, names, hasSeparator: false };
    if (FIELD.test(line)) {
      names.add(line.slice(0, line.indexOf(':')).toLowerCase());
      fields++;
    } else if (!(fields > 0 && /^[ \t]/.test(line))) {
      return { end: pos, names, hasSeparator: false };
    }
    if (eol === -1) return { end: text.length, names, hasSeparator: false };
    pos = eol + 2;
  }
}

/**
 * `block` (the start of a message, CRLF lines) with the missing fields put
 * at the end of its header section (`headerSection(block)`).
 */
export function addMissingHeaders(block: Buffer, section: HeaderSection, f: MessageFacts): { block: Buffer; added: string[] } {
  const added = missingHeaderFields((n) => section.names.has(n), f);
  if (added.length === 0) return { block, added };
  const insert = Buffer.from(`${added.join('\r\n')}\r\n${section.hasSeparator ? '' : '\r\n'}`, 'latin1');
  return { block: Buffer.concat([block.subarray(0, section.end), insert, block.subarray(section.end)]), added };
}
