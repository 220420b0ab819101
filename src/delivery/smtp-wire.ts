/**
 * delivery/smtp-wire.ts — a transaction in its wire form, and back (pure):
 * the MAIL and RCPT lines with the parameters the next hop offers, the
 * message bytes for DATA or BDAT, and the result for each recipient from
 * the replies. delivery/smtp-session.ts writes and reads them.
 *
 * Outbound encoding: line ends become CRLF (a bare CR or LF as CRLF) and,
 * over DATA, a line starting with "." leaves with the dot doubled, so
 * nothing inside a message can end the next hop's DATA. An 8BITMIME
 * message goes with BODY=8BITMIME where the next hop offers it and as is
 * where it does not (sendmail's EightBitMode=pass8; no quoted-printable
 * conversion).
 */

export interface SendEnvelope {
  from: string;
  to: string[];
  dsn?: { ret?: string; envid?: string; notify?: string[]; orcpt?: string };
  size: number;
  use8BitMime: boolean;
}

export interface RcptResult {
  address: string;
  code: number;
  text: string;
}

export interface Reply { code: number; text: string }

/** The replies of one transaction, as far as they came. */
export interface TxReplies {
  mail?: Reply;
  rcpts: Reply[];
  /** The reply to DATA (354, or the refusal). */
  data?: Reply;
  /** The reply after the final dot, or to BDAT LAST. */
  final?: Reply;
}

export const isOk = (r: Reply | undefined) => Boolean(r && r.code >= 200 && r.code < 300);

/** RFC 3461 xtext: '+', '=', controls and non-ASCII as +HH. */
export const xtext = (s: string) => [...Buffer.from(s)].map((c) => (c < 0x21 || c > 0x7e || c === 0x2b || c === 0x3d ? `+${c.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(c))).join('');

/** `MAIL FROM:<…>` with SMTPUTF8, BODY, SIZE, RET and ENVID where the hop offers them (`ext`: its EHLO keywords). */
export function mailLine(e: SendEnvelope, ext: ReadonlySet<string>): string {
  const dsn = ext.has('DSN');
  const params = [
    /[^\x00-\x7f]/.test([e.from, ...e.to].join('')) && ext.has('SMTPUTF8') ? 'SMTPUTF8' : '',
    e.use8BitMime && ext.has('8BITMIME') ? 'BODY=8BITMIME' : '',
    e.size > 0 && ext.has('SIZE') ? `SIZE=${e.size}` : '',
    dsn && e.dsn?.ret ? `RET=${xtext(e.dsn.ret.toUpperCase())}` : '',
    dsn && e.dsn?.envid ? `ENVID=${xtext(e.dsn.envid)}` : '',
  ].filter(Boolean);
  return `MAIL FROM:<${e.from}>${params.length ? ` ${params.join(' ')}` : ''}`;
}

/** `RCPT TO:<…>` with NOTIFY and ORCPT where the hop offers DSN. */
export function rcptLine(e: SendEnvelope, to: string, ext: ReadonlySet<string>): string {
  const dsn = ext.has('DSN');
  const notify = dsn && e.dsn?.notify?.length ? ` NOTIFY=${xtext(e.dsn.notify.map((n) => n.toUpperCase()).join(','))}` : '';
  const orcpt = dsn && e.dsn?.orcpt ? ` ORCPT=${xtext(e.dsn.orcpt.includes(';') ? e.dsn.orcpt : `rfc822;${e.dsn.orcpt}`)}` : '';
  return `RCPT TO:<${to}>${notify}${orcpt}`;
}

/**
 * The message as it goes on the wire: CRLF line ends (a bare CR or LF
 * becomes CRLF) and a final CRLF; for DATA ('data') also a dot doubled at
 * the start of every line (a dot after a bare CR too) and the ending
 * ".\r\n". Returns `body` itself when nothing changes (BDAT).
 */
export function wireBody(body: Buffer, mode: 'data' | 'bdat'): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  let prev = -1;
  for (let i = 0; i < body.length; i++) {
    const b = body[i];
    let insert: string | null = null;
    if (prev === 0x0d && b !== 0x0a) insert = mode === 'data' && b === 0x2e ? '\n.' : '\n';
    else if (b === 0x0a && prev !== 0x0d) insert = '\r';
    else if (mode === 'data' && b === 0x2e && (prev === 0x0a || prev === -1)) insert = '.';
    if (insert !== null) {
      parts.push(body.subarray(from, i), Buffer.from(insert, 'latin1'));
      from = i;
    }
    prev = b;
  }
  const last = body.length ? body[body.length - 1] : -1;
  const end = (last === 0x0a ? '' : last === 0x0d ? '\n' : body.length ? '\r\n' : '') + (mode === 'data' ? '.\r\n' : '');
  if (!parts.length && !end) return body;
  parts.push(body.subarray(from), Buffer.from(end, 'latin1'));
  return Buffer.concat(parts);
}

/** The result for each of `to` from a finished transaction's replies (or one cut short by `closing`). */
export function results(to: readonly string[], tx: TxReplies, closing?: Reply): RcptResult[] {
  const mail = tx.mail ?? closing;
  return to.map((address, i) => {
    const rcpt = tx.rcpts[i] ?? closing;
    // a refused MAIL is every recipient's reply; a refused RCPT its own
    const own = !isOk(mail) ? mail : !isOk(rcpt) ? rcpt : tx.data && tx.data.code >= 400 ? tx.data : tx.final ?? closing;
    return own ? { address, code: own.code, text: own.text } : { address, code: 451, text: 'no reply for this recipient' };
  });
}
