/**
 * IntakeDeps.expandRecipient (the hook aliases use): a real SmtpIntake on
 * 127.0.0.1 (port 0) with a real queue in a temp folder, driven by a raw SMTP
 * client. The relay check sees the address as given; the envelope records
 * what it expanded to; a hook that fails or returns a bad address costs the
 * client a 451, never a wrong envelope.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { parseConfigText } from '../../src/config/load.js';
import { Queue } from '../../src/queue/queue.js';
import { FsStore } from '../../src/queue/fs-store.js';
import { createIdGenerator } from '../../src/queue/queue-id.js';
import type { Envelope } from '../../src/queue/envelope.js';
import { SmtpIntake } from '../../src/intake/smtp-intake.js';
import { tempDir } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/smtp-client.js';

const ALIASES: Record<string, string[] | null> = {
  'root@gw.test.example': ['admin@office.example', 'ops@far.example'],
  'postmaster@gw.test.example': ['admin@office.example'],
  'team@office.example': ['ann@office.example', 'admin@office.example'],
  'broken@office.example': ['bad address\r\nRCPT TO:<x@evil.example>'],
};

async function withIntake(body: (port: number, queued: Envelope[][]) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  const file = path.join(dir, 'quietlink.yaml');
  // only 127.0.0.1 is the LAN: 127.0.0.2 may send to localDomains only
  const config = parseConfigText([
    'hostname: gw.test.example', 'spool: spool',
    'smtp:', '  listen: ["127.0.0.1:0"]', '  mynetworks: ["127.0.0.1/32"]', '  localDomains: [office.example, gw.test.example]',
  ].join('\n'), file);
  const log = pino({ level: 'silent' });
  const queue = new Queue(new FsStore(config.spool), { groups: [], log });
  await queue.init();
  const queued: Envelope[][] = [];
  const intake = new SmtpIntake({
    config, openDomains: new Set(config.smtp.localDomains), queue, log, newId: createIdGenerator(), now: Date.now,
    onQueued: (envs) => (queued.push(envs), undefined),
    expandRecipient: (address) => {
      if (address === 'throws@office.example') throw new Error('aliases file unreadable');
      return ALIASES[address] ?? null;
    },
  });
  const [bound] = await intake.start();
  try {
    await body(bound.port, queued);
  } finally {
    await intake.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function session(port: number, from: string, lines: string[]): Promise<number[]> {
  const c = await RawSmtp.connect(port, from);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    const codes: number[] = [];
    for (const line of lines) codes.push((await c.cmd(line)).code);
    return codes;
  } finally {
    c.close();
  }
}

const DATA = ['DATA', 'Subject: x\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <e1@client.test>\r\n\r\nhi\r\n.'];

test('expandRecipient(): the envelope records the expansion, with ORCPT naming the address given and no duplicates', async () => {
  await withIntake(async (port, queued) => {
    const codes = await session(port, '127.0.0.1', [
      'MAIL FROM:<cron@gw.test.example>', 'RCPT TO:<root@gw.test.example> NOTIFY=FAILURE', 'RCPT TO:<team@office.example>', 'RCPT TO:<Postmaster>',
      'RCPT TO:<carol@far.example>', ...DATA,
    ]);
    assert.deepEqual(codes, [250, 250, 250, 250, 250, 354, 250]);
    assert.equal(queued.length, 1);
    const rcpts = queued[0].flatMap((e) => e.recipients).map((r) => [r.address, r.orcpt ?? null, r.notify ?? null]);
    assert.deepEqual(rcpts, [
      ['admin@office.example', 'rfc822;root@gw.test.example', ['FAILURE']],
      ['ops@far.example', 'rfc822;root@gw.test.example', ['FAILURE']],
      ['ann@office.example', 'rfc822;team@office.example', null],
      ['carol@far.example', null, null],
    ]);
  });
});

test('expandRecipient(): relaying is checked on the address as given, before any expansion', async () => {
  await withIntake(async (port, queued) => {
    // from outside: root@gw.test.example is a local domain (open); its expansion to far.example is the local admin's choice
    const codes = await session(port, '127.0.0.2', ['MAIL FROM:<x@outside.test>', 'RCPT TO:<ops@far.example>', 'RCPT TO:<root@gw.test.example>', ...DATA]);
    assert.deepEqual(codes, [250, 550, 250, 354, 250]);
    assert.deepEqual(queued[0].flatMap((e) => e.recipients).map((r) => r.address), ['admin@office.example', 'ops@far.example']);
  });
});

test('expandRecipient(): a hook that throws or returns a bad address gets 451 4.3.0 for that recipient only', async () => {
  await withIntake(async (port, queued) => {
    const c = await RawSmtp.connect(port);
    try {
      await c.reply();
      await c.cmd('EHLO client.test');
      await c.cmd('MAIL FROM:<a@office.example>');
      for (const bad of ['throws@office.example', 'broken@office.example']) {
        const r = await c.cmd(`RCPT TO:<${bad}>`);
        assert.equal(r.code, 451, bad);
        assert.match(r.text, /^451 4\.3\.0 /);
      }
      assert.equal((await c.cmd('RCPT TO:<plain@office.example>')).code, 250);
      for (const line of DATA.slice(0, 1)) assert.equal((await c.cmd(line)).code, 354);
      assert.equal((await c.cmd(DATA[1])).code, 250);
    } finally {
      c.close();
    }
    assert.deepEqual(queued[0].flatMap((e) => e.recipients).map((r) => r.address), ['plain@office.example']);
  });
});
