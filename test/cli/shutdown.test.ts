/**
 * Shutdown without loss: SIGTERM closes the listeners at once, open tunnels keep every byte until
 * they finish or the drain deadline passes; a second signal closes the rest at once. Exit 0.
 * A tunnel cut (at the deadline, or by the second signal) is reset on both sides, so a client in
 * the middle of a download sees an error, never a clean end of a truncated stream (issue #10,
 * item 12).
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
import { RawClient, startEchoServer, startTcpServer, type TestServer } from '../helpers/net.js';
import { ALL_OFF } from '../helpers/proxy.js';
import { requireTool } from '../helpers/tools.js';
import { execTool } from '../e2e/helpers/run.js';

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

/** A 60 MiB download that never finishes in time: 64 KiB every 20 ms (about 3 MiB/s). */
const FILE_BYTES = 60 * 1024 * 1024;
async function startSlowDownload(http: boolean): Promise<TestServer & { ends: string[] }> {
  const ends: string[] = [];
  const server = await startTcpServer((s) => {
    const chunk = Buffer.alloc(64 * 1024, 0x78);
    let sent = 0;
    const begin = () => {
      // HTTP/1.0 without Content-Length: the body ends where the stream ends, so only a reset
      // tells the client the file is incomplete.
      if (http) s.write('HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n');
      const timer = setInterval(() => {
        if (s.destroyed || sent >= FILE_BYTES) return clearInterval(timer);
        s.write(chunk);
        sent += chunk.length;
      }, 20);
      s.once('close', () => clearInterval(timer));
    };
    s.once('error', (e: NodeJS.ErrnoException) => ends.push(e.code ?? 'error'));
    s.once('end', () => ends.push('end'));
    if (http) s.once('data', begin);
    else begin();
    s.resume();
  });
  return Object.assign(server, { ends });
}

/** Read a tunnel until it ends; resolves with how: 'end' (clean FIN) or the error code. */
function howItEnds(c: RawClient, ms: number): Promise<{ how: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const t = setTimeout(() => reject(new Error(`the tunnel did not end within ${ms} ms`)), ms);
    c.socket.on('data', (d: Buffer) => (bytes += d.length));
    c.socket.once('end', () => {
      clearTimeout(t);
      resolve({ how: 'end', bytes });
    });
    c.socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve({ how: e.code ?? 'error', bytes });
    });
  });
}

async function downloadTunnel(proxyPort: number, destPort: number): Promise<RawClient> {
  const c = await RawClient.connect(proxyPort);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), Buffer.from([destPort >> 8, destPort & 0xff])]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.equal((await c.read(10))[1], 0);
  return c;
}

for (const how of ['the drain deadline', 'a second signal'] as const) {
  test(`a download cut by ${how} is reset on both sides: the client sees ECONNRESET, not a clean end`, async () => {
    const dest = await startSlowDownload(false);
    const cli = await startCli(['--config', config(how === 'the drain deadline' ? 600 : 60_000)]);
    try {
      const c = await downloadTunnel(portOf(cli.listening[0]!), dest.port);
      const ended = howItEnds(c, 10_000);
      await c.read(256 * 1024, 5000); // the download is under way
      cli.child.kill('SIGTERM');
      if (how === 'a second signal') {
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(cli.child.exitCode, null, 'the first signal waits for the tunnel');
        cli.child.kill('SIGINT');
      }
      const { how: end, bytes } = await ended;
      assert.ok(bytes < FILE_BYTES, `the download was cut (${bytes} bytes)`);
      assert.equal(end, 'ECONNRESET', 'the client is told the stream was cut');
      assert.equal(await cli.exited, 0);
      // The destination is reset too (it may be mid-write: EPIPE is the same news).
      const deadline = Date.now() + 3000;
      while (dest.ends.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.ok(['ECONNRESET', 'EPIPE'].includes(dest.ends[0] ?? ''), `destination saw ${dest.ends[0]}`);
      c.destroy();
    } finally {
      cli.child.kill('SIGKILL');
      await dest.close();
    }
  });
}

test('curl downloading an EOF-delimited file through a tunnel cut at the drain deadline fails (exit 56), it does not keep a truncated file as whole', async (t) => {
  const curl = requireTool(t, 'curl');
  if (!curl) return;
  const dest = await startSlowDownload(true);
  const cli = await startCli(['--config', config(800)]);
  try {
    const port = portOf(cli.listening[0]!);
    const run = execTool(curl, ['-sS', '-o', '/dev/null', '-w', '%{size_download}', '--max-time', '20', '--socks5', `127.0.0.1:${port}`, `http://127.0.0.1:${dest.port}/file`], {
      timeoutMs: 25_000,
    });
    await new Promise((r) => setTimeout(r, 300));
    cli.child.kill('SIGTERM');
    const r = await run;
    assert.ok(Number(r.stdout.toString()) < FILE_BYTES, `curl got part of the file (${r.stdout.toString()} bytes)`);
    assert.equal(r.code, 56, `curl: "Failure when receiving data from the peer" (exit ${r.code}; ${r.stderr.trim()})`);
    assert.equal(await cli.exited, 0);
  } finally {
    cli.child.kill('SIGKILL');
    await dest.close();
  }
});
