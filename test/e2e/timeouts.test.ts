/**
 * Outbound timeouts (sendmail's Timeout.helo, .mail, .rcpt, .datainit,
 * .datafinal): a next hop that stalls at one step makes a deferral whose
 * reason names the step. Each next hop is a raw loopback server scripted
 * to stop answering at its step.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { runCli } from '../helpers/daemon.js';
import { gateway } from '../helpers/gateway.js';
import { sendMail } from '../helpers/smtp-client.js';

type Step = 'EHLO' | 'MAIL' | 'RCPT' | 'DATA' | 'FINAL' | 'BLOCK';

async function stallingServer(step: Step): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => socks.delete(sock));
    sock.write('220 stall.test ESMTP\r\n');
    let buf = '';
    let inData = false;
    let stalled = false;
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      // once stalled, the server answers nothing more, as a hung server would
      for (; !stalled;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          buf = buf.slice(end + 5);
          inData = false;
          if (step === 'FINAL') stalled = true;
          else sock.write('250 2.0.0 queued\r\n');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const verb = line.split(/[ :]/)[0].toUpperCase();
        if (verb === step) {
          stalled = true;
          continue;
        }
        if (verb === 'EHLO') sock.write('250-stall.test\r\n250 PIPELINING\r\n');
        else if (verb === 'DATA') {
          inData = true;
          sock.write('354 go ahead\r\n');
          if (step === 'BLOCK') {
            // stop reading: the client's data blocks pile up in the socket buffers
            stalled = true;
            sock.pause();
          }
        } else if (verb === 'QUIT') sock.end('221 bye\r\n');
        else sock.write('250 2.0.0 ok\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const s of socks) s.destroy();
      server.close(() => r());
    }),
  };
}

test('a next hop that stalls at EHLO, MAIL, RCPT, DATA, in the data or at the end of data is deferred with that step as the reason', { timeout: 60_000 }, async () => {
  const steps: Step[] = ['EHLO', 'MAIL', 'RCPT', 'DATA', 'FINAL', 'BLOCK'];
  const servers = await Promise.all(steps.map(stallingServer));
  await gateway({ lanNetworks: ['127.0.0.0/8'], link: { mode: 'demand' }, deliveryMode: 'queue' }, {
    routes: steps.map((s, i) => ({ domain: `${s.toLowerCase()}.example`, relay: `[127.0.0.1]:${servers[i].port}` })),
    timeout: { helo: '1s', mail: '1s', rcpt: '1s', datainit: '1s', datablock: '1s', datafinal: '1s' },
    smtp: { maxMessageSize: '32MB' },
  }, async (d, config) => {
    // the data of the BLOCK message is larger than the socket buffers can hold
    const big = `Subject: big\r\n\r\n${`${'y'.repeat(998)}\r\n`.repeat(24_000)}`;
    for (const s of steps) assert.equal((await sendMail(d.port, 'a@office.example', [`x@${s.toLowerCase()}.example`], s === 'BLOCK' ? big : 'Subject: t\r\n\r\nx\r\n')).code, 250);
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 75, f.stdout);
    const q = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout) as { messages: Array<{ recipients: Array<{ address: string; lastReply?: string }> }> };
    const reply = (s: string) => q.messages.flatMap((m) => m.recipients).find((r) => r.address === `x@${s.toLowerCase()}.example`)?.lastReply ?? '';
    assert.match(reply('EHLO'), /^451 4\.4\.1 .*Timeout waiting for reply to EHLO/);
    assert.match(reply('MAIL'), /^451 4\.4\.2 Timeout waiting for reply to MAIL/);
    assert.match(reply('RCPT'), /^451 4\.4\.2 Timeout waiting for reply to RCPT/);
    assert.match(reply('DATA'), /^451 4\.4\.2 Timeout waiting for reply to DATA/);
    assert.match(reply('FINAL'), /^451 4\.4\.2 Timeout waiting for reply to the end of data/);
    assert.match(reply('BLOCK'), /^451 4\.4\.2 Timeout waiting for reply to the data/);
  }, servers);
});

/**
 * A next hop that never answers the SYN: a listening socket (perl, part of
 * every Debian system) that never accepts, its accept queue (backlog 0)
 * filled by one connection of the test's, so the kernel drops further SYNs.
 */
