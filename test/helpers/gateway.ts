/**
 * test/helpers/gateway.ts — one daemon for one test: a temp folder, a config
 * (loopback defaults merged with the test's own keys), the daemon, and
 * everything stopped and removed afterwards, including the test's servers.
 */
import fs from 'node:fs/promises';
import { tempDir, writeConfig, startDaemon, type Daemon } from './daemon.js';

type Tree = Record<string, unknown>;

export async function gateway(
  defaults: Tree,
  over: Tree | ((dir: string) => Tree),
  body: (d: Daemon, config: string, dir: string) => Promise<void>,
  servers: Array<{ close(): Promise<void> }> = [],
): Promise<void> {
  const dir = await tempDir();
  const config = await writeConfig(dir, { ...defaults, ...(typeof over === 'function' ? over(dir) : over) });
  const daemon = await startDaemon(config);
  try {
    await body(daemon, config, dir);
  } finally {
    await daemon.stop();
    for (const s of servers) await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
