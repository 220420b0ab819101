#!/usr/bin/env node
// Runs every test/**/*.test.ts with node's test runner (TAP), since Node 20's
// `node --test` neither expands globs nor finds .ts files by itself.
// Fails when there is no test file at all. Extra arguments narrow the set:
//   npm test -- queue       (files whose path contains "queue")
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = find('test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('run-tests: no test files found under test/');
  process.exit(1);
}
// a test that times out must not leave its file's process (and CI) waiting on open sockets forever
// (both exist from Node 20.14 on; an older node would refuse them, so ask it first)
const bounded = ['--test-force-exit', '--test-timeout=300000'].filter((f) => spawnSync(process.execPath, [f, '-e', '0']).status === 0);
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-concurrency=2', ...bounded, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
