/**
 * Relay address forms (SPEC §9 "Relay", issue 15): an outsider tries every
 * spelling that some mailer once routed somewhere else — the percent hack,
 * bang paths, source routes, quoted local parts holding `@` or `%`, two
 * `@`, IP literals, trailing dots, case, UTF-8 with and without SMTPUTF8,
 * `<>` as a recipient, very long parts, a local domain with junk after it,
 * parameters and brackets that smuggle a second address. Each form is
 * refused, or accepted for a local (LAN) or hold-class (customer) domain and
 * delivered there — never toward the WAN. From the LAN the same forms relay
 * as configured: a well-formed one goes where its domain routes, the
 * smart host included. These forms come on top of backscatter.test.ts's
 * (subdomains of local and hold domains, the hostname, postmaster).
 *
 * Clients from 127.0.0.2 are outside (smtp.mynetworks and lanNetworks are
 * 127.0.0.1/32); the sinks count what reached them after the ETRNs and the
 * flush that would have sent everything, and the queue must then be empty.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { RawSmtp, type Reply } from '../helpers/smtp-client.js';
import { startSink, type Sink } from '../helpers/sink.js';
import { gateway } from '../helpers/gateway.js';
import { INSIDE, OUTSIDE, flushWait, mailq, utf8 } from '../helpers/security.js';

/** Forms in backscatter.test.ts (REFUSED 26, ACCEPTED 6, bare postmaster 3): counted in the suite's total. */
const BACKSCATTER_FORMS = 35;

type Where = 'refused' | 'lan' | 'customer' | 'wan';

interface Form {
  /** What follows `RCPT TO:` (JavaScript text; sent as UTF-8). */
  rcpt: string;
  outside: Where;
  inside: Where;
  /** MAIL FROM gets SMTPUTF8. */
  smtputf8?: boolean;
  /** The recipient the next hop sees, when not the address between the brackets (a source route dropped, an IDNA dot). */
  delivered?: string;
}

const r = (rcpt: string, outside: Where, inside: Where, more: Partial<Form> = {}): Form => ({ rcpt, outside, inside, ...more });
const long = (n: number, c = 'a') => c.repeat(n);

