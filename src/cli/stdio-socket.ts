/**
 * cli/stdio-socket.ts — stdin and stdout as the "socket" smtp-server talks
 * to, for `sendmail -bs` (cli/sendmail-smtp.ts). Owns the input held back
 * until the greeting is written (a client that writes its whole session at
 * once is no early talker here), the idle timer smtp-server asks for
 * (timeout.command) and the LF → CRLF repair of the input. No failure of its
 * own: the end of stdin ends the stream.
 */
import { Duplex } from 'node:stream';

/**
 * Local programs often end lines with LF alone: that is no smuggling attempt
 * here, make it CRLF. A CR at the end of the last piece and an LF at the
 * start of this one are one CRLF (`lastCR` carries that across pieces).
 */
export function toCrlf(text: string, lastCR: boolean): { fixed: string; lastCR: boolean } {
  const head = lastCR && text.startsWith('\n') ? '\n' : '';
  const rest = head ? text.slice(1) : text;
  return { fixed: head + rest.replace(/\r?\n/g, '\r\n'), lastCR: rest.endsWith('\r') };
}

export interface StdioSocket {
  /** The duplex smtp-server reads commands from and writes replies to. */
  stream: Duplex;
  /** Stops the idle timer (at the end of the session). */
  stopIdle(): void;
}

/** Input is held until the first write (the greeting), then passed on. */
function greetingGate(out: NodeJS.WritableStream): { stream: Duplex; feed: (d: Buffer | null) => void } {
  let greeted = false;
  let held: Array<Buffer | null> = [];
  const stream = new Duplex({
    read() {},
    write(chunk, _enc, done) {
      out.write(chunk, done);
      if (greeted) return;
      greeted = true;
      setImmediate(() => {
        for (const d of held) stream.push(d);
        held = [];
      });
    },
  });
  const feed = (d: Buffer | null) => (greeted ? stream.push(d) : held.push(d));
  return { stream, feed };
}

/**
 * What smtp-server asks of a socket: its state, addresses and an idle timer;
 * input from `input` (repaired to CRLF) restarts the timer.
 */
export function stdioSocket(input: NodeJS.ReadableStream, out: NodeJS.WritableStream): StdioSocket {
  const { stream, feed } = greetingGate(out);
  let idleMs = 0;
  let idle: NodeJS.Timeout | null = null;
  const touch = () => {
    if (idle) clearTimeout(idle);
    idle = idleMs > 0 ? setTimeout(() => stream.emit('timeout'), idleMs) : null;
    idle?.unref();
  };
  Object.assign(stream, {
    readyState: 'open', remoteAddress: '127.0.0.1', localAddress: '127.0.0.1',
    setTimeout(ms: number, cb?: () => void) {
      idleMs = ms;
      if (cb) stream.once('timeout', cb);
      touch();
      return stream;
    },
    setNoDelay: () => stream,
    setKeepAlive: () => stream,
  });
  let lastCR = false;
  input.on('data', (d: Buffer) => {
    touch();
    const r = toCrlf(d.toString('latin1'), lastCR);
    lastCR = r.lastCR;
    feed(Buffer.from(r.fixed, 'latin1'));
  });
  input.on('end', () => feed(null));
  return { stream, stopIdle: () => { if (idle) clearTimeout(idle); } };
}
