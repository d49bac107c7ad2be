import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

let echo: TestServer;
let px: TestProxy;
before(async () => {
  echo = await startEchoServer();
  px = await startProxy();
});
after(async () => {
  await px.close();
  await echo.close();
});

test('SOCKS5 no-auth CONNECT to an IPv4 echo server relays both ways', async () => {
  const c = await RawClient.connect(px.port);
  c.write(hex('05 01 00'));
  assert.deepEqual(await c.read(2), hex('05 00'));
  const port = Buffer.alloc(2);
  port.writeUInt16BE(echo.port);
  c.write(Buffer.concat([hex('05 01 00 01 7f000001'), port]));
  const reply = await c.read(10);
  assert.deepEqual(reply.subarray(0, 4), hex('05 00 00 01'));
  assert.deepEqual(reply.subarray(4, 8), hex('7f000001'), 'BND.ADDR is the local address of the upstream socket');
  c.write('ping');
  assert.equal((await c.read(4)).toString(), 'ping');
  c.end();
  await c.waitEnd();
});

test('pipelined greeting + request + data in one write gets every reply in order', async () => {
  const c = await RawClient.connect(px.port);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(echo.port);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), port, Buffer.from('early')]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  const reply = await c.read(10);
  assert.equal(reply[1], 0x00);
  assert.equal((await c.read(5)).toString(), 'early');
  c.destroy();
});
