import 'reflect-metadata';
/**
 * The real `socksmith` CLI as a user runs it: a JSON config file, `-l` listeners on 127.0.0.1 and
 * ::1 (port 0), the `listening on` lines, curl through each listener and through a chain of two
 * CLI processes, and SIGTERM: open tunnels keep working while draining, new connections are
 * refused, and the process exits 0.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ALL_OFF } from '../helpers/proxy.js';
import { portOf, startCli, type CliProcess } from '../helpers/cli.js';
import { startEchoServer, startHttpServer, type TestServer } from '../helpers/net.js';
import { requireTool } from '../helpers/tools.js';
import { execTool } from './helpers/run.js';
import { socks5Tunnel } from './helpers/socks.js';

let dir: string;
let http4: TestServer;
let echo: TestServer;
const started: CliProcess[] = [];

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'socksmith-e2e-cli-'));
  http4 = await startHttpServer();
  echo = await startEchoServer();
});
after(async () => {
  // Kill by PID whatever a failed test left running.
  for (const p of started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all([http4?.close(), echo?.close()]);
  await fs.rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, config: object): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, JSON.stringify({ plugins: ALL_OFF, ...config }, null, 2));
  return file;
}

async function cli(args: string[], count = 1): Promise<CliProcess> {
  const p = await startCli(['--log-level', 'warn', ...args], { count, timeoutMs: 15_000 });
  started.push(p);
  return p;
}

const curl = (args: string[]) => execTool('curl', ['-q', '-sS', '--max-time', '8', ...args], { timeoutMs: 10_000 });

test('two listeners (127.0.0.1 and ::1), curl through each, a second CLI chained to the first, SIGTERM → 0', { timeout: 40_000 }, async (t) => {
  if (!requireTool(t, 'curl')) return;
  const conf = await writeConfig('plain.json', { timeouts: { drain: 2000 } });
  const inner = await cli(['-c', conf, '-l', '127.0.0.1:0', '-l', '[::1]:0'], 2);
  const v4 = inner.listening.find((l) => l.startsWith('127.0.0.1:'));
  const v6 = inner.listening.find((l) => l.startsWith('[::1]:'));
  assert.ok(v4 && v6, `listening lines: ${inner.listening.join(', ')}`);
  assert.notEqual(portOf(v4), 0);

  let r = await curl(['-x', `socks5h://${v4}`, `http://localhost:${http4.port}/cli-v4`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), 'hello from /cli-v4');
  r = await curl(['-x', `socks5h://${v6}`, `http://localhost:${http4.port}/cli-v6`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), 'hello from /cli-v6');

  const chainConf = await writeConfig('chain.json', { upstream: { type: 'socks5', host: '127.0.0.1', port: portOf(v4) }, timeouts: { drain: 2000 } });
  const outer = await cli(['-c', chainConf, '-l', '127.0.0.1:0']);
  r = await curl(['--socks4a', outer.listening[0]!, `http://localhost:${http4.port}/cli-chain`]);
  assert.equal(r.code, 0, `${r.stderr}\nouter: ${outer.stderr()}\ninner: ${inner.stderr()}`);
  assert.equal(r.stdout.toString(), 'hello from /cli-chain');

  assert.equal(await outer.stop('SIGTERM'), 0, outer.stderr());
  assert.equal(await inner.stop('SIGTERM'), 0, inner.stderr());
});

test('SIGTERM drains: an open tunnel keeps relaying, new connections are refused, exit 0 once it closes', { timeout: 30_000 }, async () => {
  const conf = await writeConfig('drain.json', { timeouts: { drain: 10_000 } });
  const p = await cli(['-c', conf, '-l', '127.0.0.1:0']);
  const port = portOf(p.listening[0]!);
  const s = await socks5Tunnel(port, '127.0.0.1', echo.port);
  const echoOnce = (text: string) =>
    new Promise<string>((resolve, reject) => {
      let acc = '';
      const onData = (d: Buffer) => {
        acc += d.toString();
        if (acc.length >= text.length) {
          s.removeListener('data', onData);
          resolve(acc);
        }
      };
      s.on('data', onData);
      s.once('error', reject);
      s.resume();
      s.write(text);
    });
  assert.equal(await echoOnce('before'), 'before');

  const t0 = Date.now();
  p.child.kill('SIGTERM');
  // The listener closes first; give the signal a moment to arrive.
  const deadline = Date.now() + 3000;
  let refused = false;
  while (!refused && Date.now() < deadline) {
    refused = await new Promise<boolean>((resolve) => {
      const c = net.connect({ port, host: '127.0.0.1' });
      c.once('connect', () => {
        c.destroy();
        resolve(false);
      });
      c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
    });
    if (!refused) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(refused, 'new connections are refused once SIGTERM arrived');
  assert.equal(p.child.exitCode, null, 'still running while a tunnel is open');
  assert.equal(await echoOnce('during drain'), 'during drain');

  s.end();
  assert.equal(await p.exited, 0, p.stderr());
  assert.ok(Date.now() - t0 < 8000, 'exited when the last tunnel closed, not at the drain timeout');
});
