/**
 * SMTP smuggling (SPEC §9 "Be liberal where Postfix is", "Bad input";
 * issue 15): only CRLF.CRLF ends the data, a bare CR or a NUL anywhere in
 * it refuses the message, a bare LF is a line end (`smtp.bareNewline:
 * normalize`) or refused from outside (`reject`; LAN clients are always
 * normalized), and what is sent on is re-encoded with CRLF and dot-stuffing.
 *
 * Each variant is a sequence that some server might take for the end of
 * the data (`\n.\n`, `\r.\r`, ...; some split across TCP segments with a
 * delay between them), followed by a smuggled transaction (a forged
 * sender, another recipient, DATA and a message) whose own end is the
 * genuine `\r\n.\r\n`, and QUIT. The client is outside (127.0.0.2) or on
 * the LAN (127.0.0.1); the next hop is a counting sink on 127.0.0.2 (the
 * smart host). A variant is smuggled when the gateway answers the smuggled
 * commands, or the sink sees the smuggled sender or recipient or a second
 * message. Whatever was accepted must arrive as one message, with the
 * smuggled text as its content; the rest must be refused as the bytes
 * dictate, and the queue must be empty after a flush.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawSmtp } from '../helpers/smtp-client.js';
import { startSink, type Sink } from '../helpers/sink.js';
import { gateway } from '../helpers/gateway.js';
import { INSIDE, OUTSIDE, flushWait, mailq, pause, repliesUntilClosed } from '../helpers/security.js';

/** The delay between the TCP segments of a split variant: it is the input, so each piece arrives as its own chunk. */
const SEGMENT_DELAY_MS = 40;
const END = '\r\n.\r\n';

interface Variant {
  name: string;
  /** Written apart, SEGMENT_DELAY_MS between them. */
  pieces: string[];
  /** The variant is the first line of the data (nothing of the message before it). */
  atStart?: boolean;
  /** The pieces are the genuine end of data: what follows is QUIT, nothing smuggled. */
  genuine?: boolean;
}

const split = (seq: string, at: number) => [seq.slice(0, at), seq.slice(at)];
const show = (s: string) => JSON.stringify(s).slice(1, -1);

const VARIANTS: Variant[] = [
  ...['\n.\n', '\r.\r', '\r\n.\r', '\n.\r\n', '\r\n.\n', '\r\n\x00.\r\n', '\r\n.\x00\r\n', '\r\n .\r\n', '\r.\r\n', '\r\n\r.\r\n',
    '\n\r.\r\n', '\r\n.\r\r\n', '\r\n..\r\n', '\n..\n', '\r\n. \r\n', '\r\n.\t\r\n'].map((s) => ({ name: `"${show(s)}"`, pieces: [s] })),
  ...['.\n', '.\r', '..\r\n', '.\x00\r\n'].map((s) => ({ name: `data starting "${show(s)}"`, pieces: [s], atStart: true })),
  ...[1, 2, 3].map((k) => ({ name: `data starting "..\\r\\n" split at ${k}`, pieces: split('..\r\n', k), atStart: true })),
  ...[1, 2, 3, 4, 5].map((k) => ({ name: `"\\r\\n..\\r\\n" split at ${k}`, pieces: split('\r\n..\r\n', k) })),
  ...[1, 2, 3].map((k) => ({ name: `"\\n.\\r\\n" split at ${k}`, pieces: split('\n.\r\n', k) })),
  ...[1, 2].map((k) => ({ name: `"\\r.\\r" split at ${k}`, pieces: split('\r.\r', k) })),
  ...[1, 2, 3, 4].map((k) => ({ name: `"\\r\\n.\\r\\n" (the genuine end) split at ${k}`, pieces: split(END, k), genuine: true })),
];

const HDRS = 'Date: Tue, 01 Dec 2026 08:00:00 +0000\r\n';

/** The smuggled transaction: a forged local sender, another local recipient, its own message. */
function smuggled(tag: string): string {
  return `MAIL FROM:<ceo@office.example>\r\nRCPT TO:<smuggled-${tag}@office.example>\r\nDATA\r\nFrom: <ceo@office.example>\r\nSubject: smuggled ${tag}\r\n\r\nSMUGGLED-${tag}`;
}

/** What the gateway must answer at the end of `data` (the bytes before the genuine end), per SPEC §9. */
function expectedCode(data: string, mode: 'normalize' | 'reject', client: string): number {
  const bareCr = /\r(?!\n)/.test(data);
  const bareLf = /(?<!\r)\n/.test(data);
  const nul = data.includes('\x00');
  return bareCr || nul || (bareLf && mode === 'reject' && client === OUTSIDE) ? 554 : 250;
}

interface Outcome {
  tag: string;
  variant: Variant;
  client: string;
  want: number;
  codes: number[];
}

