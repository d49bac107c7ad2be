import 'reflect-metadata';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { IPv4Address, IPv4ProxyAddress, IPv6Address, IPv6ProxyAddress, Command as PPCommand, INETProtocol, Peer, TransportProtocol, V1ProxyProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { parseProxyHeader } from '../../src/kernel/proxy-protocol.js';
import { resolveConfig } from '../../src/config/normalize.js';

let echo: TestServer;
let dir: string;
before(async () => {
  echo = await startEchoServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-listeners-'));
});
after(async () => {
  await echo.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function connectRequest(port: number): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  return Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p]);
}

async function wrap(socket: net.Socket): Promise<RawClient> {
  if (socket.connecting) await once(socket, 'connect');
  return new RawClient(socket);
}

test('unix-socket listener with mode 660: SOCKS5 CONNECT works, the file has the mode, a stale socket file is replaced, and it is removed on close', async () => {
  const sock = path.join(dir, 'socks.sock');
  // A stale socket file, as a crashed process leaves it: bound, then the handle closed without
  // the unlink that server.close() would do.
  const staleServer = net.createServer();
  staleServer.listen(sock);
  await once(staleServer, 'listening');
  fs.renameSync(sock, sock + '.keep');
  await new Promise<void>((r) => staleServer.close(() => r()));
  fs.renameSync(sock + '.keep', sock);
  assert.ok(fs.existsSync(sock), 'a stale socket file exists');
  let px: TestProxy | undefined;
  try {
    px = await startProxy({ listen: [{ path: sock, mode: '660' }] });
    assert.equal(px.proxy.addresses[0]!.path, sock);
    assert.equal(fs.statSync(sock).mode & 0o777, 0o660);
    const c = await wrap(net.connect({ path: sock, allowHalfOpen: true }));
    c.write(connectRequest(echo.port));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.equal((await c.read(10))[1], 0);
    c.write('over unix');
    assert.equal((await c.read(9)).toString(), 'over unix');
    c.destroy();
    for (let i = 0; i < 50 && !px.logs.some((l) => l.msg === 'stream closed'); i++) await new Promise((r) => setTimeout(r, 20));
    const closed = px.logs.find((l) => l.msg === 'stream closed');
    assert.equal(closed?.client, '', 'a unix client has no address');
  } finally {
    await px?.close();
  }
  assert.equal(fs.existsSync(sock), false, 'socket file removed on close');
});

test('a unix listener refuses to replace a socket a live process listens on', async () => {
  const sock = path.join(dir, 'live.sock');
  const live = net.createServer().listen(sock);
  await once(live, 'listening');
  try {
    await assert.rejects(startProxy({ listen: [{ path: sock }] }), (err: Error & { code?: string }) => err.code === 'SOCKSMITH_ERR_LISTEN');
  } finally {
    live.close();
  }
});

test('config: a listener is host+port or path', () => {
  const src = { file: undefined, dir };
  assert.throws(() => resolveConfig({ listen: [{ host: '127.0.0.1' }] }, src), /^ConfigError: listen\.0\.port: required key is missing/);
  assert.throws(() => resolveConfig({ listen: [{ path: '/tmp/x.sock', port: 1 }] }, src), /listen\.0: give either host and port, or path/);
  assert.throws(() => resolveConfig({ listen: [{ host: '127.0.0.1', port: 1, mode: '600' }] }, src), /listen\.0\.mode: is for unix socket listeners/);
  assert.throws(() => resolveConfig({ listen: [{ host: '127.0.0.1', port: 1, proxyProtocol: { trusted: ['10.0.0.0/33'] } }] }, src), /listen\.0\.proxyProtocol\.trusted\.0: must be a CIDR/);
  const ok = resolveConfig({ listen: [{ path: 'rel.sock' }] }, src);
  assert.equal(ok.listen[0]!.path, path.join(dir, 'rel.sock'));
});

function v1(src: string, srcPort: number): Buffer {
  const fam = src.includes(':') ? INETProtocol.TCP6 : INETProtocol.TCP4;
  return Buffer.from(new V1ProxyProtocol(fam, new Peer(src, srcPort), new Peer(src.includes(':') ? '::1' : '127.0.0.1', 1080)).build(), 'latin1');
}

