/**
 * Interop: Python's smtplib (the standard library's SMTP client, which
 * scripts, monitoring and web applications use) against a running quietlink
 * as a LAN client on 127.0.0.1:
 * - send_message() of a UTF-8 EmailMessage: smtplib sends the 8-bit body
 *   without BODY=8BITMIME and without Date: or Message-ID:;
 * - sendmail(from, to, bytes) whose bytes end lines with a bare LF
 *   (smtplib only fixes line ends of str messages, not of bytes);
 * - an unbracketed `MAIL FROM:addr` / `RCPT TO:addr` through docmd().
 * SPEC §9 "Be liberal where Postfix is": each is accepted and delivered.
 * Skipped only when python3 is not installed (.ci/run installs it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runProcess } from '../helpers/daemon.js';
import { bySubject, header, interop, need, type Interop } from '../helpers/interop.js';

/** Runs a Python script (written to the gateway's folder) with the port as argv[1]; it prints one JSON object. */
async function python(py: string, g: Interop, script: string): Promise<Record<string, unknown>> {
  const file = path.join(g.dir, 'client.py');
  await fs.writeFile(file, script);
  const r = await runProcess(py, [file, String(g.daemon!.port)]);
  assert.equal(r.code, 0, `python3 exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

const PRELUDE = `
import json, smtplib, sys
port = int(sys.argv[1])
s = smtplib.SMTP('127.0.0.1', port, local_hostname='script.office.example', timeout=20, source_address=('127.0.0.1', 0))
`;

test('smtplib send_message(): a UTF-8 text EmailMessage (8-bit, undeclared, no Date or Message-ID) is accepted and arrives with Date and Message-ID added', async (t) => {
  const py = need(t, 'python3');
  if (!py) return;
  const g = await interop();
  try {
    const out = await python(py, g, `${PRELUDE}
from email.message import EmailMessage
m = EmailMessage()
m['From'] = 'Alice <alice@office.example>'
m['To'] = 'bob@far.example'
m['Subject'] = 'smtplib utf8 QLP1'
m.set_content('Grüße aus dem Büro: Café, naïve, 東京\\n')
refused = s.send_message(m)
code, text = s.noop()
s.quit()
print(json.dumps({'refused': refused, 'cte': m['Content-Transfer-Encoding']}))
`);
    assert.deepEqual(out.refused, {}, 'send_message raised nothing and no recipient was refused');
    assert.equal(out.cte, '8bit', 'smtplib sent the body as 8-bit data');
    const queued = await g.daemon!.waitLog((l) => l.msg === 'queued' && (l.to as string[])[0] === 'bob@far.example', 'queued');
    assert.equal(queued.body, '8-bit, undeclared');
    const m = await g.sink.waitFor(bySubject('QLP1'), 'the smtplib message at the next hop');
    assert.ok(m.body.includes(Buffer.from('Grüße aus dem Büro: Café, naïve, 東京\r\n', 'utf8')), m.body.toString('utf8'));
    assert.ok(header(m.body, 'Date'), 'Date: added for a LAN client');
    assert.match(header(m.body, 'Message-ID') ?? '', /^<[^@\s]+@gw\.test\.example>$/, 'Message-ID: added for a LAN client');
  } finally {
    await g.close();
  }
});

test('smtplib sendmail(from, to, bytes) with bare LF line ends is accepted; the next hop gets CRLF lines, the text unchanged', async (t) => {
  const py = need(t, 'python3');
  if (!py) return;
  const g = await interop();
  try {
    const out = await python(py, g, `${PRELUDE}
msg = b'From: alice@office.example\\nTo: bob@far.example\\nSubject: smtplib bare LF QLP2\\nDate: Mon, 23 Nov 2026 08:00:00 +0000\\nMessage-ID: <qlp2@script.office.example>\\n\\nline one\\nline two\\n.hidden dot line\\nlast line\\n'
try:
    refused = s.sendmail('alice@office.example', ['bob@far.example'], msg)
    print(json.dumps({'ok': True, 'refused': refused}))
except smtplib.SMTPException as e:
    print(json.dumps({'ok': False, 'error': repr(e)}))
s.quit()
`);
    assert.deepEqual(out, { ok: true, refused: {} }, JSON.stringify(out));
    const queued = await g.daemon!.waitLog((l) => l.msg === 'queued' && (l.to as string[])[0] === 'bob@far.example', 'queued');
    assert.equal(queued.bareLf, 'normalized');
    const m = await g.sink.waitFor(bySubject('QLP2'), 'the bare-LF message at the next hop');
    const text = m.body.toString('utf8');
    // smtplib ends data that does not end in CRLF with CRLF before the dot: "last line\n\r\n.\r\n",
    // a bare LF line end and then an empty line, as Postfix reads it too
    assert.ok(text.endsWith('Subject: smtplib bare LF QLP2\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <qlp2@script.office.example>\r\n\r\nline one\r\nline two\r\n.hidden dot line\r\nlast line\r\n\r\n'), JSON.stringify(text));
    assert.doesNotMatch(text, /[^\r]\n/, 'no bare LF left');
  } finally {
    await g.close();
  }
});

test('smtplib docmd("MAIL FROM:alice@office.example") without angle brackets from 127.0.0.1 (LAN) gets 250 and the mail is delivered', async (t) => {
  const py = need(t, 'python3');
  if (!py) return;
  const g = await interop({ smtp: { mynetworks: ['127.0.0.1/32'] }, lanNetworks: ['127.0.0.1/32'] });
  try {
    const out = await python(py, g, `${PRELUDE}
s.ehlo()
mail = s.docmd('MAIL FROM:alice@office.example')
rcpt = s.docmd('RCPT TO:bob@far.example')
data = s.data(b'Subject: unbracketed QLP3\\r\\n\\r\\nfrom an old script\\r\\n')
s.quit()
print(json.dumps({'mail': [mail[0], mail[1].decode()], 'rcpt': [rcpt[0], rcpt[1].decode()], 'data': [data[0], data[1].decode()]}))
`);
    assert.equal((out.mail as [number, string])[0], 250, JSON.stringify(out));
    assert.equal((out.rcpt as [number, string])[0], 250, JSON.stringify(out));
    assert.equal((out.data as [number, string])[0], 250, JSON.stringify(out));
    const m = await g.sink.waitFor(bySubject('QLP3'), 'the unbracketed message at the next hop');
    assert.equal(m.from, 'alice@office.example');
    assert.deepEqual(m.to, ['bob@far.example']);
  } finally {
    await g.close();
  }
});
