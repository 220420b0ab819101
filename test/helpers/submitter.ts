/**
 * test/helpers/submitter.ts — a child process that submits mail over several
 * concurrent SMTP sessions to the port it is told on stdin (`port N`), and
 * prints `ACK <queue-id> <seq>` for every message answered 250. When the
 * daemon dies, each session waits for the next `port` line; `stop` ends it.
 * Message seq N has the content messageFor(N), so the parent can check bytes.
 */
import readline from 'node:readline';
import { RawSmtp } from './smtp-client.js';
import { messageFor } from './messages.js';

const SESSIONS = Number(process.argv[2] ?? 4);
let port = 0;
let generation = 0;
let stopping = false;
let nextPort: Promise<void>;
let announce: () => void = () => undefined;
const armNextPort = () => {
  nextPort = new Promise<void>((resolve) => (announce = resolve));
};
armNextPort();

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [word, value] = line.trim().split(' ');
  if (word === 'port') {
    port = Number(value);
    generation++;
    const a = announce;
    armNextPort();
    a();
  } else if (word === 'stop') {
    stopping = true;
    announce();
  }
});

let seq = 0;

async function session(): Promise<void> {
  while (!stopping) {
    if (port === 0) {
      await nextPort;
      continue;
    }
    const gen = generation;
    let c: RawSmtp | null = null;
    try {
      c = await RawSmtp.connect(port);
      await c.reply();
      await c.cmd('EHLO submitter.test');
      // several messages per connection, like a real client
      for (let k = 0; k < 5 && !stopping; k++) {
        const n = ++seq;
        if ((await c.cmd('MAIL FROM:<load@office.example>')).code !== 250) break;
        if ((await c.cmd(`RCPT TO:<rcpt${n}@far.example>`)).code !== 250) break;
        if ((await c.cmd('DATA')).code !== 354) break;
        c.write(`${messageFor(n)}.\r\n`);
        const r = await c.reply();
        if (r.code === 250) process.stdout.write(`ACK ${/queued as (\S+)/.exec(r.text)![1]} ${n}\n`);
      }
      await c.cmd('QUIT').catch(() => undefined);
    } catch {
      // the daemon was killed: wait until the parent says where it is again
      if (gen === generation && !stopping) await nextPort;
    } finally {
      c?.close();
    }
  }
}

await Promise.all(Array.from({ length: SESSIONS }, () => session()));
process.exit(0);
