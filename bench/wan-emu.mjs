// bench/wan-emu.mjs — a userspace WAN emulator on loopback (SPEC §14
// "Link-seconds per flush"; the kernel here has no netem/tbf qdisc).
//
// A TCP proxy: clients connect to 127.0.0.1:PORT, each connection is carried
// to TARGET after a connection set-up of one round trip, and every byte then
// crosses a line with
//   - a one-way delay of rtt/2 in each direction,
//   - a bandwidth per direction shared by all connections (one FIFO line:
//     bytes leave in the order they reached the line, in segments of at
//     most MSS bytes, each taking bytes*8/bps on the line, store and forward),
//   - no loss, no TCP window or slow start (a long-lived well-tuned TCP):
//     a single connection can fill the line here, where a real one first
//     climbs out of slow start (about log2(BDP/14.6 KB) extra round trips).
// It counts connections, bytes each way (TCP payload only, no header
// overhead) and the time from the first SYN to the last byte delivered. A
// segment that is only `QUIT` or a `221` reply (a connection cache closing
// an idle connection) is counted as a byte but does not move `lastAt`: what
// the line is needed for is the mail, and both MTAs close idle connections
// late (Postfix after smtp_connection_cache_time_limit, quietlink after its
// linger). `lastAnyAt` keeps the figure with them.
//
// "up" is client → target (the MTA sending mail), "down" target → client.
import net from 'node:net';

const MSS = 1460;

/**
 * @param {{ upKbps: number, downKbps: number, rttMs: number, target: { host: string, port: number } }} o
 */
export async function startWan(o) {
  const oneWay = o.rttMs / 2;
  const line = (kbps) => ({ bps: kbps * 1000, freeAt: 0 });
  const up = line(o.upKbps);
  const down = line(o.downKbps);
  const stats = fresh();
  const sockets = new Set();

  function fresh() {
    return { connections: 0, upBytes: 0, downBytes: 0, firstAt: null, lastAt: null, lastAnyAt: null };
  }

  /** A FIFO of segments for one direction of one connection, written to `out` when each arrives. */
  function channel(l, out, dir) {
    const q = [];
    let timer = null;
    let endAfter = false;
    let ready = false;
    const pump = () => {
      timer = null;
      if (!ready) return;
      const now = performance.now();
      while (q.length && q[0].at <= now + 0.5) {
        const s = q.shift();
        if (!out.destroyed) out.write(s.buf);
        stats.lastAnyAt = Math.max(stats.lastAnyAt ?? 0, s.at);
        if (!s.idle) stats.lastAt = Math.max(stats.lastAt ?? 0, s.at);
      }
      if (q.length) timer = setTimeout(pump, Math.max(0, q[0].at - performance.now()));
      else if (endAfter && !out.destroyed) out.end();
    };
    return {
      /** Puts bytes on the line now. */
      push(buf) {
        const text = buf.length <= 64 ? buf.toString('latin1') : '';
        const idle = dir === 'up' ? /^QUIT\r\n$/i.test(text) : /^221[ -]/.test(text);
        if (dir === 'up') stats.upBytes += buf.length;
        else stats.downBytes += buf.length;
        for (let i = 0; i < buf.length; i += MSS) {
          const seg = buf.subarray(i, i + MSS);
          const now = performance.now();
          const start = Math.max(now, l.freeAt);
          l.freeAt = start + (seg.length * 8000) / l.bps;
          q.push({ at: l.freeAt + oneWay, buf: Buffer.from(seg), idle });
        }
        if (!timer && ready) timer = setTimeout(pump, Math.max(0, q[0].at - performance.now()));
      },
      /** The far side exists (the target connection is open): deliver from now on. */
      open() {
        ready = true;
        if (q.length && !timer) timer = setTimeout(pump, Math.max(0, q[0].at - performance.now()));
      },
      /** The sender closed: close the far side once everything queued has arrived. */
      end() {
        endAfter = true;
        if (ready && !q.length && !timer && !out.destroyed) out.end();
      },
      drop() {
        clearTimeout(timer);
        q.length = 0;
      },
    };
  }

  const server = net.createServer((client) => {
    const acceptedAt = performance.now();
    stats.connections++;
    stats.firstAt ??= acceptedAt;
    sockets.add(client);
    client.setNoDelay(true);
    const target = new net.Socket();
    sockets.add(target);
    const toTarget = channel(up, target, 'up');
    const toClient = channel(down, client, 'down');
    toClient.open();
    const kill = () => {
      toTarget.drop();
      toClient.drop();
      client.destroy();
      target.destroy();
    };
    client.on('data', (b) => toTarget.push(b));
    client.on('end', () => toTarget.end());
    client.on('error', kill);
    client.on('close', () => sockets.delete(client));
    target.on('data', (b) => toClient.push(b));
    target.on('end', () => toClient.end());
    target.on('error', kill);
    target.on('close', () => sockets.delete(target));
    // SYN out, SYN-ACK back: the target sees the connection one round trip after the client asked
    setTimeout(() => {
      if (client.destroyed) return target.destroy();
      target.connect(o.target.port, o.target.host, () => {
        target.setNoDelay(true);
        toTarget.open();
      });
    }, o.rttMs);
  });
  server.maxConnections = 1000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    /** Counters since the start or the last reset(); times in seconds. */
    stats() {
      const span = (t) => (stats.firstAt === null || t === null ? 0 : (t - stats.firstAt) / 1000);
      return { connections: stats.connections, upBytes: stats.upBytes, downBytes: stats.downBytes, linkSeconds: span(stats.lastAt), lastByteSeconds: span(stats.lastAnyAt) };
    },
    reset() {
      Object.assign(stats, fresh());
    },
    /** The physical limit for what went through: bytes / bandwidth (the slower direction) + `trips` round trips. */
    limit(trips = 3) {
      const s = stats;
      return Math.max((s.upBytes * 8) / up.bps, (s.downBytes * 8) / down.bps) + (trips * o.rttMs) / 1000;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/** The profiles of issue 17. */
export const PROFILES = {
  isdn: { upKbps: 64, downKbps: 64, rttMs: 40 },
  sat: { upKbps: 512, downKbps: 2000, rttMs: 600 },
  lte: { upKbps: 5000, downKbps: 20000, rttMs: 60 },
};