async function deafListeners(ips: string[]): Promise<{ ports: number[]; close(): Promise<void> }> {
  const { spawn } = await import('node:child_process');
  const script = 'use Socket; $| = 1; my @keep; for my $ip (@ARGV) { socket(my $s, PF_INET, SOCK_STREAM, 0) or die; '
    + 'bind($s, pack_sockaddr_in(0, inet_aton($ip))) or die "bind $ip: $!"; listen($s, 0) or die; '
    + 'my ($port) = unpack_sockaddr_in(getsockname($s)); push @keep, $s; print "$port\\n"; } <STDIN>;';
  const proc = spawn('perl', ['-e', script, ...ips], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const ports = await new Promise<number[]>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`perl exited ${code}`)));
    proc.stdout.on('data', (d) => {
      out += d;
      const lines = out.split('\n').filter(Boolean);
      if (lines.length === ips.length) resolve(lines.map(Number));
    });
  });
  // one accepted-but-never-taken connection fills each accept queue
  const fillers = await Promise.all(ips.map((ip, i) => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(ports[i], ip, () => resolve(s));
    s.once('error', reject);
  })));
  return {
    ports,
    close: async () => {
      for (const s of fillers) s.destroy();
      const exited = new Promise((r) => proc.once('exit', r));
      proc.stdin.end();
      await exited;
    },
  };
}

test('a next hop that never answers the connection attempt: timeout.iconnect for the first attempt, timeout.connect for the one after dialDelay', { timeout: 60_000 }, async () => {
  // 127.0.0.1 is on the LAN (one attempt); 127.1.0.1 is beyond it, a link route (a second attempt after dialDelay)
  const deaf = await deafListeners(['127.0.0.1', '127.1.0.1']);
  await gateway({ lanNetworks: ['127.0.0.0/16'], link: { mode: 'demand' }, deliveryMode: 'queue' }, {
    routes: [
      { domain: 'lan.example', relay: `[127.0.0.1]:${deaf.ports[0]}` },
      { domain: 'wan.example', relay: `[127.1.0.1]:${deaf.ports[1]}` },
    ],
    dialDelay: '10ms',
    timeout: { iconnect: '1s', connect: '2s' },
  }, async (d, config) => {
    for (const dom of ['lan', 'wan']) assert.equal((await sendMail(d.port, 'a@office.example', [`x@${dom}.example`], 'Subject: t\r\n\r\nx\r\n')).code, 250);
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 75, f.stdout);
    const q = JSON.parse((await runCli(['mailq', '-c', config, '--json'])).stdout) as { messages: Array<{ recipients: Array<{ address: string; lastReply?: string }> }> };
    const reply = (dom: string) => q.messages.flatMap((m) => m.recipients).find((r) => r.address === `x@${dom}.example`)?.lastReply ?? '';
    assert.match(reply('lan'), new RegExp(`^451 4\\.4\\.1 No host answered: Timeout connecting to \\[127\\.0\\.0\\.1\\]:${deaf.ports[0]} \\(timeout\\.iconnect 1s\\)`));
    assert.match(reply('wan'), new RegExp(`^451 4\\.4\\.1 No host answered: Timeout connecting to \\[127\\.1\\.0\\.1\\]:${deaf.ports[1]} \\(timeout\\.connect 2s\\)`));
  }, [deaf]);
});

test('a slow greeting is waited for up to timeout.helo, however short timeout.connect is', { timeout: 60_000 }, async () => {
  // a next hop that takes its time over the banner (a tarpit, a loaded host): 1.5 s, beyond connect's 1 s
  const socks = new Set<net.Socket>();
  let delivered = 0;
  const slow = net.createServer((sock) => {
    socks.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => socks.delete(sock));
    const banner = setTimeout(() => sock.write('220 slow.test ESMTP\r\n'), 1500);
    sock.on('close', () => clearTimeout(banner));
    let buf = '';
    let inData = false;
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          buf = buf.slice(end + 5);
          inData = false;
          delivered++;
          sock.write('250 2.0.0 queued\r\n');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const verb = buf.slice(0, nl).split(/[ :]/)[0].toUpperCase();
        buf = buf.slice(nl + 2);
        if (verb === 'EHLO') sock.write('250 slow.test\r\n');
        else if (verb === 'DATA') {
          inData = true;
          sock.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') sock.end('221 bye\r\n');
        else sock.write('250 2.0.0 ok\r\n');
      }
    });
  });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
  const port = (slow.address() as net.AddressInfo).port;
  const server = {
    close: () => new Promise<void>((r) => {
      for (const s of socks) s.destroy();
      slow.close(() => r());
    }),
  };
  await gateway({ lanNetworks: ['127.0.0.0/8'], link: { mode: 'demand' }, deliveryMode: 'queue' }, {
    routes: [{ domain: 'slow.example', relay: `[127.0.0.1]:${port}` }],
    timeout: { iconnect: '1s', connect: '1s', helo: '10s' },
  }, async (d, config) => {
    assert.equal((await sendMail(d.port, 'a@office.example', ['x@slow.example'], 'Subject: t\r\n\r\nx\r\n')).code, 250);
    const f = await runCli(['flush', '-c', config, '--wait']);
    assert.equal(f.code, 0, f.stdout + f.stderr);
    assert.equal(delivered, 1);
  }, [server]);
});
