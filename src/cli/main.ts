/**
 * cli/main.ts — the `quietlink` command: subcommand dispatch, the `sendmail`,
 * `mailq` and `newaliases` entry points (chosen by the name the program was called by),
 * and the one place where an error becomes a message and an exit code.
 */
import path from 'node:path';
import { configPath, loadAll, loadConfig, loadClassicMaps } from '../config/load.js';
import { ConfigError, EX, exitCodeOf, formatProblem, UsageError } from '../errors.js';
import { extractConfig } from './args.js';
import type { Config } from '../config/schema.js';
import type { ClassicMaps } from '../config/load.js';

const USAGE = `usage: quietlink [-c FILE] COMMAND [ARGS]
  start                      run the gateway in the foreground
  sendmail [-t] [-i] [-f FROM] [-F NAME] [-odi|-odb|-odq] [RCPT...]   submit a message from stdin
           -bv ADDR... where each address goes after aliasing; -bi checks the aliases (newaliases)
  newaliases                 check the aliases file and have the daemon reload it
  mailq [-qR|-qS|-qI STR] [-qG GROUP] [-qQ] [--json]  list the queue
  hold [-Q REASON] ID... | release ID...
  quarantine -Q REASON (ID... | -qR/-qS/-qI STR)     -Q "" releases
  flush [-qR|-qS|-qI STR] [-qG GROUP] [-v] [--wait] [--dry-run]   run the matching mail now
  route [--json] ADDRESS...  where each address goes (no DNS lookup; sendmail -bt)
  link up [--iface IF] | link down   tell the gateway about the link (PPP hooks)
  etrn [--odmr] [--relay HOST[:PORT]] DOMAIN...   send ETRN now (--odmr: pull by ODMR, whatever etrn.mode says)
  status [--json]
  windows [--json] [--since DATE]   the flush-window history (DATE: 2026-12-01, 2026-12-01T08:00, 30m, 1h, 2d)
  check-config               validate the configuration and the files it names
`;

type Command = (config: Config, argv: string[], maps: ClassicMaps, configFile: string) => Promise<number>;

/** Each command's module is loaded when it runs: `mailq` on a small box must not load the SMTP stack. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  sendmail: async () => (await import('./sendmail.js')).runSendmail,
  mailq: async () => (await import('./mailq.js')).runMailq,
  newaliases: async () => (await import('./sendmail.js')).runNewaliases,
  hold: async () => (await import('./admin.js')).runHold,
  release: async () => (await import('./admin.js')).runRelease,
  quarantine: async () => (await import('./admin.js')).runQuarantine,
  status: async () => (await import('./admin.js')).runStatus,
  flush: async () => (await import('./flush.js')).runFlush,
  route: async () => (await import('./route.js')).runRoute,
  link: async () => (await import('./admin.js')).runLink,
  etrn: async () => (await import('./admin.js')).runEtrn,
  windows: async () => (await import('./windows.js')).runWindows,
};

/**
 * `sendmail` takes mail even when a classic file (mailertable, aliases, a
 * class file) has a mistake: cron's and PHP's mail must not be lost to a
 * typo. The problems are printed; what could be read is used; the daemon
 * (which refuses the bad file on reload) does the rest. `-bi` stays strict.
 */
async function loadForSubmission(file: string) {
  const { config } = await loadConfig(file);
  const { maps, problems } = await loadClassicMaps(config);
  for (const p of problems) process.stderr.write(`quietlink: warning: ${formatProblem(p)} (the message is taken all the same)\n`);
  return { config, maps };
}

async function checkConfig(file: string): Promise<number> {
  const { config } = await loadConfig(file);
  const { problems } = await loadClassicMaps(config);
  if (problems.length) throw new ConfigError(problems);
  process.stdout.write(`${file}: configuration OK\n`);
  return EX.OK;
}

async function start(file: string): Promise<number> {
  const { startDaemon } = await import('../daemon.js');
  const daemon = await startDaemon(file);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      daemon.log.info({ signal }, 'signal received');
      daemon.stop().then(() => daemon.log.flush(() => resolve()), (err) => {
        daemon.log.error({ err }, 'error while stopping');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return EX.OK;
}

export async function main(argv: readonly string[], invokedAs: string): Promise<number> {
  try {
    const { config: configArg, rest } = extractConfig(argv);
    const name = path.basename(invokedAs);
    let command: string;
    let args: string[];
    if (name === 'sendmail' || name === 'mailq' || name === 'newaliases') {
      command = name;
      args = rest;
    } else {
      [command, ...args] = rest;
    }
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      process.stdout.write(USAGE);
      return command === undefined ? EX.USAGE : EX.OK;
    }
    const file = configPath(configArg);
    if (command === 'check-config') {
      if (args.length) throw new UsageError(`check-config: unexpected argument ${args[0]}`);
      return await checkConfig(file);
    }
    if (command === 'start') {
      if (args.length) throw new UsageError(`start: unexpected argument ${args[0]}`);
      return await start(file);
    }
    const load = COMMANDS[command];
    if (!load) throw new UsageError(`Unknown command "${command}"\n${USAGE}`);
    const [run, { config, maps }] = await Promise.all([load(), command === 'sendmail' && !args.includes('-bi') ? loadForSubmission(file) : loadAll(file)]);
    return await run(config, args, maps, file);
  } catch (err) {
    const code = exitCodeOf(err);
    if (err instanceof ConfigError) {
      for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
    } else {
      process.stderr.write(`quietlink: ${(err as Error).message ?? String(err)}\n`);
      if (code === EX.SOFTWARE && process.env.QUIETLINK_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    }
    return code;
  }
}
