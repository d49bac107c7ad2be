/**
 * socksmith behind a real HAProxy (Debian package), TCP mode with send-proxy-v2, balancing two
 * socksmith instances (spawned CLIs) on loopback. Proves that socksmith sees the client's address
 * (the client binds 127.0.0.7; HAProxy connects from 127.0.0.1) and that clients are served when
 * one instance stops.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { portOf, startCli, type CliProcess } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient, freePort, startEchoServer, type TestServer } from '../helpers/net.js';
import { ALL_OFF } from '../helpers/proxy.js';
import { requireTool } from '../helpers/tools.js';

let echo: TestServer;
let dir: string;
const procs: ChildProcess[] = [];
before(async () => {
  echo = await startEchoServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-haproxy-'));
});
after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await echo.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function instance(name: string): Promise<CliProcess> {
  const cfg = path.join(dir, `${name}.json`);
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      listen: [{ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.1/32'] } }],
      plugins: ALL_OFF,
      log: { level: 'info' },
      timeouts: { drain: 500 },
    }),
  );
  const cli = await startCli(['--config', cfg]);
  procs.push(cli.child);
  return cli;
}

/** SOCKS5 CONNECT to the echo server through `port`, from source address `from`; returns the echoed text. */
async function roundTrip(port: number, from: string, text: string): Promise<string> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: from, allowHalfOpen: true });
  await once(s, 'connect');
  const c = new RawClient(s);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(echo.port);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p, Buffer.from(text)]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.equal((await c.read(10))[1], 0);
  const out = (await c.read(text.length)).toString();
  c.end();
  await c.waitEnd().catch(() => {});
  c.destroy();
  return out;
}

test('HAProxy send-proxy-v2 in front of two instances: the client address reaches socksmith; one instance down, clients still served', async (t) => {
  const haproxy = requireTool(t, 'haproxy');
  if (!haproxy) return;
  const a = await instance('a');
  const b = await instance('b');
  const front = await freePort();
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 256',
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      '  timeout client 10s',
      '  timeout server 10s',
      '  retries 3',
      '  option redispatch',
      'frontend socks',
      `  bind 127.0.0.1:${front}`,
      '  default_backend socksmith',
      'backend socksmith',
      '  balance roundrobin',
      `  server a 127.0.0.1:${portOf(a.listening[0]!)} send-proxy-v2 check inter 200ms fall 1 rise 1`,
      `  server b 127.0.0.1:${portOf(b.listening[0]!)} send-proxy-v2 check inter 200ms fall 1 rise 1`,
      '',
    ].join('\n'),
  );
  const hp = spawn(haproxy, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(hp);
  let hpErr = '';
  hp.stderr.on('data', (d: Buffer) => (hpErr += d.toString()));
  // Wait for the frontend to accept.
  for (let i = 0; i < 50; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port: front, host: '127.0.0.1' });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500)); // first health checks

  for (let i = 0; i < 4; i++) assert.equal(await roundTrip(front, '127.0.0.7', `hello-${i}`), `hello-${i}`);
  await new Promise((r) => setTimeout(r, 300));
  const accessLines = (cli: CliProcess) =>
    cli
      .stderr()
      .split('\n')
      .filter((l) => l.includes('"stream closed"'))
      .map((l) => JSON.parse(l) as { client: string });
  const seenA = accessLines(a);
  const seenB = accessLines(b);
  assert.ok(seenA.length > 0 && seenB.length > 0, `both instances served (a: ${seenA.length}, b: ${seenB.length}); haproxy: ${hpErr}`);
  for (const l of [...seenA, ...seenB]) assert.equal(l.client, '127.0.0.7', 'socksmith saw the client, not HAProxy (127.0.0.1)');

  // One instance stops: every client is still served (health check + redispatch).
  assert.equal(await a.stop('SIGTERM'), 0);
  await new Promise((r) => setTimeout(r, 700));
  const before = accessLines(b).length;
  for (let i = 0; i < 4; i++) assert.equal(await roundTrip(front, '127.0.0.8', `after-${i}`), `after-${i}`);
  await new Promise((r) => setTimeout(r, 300));
  const late = accessLines(b).slice(before);
  assert.equal(late.length, 4, 'the remaining instance served all of them');
  for (const l of late) assert.equal(l.client, '127.0.0.8');
  hp.kill('SIGTERM');
  await b.stop('SIGTERM');
});