const FORMS: Form[] = [
  // the percent hack: the part after % is never a destination
  r('<user%far.example%office.example@office.example>', 'lan', 'lan'),
  r('<User%Far.Example@Office.EXAMPLE>', 'lan', 'lan'),
  r('<user%far.example@cust1.dom>', 'customer', 'customer'),
  r('<user%[127.0.0.2]@office.example>', 'refused', 'refused'),
  r('<user%far.example>', 'refused', 'refused'),
  r('<user%far.example@[127.0.0.1]>', 'refused', 'wan'),
  r(`<${long(40)}%${long(30, 'b')}.far.example@office.example>`, 'refused', 'refused'),
  // bang paths
  r('<far.example!user>', 'refused', 'refused'),
  r('<office.example!far.example!user>', 'refused', 'refused'),
  r('<far.example!user@office.example>', 'lan', 'lan'),
  r('<office.example!user@far.example>', 'refused', 'wan'),
  r('<far.example!user@cust1.dom>', 'customer', 'customer'),
  // source routes (RFC 5321 §4.1.1.3: the route is ignored, the mailbox is what counts)
  r('<@office.example:user@far.example>', 'refused', 'wan', { delivered: 'user@far.example' }),
  r('<@a,@b:user@far.example>', 'refused', 'wan', { delivered: 'user@far.example' }),
  r('<@office.example,@cust1.dom:user@far.example>', 'refused', 'wan', { delivered: 'user@far.example' }),
  r('<@cust1.dom:user@far.example>', 'refused', 'wan', { delivered: 'user@far.example' }),
  r('<@far.example:user@office.example>', 'lan', 'lan', { delivered: 'user@office.example' }),
  r('<@far.example:user%far.example@office.example>', 'lan', 'lan', { delivered: 'user%far.example@office.example' }),
  r('<@office.example:>', 'refused', 'refused'),
  // quoted local parts with @ and %
  r('<"user%far.example"@office.example>', 'lan', 'lan'),
  r('<"user%far.example"@cust1.dom>', 'customer', 'customer'),
  r('<"user%far.example">', 'refused', 'refused'),
  r('<"user@far.example"@cust1.dom>', 'refused', 'refused'),
  r('<"user@far.example">', 'refused', 'refused'),
  r('<"user"@far.example>', 'refused', 'wan'),
  // two @
  r('<user@far.example@office.example>', 'refused', 'refused'),
  r('<user@far.example@cust1.dom>', 'refused', 'refused'),
  r('<user@cust1.dom@far.example>', 'refused', 'refused'),
  r('<user\\@far.example@office.example>', 'refused', 'refused'),
  // IP literals: the gateway's own address is no local domain
  r('<user@[127.0.0.1]>', 'refused', 'wan'),
  r('<user@[10.0.0.1]>', 'refused', 'wan'),
  r('<user@[IPv6:::ffff:127.0.0.2]>', 'refused', 'wan'),
  r('<user@[127.1]>', 'refused', 'refused'),
  r('<user@[office.example]>', 'refused', 'refused'),
  r('<user@[IPv6:::1]:25>', 'refused', 'refused'),
  // trailing and stray dots
  r('<user@far.example.>', 'refused', 'refused'),
  r('<user@office.example.>', 'refused', 'refused'),
  r('<user@cust1.dom.>', 'refused', 'refused'),
  r('<user@office.example..>', 'refused', 'refused'),
  r('<user@.office.example>', 'refused', 'refused'),
  // case
  r('<USER@Far.Example>', 'refused', 'wan'),
  r('<x@CUST1.dom>', 'customer', 'customer'),
  r('<x@Sub.Cust2.Dom>', 'customer', 'customer'),
  // <> and other empty mailboxes as a recipient
  r('<>', 'refused', 'refused'),
  r('<@>', 'refused', 'refused'),
  r('<@office.example>', 'refused', 'refused'),
  r('<postmaster@far.example>', 'refused', 'wan'),
  // a local domain with junk after it
  r('<user@office.example-far.example>', 'refused', 'wan'),
  r('<user@office.examplex>', 'refused', 'wan'),
  r('<user@office.example:far.example>', 'refused', 'refused'),
  r('<user@office.example;far.example>', 'refused', 'refused'),
  r('<user@office.example\x00.far.example>', 'refused', 'refused'),
  r('<user@office.example >', 'refused', 'refused'),
  // the command line itself: brackets, a second address, parameters
  r('user@far.example', 'refused', 'wan'),
  r(' <user@far.example>', 'refused', 'wan'),
  r('<user@office.example> <victim@far.example>', 'refused', 'refused'),
  r('<user@office.example>,<victim@far.example>', 'refused', 'refused'),
  r('<<user@far.example>>', 'refused', 'refused'),
  r('<user@far.example', 'refused', 'refused'),
  r('<user@office.example> ORCPT=rfc822;user@far.example', 'lan', 'lan', { delivered: 'user@office.example' }),
  r('<user@far.example> ORCPT=rfc822;user@office.example', 'refused', 'wan', { delivered: 'user@far.example' }),
  // UTF-8, with and without SMTPUTF8
  r('<用户@office.example>', 'lan', 'lan', { smtputf8: true }),
  r('<用户@office.example>', 'refused', 'refused'),
  r('<user%例え.jp@office.example>', 'lan', 'lan', { smtputf8: true }),
  r('<user@例え.jp>', 'refused', 'wan', { smtputf8: true }),
  r('<user@例え.jp>', 'refused', 'refused'),
  r('<user@oﬃce.example>', 'refused', 'wan', { smtputf8: true }),
  r('<user@ＯＦＦＩＣＥ.example>', 'refused', 'wan', { smtputf8: true }),
  r('<user@сust1.dom>', 'refused', 'wan', { smtputf8: true }),
  r('<user@office.example\u200b>', 'refused', 'refused', { smtputf8: true }),
  // IDNA label separators (U+FF0E, U+3002) are dots: the same domain, and the same route
  r('<user@office．example>', 'lan', 'lan', { smtputf8: true, delivered: 'user@office.example' }),
  r('<user@far。example>', 'refused', 'wan', { smtputf8: true, delivered: 'user@far.example' }),
  // very long local parts and domains (RFC 5321 §4.5.3.1: 64 and 255)
  r(`<${long(64)}@office.example>`, 'lan', 'lan'),
  r(`<${long(65)}@office.example>`, 'refused', 'refused'),
  r(`<${long(300)}@far.example>`, 'refused', 'refused'),
  r(`<user@${'a.'.repeat(130)}far.example>`, 'refused', 'refused'),
  r(`<user@${`${long(63, 'b')}.`.repeat(4)}far.example>`, 'refused', 'refused'),
  r(`<user@${long(64)}.office.example>`, 'refused', 'refused'),
];

const MSG = (i: number) => `Subject: form ${i}\r\nX-Form: ${i}\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\nMessage-ID: <form${i}@outside.test>\r\n\r\nprobe\r\n`;

