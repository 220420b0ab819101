// bench/wan-sink.mjs — a next hop that offers CHUNKING (RFC 3030) for
// bench/wan. Postfix 3.7's smtp-sink does not offer CHUNKING (its EHLO:
// PIPELINING 8BITMIME AUTH XCLIENT XFORWARD ENHANCEDSTATUSCODES DSN), so the
// BDAT case needs a sink of its own: this one answers at once, like
// smtp-sink, and keeps a count and a SHA-256 of every message body it took.
// With { chunking: false } it is a DATA-only sink (dot-unstuffing done).
// Loopback only; one process, no disk.
import crypto from 'node:crypto';
import net from 'node:net';

/**
 * @param {{ chunking?: boolean }} [o]
 */
export async function startChunkingSink(o = {}) {
  const chunking = o.chunking ?? true;
  const state = { messages: 0, sessions: 0, hashes: [], bdat: 0, data: 0 };
  const sockets = new Set();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    state.sessions++;
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
    let buf = Buffer.alloc(0);
    /** Bytes of a BDAT chunk still to read, or -1 in command mode. */
    let chunkLeft = -1;
    let chunkLast = false;
    let inData = false;
    let parts = [];
    let hasMail = false;
    let rcpts = 0;
    let failed = false;
    const out = [];
    const reply = (s) => out.push(`${s}\r\n`);
    const finish = () => {
      const body = Buffer.concat(parts);
      parts = [];
      state.messages++;
      state.hashes.push(crypto.createHash('sha256').update(body).digest('hex'));
      hasMail = false;
      rcpts = 0;
    };
    reply('220 wan-sink ESMTP');
    sock.write(out.splice(0).join(''));
    sock.on('data', (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (;;) {
        if (chunkLeft >= 0) {
          if (buf.length === 0 && chunkLeft > 0) break;
          const take = Math.min(chunkLeft, buf.length);
          if (!failed) parts.push(buf.subarray(0, take));
          buf = buf.subarray(take);
          chunkLeft -= take;
          if (chunkLeft > 0) break;
          chunkLeft = -1;
          if (failed) reply('503 5.5.1 Error: BDAT without a transaction');
          else if (chunkLast) {
            finish();
            state.bdat++;
            reply('250 2.0.0 Ok: queued');
          } else reply('250 2.0.0 Ok: chunk');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) break;
        const line = buf.subarray(0, nl).toString('latin1');
        buf = buf.subarray(nl + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            finish();
            state.data++;
            reply('250 2.0.0 Ok: queued');
          } else parts.push(Buffer.from(`${line.startsWith('.') ? line.slice(1) : line}\r\n`, 'latin1'));
          continue;
        }
        const verb = line.split(/[ :]/)[0].toUpperCase();
        if (verb === 'EHLO') reply(`250-wan-sink\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN${chunking ? '\r\n250-CHUNKING' : ''}\r\n250 SMTPUTF8`);
        else if (verb === 'HELO') reply('250 wan-sink');
        else if (verb === 'MAIL') {
          if (hasMail) reply('503 5.5.1 Error: nested MAIL command');
          else {
            hasMail = true;
            reply('250 2.1.0 Ok');
          }
        } else if (verb === 'RCPT') {
          if (!hasMail) reply('503 5.5.1 Error: need MAIL command');
          else {
            rcpts++;
            reply('250 2.1.5 Ok');
          }
        } else if (verb === 'DATA') {
          if (!rcpts) reply('503 5.5.1 Error: need RCPT command');
          else {
            inData = true;
            reply('354 End data with <CR><LF>.<CR><LF>');
          }
        } else if (verb === 'BDAT' && chunking) {
          const m = /^BDAT (\d+)( LAST)?$/i.exec(line);
          chunkLeft = m ? Number(m[1]) : 0;
          chunkLast = Boolean(m?.[2]);
          failed = !rcpts;
        } else if (verb === 'RSET') {
          hasMail = false;
          rcpts = 0;
          parts = [];
          reply('250 2.0.0 Ok');
        } else if (verb === 'NOOP') reply('250 2.0.0 Ok');
        else if (verb === 'QUIT') {
          reply('221 2.0.0 Bye');
          sock.end(out.splice(0).join(''));
          return;
        } else reply('502 5.5.2 Error: command not recognized');
      }
      if (out.length) sock.write(out.splice(0).join(''));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    kind: chunking ? 'wan-sink (CHUNKING)' : 'wan-sink (DATA only)',
    state,
    messages: () => state.messages,
    stop() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}
