/**
 * The import boundary between the kernel and the plugins (issue 12): a built-in is written exactly
 * as a third-party plugin is. Reads every `.ts` file under `src/` and `plugins/` (the sources, not
 * the build) and checks each import/export/`import()`/`require()` specifier:
 *
 * 1. a file under `plugins/<p>/` imports only `socksmith`, `socksmith/plugins/*`, `node:*`, a
 *    package in `dependencies` (not `tsyringe`, which comes through `socksmith`), or a file under
 *    its own `plugins/<p>/`;
 * 2. a file under `src/` never imports from `plugins/` nor any `socksmith…` specifier, except the one
 *    type-only `export type { … } from 'socksmith/builtin-types'` in `src/index.ts` (erased at
 *    compile time; it loads the built-ins' option-type augmentations);
 * 3. no code in `src/` (comments stripped; `src/config/builtins.ts`, the list of built-ins, aside)
 *    names the Tor extensions' former per-stream state (the kernel knows no extension).
 * @packageDocumentation
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ROOT } from '../helpers/cli.js';

interface Specifier {
  readonly file: string; // relative to ROOT
  readonly spec: string;
  readonly statement: string;
}

/** Blank out comments, keep string literals (a `//` inside a string is not a comment). */
export function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|`(?:\\.|[^`\\])*`/g, (m) => (m.startsWith('/') ? m.replace(/[^\n]/g, ' ') : m));
}

const STATEMENT_PATTERNS = [
  /\b(?:import|export)\s[^;'"`]*?\bfrom\s*(['"])([^'"]+)\1/g, // import … from '…', export … from '…'
  /\bimport\s*(['"])([^'"]+)\1/g, // import '…' (side effect)
  /\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g, // import('…')
  /\brequire\s*\(\s*(['"])([^'"]+)\1\s*\)/g, // require('…')
];

/** Every specifier in a source file's code (comments stripped). */
export function specifiersOf(code: string): { spec: string; statement: string }[] {
  const out: { spec: string; statement: string }[] = [];
  for (const re of STATEMENT_PATTERNS) {
    for (const m of code.matchAll(re)) out.push({ spec: m[2]!, statement: m[0].replace(/\s+/g, ' ') });
  }
  return out;
}

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return walk(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

function collect(top: string): Specifier[] {
  return walk(path.join(ROOT, top)).flatMap((abs) => {
    const file = path.relative(ROOT, abs);
    return specifiersOf(stripComments(fs.readFileSync(abs, 'utf8'))).map((s) => ({ file, ...s }));
  });
}

/** The repository path a relative specifier points at ('' for a bare one). */
function target(s: Specifier): string {
  if (!s.spec.startsWith('.')) return '';
  return path.relative(ROOT, path.resolve(ROOT, path.dirname(s.file), s.spec));
}

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
const PLUGIN_DEPS = new Set(Object.keys(pkg.dependencies).filter((d) => d !== 'tsyringe'));

function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Why a plugin file may not have this specifier, or undefined if it may. */
function pluginViolation(s: Specifier): string | undefined {
  const own = s.file.split(path.sep).slice(0, 2).join(path.sep) + path.sep; // plugins/<p>/
  if (s.spec.startsWith('.')) {
    const t = target(s);
    return t.startsWith(own) ? undefined : `resolves to ${t}, outside ${own}`;
  }
  if (s.spec === 'socksmith' || /^socksmith\/plugins\/[a-z0-9-]+$/.test(s.spec)) return undefined;
  if (s.spec.startsWith('node:')) return undefined;
  if (PLUGIN_DEPS.has(packageName(s.spec))) return undefined;
  return `'${s.spec}' is not socksmith, node:*, nor a dependency in package.json${packageName(s.spec) === 'tsyringe' ? ' (use inject/injectable from socksmith)' : ''}`;
}

/** Why a src file may not have this specifier, or undefined if it may. */
function srcViolation(s: Specifier): string | undefined {
  if (s.spec.startsWith('.')) {
    const t = target(s);
    return t.startsWith('plugins' + path.sep) ? `resolves to ${t}, under plugins/` : undefined;
  }
  if (packageName(s.spec) !== 'socksmith') return undefined;
  if (s.file === path.join('src', 'index.ts') && s.spec === 'socksmith/builtin-types' && /^export type \{[^}]*\} from/.test(s.statement)) return undefined;
  return `'${s.spec}': src/ never imports the package itself (nor a plugin through it)`;
}

/** The former kernel-side names of the extensions' state and switches. */
const EXTENSION_NAMES = /optimisticData|extendedErrors|isolationKey|upstreamCredentials|deferIsolation|setProcessSecret/;

describe('import boundary: plugins/ → socksmith → src/, nothing back', () => {
  const plugins = collect('plugins');
  const src = collect('src');

  test('the scan finds the imports it is meant to check', () => {
    // Not vacuous: every built-in imports socksmith, and src/ has hundreds of relative imports.
    const pluginDirs = new Set(plugins.filter((s) => s.spec === 'socksmith').map((s) => s.file.split(path.sep)[1]));
    for (const p of ['auth', 'extended-errors', 'http-detect', 'isolation', 'optimistic-data', 'policy', 'resolve', 'resolve-ptr']) assert.ok(pluginDirs.has(p), p);
    assert.ok(src.filter((s) => s.spec.startsWith('.')).length > 100);
    assert.deepEqual(
      specifiersOf(stripComments("import a from 'x';\n// import b from 'y';\nexport type { C } from \"z\";\nconst d = await import('w'); const u = 'http://e';")).map((s) => s.spec),
      ['x', 'z', 'w'],
    );
  });

  test('a file under plugins/ imports only socksmith, node:*, dependencies and its own files', () => {
    const bad = plugins.flatMap((s) => {
      const why = pluginViolation(s);
      return why ? [`${s.file}: ${why}`] : [];
    });
    assert.deepEqual(bad, []);
  });

  test('a file under src/ imports nothing from plugins/ (one type-only line in src/index.ts excepted)', () => {
    const bad = src.flatMap((s) => {
      const why = srcViolation(s);
      return why ? [`${s.file}: ${why}`] : [];
    });
    assert.deepEqual(bad, []);
    // The exception is type-only, so the compiled index.js imports no plugin at run time (no ESM cycle).
    const built = fs.readFileSync(path.join(ROOT, 'dist', 'src', 'index.js'), 'utf8');
    assert.doesNotMatch(built, /builtin-types|plugins\//);
  });

  test('no code under src/ names an extension\'s state (src/config/builtins.ts aside)', () => {
    const bad: string[] = [];
    for (const abs of walk(path.join(ROOT, 'src'))) {
      const file = path.relative(ROOT, abs);
      if (file === path.join('src', 'config', 'builtins.ts')) continue;
      stripComments(fs.readFileSync(abs, 'utf8'))
        .split('\n')
        .forEach((line, i) => {
          const m = EXTENSION_NAMES.exec(line);
          if (m) bad.push(`${file}:${i + 1}: ${m[0]}`);
        });
    }
    assert.deepEqual(bad, []);
  });
});
