/**
 * config/schema.ts — every key of SPEC §12, typed and validated in one place.
 *
 * Durations come out as milliseconds, sizes as bytes, paths as written (the
 * loader resolves them against the configuration file's folder). Unknown keys
 * are errors. Keys that no code uses yet are still validated here.
 */
import os from 'node:os';
import { z } from 'zod';
import cron from 'node-cron';
import { parseDuration, parseSize } from './units.js';
import { parseCidr, parseHostPort, isHostname } from './cidr.js';

function parsed<T>(fn: (v: string | number) => T) {
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      return fn(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });
}

const duration = parsed(parseDuration);
const size = parsed(parseSize);
const cidr = z.string().refine((s) => { try { parseCidr(s); return true; } catch { return false; } }, { message: 'invalid network (use e.g. 192.168.1.0/24)' });
const listenAddress = z.string().refine((s) => { try { parseHostPort(s); return true; } catch { return false; } }, { message: 'invalid listen address (use host:port, e.g. 127.0.0.1:25)' });
const hostWithOptionalPort = z.string().refine((s) => { try { parseHostPort(s, 0); return true; } catch { return false; } }, { message: 'invalid host (use host or host:port)' });
const domain = z.string().transform((s) => s.toLowerCase()).refine((s) => isHostname(s.replace(/^[.@]/, '')), { message: 'invalid domain name' });
/**
 * An entry of a class or of smtp.localDomains: `dom` is that domain only,
 * `.dom` also its subdomains (sendmail's class semantics); lower case, a
 * trailing dot dropped. `@dom` means nothing here and is refused.
 */
const classDomain = z.string().transform((s) => s.toLowerCase().replace(/\.$/, '')).refine((s) => isHostname(s.replace(/^\./, '')), {
  message: 'invalid domain name (write dom for the domain only, .dom to add its subdomains)',
});
/** A route target as the mailertable writes it: `[host]`, `host`, `[host]:587`, comma-separated for failover. */
const routeTarget = z.string().refine((s) => s.split(',').every((h) => /^(\[[^\]\s]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(h.trim())), {
  message: 'invalid host list (use [host], host, [host]:port, separated by commas)',
});
const positiveInt = z.number().int().nonnegative();

const MAILERS = ['relay', 'esmtp', 'smtp', 'qsmtp'] as const;
export type MailerName = (typeof MAILERS)[number];

const routeSchema = z
  .strictObject({
    domain: z.string().min(1),
    relay: routeTarget.optional(),
    esmtp: routeTarget.optional(),
    smtp: routeTarget.optional(),
    qsmtp: routeTarget.optional(),
    link: z.boolean().optional(),
    expensive: z.boolean().optional(),
    holdUntilEtrn: z.boolean().optional(),
  })
  .refine((r) => MAILERS.filter((m) => r[m] !== undefined).length === 1, {
    message: 'a route names exactly one mailer: relay, esmtp, smtp or qsmtp',
  });

const groupSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'queue group names use letters, digits, - and _'),
  runners: positiveInt.default(1),
  interval: duration.optional(),
  jobs: positiveInt.optional(),
  recipients: z.number().int().positive().optional(),
  match: z.array(z.string().min(1)).default([]),
});

const cronList = z.array(
  z.string().refine((e) => cron.validate(e), { message: 'invalid cron expression' }),
);

const timezone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, { message: 'unknown time zone' });

