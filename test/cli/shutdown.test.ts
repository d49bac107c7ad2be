/**
 * Shutdown without loss: SIGTERM closes the listeners at once, open tunnels keep every byte until
 * they finish or the drain deadline passes; a second signal closes the rest at once. Exit 0.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { portOf, startCli } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { ALL_OFF } from '../helpers/proxy.js';

let echo: TestServer;
let dir: string;
before(async () => {
  echo = await startEchoServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-shutdown-'));
});
after(async () => {
  await echo.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function config(drainMs: number): string {
  const f = path.join(dir, `drain-${drainMs}.json`);
  fs.writeFileSync(f, JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: ALL_OFF, timeouts: { drain: drainMs }, log: { level: 'warn' } }));
  return f;
}

async function tunnel(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(echo.port);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.equal((await c.read(10))[1], 0);
  return c;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('SIGTERM mid-transfer: the listener closes at once, the tunnel delivers every byte sent before and after the signal, then exit 0', async () => {
  const cli = await startCli(['--config', config(10_000)]);
  const port = portOf(cli.listening[0]!);
  const c = await tunnel(port);
  const first = Buffer.alloc(512 * 1024, 1);
  const second = Buffer.alloc(512 * 1024, 2);
  c.write(first);
  cli.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  // New connections are refused once the listener is closed.
  await assert.rejects(
    new Promise<void>((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    }),
  );
  c.write(second);
  const got = await c.read(first.length + second.length, 10_000);
  assert.equal(sha(got), sha(Buffer.concat([first, second])), 'every byte arrived, in order');
  assert.equal(cli.child.exitCode, null, 'still draining while the tunnel is open');
  c.end();
  assert.equal(await cli.exited, 0);
});

test('the drain deadline closes tunnels that do not finish, and the process exits 0', async () => {
  const cli = await startCli(['--config', config(600)]);
  const c = await tunnel(portOf(cli.listening[0]!));
  const t0 = Date.now();
  cli.child.kill('SIGTERM');
  assert.equal(await cli.exited, 0);
  const took = Date.now() - t0;
  assert.ok(took >= 500, `waited for the drain deadline (${took} ms)`);
  await c.readToEnd(3000);
  c.destroy();
});

test('a second signal closes the remaining tunnels at once', async () => {
  const cli = await startCli(['--config', config(60_000)]);
  const c = await tunnel(portOf(cli.listening[0]!));
  cli.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(cli.child.exitCode, null, 'the first signal waits for the tunnel');
  const t0 = Date.now();
  cli.child.kill('SIGINT');
  assert.equal(await cli.exited, 0);
  assert.ok(Date.now() - t0 < 5000, 'the second signal did not wait for the 60 s drain');
  await c.readToEnd(3000);
  c.destroy();
});
