/**
 * queue/count.ts — "how many queued messages for this node" (ETRN's 253,
 * ODMR's 453): from the index's domains once it is complete (work in
 * proportion to those domains' mail), else read from the queue.
 */
import type { QueueRead } from './roles.js';

export async function countQueued(queue: Pick<QueueRead, 'index' | 'walk'>, inDomain: (domain: string) => boolean, wanted: (address: string, group: string) => boolean): Promise<number> {
  let n = 0;
  if (queue.index.complete) {
    for (const id of queue.index.queuedFor(inDomain)) {
      const l = queue.index.get(id)?.listed;
      if (l?.recipients.some((r) => wanted(r.address, l.group))) n++;
    }
    return n;
  }
  for await (const { env } of queue.walk(['queued'])) {
    if (env.recipients.some((r) => r.state === 'pending' && wanted(r.address, env.group))) n++;
  }
  return n;
}