export const configSchema = z.strictObject({
  hostname: z.string().refine(isHostname, { message: 'invalid host name' }).default(os.hostname()),
  spool: z.string().min(1).default('/var/spool/quietlink'),
  deliveryMode: z.enum(['interactive', 'background', 'queue', 'deferred', 'delay']).default('deferred')
    .transform((m) => (m === 'delay' ? 'deferred' : m)),
  holdExpensive: z.boolean().default(false),
  lanNetworks: z.array(cidr).default([]),
  smtp: z.strictObject({
    listen: z.array(listenAddress).default(['127.0.0.1:25']),
    mynetworks: z.array(cidr).default(['127.0.0.0/8', '::1/128']),
    localDomains: z.array(classDomain).default([]),
    maxMessageSize: size.default(25 * 1024 * 1024),
    maxRecipients: z.number().int().positive().default(100),
    greetPause: duration.default(0),
    maxConnections: z.number().int().positive().default(100),
    /** Per client outside the LAN (lanNetworks + mynetworks); LAN clients are limited by maxConnections only. */
    maxConnectionsPerClient: z.number().int().positive().default(10),
    /** Part of maxConnections kept for LAN clients: `20%` or a number of connections. */
    lanReserve: z.union([z.number().int().nonnegative(), z.string().regex(/^\d{1,2}(\.\d+)?%$|^100%$/, 'use a percentage such as 20% or a number of connections')])
      .default('20%')
      .transform((v) => (typeof v === 'number' ? { connections: v } : { percent: Number(v.slice(0, -1)) })),
    /** Bytes per second a client must keep up during DATA after a short grace (Postfix's smtpd_min_data_rate); 0 = off. */
    minDataRate: z.number().int().nonnegative().default(500),
    /** A bare LF in DATA: a line end (Postfix 3.9's default) or refused; LAN clients are always normalized. */
    bareNewline: z.enum(['normalize', 'reject']).default('normalize'),
    tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
    auth: z.strictObject({ users: z.string().min(1) }).optional(),
  }).prefault({}),
  smartHost: z.array(routeTarget).default([]),
  routes: z.array(routeSchema).default([]),
  mailertable: z.string().min(1).optional(),
  /** /etc/aliases-style file for local recipients (`root: admin@office.example`). */
  aliases: z.string().min(1).optional(),
  /** Qualifies bare local names of local submissions (default: hostname). */
  masquerade: z.string().refine(isHostname, { message: 'invalid domain name' }).optional(),
  authinfo: z.string().min(1).optional(),
  classes: z.record(
    z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'class names use letters, digits and _'),
    z.strictObject({
      domains: z.array(classDomain).default([]),
      file: z.string().min(1).optional(),
      optional: z.boolean().default(false),
      /** Postfix's relay_recipient_maps: `user@dom` / `@dom` lines; others of the class get 550 5.1.1 at RCPT. Never optional. */
      recipients: z.string().min(1).optional(),
    }),
  ).default({}),
  holdClasses: z.array(z.string()).default(['CustDoms']),
  dialDelay: duration.default(10_000),
  timeout: z.strictObject({
    iconnect: duration.default(60_000),
    connect: duration.default(60_000),
    helo: duration.default(300_000),
    mail: duration.default(600_000),
    rcpt: duration.default(3_600_000),
    datainit: duration.default(300_000),
    datablock: duration.default(3_600_000),
    datafinal: duration.default(3_600_000),
    command: duration.default(3_600_000),
    /** Inbound: a session completes a transaction (MAIL to the final reply of DATA) within this, or is cut. */
    session: duration.default(600_000),
    /** The ETRN client's whole exchange (connect, EHLO, every ETRN, QUIT). */
    etrn: duration.default(120_000),
  }).prefault({}),
  queue: z.strictObject({
    minQueueAge: duration.default(30 * 60_000),
    queueWarn: duration.default(4 * 3_600_000),
    queueReturn: duration.default(5 * 86_400_000),
    queueLA: z.number().positive().optional(),
    refuseLA: z.number().positive().optional(),
    queueFactor: z.number().positive().default(600_000),
    maxQueueChildren: z.number().int().positive().default(16),
    /** Blocks (a number) or bytes (a size such as `50MB`). */
    minFreeBlocks: z.union([positiveInt, z.string()]).default(100).transform((v, ctx) => {
      if (typeof v === 'number') return { blocks: v };
      try {
        return { bytes: parseSize(v) };
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
    groups: z.array(groupSchema).default([]),
  }).prefault({}),
  flush: z.strictObject({
    interval: duration.default(0),
    cron: cronList.default([]),
    timezone: timezone.optional(),
    onLinkUp: z.boolean().default(true),
  }).prefault({}),
  etrn: z.strictObject({
    /** One host list (`[a],[b]:26`) or a list of them, tried in order; always a list once parsed. */
    relay: z.union([routeTarget, z.array(routeTarget)]).optional()
      .transform((v) => (v === undefined ? [] : (Array.isArray(v) ? v : [v]))),
    domains: z.array(domain).default([]),
    mode: z.enum(['etrn', 'odmr']).default('etrn'),
    /** Poll windows (SPEC §4): get the link only to send ETRN. */
    poll: cronList.default([]),
  }).prefault({}),
  etrnServer: z.strictObject({
    allow: z.array(cidr).default(['0.0.0.0/0', '::/0']),
    domains: z.array(domain).optional(),
  }).prefault({}),
  /**
   * ODMR server (RFC 2645, SPEC §7; src/odmr/): listeners (port 366 by
   * convention), the customers' secrets and the domains each may take
   * (`user secret [dom,.dom...]`; no domains: those of the class named
   * like the user). AUTH needs TLS (smtp.tls, STARTTLS) unless
   * insecureAuth, which is for tests only.
   */
  odmr: z.strictObject({
    listen: z.array(listenAddress).default([]),
    users: z.string().min(1).optional(),
    insecureAuth: z.boolean().default(false),
  }).prefault({}),
  link: z.strictObject({
    mode: z.enum(['managed', 'demand', 'permanent']).default('managed'),
    interface: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'invalid interface name').optional(),
    poll: duration.default(5000),
    dialTimeout: duration.default(120_000),
    dial: z.string().min(1).optional(),
    hangup: z.string().min(1).optional(),
    /** After ETRN: keep the link while inbound mail from outside flows, or this long after the last. */
    linger: duration.default(60_000),
    /** After ETRN: never keep the link longer than this. */
    lingerMax: duration.default(15 * 60_000),
  }).prefault({}),
  dns: z.strictObject({
    listen: z.array(listenAddress).default([]),
    upstream: z.array(hostWithOptionalPort).default([]),
    serveStale: duration.default(86_400_000),
    hosts: z.string().min(1).optional(),
    allow: z.array(cidr).optional(),
  }).prefault({}),
  metrics: z.strictObject({ listen: listenAddress.optional() }).prefault({}),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  }).prefault({}),
});

export type Config = z.output<typeof configSchema>;
export type RouteConfig = z.output<typeof routeSchema>;
export type QueueGroupConfig = z.output<typeof groupSchema>;
