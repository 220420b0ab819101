#!/usr/bin/env node
// scripts/function-lengths.mjs — the house style's size rule (STYLE.md: no
// file over 400 lines, no function over 80) measured on the TypeScript AST,
// not guessed from braces: the project of tsconfig.json is parsed by the
// compiler (TypeScript 7's API, typescript/unstable/sync), and every
// function-like node (declaration, expression, arrow, method, constructor,
// accessor) is measured from its first token (JSDoc excluded) to its last
// line, nested functions included in their parent's length.
//
//   node scripts/function-lengths.mjs            lists what is over the limits, exit 1 if any
//   node scripts/function-lengths.mjs --all      lists every file and function, longest first
//
// measure() is what test/style.test.ts calls; the skips for work in
// progress live there, not here.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { API } from 'typescript/unstable/sync';
import { SyntaxKind } from 'typescript/unstable/ast';

export const MAX_FILE_LINES = 400;
export const MAX_FUNCTION_LINES = 80;

const FUNCTION_KINDS = new Set([
  SyntaxKind.FunctionDeclaration, SyntaxKind.FunctionExpression, SyntaxKind.ArrowFunction,
  SyntaxKind.MethodDeclaration, SyntaxKind.Constructor, SyntaxKind.GetAccessor, SyntaxKind.SetAccessor,
]);

/** A readable name: the declaration's own, or what the function is assigned to. */
function nameOf(node, sf) {
  const own = node.name ?? (node.kind === SyntaxKind.Constructor ? { getText: () => 'constructor' } : null);
  if (own) return own.getText(sf);
  const p = node.parent;
  if (p && (p.kind === SyntaxKind.VariableDeclaration || p.kind === SyntaxKind.PropertyAssignment
    || p.kind === SyntaxKind.PropertyDeclaration) && p.name) return p.name.getText(sf);
  return '<anonymous>';
}

/**
 * Every source file of the project under `root` (paths relative to it):
 * `files` with their line counts, `functions` with name, first line and length.
 */
export function measure(root = process.cwd(), tsconfig = 'tsconfig.json') {
  const api = new API({ cwd: root });
  try {
    const project = api.updateSnapshot({ openProject: path.join(root, tsconfig) }).getProjects()[0];
    const files = [];
    const functions = [];
    for (const name of project.program.getSourceFileNames()) {
      const rel = path.relative(root, name);
      if (rel.startsWith('..') || rel.includes('node_modules') || rel.endsWith('.d.ts')) continue;
      const sf = project.program.getSourceFile(name);
      const lineOf = (pos) => sf.getLineAndCharacterOfPosition(pos).line + 1;
      const text = sf.text;
      files.push({ file: rel, lines: text.length === 0 ? 0 : text.split('\n').length - (text.endsWith('\n') ? 1 : 0) });
      const visit = (node) => {
        if (FUNCTION_KINDS.has(node.kind) && node.body) {
          const first = lineOf(node.getStart(sf));
          functions.push({ file: rel, name: nameOf(node, sf), line: first, lines: lineOf(node.getEnd()) - first + 1 });
        }
        node.forEachChild(visit);
      };
      sf.forEachChild(visit);
    }
    return { files, functions };
  } finally {
    api.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const all = process.argv.includes('--all');
  const { files, functions } = measure();
  const longFiles = files.filter((f) => all || f.lines > MAX_FILE_LINES).sort((a, b) => b.lines - a.lines);
  const longFunctions = functions.filter((f) => all || f.lines > MAX_FUNCTION_LINES).sort((a, b) => b.lines - a.lines);
  for (const f of longFiles) console.log(`${f.file}: ${f.lines} lines${f.lines > MAX_FILE_LINES ? ` (limit ${MAX_FILE_LINES})` : ''}`);
  for (const f of longFunctions) console.log(`${f.file}:${f.line}: ${f.name} ${f.lines} lines${f.lines > MAX_FUNCTION_LINES ? ` (limit ${MAX_FUNCTION_LINES})` : ''}`);
  if (!all) process.exitCode = longFiles.length || longFunctions.length ? 1 : 0;
}