interface Sinks { lan: Sink; customer: Sink; wan: Sink }

/** The ISP-and-office gateway of backscatter.test.ts: LAN and customer routes on 127.0.0.1, the smart host on 127.0.0.2. */
function setup(s: Sinks) {
  return (dir: string) => {
    writeFileSync(path.join(dir, 'mailertable'), `cust1.dom qsmtp:[127.0.0.1]:${s.customer.port}\n.cust2.dom qsmtp:[127.0.0.1]:${s.customer.port}\n`);
    return {
      hostname: 'gw.office.example',
      deliveryMode: 'background',
      lanNetworks: ['127.0.0.1/32'],
      smtp: { listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'] },
      routes: [{ domain: 'office.example', relay: `[127.0.0.1]:${s.lan.port}` }],
      smartHost: [`[${OUTSIDE}]:${s.wan.port}`],
      mailertable: path.join(dir, 'mailertable'),
      classes: { CustDoms: { domains: ['cust1.dom', '.cust2.dom'] } },
      link: { mode: 'permanent' },
      queue: { minQueueAge: '0s' },
    };
  };
}

/** One transaction with form `i` from `client`: the RCPT reply, and the final reply when DATA was reached. */
async function tryForm(port: number, client: string, i: number, from: string): Promise<{ rcpt: Reply; final?: Reply }> {
  const f = FORMS[i];
  const c = await RawSmtp.connect(port, client);
  try {
    await c.reply();
    await c.cmd('EHLO relay-probe.test');
    const mail = await c.cmd(`MAIL FROM:<${from}>${f.smtputf8 ? ' SMTPUTF8' : ''}`);
    assert.equal(mail.code, 250, mail.text);
    const rcpt = await c.cmd(`RCPT TO:${utf8(f.rcpt)}`);
    if (rcpt.code !== 250) return { rcpt };
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write(`${MSG(i)}.\r\n`);
    const final = await c.reply();
    await c.cmd('QUIT').catch(() => undefined);
    return { rcpt, final };
  } finally {
    c.close();
  }
}

async function etrn(port: number, ...nodes: string[]): Promise<void> {
  const c = await RawSmtp.connect(port, INSIDE);
  try {
    await c.reply();
    await c.cmd('EHLO customer.test');
    for (const n of nodes) assert.match((await c.cmd(`ETRN ${n}`)).text, /^25[0-3] /, n);
  } finally {
    c.close();
  }
}

/** Where each form's message arrived (form index → sink names and recipients). */
function arrivals(s: Sinks): Map<number, Array<{ where: Where; to: string[] }>> {
  const out = new Map<number, Array<{ where: Where; to: string[] }>>();
  for (const where of ['lan', 'customer', 'wan'] as const) {
    for (const m of s[where].messages) {
      const i = Number(/^X-Form: (\d+)/m.exec(m.body)?.[1] ?? -1);
      out.set(i, [...(out.get(i) ?? []), { where, to: m.to }]);
    }
  }
  return out;
}

/** Sends every form from `client`, flushes what would send them (ETRNs, flush --wait), and checks where each one went. */
async function run(client: string, side: 'outside' | 'inside', t: { diagnostic(m: string): void }): Promise<void> {
  const s: Sinks = { lan: await startSink(), customer: await startSink(), wan: await startSink({ host: OUTSIDE }) };
  await gateway({}, setup(s), async (d, config) => {
    const problems: string[] = [];
    const taken: number[] = [];
    for (const [i, f] of FORMS.entries()) {
      // from outside, every other form with the null sender (a bounce)
      const from = side === 'inside' ? 'alice@office.example' : i % 2 ? '' : 'victim@far.example';
      const got = await tryForm(d.port, client, i, from);
      const want = f[side];
      if (want === 'refused' && !(got.rcpt.code >= 500 && got.rcpt.code < 600)) problems.push(`${i} ${f.rcpt}: ${got.rcpt.text} ${got.final?.text ?? ''}, want a refusal`);
      if (want !== 'refused' && got.final?.code !== 250) problems.push(`${i} ${f.rcpt}: ${got.rcpt.text} ${got.final?.text ?? ''}, want it taken for ${want}`);
      if (got.final?.code === 250) taken.push(i);
    }
    // what would have sent them: ETRN for the hold domains, then a flush of everything else
    await etrn(d.port, 'cust1.dom', '@cust2.dom');
    await flushWait(config);
    const count = (w: Where) => FORMS.filter((f, i) => f[side] === w && taken.includes(i)).length;
    await Promise.all((['lan', 'customer', 'wan'] as const).map((w) => s[w].waitMessages(count(w), 20_000).catch(() => undefined)));
    assert.equal((await mailq(config)).total, 0, 'nothing left in the queue to go out later');
    const seen = arrivals(s);
    for (const i of taken) {
      const f = FORMS[i];
      const want = [{ where: f[side], to: [f.delivered ?? between(f.rcpt)] }];
      assert.deepEqual(seen.get(i), want, `${i} ${f.rcpt}`);
    }
    for (const i of seen.keys()) if (!taken.includes(i)) problems.push(`${i} ${FORMS[i]?.rcpt}: refused, yet a message arrived`);
    // toward the WAN without a form that relays there from this side
    const leaked = s.wan.messages.filter((m) => FORMS[Number(/^X-Form: (\d+)/m.exec(m.body)?.[1])]?.[side] !== 'wan').length;
    const refused = FORMS.length - taken.length;
    t.diagnostic(`relay forms from ${side} (${client}): tried ${FORMS.length} (${FORMS.length + BACKSCATTER_FORMS} with backscatter.test.ts), refused ${refused}, ` +
      `accepted as local ${count('lan') + count('customer')}, relayed to the smart host ${s.wan.messages.length}, leaked ${leaked}`);
    assert.deepEqual(problems, []);
    assert.equal(leaked, 0, `leaked to the WAN: ${s.wan.messages.map((m) => m.to).join(' ')}`);
    if (side === 'outside') assert.equal(s.wan.connections, 0, 'not even a connection toward the WAN');
  }, [s.lan, s.customer, s.wan]);
}

/** The address between the brackets, as the next hop gets it. */
function between(rcpt: string): string {
  return /<([^<>]*)>/.exec(rcpt)?.[1] ?? rcpt.trim();
}

test(`${FORMS.length} relay address forms from outside: refused or delivered to the local or customer domain they name, 0 to the WAN`, { timeout: 120_000 }, (t) => run(OUTSIDE, 'outside', t));

test(`the same ${FORMS.length} forms from the LAN relay as configured: the smart host for other domains, the LAN and customer routes for theirs`, { timeout: 120_000 }, (t) => run(INSIDE, 'inside', t));

test('an IDNA A-label (xn--) domain is an ASCII domain: from the LAN it is taken without SMTPUTF8 and sent on as given; from outside it is refused as any other domain', { timeout: 60_000 }, async () => {
  const s: Sinks = { lan: await startSink(), customer: await startSink(), wan: await startSink({ host: OUTSIDE }) };
  await gateway({}, setup(s), async (d, config) => {
    const send = async (client: string, from: string, rcpt: string) => {
      const c = await RawSmtp.connect(d.port, client);
      try {
        await c.reply();
        await c.cmd('EHLO idn.test');
        const replies = [await c.cmd(`MAIL FROM:<${from}>`), await c.cmd(`RCPT TO:<${rcpt}>`)];
        if (replies.every((x) => x.code === 250)) {
          await c.cmd('DATA');
          replies.push(await c.cmd(`${MSG(900)}.`));
        }
        return replies.map((x) => x.text);
      } finally {
        c.close();
      }
    };
    const lan = await send(INSIDE, 'alice@office.example', 'user@xn--r8jz45g.jp');
    const outsider = await send(OUTSIDE, 'someone@xn--r8jz45g.jp', 'user@office.example');
    const relay = await send(OUTSIDE, 'someone@far.example', 'user@xn--r8jz45g.jp');
    assert.match(relay[1], /^5\d\d /, 'outside: refused, as for any other domain');
    // what the two transactions got: both are well-formed ASCII mail
    assert.deepEqual({ lan: lan.at(-1)!.slice(0, 3), outsider: outsider.at(-1)!.slice(0, 3) }, { lan: '250', outsider: '250' }, `${lan.join(' | ')} / ${outsider.join(' | ')}`);
    await flushWait(config);
    await s.wan.waitMessages(1);
    await s.lan.waitMessages(1);
    // the envelopes as quietlink keeps and sends them (the test sinks are smtp-server too, which shows U-labels)
    const queued = d.logs.filter((l) => l.msg === 'queued').map((l) => [l.from, ...(l.to as string[])]);
    assert.ok(queued.some((q) => q.includes('user@xn--r8jz45g.jp')), 'the A-label as given, not rewritten to U-labels');
    assert.ok(queued.some((q) => q[0] === 'someone@xn--r8jz45g.jp'));
    assert.equal(s.wan.messages.length, 1);
    assert.equal(s.lan.messages.length, 1);
  }, [s.lan, s.customer, s.wan]);
});