function v2(src: number[], srcPort: number, command = PPCommand.PROXY): Buffer {
  const addr =
    src.length === 4
      ? new IPv4ProxyAddress(IPv4Address.createFrom(src), srcPort, IPv4Address.createFrom([127, 0, 0, 1]), 1080)
      : new IPv6ProxyAddress(IPv6Address.createFrom(src), srcPort, IPv6Address.createFrom([...Array(15).fill(0), 1]), 1080);
  return Buffer.from(new V2ProxyProtocol(command, TransportProtocol.STREAM, addr).build());
}

test('parseProxyHeader: v1 and v2 framing, need-more on every strict prefix, errors for garbage', () => {
  for (const h of [v1('203.0.113.7', 5555), v1('2001:db8::7', 5555), v2([203, 0, 113, 7], 5555), v2([0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 7], 5555)]) {
    const withData = Buffer.concat([h, hex('05 01 00')]);
    const r = parseProxyHeader(withData);
    assert.equal(r.status, 'ok');
    assert.equal((r as { length: number }).length, h.length, 'the SOCKS bytes after the header are left alone');
    for (let i = 0; i < h.length; i++) assert.equal(parseProxyHeader(h.subarray(0, i)).status, 'need-more', `prefix ${i}`);
  }
  const r4 = parseProxyHeader(v2([203, 0, 113, 7], 5555)) as { client: { address: string; port: number } };
  assert.deepEqual(r4.client, { address: '203.0.113.7', port: 5555, family: 'IPv4' });
  const r6 = parseProxyHeader(v1('2001:db8::7', 5555)) as { client: { address: string } };
  assert.equal(r6.client.address, '2001:db8::7');
  assert.equal((parseProxyHeader(v2([1, 2, 3, 4], 1, PPCommand.LOCAL)) as { client: unknown }).client, undefined, 'LOCAL keeps the socket address');
  assert.equal(parseProxyHeader(hex('05 01 00')).status, 'error');
  assert.equal(parseProxyHeader(Buffer.from('PROXY ' + 'x'.repeat(120))).status, 'error');
  assert.equal(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')).status, 'error');
});

describe('a PROXY-protocol listener trusting 127.0.0.1', () => {
  let px: TestProxy;
  const seen: string[] = [];
  before(async () => {
    px = await startProxy({ listen: [{ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.1/32'] } }] });
  });
  after(async () => px.close());

  test('v1 and v2 headers: the client address from the header is the connection\'s, the stream works', async () => {
    px.proxy.kernel.hooks.onAccept.tap('record', (conn) => {
      seen.push(`${conn.clientAddress}:${conn.clientPort}`);
      return undefined;
    });
    for (const header of [v1('203.0.113.7', 40001), v2([198, 51, 100, 9], 40002)]) {
      const c = await RawClient.connect(px.port);
      c.write(Buffer.concat([header, connectRequest(echo.port), Buffer.from('hi')]));
      assert.deepEqual(await c.read(2), hex('05 00'));
      assert.equal((await c.read(10))[1], 0);
      assert.equal((await c.read(2)).toString(), 'hi');
      c.destroy();
    }
    assert.deepEqual(seen, ['203.0.113.7:40001', '198.51.100.9:40002']);
    await new Promise((r) => setTimeout(r, 100));
    const clients = px.logs.filter((l) => l.msg === 'stream closed').map((l) => l.client);
    assert.deepEqual(clients.slice(-2), ['203.0.113.7', '198.51.100.9'], 'the access log shows the real client');
  });

  test('a connection without a valid header is closed without a byte', async () => {
    const c = await RawClient.connect(px.port);
    c.write(connectRequest(echo.port));
    assert.equal((await c.readToEnd(3000)).length, 0);
    c.destroy();
  });
});

test('a PROXY-protocol listener closes connections from untrusted addresses without a byte', async () => {
  const px = await startProxy({ listen: [{ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['10.0.0.0/8'] } }] });
  try {
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([v1('203.0.113.7', 1), connectRequest(echo.port)]));
    assert.equal((await c.readToEnd(3000)).length, 0);
    c.destroy();
    assert.ok(px.logs.some((l) => String(l.msg).includes('untrusted address')));
  } finally {
    await px.close();
  }
});
