/**
 * cli/run.ts — process entry: runs main() with the process's arguments and
 * the name it was invoked by (`quietlink`, `sendmail` or `mailq`), and exits
 * with its sysexits code.
 */
import { main } from './main.js';

// exit at once: a stopped daemon must not linger on timers or handles it no longer needs
// (stdout and stderr are synchronous for files and pipes on Linux, so nothing is cut)
process.exit(await main(process.argv.slice(2), process.argv[1] ?? 'quietlink'));
