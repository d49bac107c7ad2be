/**
 * Graceful stop, `proxy.close(drainMs)`: listeners stop accepting at once, connections still in
 * their handshake close at once, open tunnels keep relaying until they end by themselves or
 * `drainMs` runs out (Caddy/fastify graceful shutdown).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { connect5, sleep } from './hook-kit.js';

let echo: TestServer;
const proxies: TestProxy[] = [];
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await echo.close();
});

async function tunnel(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  c.write(Buffer.concat([hex('05 01 00'), connect5(echo.port)]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
  return c;
}

/** Resolves with the error code of a plain TCP connect to the port ('connected' if it was accepted). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

test('close(2000) while a tunnel relays: no new connections at once, the tunnel keeps working until it ends by itself', async () => {
  const px = await startProxy();
  proxies.push(px);
  const c = await tunnel(px.port);
  c.write('before');
  assert.equal((await c.read(6)).toString(), 'before');

  let closed = false;
  const t0 = Date.now();
  const closing = px.proxy.close(2000).then(() => (closed = true));
  await sleep(50);
  assert.equal(await tryConnect(px.port), 'ECONNREFUSED', 'the listener stopped accepting at once');

  await sleep(200);
  c.write('during drain');
  assert.equal((await c.read(12)).toString(), 'during drain', 'the open tunnel still relays');
  assert.equal(closed, false, 'close() waits for the tunnel');

  c.end();
  await c.waitEnd(3000);
  await closing;
  const elapsed = Date.now() - t0;
  assert.ok(elapsed < 1500, `close() resolved ${elapsed} ms after it was called, soon after the tunnel ended (not at the 2000 ms deadline)`);
});

test('close(300) tears down a tunnel that does not end by itself once the drain time is over', async () => {
  const px = await startProxy();
  proxies.push(px);
  const c = await tunnel(px.port);
  const t0 = Date.now();
  await px.proxy.close(300);
  const elapsed = Date.now() - t0;
  assert.ok(elapsed >= 250 && elapsed < 2000, `close took ${elapsed} ms`);
  await c.waitEnd(2000);
});

test('close() closes connections still in their handshake at once', async () => {
  const px = await startProxy();
  proxies.push(px);
  const idle = await RawClient.connect(px.port);
  const half = await RawClient.connect(px.port);
  half.write(hex('05 01 00'));
  assert.deepEqual(await half.read(2), hex('05 00'));
  await sleep(20);
  const t0 = Date.now();
  await px.proxy.close(5000);
  assert.ok(Date.now() - t0 < 1000, 'nothing to wait for');
  assert.deepEqual(await idle.readToEnd(1000), Buffer.alloc(0));
  assert.deepEqual(await half.readToEnd(1000), Buffer.alloc(0));
});
