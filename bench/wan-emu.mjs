// bench/wan-emu.mjs — a userspace WAN emulator on loopback (SPEC §14
// "Link-seconds per flush"; the kernel here has no netem/tbf qdisc).
//
// A TCP proxy: clients connect to 127.0.0.1:PORT, each connection is carried
// to TARGET after a connection set-up of one round trip, and every byte then
// crosses a line with
//   - a one-way delay of rtt/2 in each direction,
//   - a bandwidth per direction shared by all connections: the connections
//     with bytes waiting take turns, one segment of at most MSS bytes each
//     (as TCP flows share a bottleneck, roughly; a plain FIFO would let one
//     1 MB message hold every other connection for 2 minutes on ISDN), each
//     segment taking bytes*8/bps on the line, store and forward,
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
  const up = line(o.upKbps);
  const down = line(o.downKbps);
  const stats = fresh();
  const sockets = new Set();

  function fresh() {
    return { connections: 0, upBytes: 0, downBytes: 0, firstAt: null, lastAt: null, lastAnyAt: null };
  }

  /**
   * One direction of the line: the connections with bytes waiting take turns,
   * a segment each (as TCP flows share a bottleneck, roughly), and the line
   * sends one segment at a time. Times are kept on the line's own clock
   * (`freeAt`), so a timer that fires late does not slow the line down.
   */
  function line(kbps) {
    return { bps: kbps * 1000, freeAt: 0, active: [], turn: 0, timer: null };
  }

  function serve(l) {
    l.timer = null;
    const now = performance.now();
    while (l.active.length && l.freeAt <= now) {
      l.turn %= l.active.length;
      const ch = l.active[l.turn];
      const seg = ch.waiting.shift();
      const start = Math.max(l.freeAt, seg.arrived);
      l.freeAt = start + (seg.buf.length * 8000) / l.bps;
      ch.arrive(seg, l.freeAt + oneWay);
      if (ch.waiting.length) l.turn++;
      else l.active.splice(l.turn, 1);
    }
    if (l.active.length) l.timer = setTimeout(() => serve(l), Math.max(0, l.freeAt - performance.now()));
  }

  /** One direction of one connection: segments wait for the line, then arrive at `out` a one-way delay later, in order. */
  function channel(l, out, dir) {
    const ch = { waiting: [] };
    const inflight = [];
    let timer = null;
    let endAfter = false;
    let ready = false;
    const pump = () => {
      timer = null;
      if (!ready) return;
      const now = performance.now();
      while (inflight.length && inflight[0].at <= now + 0.5) {
        const s = inflight.shift();
        if (!out.destroyed) out.write(s.buf);
        stats.lastAnyAt = Math.max(stats.lastAnyAt ?? 0, s.at);
        if (!s.idle) stats.lastAt = Math.max(stats.lastAt ?? 0, s.at);
      }
      if (inflight.length) timer = setTimeout(pump, Math.max(0, inflight[0].at - performance.now()));
      else if (endAfter && !ch.waiting.length && !out.destroyed) out.end();
    };
    ch.arrive = (seg, at) => {
      inflight.push({ at, buf: seg.buf, idle: seg.idle });
      if (!timer && ready) timer = setTimeout(pump, Math.max(0, at - performance.now()));
    };
    return {
      /** Puts bytes on the line now. */
      push(buf) {
        const text = buf.length <= 64 ? buf.toString('latin1') : '';
        const idle = dir === 'up' ? /^QUIT\r\n$/i.test(text) : /^221[ -]/.test(text);
        if (dir === 'up') stats.upBytes += buf.length;
        else stats.downBytes += buf.length;
        const arrived = performance.now();
        for (let i = 0; i < buf.length; i += MSS) ch.waiting.push({ buf: Buffer.from(buf.subarray(i, i + MSS)), idle, arrived });
        if (!l.active.includes(ch)) l.active.push(ch);
        if (!l.timer) serve(l);
      },
      /** The far side exists (the target connection is open): deliver from now on. */
      open() {
        ready = true;
        if (!timer) pump();
      },
      /** The sender closed: close the far side once everything queued has arrived. */
      end() {
        endAfter = true;
        if (ready && !inflight.length && !ch.waiting.length && !timer && !out.destroyed) out.end();
      },
      drop() {
        clearTimeout(timer);
        inflight.length = 0;
        ch.waiting.length = 0;
        const i = l.active.indexOf(ch);
        if (i >= 0) l.active.splice(i, 1);
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
