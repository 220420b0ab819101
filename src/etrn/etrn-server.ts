/**
 * etrn/etrn-server.ts — the ETRN server (RFC 1985, SPEC §7): `ETRN dom`,
 * `ETRN @dom` (with subdomains), `ETRN #group`. Who may flush what is
 * etrnServer.allow (client networks) and etrnServer.domains (default: the
 * domains of the hold classes). Replies: 253 with the number of messages
 * started, 251 nothing waiting, 250 when a flush for the node is already
 * running (the ETRN joins it: no second flush), 458 too many ETRNs from the
 * client, 459 node or client not allowed, 501 syntax. The decisions are pure
 * functions; the class around them counts and starts the runs.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { NetworkList } from '../config/cidr.js';
import { isHostname } from '../config/cidr.js';
import type { QueueRunner } from '../scheduler/queue-runner.js';
import { domainOf } from '../intake/address.js';
import { classEntry, matchesClass } from '../config/classic-files.js';
import { countQueued } from '../queue/count.js';
import type { QueueRead } from '../queue/roles.js';

export type EtrnTarget =
  | { kind: 'domain'; domain: string; subdomains: boolean }
  | { kind: 'group'; group: string };

/** `dom`, `@dom`, `#group`; null for anything else. */
export function parseEtrnArgument(arg: string): EtrnTarget | null {
  const a = arg.trim();
  if (/^#[A-Za-z0-9_-]+$/.test(a)) return { kind: 'group', group: a.slice(1) };
  const m = /^(@?)([^\s@]+)$/.exec(a);
  if (!m || !isHostname(m[2])) return null;
  return { kind: 'domain', domain: m[2].toLowerCase().replace(/\.$/, ''), subdomains: m[1] === '@' };
}

/** Whether a recipient address belongs to the ETRN's node. */
export function targetMatches(t: EtrnTarget, address: string, group: string): boolean {
  if (t.kind === 'group') return group === t.group;
  const d = domainOf(address);
  return d === t.domain || (t.subdomains && d.endsWith(`.${t.domain}`));
}

export function nodeName(t: EtrnTarget): string {
  return t.kind === 'group' ? `#${t.group}` : `${t.subdomains ? '@' : ''}${t.domain}`;
}

/**
 * Pure: may this target be flushed at all? (the client network is checked
 * apart) `allowedDomains` are class entries (classEntry()): `dom` allows dom
 * only, `.dom` dom and its subdomains, as the hold classes match.
 */
export function targetAllowed(t: EtrnTarget, allowedDomains: ReadonlySet<string>, groups: readonly string[]): boolean {
  if (t.kind === 'group') return groups.includes(t.group);
  return matchesClass(t.domain, allowedDomains);
}

const RATE_WINDOW = 60_000;
const RATE_MAX = 10;

export interface EtrnServerDeps {
  config: () => Config;
  /** Domains of the hold classes (the default of etrnServer.domains). */
  holdDomains: () => ReadonlySet<string>;
  queue: QueueRead;
  runner: QueueRunner;
  log: Logger;
  now: () => number;
}

export class EtrnServer {
  private readonly running = new Map<string, Promise<unknown>>();
  private readonly recent = new Map<string, number[]>();
  /** The last ETRN per node, for `status`. */
  readonly last = new Map<string, { time: string; client: string; reply: string }>();

  constructor(private readonly deps: EtrnServerDeps) {}

  /** Whether an ETRN flush for this domain (`dom`, or `@parent`) runs now: ODMR's ATRN starts no second one (`#group` flushes are not seen). */
  isFlushing(domain: string): boolean {
    const d = domain.toLowerCase();
    return [...this.running.keys()].some((node) => node === d || (node.startsWith('@') && (d === node.slice(1) || d.endsWith(`.${node.slice(1)}`))));
  }

  handle(arg: string, session: unknown, reply: (code: number, text: string) => void): void {
    const client = String((session as { remoteAddress?: string }).remoteAddress ?? '');
    this.decide(arg, client).then(
      ({ code, text }) => {
        const t = parseEtrnArgument(arg);
        if (t) this.last.set(nodeName(t), { time: new Date(this.deps.now()).toISOString(), client, reply: `${code} ${text}` });
        this.deps.log.info({ client, etrn: arg, reply: `${code} ${text}` }, 'etrn');
        reply(code, text);
      },
      (err) => {
        this.deps.log.error({ client, etrn: arg, err }, 'etrn failed');
        reply(458, `Unable to queue messages for node ${arg}`);
      },
    );
  }

  private async decide(arg: string, client: string): Promise<{ code: number; text: string }> {
    const t = parseEtrnArgument(arg);
    if (!t) return { code: 501, text: 'Syntax: ETRN domain, ETRN @domain or ETRN #queuegroup' };
    const node = nodeName(t);
    const c = this.deps.config();
    if (!new NetworkList(c.etrnServer.allow).has(client)) return { code: 459, text: `Node ${node} not allowed: client ${client} may not use ETRN` };
    const allowed = new Set([...(c.etrnServer.domains ?? this.deps.holdDomains())].map(classEntry));
    if (!targetAllowed(t, allowed, c.queue.groups.map((g) => g.name))) return { code: 459, text: `Node ${node} not allowed` };
    const now = this.deps.now();
    const times = (this.recent.get(client) ?? []).filter((x) => now - x < RATE_WINDOW);
    if (times.length >= RATE_MAX) return { code: 458, text: `Unable to queue messages for node ${node}: too many ETRN commands, try again later` };
    this.recent.set(client, [...times, now]);
    if (this.running.has(node)) return { code: 250, text: `OK, queuing for node ${node} started` };
    // what this ETRN may flush: its node, and for #group only the allowed domains within it
    // (a customer's #group must not flush other customers' mail)
    const inNode = (address: string, group: string) => targetMatches(t, address, group) && (t.kind !== 'group' || matchesClass(domainOf(address), allowed));
    // a domain's share of the queue's in-memory index: an ISP's ETRN reads no envelope, and looks at no other customer's mail
    const inDomain = (domain: string) => (t.kind === 'group' ? matchesClass(domain, allowed) : targetMatches(t, `postmaster@${domain}`, ''));
    const pending = await countQueued(this.deps.queue, inDomain, inNode);
    if (pending === 0) return { code: 251, text: `OK, no messages waiting for node ${node}` };
    const run = this.deps.runner.run({ trigger: { kind: 'etrn' }, domainFilter: inDomain, recipientFilter: inNode })
      .then((s) => this.deps.log.info({ node, delivered: s.delivered, deferred: s.deferred, failed: s.failed }, 'etrn flush done'))
      .catch((err) => this.deps.log.error({ node, err }, 'etrn flush failed'))
      .finally(() => this.running.delete(node));
    this.running.set(node, run);
    return { code: 253, text: `OK, ${pending} pending messages for node ${node} started` };
  }
}
