/**
 * Real third-party clients and servers used by tests. In CI (CI=true) a missing tool is a test
 * failure; elsewhere the test is skipped with a message saying what to install.
 */
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

/** Absolute path of `name` on PATH (or in /usr/sbin, /sbin), or undefined. */
export function which(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin']) {
    try {
      execFileSync('test', ['-x', `${dir}/${name}`]);
      return `${dir}/${name}`;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/**
 * Return the tool's path, or: in CI throw (the test fails), elsewhere skip the test.
 * Usage: `const curl = requireTool(t, 'curl'); if (!curl) return;`
 */
export function requireTool(t: TestContext, name: string, debianPackage = name): string | undefined {
  const p = which(name);
  if (p) return p;
  if (process.env.CI) throw new Error(`${name} is not installed (Debian package ${debianPackage}); .ci/run must install it`);
  t.skip(`${name} not installed (apt-get install ${debianPackage})`);
  return undefined;
}
