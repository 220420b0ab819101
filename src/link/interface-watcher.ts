/**
 * link/interface-watcher.ts — polls `link.interface` every `link.poll` for
 * links that come up without hooks. Reads /sys/class/net/IF/flags (a fraction
 * of a millisecond; systeminformation spawns processes and costs far more):
 * up means IFF_UP and IFF_RUNNING (ppp interfaces report operstate
 * "unknown", so the flags decide); a missing interface means down.
 */
import fs from 'node:fs/promises';

const IFF_UP = 0x1;
const IFF_RUNNING = 0x40;

/** Pure: is an interface with these flags up? */
export function flagsUp(flags: number): boolean {
  return (flags & IFF_UP) !== 0 && (flags & IFF_RUNNING) !== 0;
}

export async function interfaceIsUp(iface: string, sysfs = '/sys/class/net'): Promise<boolean> {
  try {
    const text = await fs.readFile(`${sysfs}/${iface}/flags`, 'utf8');
    return flagsUp(Number.parseInt(text.trim(), 16));
  } catch {
    return false;
  }
}

export class InterfaceWatcher {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly iface: string, private readonly poll: number, private readonly report: (up: boolean) => void, private readonly sysfs?: string) {}

  start(): void {
    const tick = async () => {
      this.report(await interfaceIsUp(this.iface, this.sysfs));
    };
    void tick();
    this.timer = setInterval(() => void tick(), this.poll);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
