/**
 * The interface watcher against a real interface: a veth pair of the test's
 * own (root and iproute2 needed), the daemon in managed mode watching one
 * side, and a smartHost sink on 127.0.0.2 playing the WAN. Carrier follows
 * the peer: peer down → the link is down and mail waits; peer up → link up
 * and a window delivers; interface deleted → link down.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { runProcess, type Daemon } from '../helpers/daemon.js';
import { gateway } from '../helpers/gateway.js';
import { startSink } from '../helpers/sink.js';
import { sendMail } from '../helpers/smtp-client.js';

const VETH_A = `qlw${process.pid % 10000}a`;
const VETH_B = `qlw${process.pid % 10000}b`;
const MSG = 'Subject: watcher\r\n\r\nbody\r\n';

async function ip(...args: string[]): Promise<void> {
  const r = await runProcess('ip', args);
  assert.equal(r.code, 0, `ip ${args.join(' ')}: ${r.stderr}`);
}

/** The first `link` log line for `state` logged at or after index `from`. */
function linkLog(d: Daemon, state: 'up' | 'down', from: number): Promise<Record<string, unknown>> {
  return d.waitLog((l) => l.msg === 'link' && l.link === state && d.logs.indexOf(l) >= from, `link ${state} logged`);
}

test('managed mode with link.interface: the watcher follows carrier on a real veth and the link-up window delivers', async (t) => {
  if (process.getuid?.() !== 0 || spawnSync('ip', ['-V']).error) {
    t.skip('needs root and iproute2 to create a veth pair');
    return;
  }
  await ip('link', 'add', VETH_A, 'type', 'veth', 'peer', 'name', VETH_B);
  try {
    await ip('link', 'set', VETH_A, 'up'); // admin up, but no carrier while the peer is down
    const wan = await startSink({ host: '127.0.0.2' });
    await gateway({ lanNetworks: ['127.0.0.1/32'], queue: { minQueueAge: '0s' } }, {
      smartHost: [`[127.0.0.2]:${wan.port}`],
      link: { mode: 'managed', interface: VETH_A, poll: '200ms' },
    }, async (d) => {
      await sendMail(d.port, 'alice@office.example', ['x@far.example'], MSG);
      await d.waitLog((l) => l.msg === 'queued', 'message queued');
      assert.equal(wan.connections, 0, 'the link is down: the message waits');
      assert.equal(wan.messages.length, 0);
      assert.ok(!d.logs.some((l) => l.msg === 'link'), 'no carrier, no link up');

      let from = d.logs.length;
      await ip('link', 'set', VETH_B, 'up');
      const up = await linkLog(d, 'up', from);
      assert.equal(up.cause, 'interface watcher');
      assert.equal(up.iface, VETH_A);
      await wan.waitMessages(1);
      assert.deepEqual(wan.messages[0].to, ['x@far.example']);

      from = d.logs.length;
      await ip('link', 'set', VETH_B, 'down');
      assert.equal((await linkLog(d, 'down', from)).cause, 'interface watcher', 'carrier lost: down');

      from = d.logs.length;
      await ip('link', 'set', VETH_B, 'up');
      await linkLog(d, 'up', from);

      from = d.logs.length;
      await ip('link', 'del', VETH_A);
      await linkLog(d, 'down', from);
      assert.equal(wan.messages.length, 1, 'delivered once');
    }, [wan]);
  } finally {
    // gone already when the test got that far; the error then is expected
    await runProcess('ip', ['link', 'del', VETH_A]);
  }
});
