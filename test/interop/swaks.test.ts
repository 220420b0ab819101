/**
 * Interop: swaks (the Swiss Army Knife for SMTP) against a running
 * quietlink as a LAN client on 127.0.0.1: a plain transaction, STARTTLS
 * (swaks does not verify the test certificate), PIPELINING, and a 5 MB
 * attachment; each arrives at the next hop intact. Skipped only when swaks
 * is not installed (.ci/run installs it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runProcess } from '../helpers/daemon.js';
import { FIXTURES, bySubject, header, interop, need } from '../helpers/interop.js';

const swaksArgs = (port: number, ...more: string[]) => ['--server', '127.0.0.1', '--port', String(port), '--helo', 'client.office.example', '--from', 'alice@office.example', '--timeout', '20s', ...more];

test('swaks: a plain ESMTP transaction is accepted (250 queued as) and arrives at the next hop with its body', async (t) => {
  const swaks = need(t, 'swaks');
  if (!swaks) return;
  const g = await interop();
  try {
    const r = await runProcess(swaks, swaksArgs(g.daemon!.port, '--to', 'bob@far.example', '--header', 'Subject: swaks plain QLX1', '--body', 'plain body QLX1 end'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^<- {2}250 .*queued as \S+/m);
    const m = await g.sink.waitFor(bySubject('QLX1'), 'the plain message at the next hop');
    assert.equal(m.from, 'alice@office.example');
    assert.deepEqual(m.to, ['bob@far.example']);
    assert.match(m.body.toString('utf8'), /\r\n\r\nplain body QLX1 end\r\n/);
  } finally {
    await g.close();
  }
});

test('swaks --tls: STARTTLS with the configured certificate; the mail is received over TLS and delivered', async (t) => {
  const swaks = need(t, 'swaks');
  if (!swaks) return;
  const g = await interop({ smtp: { tls: { cert: path.join(FIXTURES, 'tls.crt'), key: path.join(FIXTURES, 'tls.key') } } });
  try {
    const r = await runProcess(swaks, swaksArgs(g.daemon!.port, '--tls', '--to', 'bob@far.example', '--header', 'Subject: swaks tls QLX2', '--body', 'over TLS QLX2'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ -> STARTTLS$/m);
    assert.match(r.stdout, /^<- {2}220 /m);
    assert.match(r.stdout, /^=== TLS started/m);
    // after STARTTLS swaks marks the dialogue with ~> / <~
    assert.match(r.stdout, /^ ~> EHLO client\.office\.example$/m);
    assert.match(r.stdout, /^<~ {2}250 .*queued as \S+/m);
    const queued = await g.daemon!.waitLog((l) => l.msg === 'queued' && (l.to as string[])[0] === 'bob@far.example', 'queued');
    assert.equal(queued.proto, 'ESMTPS');
    const m = await g.sink.waitFor(bySubject('QLX2'), 'the TLS message at the next hop');
    assert.match(m.body.toString('utf8'), /over TLS QLX2/);
  } finally {
    await g.close();
  }
});

test('swaks --pipeline: MAIL, RCPT, RCPT and DATA in one batch get 250 250 250 354; both recipients get the message', async (t) => {
  const swaks = need(t, 'swaks');
  if (!swaks) return;
  const g = await interop();
  try {
    const r = await runProcess(swaks, swaksArgs(g.daemon!.port, '--pipeline', '--to', 'a@far.example,b@far.example', '--header', 'Subject: swaks pipelined QLX3', '--body', 'pipelined QLX3'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^<- {2}250[- ]PIPELINING$/m);
    // the commands went out together, then the replies came back together
    assert.match(r.stdout, /^ -> MAIL FROM:<alice@office\.example>\n -> RCPT TO:<a@far\.example>\n -> RCPT TO:<b@far\.example>\n -> DATA\n<- {2}250 [^\n]*\n<- {2}250 [^\n]*\n<- {2}250 [^\n]*\n<- {2}354 /m);
    assert.match(r.stdout, /^<- {2}250 .*queued as \S+/m);
    const m = await g.sink.waitFor(bySubject('QLX3'), 'the pipelined message at the next hop');
    assert.deepEqual(g.sink.messages.filter(bySubject('QLX3')).flatMap((x) => x.to).sort(), ['a@far.example', 'b@far.example']);
    assert.match(m.body.toString('utf8'), /pipelined QLX3/);
  } finally {
    await g.close();
  }
});

/** The decoded content of the MIME part whose Content-Disposition names `filename`. */
function attachment(body: Buffer, filename: string): Buffer {
  const text = body.toString('latin1');
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(header(text, 'Content-Type') ?? '')?.[1];
  assert.ok(boundary, 'a multipart message');
  const part = text.split(`--${boundary}`).find((p) => new RegExp(`filename="?${filename}"?`).test(p));
  assert.ok(part, `a part for ${filename}`);
  const sep = part.indexOf('\r\n\r\n');
  assert.match(part.slice(0, sep), /Content-Transfer-Encoding: BASE64/i);
  return Buffer.from(part.slice(sep + 4), 'base64');
}

test('swaks --attach: a 5 MB attachment arrives at the next hop byte for byte (same SHA-256)', { timeout: 120_000 }, async (t) => {
  const swaks = need(t, 'swaks');
  if (!swaks) return;
  const g = await interop();
  try {
    const data = crypto.randomBytes(5 * 1024 * 1024);
    const file = path.join(g.dir, 'payload.bin');
    await fs.writeFile(file, data);
    const r = await runProcess(swaks, swaksArgs(g.daemon!.port, '--to', 'bob@far.example', '--header', 'Subject: swaks attachment QLX4', '--body', 'see the attachment',
      '--attach-type', 'application/octet-stream', '--attach', `@${file}`, '--suppress-data'), { ms: 90_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^<- {2}250 .*queued as \S+/m);
    const m = await g.sink.waitFor(bySubject('QLX4'), 'the 5 MB message at the next hop', 60_000);
    const got = attachment(m.body, 'payload.bin');
    assert.equal(got.length, data.length);
    assert.equal(crypto.createHash('sha256').update(got).digest('hex'), crypto.createHash('sha256').update(data).digest('hex'));
  } finally {
    await g.close();
  }
});
