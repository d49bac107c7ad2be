import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type net from 'node:net';
import { hex } from '../helpers/hex.js';
import { RawClient, startTcpServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

let px: TestProxy;
before(async () => {
  px = await startProxy();
});
after(async () => px.close());

async function tunnel(port: number): Promise<RawClient> {
  const c = await RawClient.connect(px.port);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.equal((await c.read(10))[1], 0);
  return c;
}

test('a destination reset reaches the client as a reset (ECONNRESET), not as a clean EOF', async () => {
  let dest: TestServer | undefined;
  try {
    dest = await startTcpServer((sock) => sock.once('data', () => sock.resetAndDestroy()));
    const c = await tunnel(dest.port);
    const error = new Promise<NodeJS.ErrnoException>((resolve) => c.socket.once('error', resolve));
    c.write('trigger');
    const err = await Promise.race([error, new Promise<never>((_, r) => setTimeout(() => r(new Error('no reset within 3 s')), 3000))]);
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(c.ended, false, 'no FIN was seen before the reset');
  } finally {
    await dest?.close();
  }
});

test('a client reset reaches the destination as a reset', async () => {
  let seen!: Promise<string>;
  const dest = await startTcpServer((sock: net.Socket) => {
    seen = new Promise((resolve) => {
      sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      sock.once('end', () => resolve('end'));
    });
    sock.resume();
  });
  try {
    const c = await tunnel(dest.port);
    c.write('x');
    await new Promise((r) => setTimeout(r, 50));
    c.socket.resetAndDestroy();
    const how = await Promise.race([seen, new Promise<never>((_, r) => setTimeout(() => r(new Error('destination saw nothing within 3 s')), 3000))]);
    assert.equal(how, 'ECONNRESET');
  } finally {
    await dest.close();
  }
});
