/**
 * `npm test`'s runner (scripts/run-tests.mjs): node's spec reporter instead of TAP, the skipped
 * tests with their reasons after the run, and `N passed, N failed, N skipped` alone on the last
 * line (what CI reads). Runs the real script on a small test file written to a temp folder.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ROOT } from '../helpers/cli.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-run-tests-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function runScript(args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    // Already inside the suite's network namespace: the script runs node directly. Without
    // NODE_TEST_CONTEXT, which would make the inner runner talk to this one instead of printing.
    const env: NodeJS.ProcessEnv = { ...process.env, SOCKSMITH_TEST_NETNS: '1' };
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, [path.join(ROOT, 'scripts/run-tests.mjs'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`run-tests did not finish within 60 s: ${stdout}`));
    }, 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout });
    });
  });
}

test('spec output, the skip reasons after the run, and "N passed, N failed, N skipped" on the last line', async () => {
  const file = path.join(dir, 'sample.test.mjs');
  fs.writeFileSync(
    file,
    `import { describe, test } from 'node:test';
describe('clients', () => {
  test('served', () => {});
  test('needs curl', (t) => t.skip('curl is not installed'));
  test('also served', () => {});
});
test('broken', () => { throw new Error('boom'); });
`,
  );
  const r = await runScript([file]);
  assert.equal(r.code, 1, 'a failing test fails the run');
  assert.doesNotMatch(r.stdout, /^TAP version/m);
  assert.doesNotMatch(r.stdout, /^# Subtest/m);
  assert.match(r.stdout, /✔ served/);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.at(-1), '2 passed, 1 failed, 1 skipped');
  const rel = path.relative(ROOT, file);
  assert.ok(lines.includes('skipped (1):'), r.stdout);
  assert.ok(lines.includes(`  - ${rel} › clients › needs curl: curl is not installed`), r.stdout);
  assert.ok(lines.includes(`  - ${rel} › broken`), r.stdout);
});

test('all passing: exit 0 and the count line last', async () => {
  const file = path.join(dir, 'green.test.mjs');
  fs.writeFileSync(file, "import { test } from 'node:test';\ntest('one', () => {});\ntest('two', () => {});\n");
  const r = await runScript([file]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trimEnd().split('\n').at(-1), '2 passed, 0 failed, 0 skipped');
});
