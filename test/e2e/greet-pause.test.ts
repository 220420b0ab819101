import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { tempDir, writeConfig, startDaemon } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/smtp-client.js';

test('a client that talks before the greeting (greetPause) gets 554 and is disconnected', async () => {
  const dir = await tempDir();
  const daemon = await startDaemon(await writeConfig(dir, { smtp: { greetPause: '3s' } }));
  try {
    const early = await RawSmtp.connect(daemon.port);
    early.write('EHLO spammer.test\r\n');
    const r = await early.reply();
    assert.equal(r.code, 554);
    assert.match(r.text, /5\.5\.0/);
    assert.ok(await early.closedByServer());
    early.close();
    const polite = await RawSmtp.connect(daemon.port);
    assert.equal((await polite.reply()).code, 220);
    assert.equal((await polite.cmd('EHLO polite.test')).code, 250);
    polite.close();
  } finally {
    await daemon.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
