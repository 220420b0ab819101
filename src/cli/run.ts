/**
 * cli/run.ts — process entry: runs main() with the process's arguments and
 * the name it was invoked by (`quietlink`, `sendmail` or `mailq`), and exits
 * with its sysexits code once stdout and stderr are written out.
 */
import { main } from './main.js';

const code = await main(process.argv.slice(2), process.argv[1] ?? 'quietlink');
// exit at once (a stopped daemon must not linger on handles it no longer needs),
// but only after a large `mailq --json` has reached a slow pipe
await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => s.write('', () => resolve()))));
process.exit(code);
