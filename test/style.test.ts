/**
 * The house style's size rule (STYLE.md): no source file over 400 lines, no
 * function over 80, measured on the TypeScript AST by
 * scripts/function-lengths.mjs. Files whose split is another engineer's work
 * in progress (issue 16) are reported as skipped, not failed, until it lands.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
// @ts-expect-error: a plain .mjs script without type declarations
import { measure, MAX_FILE_LINES, MAX_FUNCTION_LINES } from '../scripts/function-lengths.mjs';

/**
 * Paths (a folder ends in `/`) being split by others right now (issue 16):
 * each owner removes its entry when its part lands.
 */
const SIZE_RULE_PENDING_ELSEWHERE: readonly string[] = [];

function isPending(file: string): boolean {
  return SIZE_RULE_PENDING_ELSEWHERE.some((p) => {
    if (p.endsWith('/')) return file.startsWith(p);
    if (p.includes('*')) return new RegExp(`^${p.split('*').map((s) => s.replace(/[.]/g, '\\.')).join('[^/]*')}$`).test(file);
    return file === p;
  });
}

interface Measured {
  files: Array<{ file: string; lines: number }>;
  functions: Array<{ file: string; name: string; line: number; lines: number }>;
}

const { files, functions } = measure() as Measured;

test('the scan sees the source tree (daemon.ts and its functions)', () => {
  assert.ok(files.some((f) => f.file === 'src/daemon.ts'));
  assert.ok(functions.some((f) => f.file === 'src/daemon.ts' && f.name === 'startDaemon'));
});

test(`no source file is over ${MAX_FILE_LINES} lines`, () => {
  const long = files.filter((f) => f.lines > MAX_FILE_LINES && !isPending(f.file));
  assert.deepEqual(long.map((f) => `${f.file}: ${f.lines} lines`), []);
});

test(`no function is over ${MAX_FUNCTION_LINES} lines`, () => {
  const long = functions.filter((f) => f.lines > MAX_FUNCTION_LINES && !isPending(f.file));
  assert.deepEqual(long.map((f) => `${f.file}:${f.line}: ${f.name} ${f.lines} lines`), []);
});

// what is over the limits in files being split elsewhere: listed, skipped
for (const f of files.filter((x) => x.lines > MAX_FILE_LINES && isPending(x.file))) {
  test(`${f.file}: ${f.lines} lines`, { skip: 'split in progress elsewhere (SIZE_RULE_PENDING_ELSEWHERE)' }, () => undefined);
}
for (const f of functions.filter((x) => x.lines > MAX_FUNCTION_LINES && isPending(x.file))) {
  test(`${f.file}:${f.line}: ${f.name} ${f.lines} lines`, { skip: 'split in progress elsewhere (SIZE_RULE_PENDING_ELSEWHERE)' }, () => undefined);
}
