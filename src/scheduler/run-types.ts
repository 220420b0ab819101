/**
 * scheduler/run-types.ts — the queue runner's vocabulary: what a run is asked
 * (RunOptions), what it reports (RunSummary, RunEvent for `flush -v`), and
 * what it is built from (RunnerDeps). Types only.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Envelope } from '../queue/envelope.js';
import type { QueueId } from '../queue/queue-id.js';
import type { Selection } from '../queue/select.js';
import type { RouteTable } from '../routing/route.js';
import type { Trigger } from '../routing/may-attempt.js';
import type { Notice, NoticeKind } from './apply-results.js';
import type { Deliverer } from '../delivery/deliverer.js';
import type { QueueDeliver } from '../queue/roles.js';

export type RunEvent =
  | { type: 'result'; qid: string; to: string; code: number; text: string; outcome: string; relay?: string }
  | { type: 'dialogue'; dir: string; line: string; conn?: string }
  | { type: 'skip'; qid: string; to: string; reason: string };

export interface RunOptions {
  trigger: Trigger;
  selection?: Selection;
  /** Only these messages (intake). */
  ids?: readonly QueueId[];
  /** The messages' own delivery mode (sendmail -odi/-odb), instead of the configuration's. */
  deliveryMode?: 'interactive' | 'background' | 'queue' | 'deferred';
  /** Only this queue group (its own interval run). */
  group?: string;
  dryRun?: boolean;
  onEvent?: (e: RunEvent) => void;
  /** Inside a flush window: DialDelay for link routes (true: the delay has passed, try once more). */
  dialRetry?: (what: string) => Promise<boolean>;
  /** Dry run: plan as a window with the link would (`flush --dry-run`). */
  assumeLink?: boolean;
  /** Dry run: stop once the plan has this many entries (a yes/no question needs one). */
  planLimit?: number;
  /** Dry run: plan only recipients whose route needs the link (what a window would get the link for). */
  planLinkOnly?: boolean;
  /** Only recipients at these domains (ETRN, ODMR): lets a run skip every other domain's messages unread. */
  domainFilter?: (domain: string) => boolean;
  /** Only these recipients (ETRN for a node). */
  recipientFilter?: (address: string, group: string) => boolean;
}

export interface RunSummary {
  messages: number;
  delivered: number;
  deferred: number;
  failed: number;
  /** Recipients of link routes left for a window with the link. */
  waiting: number;
  connections: number;
  /** Wall-clock ms of the first packet toward a next hop and the last reply from one. */
  firstPacket?: number;
  lastPacket?: number;
  /** Messages left for a later run because of the load (queueLA). */
  loadQueued?: number;
  /** Dry run: what would be attempted. */
  plan?: Array<{ qid: string; to: string; nexthop: string; link: boolean }>;
}

export interface RunnerDeps {
  queue: QueueDeliver;
  deliverer: Deliverer;
  config: () => Config;
  table: () => RouteTable;
  /** The link module's answer for this trigger: may link routes send now? */
  linkAvailable: (trigger: Trigger) => boolean;
  /** link.mode permanent: link routes are LAN routes. */
  permanentLink: () => boolean;
  log: Logger;
  now: () => number;
  /** Queues a notice (DSN) about env to its sender. */
  notify: (env: Envelope, notices: Notice[], kind: NoticeKind) => Promise<void>;
  /**
   * The load policy as it stands now (sampled once per chunk): why a message
   * of this priority waits for a later run, or null. Applies to intake's
   * "at once" and to scheduled runs, never to an operator's flush or ETRN.
   */
  loadGate?: () => ((priority: number) => string | null) | null;
  /** A message was left for a later run because of the load (metrics). */
  onLoadQueued?: () => void;
  /** Per-recipient outcomes of one message's attempt, once written down (metrics). */
  onOutcomes?: (counts: { delivered: number; deferred: number; bounced: number }) => void;
}

