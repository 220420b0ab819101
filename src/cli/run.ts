/**
 * cli/run.ts — process entry: runs main() with the process's arguments and
 * the name it was invoked by (`quietlink`, `sendmail` or `mailq`).
 */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2), process.argv[1] ?? 'quietlink');
