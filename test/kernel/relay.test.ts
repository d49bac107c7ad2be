/**
 * The relay after a success reply: TCP half-close in both directions (`nc -N`, HTTP/1.0 style
 * request/response), abortive closes, backpressure on a large transfer, and the access log line.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import { hex } from '../helpers/hex.js';
import { RawClient, startTcpServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { connect5, waitFor } from './hook-kit.js';

let px: TestProxy;
const servers: TestServer[] = [];
before(async () => {
  px = await startProxy();
});
after(async () => {
  await px.close();
  await Promise.all(servers.map((s) => s.close()));
});

async function tunnelTo(port: number): Promise<RawClient> {
  const c = await RawClient.connect(px.port);
  c.write(Buffer.concat([hex('05 01 00'), connect5(port)]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
  return c;
}

test('the destination half-closes first: the client reads everything and EOF, and can still send', async () => {
  const got: Buffer[] = [];
  let destSawEnd = false;
  const dest = await startTcpServer((s: net.Socket) => {
    s.end('bye');
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => (destSawEnd = true));
  });
  servers.push(dest);
  const c = await tunnelTo(dest.port);
  assert.equal((await c.readToEnd(3000)).toString(), 'bye');
  c.write('still talking');
  await waitFor(() => Buffer.concat(got).toString() === 'still talking', 3000, 'bytes after the half-close');
  c.end();
  await waitFor(() => destSawEnd, 3000, 'EOF forwarded to the destination');
});

/**
 * A destination that says "go" and half-closes at once, then reads what the client sends
 * (`slow`: pausing 1 ms after each chunk). `send` writes the client's bytes and its EOF; resolves
 * with what the destination read once it saw EOF, and asserts that it saw no error (a reset).
 */
async function afterDestinationHalfClose(slow: boolean, send: (c: RawClient) => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let destEnd = false;
  let destError: Error | undefined;
  const dest = await startTcpServer((s: net.Socket) => {
    s.end('go');
    s.on('error', (e) => (destError = e));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (!slow) return;
      s.pause();
      setTimeout(() => s.resume(), 1);
    });
    s.on('end', () => (destEnd = true));
  });
  servers.push(dest);
  const c = await tunnelTo(dest.port);
  assert.equal((await c.readToEnd(3000)).toString(), 'go');
  send(c);
  await waitFor(() => destEnd || destError !== undefined, 20_000, 'EOF at the destination');
  assert.equal(destError, undefined);
  return Buffer.concat(chunks);
}

test('the destination half-closes first, then 8 MiB from the client and its EOF: a slow destination reads every byte, then a clean EOF, never a reset', async () => {
  // When the client's EOF comes, the destination's direction is already over: the relay closes
  // the upstream socket instead of shutting it down (relay.ts `ended`), which must still deliver
  // everything queued, in the kernel or in node, before the FIN.
  const up = randomBytes(8 * 1024 * 1024);
  const got = await afterDestinationHalfClose(true, (c) => {
    c.write(up);
    c.end();
  });
  assert.equal(got.length, up.length);
  assert.ok(got.equals(up), 'the bytes arrive in order');
});

test('the destination half-closes first, then one small write and the client EOF: it arrives, then a clean EOF', async () => {
  const got = await afterDestinationHalfClose(false, (c) => c.socket.end('last words'));
  assert.equal(got.toString(), 'last words');
});

test('the client half-closes first: the destination sees EOF after the data and its late answer still arrives', async () => {
  const dest = await startTcpServer((s: net.Socket) => {
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => setTimeout(() => s.end(`answer to ${Buffer.concat(chunks).toString()}`), 100));
  });
  servers.push(dest);
  const c = await tunnelTo(dest.port);
  c.write('question');
  c.end();
  assert.equal((await c.readToEnd(3000)).toString(), 'answer to question');
});

test('a destination reset ends the tunnel', async () => {
  const dest = await startTcpServer((s: net.Socket) => {
    s.once('data', () => s.resetAndDestroy());
  });
  servers.push(dest);
  const c = await tunnelTo(dest.port);
  c.write('x');
  await c.waitEnd(3000);
});

test('4 MiB each way through a slow reader arrive byte-exact; the access log counts them', async () => {
  const size = 4 * 1024 * 1024;
  const up = randomBytes(size);
  const down = randomBytes(size);
  const received: Buffer[] = [];
  const dest = await startTcpServer((s: net.Socket) => {
    s.write(down);
    s.on('data', (d: Buffer) => {
      received.push(d);
      s.pause();
      setTimeout(() => s.resume(), 1); // a slow reader: forces backpressure in the proxy
    });
    s.on('end', () => s.end());
  });
  servers.push(dest);
  const c = await tunnelTo(dest.port);
  c.write(up);
  c.end();
  const back = await c.readToEnd(15_000);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  assert.equal(back.length, size);
  assert.equal(sha(back), sha(down));
  await waitFor(() => Buffer.concat(received).length === size, 5000, 'all bytes at the destination');
  assert.equal(sha(Buffer.concat(received)), sha(up));
  await waitFor(() => px.logs.some((l) => l.msg === 'stream closed' && l.bytesUp === size), 3000, 'access log line');
  const line = px.logs.find((l) => l.msg === 'stream closed' && l.bytesUp === size)!;
  assert.equal(line.bytesDown, size);
  assert.equal(line.reply, 'SUCCEEDED');
  assert.equal(line.command, 'CONNECT');
  assert.equal(line.destination, `127.0.0.1:${dest.port}`);
});
