#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's built-in test runner.
// `npm test` compiles first (pretest). Node 20's --test does not expand globs and ignores .ts,
// so the files are listed here explicitly. Extra arguments are passed through: a substring
// filters the files, a path to an existing .js/.mjs file runs that file, flags go to node.
//
// Output: node's `spec` reporter (one line per test, failures in full at the end), then every
// skipped test with its reason, and last, alone on its line, `N passed, N failed, N skipped`,
// which CI reads (scripts/summary-reporter.mjs). A --test-reporter flag replaces both.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const testDir = path.join(root, 'dist', 'test');
const explicit = process.argv.slice(2).filter((a) => !a.startsWith('-') && /\.m?js$/.test(a) && fs.existsSync(a)).map((a) => path.resolve(a));
const filters = process.argv.slice(2).filter((a) => !a.startsWith('-') && !explicit.includes(path.resolve(a)));
const flags = process.argv.slice(2).filter((a) => a.startsWith('-'));

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return walk(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  });
}

let files = explicit.length && !filters.length ? [] : walk(testDir).sort();
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
files.push(...explicit);
if (files.length === 0) {
  console.error('run-tests: no test files found under dist/test (did tsc run?)');
  process.exit(1);
}
// The summary goes to a file and is printed after the run, so that it closes the output.
const summaryFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-tests-')), 'summary.txt');
const reporters = flags.some((f) => f.startsWith('--test-reporter'))
  ? []
  : ['--test-reporter=spec', '--test-reporter-destination=stdout', `--test-reporter=${path.join(root, 'scripts', 'summary-reporter.mjs')}`, `--test-reporter-destination=${summaryFile}`];
// 300 s per test (and per file): the Tor file (test/tor) brings up a private Tor network in its
// `before` and runs 50-75 s in all; every other file is far below.
const nodeArgs = ['--test', '--test-concurrency=2', '--test-timeout=300000', ...reporters, ...flags, ...files];

// The whole suite runs in a private network namespace with only loopback (`unshare -n`, then
// `ip link set lo up`): no test can reach an address outside this machine or query the machine's
// own DNS resolver, whatever it does by mistake, and an address outside 127.0.0.0/8 and ::1 is
// unroutable (connect fails at once with ENETUNREACH), which the fault tests rely on.
// SOCKSMITH_TEST_NETNS is set inside so tests can tell; CI requires the namespace.
function netnsAvailable() {
  if (process.env.SOCKSMITH_TEST_NETNS === '1') return false; // already inside one
  const probe = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up'], { stdio: 'ignore' });
  return probe.status === 0;
}

let res;
if (process.env.SOCKSMITH_TEST_NETNS === '1') {
  res = spawnSync(process.execPath, nodeArgs, { stdio: 'inherit', cwd: root, env: process.env });
} else if (netnsAvailable()) {
  res = spawnSync(
    'unshare',
    ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...nodeArgs],
    { stdio: 'inherit', cwd: root, env: { ...process.env, SOCKSMITH_TEST_NETNS: '1' } },
  );
} else if (process.env.CI) {
  console.error('run-tests: CI needs a private network namespace (unshare -n and ip from iproute2, as root)');
  process.exit(1);
} else {
  console.error('run-tests: warning: no private network namespace (unshare -n needs root); running on the host network');
  res = spawnSync(process.execPath, nodeArgs, { stdio: 'inherit', cwd: root, env: process.env });
}
if (reporters.length) {
  let summary = '';
  try {
    summary = fs.readFileSync(summaryFile, 'utf8');
  } catch {
    // node did not get as far as the end of the run
  }
  fs.rmSync(path.dirname(summaryFile), { recursive: true, force: true });
  if (summary) process.stdout.write(summary);
  else console.log(`run-tests: the test runner ended without a summary (exit ${res.status ?? res.signal})`);
}
process.exit(res.status ?? 1);
