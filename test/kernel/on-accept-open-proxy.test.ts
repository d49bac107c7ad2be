import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { hex } from '../helpers/hex.js';
import { RawClient } from '../helpers/net.js';
import { ALL_OFF, startProxy } from '../helpers/proxy.js';
import { runCli } from '../helpers/cli.js';
import { SocksmithProxy, isLoopbackHost } from '../../src/proxy.js';
import { createLogger } from '../../src/logger.js';

test('onAccept returning false closes the client before any byte is read or sent', async () => {
  const px = await startProxy();
  const seen: string[] = [];
  px.proxy.kernel.hooks.onAccept.tap('deny-all', (conn) => {
    seen.push(conn.clientAddress);
    return false;
  });
  try {
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 00'));
    const got = await c.readToEnd(3000);
    assert.equal(got.length, 0, 'no byte sent');
    assert.deepEqual(seen, ['127.0.0.1']);
    c.destroy();
  } finally {
    await px.close();
  }
});

test('onAccept returning undefined lets the connection proceed', async () => {
  const px = await startProxy();
  px.proxy.kernel.hooks.onAccept.tap('allow', () => undefined);
  try {
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 00'));
    assert.deepEqual(await c.read(2), hex('05 00'));
    c.destroy();
  } finally {
    await px.close();
  }
});

test('isLoopbackHost', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', 'example.com', '128.0.0.1']) assert.equal(isLoopbackHost(h), false, h);
});

test('a non-loopback listener without auth or a client ACL is refused (no socket is bound)', async () => {
  const proxy = await SocksmithProxy.create({ listen: [{ host: '0.0.0.0', port: 0 }], plugins: ALL_OFF }, { logger: createLogger('silent') });
  await assert.rejects(proxy.listen(), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
    assert.match(err.message, /^listen\.0\.host: 0\.0\.0\.0 is not a loopback address, and no plugin restricts who may connect: this would be an open proxy\./);
    return true;
  });
  assert.equal(proxy.addresses.length, 0);
  await proxy.close(0);
});

test('CLI: an open-proxy config exits 78 with one line naming listen.0.host', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-open-'));
  const file = path.join(dir, 'open.json');
  fs.writeFileSync(file, JSON.stringify({ listen: [{ host: '0.0.0.0', port: 0 }], plugins: ALL_OFF }));
  try {
    const r = await runCli(['--config', file]);
    assert.equal(r.code, 78);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^socksmith: config error: listen\.0\.host: 0\.0\.0\.0 is not a loopback address/);
    assert.equal(r.stdout, '');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
