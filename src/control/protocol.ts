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

/** Splits a byte stream into JSON lines. */
export class LineDecoder {
  private buf = '';
  push(chunk: Buffer | string): unknown[] {
    this.buf += chunk.toString();
    const out: unknown[] = [];
    let nl = this.buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) out.push(JSON.parse(line));
      nl = this.buf.indexOf('\n');
    }
    return out;
  }
}
