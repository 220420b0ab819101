/**
 * Interop: msmtp, the sendmail replacement many small hosts use to hand
 * mail to a smart host, against a running quietlink as a LAN client. msmtp
 * never declares BODY=8BITMIME, so a UTF-8 text goes as undeclared 8-bit
 * data (SPEC §9: accepted, sent on as is); its DSN options become RET and
 * NOTIFY, which quietlink keeps and passes to the next hop. Skipped only
 * when msmtp is not installed (.ci/run installs it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runProcess } from '../helpers/daemon.js';
import { bySubject, interop, need, type Interop } from '../helpers/interop.js';

/** An msmtp configuration for quietlink on 127.0.0.1:port (no TLS, no AUTH); msmtp wants it private. */
async function msmtprc(g: Interop): Promise<string> {
  const file = path.join(g.dir, 'msmtprc');
  await fs.writeFile(file, `account default\nhost 127.0.0.1\nport ${g.daemon!.port}\ndomain client.office.example\nfrom alice@office.example\nauth off\ntls off\ntimeout 20\n`, { mode: 0o600 });
  return file;
}

test('msmtp: a UTF-8 text without BODY=8BITMIME is accepted, recorded as 8BITMIME and arrives byte for byte', async (t) => {
  const msmtp = need(t, 'msmtp');
  if (!msmtp) return;
  const g = await interop();
  try {
    const text = 'Grüße aus dem Büro: Café, naïve, 東京, Ελλάδα.\nZweite Zeile – mit Gedankenstrich.\n';
    const message = `From: Alice <alice@office.example>\nTo: bob@far.example\nSubject: msmtp 8bit QLM1\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n${text}`;
    const r = await runProcess(msmtp, ['-C', await msmtprc(g), 'bob@far.example'], { input: Buffer.from(message, 'utf8') });
    assert.equal(r.code, 0, `msmtp exit ${r.code}: ${r.stderr}`);
    const queued = await g.daemon!.waitLog((l) => l.msg === 'queued' && (l.to as string[])[0] === 'bob@far.example', 'queued');
    assert.equal(queued.body, '8-bit, undeclared');
    const m = await g.sink.waitFor(bySubject('QLM1'), 'the 8-bit message at the next hop');
    assert.equal(m.mailArgs.BODY, '8BITMIME', 'sent on as 8BITMIME to a next hop that offers it');
    const sent = Buffer.from(text.replace(/\n/g, '\r\n'), 'utf8');
    assert.ok(m.body.subarray(-sent.length).equals(sent), `the body bytes unchanged: ${JSON.stringify(m.body.toString('utf8').slice(-200))}`);
  } finally {
    await g.close();
  }
});

test('msmtp --dsn-notify=failure,delay --dsn-return=hdrs: accepted, delivered, RET=HDRS and NOTIFY=FAILURE,DELAY kept for the next hop', async (t) => {
  const msmtp = need(t, 'msmtp');
  if (!msmtp) return;
  const g = await interop();
  try {
    const message = 'From: alice@office.example\nTo: carol@far.example\nSubject: msmtp dsn QLM2\n\nplease tell me if this fails\n';
    const r = await runProcess(msmtp, ['-C', await msmtprc(g), '--dsn-notify=failure,delay', '--dsn-return=hdrs', 'carol@far.example'], { input: message });
    assert.equal(r.code, 0, `msmtp exit ${r.code}: ${r.stderr}`);
    const m = await g.sink.waitFor(bySubject('QLM2'), 'the DSN message at the next hop');
    assert.deepEqual(m.to, ['carol@far.example']);
    assert.equal(m.mailArgs.RET, 'HDRS');
    assert.equal(String(m.rcptArgs[0].NOTIFY).toUpperCase(), 'FAILURE,DELAY');
  } finally {
    await g.close();
  }
});
