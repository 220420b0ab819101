/**
 * control/protocol.ts — the control socket's wire format: one JSON object a
 * line. The CLI sends one request; the daemon answers with any number of
 * `event` lines (progress, e.g. `flush -v`) and exactly one `result` line.
 */
import path from 'node:path';

export interface ControlRequest {
  cmd: string;
  args?: Record<string, unknown>;
}

export type ControlReply =
  | { type: 'event'; event: unknown }
  | { type: 'result'; ok: true; data: unknown }
  | { type: 'result'; ok: false; error: { message: string; exitCode: number } };

export function socketPath(spool: string): string {
  return path.join(spool, 'quietlink.sock');
}

/**
 * Splits a byte stream into JSON lines. Only the new chunk is searched for a
 * newline and the pieces of a line are joined once, when it is complete: a
 * reply of tens of megabytes (mailq of a big queue) costs linear time.
 */
export class LineDecoder {
  private pieces: Buffer[] = [];
  push(chunk: Buffer | string): unknown[] {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const out: unknown[] = [];
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a)) {
      this.pieces.push(buf.subarray(0, nl));
      const line = (this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces)).toString().trim();
      this.pieces = [];
      buf = buf.subarray(nl + 1);
      if (line) out.push(JSON.parse(line));
    }
    if (buf.length) this.pieces.push(buf);
    return out;
  }
}
