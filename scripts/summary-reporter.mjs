// A node:test reporter that writes only the end of the story: every skipped test with its
// reason, every failed test's name, then one machine-readable line alone on the last line,
// `N passed, N failed, N skipped` (suites are not counted; todo tests count as skipped).
// scripts/run-tests.mjs runs it beside the `spec` reporter, into a file it prints at the end.
import path from 'node:path';

/** `file › suite › test` for a test event, the file relative to the working directory. */
function label(data, stack) {
  const file = data.file ? path.relative(process.cwd(), data.file) : '';
  return [file, ...stack.slice(0, data.nesting), data.name].filter(Boolean).join(' › ');
}

export default async function* summary(source) {
  let passed = 0;
  let failed = 0;
  const skipped = [];
  const failures = [];
  // Names of the enclosing suites, by nesting level (test:start comes before a suite's children).
  const stack = [];
  for await (const event of source) {
    const data = event.data;
    if (event.type === 'test:start') {
      stack[data.nesting] = data.name;
      stack.length = data.nesting + 1;
      continue;
    }
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    if (data.details?.type === 'suite') {
      // A suite that fails on its own (a hook threw) without a failing test still fails the run.
      if (event.type === 'test:fail' && data.details?.error?.failureType !== 'subtestsFailed') {
        failed++;
        failures.push(label(data, stack));
      }
      continue;
    }
    if (data.skip !== undefined || data.todo !== undefined) {
      const reason = data.skip !== undefined ? data.skip : `todo${typeof data.todo === 'string' ? `: ${data.todo}` : ''}`;
      skipped.push(`${label(data, stack)}: ${typeof reason === 'string' && reason ? reason : '(no reason given)'}`);
    } else if (event.type === 'test:pass') passed++;
    else {
      failed++;
      failures.push(label(data, stack));
    }
  }
  let out = '';
  if (skipped.length) out += `\nskipped (${skipped.length}):\n${skipped.map((s) => `  - ${s}`).join('\n')}\n`;
  if (failures.length) out += `\nfailed (${failures.length}):\n${failures.map((s) => `  - ${s}`).join('\n')}\n`;
  yield `${out}\n${passed} passed, ${failed} failed, ${skipped.length} skipped\n`;
}
