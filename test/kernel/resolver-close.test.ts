/**
 * `proxy.close()` ends pending DNS lookups (issue #10): a proxy closed with a RESOLVE and a
 * RESOLVE_PTR pending at a DNS server that never answers (10-minute timeouts) leaves nothing
 * behind, so its process exits on its own. Run in a child process, since "exits on its own" is
 * the only complete check that no socket or timer is left (c-ares handles do not show in
 * `process.getActiveResourcesInfo()`); and `DnsResolver.close()` on its own.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../../src/clock.js';
import { resolveConfig } from '../../src/config/normalize.js';
import { DnsResolver } from '../../src/resolver/dns-resolver.js';
import { startSilentDnsServer } from '../plugins/helpers/dns-server.js';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'close-with-lookups.js');

test('a proxy closed with lookups pending at a silent DNS server (10-minute timeouts) leaves nothing behind: its process exits on its own', async () => {
  const silent = await startSilentDnsServer();
  const child = spawn(process.execPath, [FIXTURE, String(silent.port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  // A bound for a broken build only: the lookups' own DNS timeout is 10 minutes.
  let killed = false;
  const guard = setTimeout(() => {
    killed = true;
    child.kill('SIGKILL');
  }, 60_000);
  try {
    // Both lookups reached the silent server (A and AAAA for the name, PTR for the address).
    for (let i = 0; i < 600 && !(stdout.includes('pending') && silent.asked.length >= 3); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(stdout.includes('pending') && silent.asked.length >= 3, `lookups pending (queries: ${silent.asked.length}; stderr: ${stderr})`);
    child.stdin.write('close\n');
    const code = await exited;
    assert.equal(killed, false, `the process was still running 60 s after proxy.close() (stdout: ${stdout}; stderr: ${stderr})`);
    assert.equal(code, 0, stderr);
    const closedLine = stdout.split('\n').find((l) => l.startsWith('closed '));
    assert.ok(closedLine, stdout);
    // Each client got its method choice, then a failure reply or a close: never an answer.
    const seen = JSON.parse(closedLine.slice(7)) as string[];
    assert.equal(seen.length, 2);
    for (const s of seen) assert.ok(s === '0500' || s === '0500' + '05040001' + '00000000' + '0000', s);
  } finally {
    clearTimeout(guard);
    if (child.exitCode === null) child.kill('SIGKILL');
    silent.close();
  }
});

test('DnsResolver.close(): pending forward and reverse lookups fail at once; new lookups are refused', async () => {
  const silent = await startSilentDnsServer();
  try {
    const config = resolveConfig({ resolver: { servers: [`127.0.0.1:${silent.port}`], timeout: 60000, tries: 10 } }, { file: undefined, dir: process.cwd() });
    const resolver = new DnsResolver(config, systemClock);
    const forward = resolver.lookup('pending.test', { family: 4, partition: '', client: '127.0.0.2' });
    const reverse = resolver.reverse('198.51.100.7', { partition: '', client: '127.0.0.2' });
    forward.catch(() => {});
    reverse.catch(() => {});
    for (let i = 0; i < 200 && silent.asked.length < 2; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(silent.asked.length, 2, 'both queries reached the silent server');
    resolver.close();
    await assert.rejects(forward, { name: 'ResolveError', message: /cannot resolve pending\.test: the resolver closed/ });
    await assert.rejects(reverse, { name: 'ResolveError', message: /cannot reverse-resolve 198\.51\.100\.7: the resolver closed/ });
    await assert.rejects(resolver.lookup('other.test', { family: 4, partition: '' }), { message: /the resolver is closed/ });
    assert.equal(silent.asked.length, 2, 'nothing more was asked');
    resolver.close(); // idempotent
  } finally {
    silent.close();
  }
});
