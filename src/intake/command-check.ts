/**
 * intake/command-check.ts — the bytes and parameters of a MAIL or RCPT
 * command, checked before smtp-server reads them as text (SPEC §9 "Bad
 * input"), pure. smtp-server decodes a command as UTF-8, which turns
 * invalid bytes into U+FFFD and keeps going, and it takes any parameter; an
 * address must never be rewritten and an unknown parameter never dropped.
 *
 * - An address with a byte above 127 in a transaction without SMTPUTF8:
 *   `553 5.6.7` (X.6.7 of RFC 6531 §3.7.4: non-ASCII address not permitted).
 * - With SMTPUTF8, an address that is not valid UTF-8: `553 5.1.7` (MAIL)
 *   or `553 5.1.3` (RCPT), bad mailbox syntax (RFC 3463): the bytes are no
 *   address in any charset, and RFC 6531 addresses are UTF-8 only.
 * - A parameter not in MAIL_PARAMETERS / RCPT_PARAMETERS: `555 5.5.4`
 *   (RFC 5321 §4.1.1.11). AUTH= (RFC 4954 §5) is known only where AUTH is
 *   offered. A parameter with a byte above 127 that is not SMTPUTF8's UTF-8
 *   (RFC 6533 ORCPT): `501 5.5.4`.
 * - BODY=BINARYMIME (RFC 3030): `555 5.5.4`, a parameter value we cannot
 *   implement (RFC 5321 §4.1.1.11): CHUNKING is offered, BINARYMIME is not,
 *   as a message must stay lines. Any other BODY but 7BIT and 8BITMIME:
 *   `501 5.5.4`.
 *
 * Called by smtp-extensions.ts for every MAIL and RCPT; a command this does
 * not recognise (no colon, no address) is left for smtp-server to refuse.
 */
import { isAscii, isUtf8 } from 'node:buffer';

export const MAIL_PARAMETERS: readonly string[] = ['SIZE', 'BODY', 'SMTPUTF8', 'RET', 'ENVID'];
export const RCPT_PARAMETERS: readonly string[] = ['NOTIFY', 'ORCPT'];

export interface CommandContext {
  /** RCPT: the transaction's MAIL had SMTPUTF8 (MAIL reads its own parameters). */
  smtpUtf8: boolean;
  /** AUTH is offered on this session (MAIL's AUTH= parameter is then known). */
  isAuthOffered: boolean;
}

/** A refusal: the reply code and its text, which starts with the enhanced code. */
export interface CommandRefusal {
  code: number;
  text: string;
}

/** null lets the command through to smtp-server; otherwise the reply that refuses it. */
export function checkAddressCommand(raw: Buffer, ctx: CommandContext): CommandRefusal | null {
  const line = raw.toString('latin1');
  const m = /^(MAIL|RCPT)[ \t]+(?:FROM|TO)[ \t]*:[ \t]*(.*)$/is.exec(line);
  if (!m) return null;
  const isMail = m[1].toUpperCase() === 'MAIL';
  const [address = '', ...params] = m[2].trim().split(/[ \t]+/);
  if (address === '') return null;
  // `<bad address>`: the space cut the address, whose bracket is still open: a syntax error, not a parameter
  if (address.startsWith('<') && !address.endsWith('>')) {
    return { code: 501, text: isMail ? '5.1.7 Bad sender address syntax' : '5.1.3 Bad recipient address syntax' };
  }
  const keys = params.map((p) => p.slice(0, p.includes('=') ? p.indexOf('=') : p.length).toUpperCase());
  const smtpUtf8 = isMail ? keys.includes('SMTPUTF8') : ctx.smtpUtf8;
  const bytes = Buffer.from(address, 'latin1');
  if (!isAscii(bytes)) {
    if (!smtpUtf8) return { code: 553, text: '5.6.7 Non-ASCII address without SMTPUTF8' };
    if (!isUtf8(bytes)) {
      return { code: 553, text: isMail ? '5.1.7 Bad sender address syntax: not valid UTF-8' : '5.1.3 Bad recipient address syntax: not valid UTF-8' };
    }
  }
  const known = isMail ? (ctx.isAuthOffered ? [...MAIL_PARAMETERS, 'AUTH'] : MAIL_PARAMETERS) : RCPT_PARAMETERS;
  for (let i = 0; i < params.length; i++) {
    if (!known.includes(keys[i])) return { code: 555, text: `5.5.4 Unsupported ${isMail ? 'MAIL FROM' : 'RCPT TO'} parameter ${printable(keys[i])}` };
    const value = Buffer.from(params[i], 'latin1');
    if (!isAscii(value) && !(smtpUtf8 && isUtf8(value))) return { code: 501, text: `5.5.4 Invalid bytes in parameter ${keys[i]}` };
    if (keys[i] === 'BODY') {
      const body = params[i].slice(5).toUpperCase();
      if (body === 'BINARYMIME') return { code: 555, text: '5.5.4 BODY=BINARYMIME not supported (no BINARYMIME here; 7BIT or 8BITMIME)' };
      if (body !== '7BIT' && body !== '8BITMIME') return { code: 501, text: '5.5.4 Invalid BODY parameter value: 7BIT or 8BITMIME' };
    }
  }
  return null;
}

/** A parameter name as it may be echoed in a reply: printable ASCII, at most 32 characters. */
function printable(key: string): string {
  const clean = key.replace(/[^\x21-\x7e]/g, '?').slice(0, 32);
  return clean === '' ? '(empty)' : clean;
}