/** One session: a transaction whose data holds the variant and the smuggled one, then QUIT; every reply until the close. */
async function attempt(port: number, client: string, tag: string, v: Variant, mode: 'normalize' | 'reject'): Promise<Outcome> {
  const c = await RawSmtp.connect(port, client);
  c.sock.setNoDelay(true);
  try {
    await c.reply();
    await c.cmd('EHLO smuggler.test');
    assert.equal((await c.cmd(`MAIL FROM:<sender-${tag}@outside.test>`)).code, 250, tag);
    assert.equal((await c.cmd(`RCPT TO:<v-${tag}@office.example>`)).code, 250, tag);
    assert.equal((await c.cmd('DATA')).code, 354, tag);
    const prefix = v.atStart ? '' : `${HDRS}Message-ID: <${tag}@outside.test>\r\nSubject: variant ${tag}\r\n\r\nLEGIT-${tag}`;
    const rest = v.genuine ? 'QUIT\r\n' : `${smuggled(tag)}${END}QUIT\r\n`;
    const writes = v.pieces.map((p, i) => (i === 0 ? prefix : '') + p + (i === v.pieces.length - 1 ? rest : ''));
    for (const [i, w] of writes.entries()) {
      if (i > 0) await pause(SEGMENT_DELAY_MS);
      c.write(w);
    }
    const data = prefix + v.pieces.join('') + (v.genuine ? '' : smuggled(tag));
    const codes = (await repliesUntilClosed(c)).map((r) => r.code);
    return { tag, variant: v, client, want: expectedCode(data, mode, client), codes };
  } finally {
    c.close();
  }
}

function checkSink(sink: Sink, outcomes: Outcome[]): { smuggled: string[]; problems: string[] } {
  const smuggledTags = new Set<string>();
  const problems: string[] = [];
  for (const o of outcomes) {
    const label = `${o.variant.name} from ${o.client}`;
    // more replies than the data's and QUIT's: the gateway took part of the data for commands
    if (o.codes.length > 2 || o.codes.includes(354)) smuggledTags.add(o.tag);
    else if (o.codes[0] !== o.want || o.codes[1] !== 221) problems.push(`${label}: replies ${o.codes.join(' ')}, want ${o.want} 221`);
    const mine = sink.messages.filter((m) => m.to.some((t) => t.endsWith(`-${o.tag}@office.example`)) || m.from === `sender-${o.tag}@outside.test`);
    if (mine.length > 1 || mine.some((m) => m.from === 'ceo@office.example' || m.to.some((t) => t.startsWith('smuggled-')))) smuggledTags.add(o.tag);
    if (o.want === 250 && mine.length === 0) problems.push(`${label}: accepted but never arrived`);
    if (o.want !== 250 && mine.length > 0) problems.push(`${label}: refused (${o.want}) but arrived`);
    const m = mine[0];
    if (o.want === 250 && m && mine.length === 1) {
      assert.deepEqual([m.from, m.to], [`sender-${o.tag}@outside.test`, [`v-${o.tag}@office.example`]], label);
      if (!o.variant.atStart && !m.body.includes(`LEGIT-${o.tag}`)) problems.push(`${label}: the message lost its own text`);
      if (!o.variant.genuine && !m.body.includes(`SMUGGLED-${o.tag}\r\n`)) problems.push(`${label}: the smuggled text is not the message's content`);
    }
  }
  for (const m of sink.messages) if (m.from === 'ceo@office.example' || m.to.some((t) => t.startsWith('smuggled-'))) problems.push(`smuggled message at the sink: ${m.from} -> ${m.to.join(' ')}`);
  return { smuggled: [...smuggledTags], problems };
}

for (const mode of ['normalize', 'reject'] as const) {
  test(`smtp.bareNewline ${mode}: ${VARIANTS.length} end-of-data variants with a smuggled transaction, from outside and from the LAN, give 0 smuggled messages at the sink`, { timeout: 120_000 }, async (t) => {
    const wan = await startSink({ host: OUTSIDE });
    await gateway({}, {
      hostname: 'gw.office.example',
      deliveryMode: 'background',
      lanNetworks: ['127.0.0.1/32'],
      smtp: { listen: ['127.0.0.1:0'], mynetworks: ['127.0.0.1/32'], localDomains: ['office.example'], bareNewline: mode },
      smartHost: [`[${OUTSIDE}]:${wan.port}`],
      link: { mode: 'permanent' },
      queue: { minQueueAge: '0s' },
    }, async (d, config) => {
      const outcomes: Outcome[] = [];
      for (const [ci, client] of [OUTSIDE, INSIDE].entries()) {
        for (const [vi, v] of VARIANTS.entries()) outcomes.push(await attempt(d.port, client, `${mode[0]}${ci}-${vi}`, v, mode));
      }
      const accepted = outcomes.filter((o) => o.codes[0] === 250).length;
      // the flush that would have sent anything still queued; then nothing may be left to go out later
      await wan.waitMessages(accepted, 30_000);
      await flushWait(config);
      assert.equal((await mailq(config)).total, 0, 'nothing left in the queue');
      const { smuggled: tags, problems } = checkSink(wan, outcomes);
      t.diagnostic(`bareNewline ${mode}: variants tried ${VARIANTS.length} x 2 clients = ${outcomes.length}, accepted ${accepted}, refused ${outcomes.length - accepted}, smuggled ${tags.length}, messages at the sink ${wan.messages.length}`);
      assert.deepEqual(tags.map((tag) => outcomes.find((o) => o.tag === tag)!.variant.name), [], 'smuggled');
      assert.deepEqual(problems, []);
      assert.equal(wan.messages.length, accepted, 'one message for each accepted transaction, no second one');
    }, [wan]);
  });
}
