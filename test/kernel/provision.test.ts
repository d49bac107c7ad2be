/**
 * DI with a job (issue 12): a plugin supplies or decorates services in `provision()`, before the
 * kernel is built, and reads them in `apply()` through `api.services`; a constructor parameter
 * that asks for a token standing for no service fails with one line naming the plugin, the
 * parameter and the token.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { Tokens } from '../../src/di/tokens.js';
import { toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy } from '../helpers/proxy.js';
import { startDnsServer, type TestDnsServer } from '../plugins/helpers/dns-server.js';
import { req5 } from '../plugins/helpers/socks.js';
import { seen } from './fixtures/provider-plugin.js';
import { tempDir } from './hook-kit.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const WRONG = path.join(here, 'fixtures', 'wrong-token-plugin.js');
const PROVIDER = path.join(here, 'fixtures', 'provider-plugin.js');

let dns: TestDnsServer;
let echo: TestServer;
before(async () => {
  dns = await startDnsServer();
  echo = await startEchoServer();
});
after(async () => {
  await dns.close();
  await echo.close();
});

test('a constructor parameter asking for an unknown token: one line naming the plugin, its file, the parameter and the token', async () => {
  await assert.rejects(startProxy({ plugins: { 'wrong-token': { module: WRONG } } }), (err: Error) => {
    assert.equal(
      err.message,
      `plugin "wrong-token" (${WRONG}) failed in its constructor: constructor parameter 1 asks for Tokens.Nope, which is not a socksmith service (see Tokens)`,
    );
    assert.equal((err as { code?: string }).code, 'SOCKSMITH_ERR_PLUGIN_FAILED');
    return true;
  });
});

test('provision(): a decorated Resolver serves the kernel (CONNECT by name); a provided service is what apply() reads', async () => {
  const px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { provider: { module: PROVIDER } } });
  try {
    const c = await RawClient.connect(px.port);
    c.write(Buffer.from([5, 1, 0]));
    assert.equal(toHex(await c.read(2)), '05 00');
    c.write(req5(1, 'provided.test', echo.port, true));
    assert.equal(toHex((await c.read(10)).subarray(0, 2)), '05 00', 'the decorated resolver answered provided.test');
    c.write('ping');
    assert.equal((await c.read(4)).toString(), 'ping');
    c.destroy();
    assert.deepEqual(dns.queries, [], 'the wrapped resolver was never asked');
    assert.deepEqual(seen.check?.(undefined as never, { kind: 'ipv4', host: '127.0.0.1', port: 1 }), { rep: 2, reason: 'provider-plugin' });
    assert.equal(px.proxy.kernel.services.get(Tokens.DestinationCheck), seen.check);
  } finally {
    await px.close();
  }
});

test('the built-ins supply services: policy a DestinationCheck, auth a UsersStore; the proxy its Metrics', async () => {
  const { writeUsers } = await import('../plugins/auth/helpers.js');
  const dir = tempDir('socksmith-provision-');
  try {
    const usersFile = await writeUsers(dir.dir, [{ user: 'alice', pass: 's3cret-alice' }]);
    const px = await startProxy({
      metrics: { host: '127.0.0.1', port: 0 },
      plugins: { policy: { destinations: ['reject 10.0.0.0/8:*', 'accept *:*'], RejectPlaintextPorts: [23] }, auth: { usersFile } },
    });
    try {
      const services = px.proxy.kernel.services;
      const check = services.get(Tokens.DestinationCheck);
      const conn = undefined as never;
      assert.deepEqual(check(conn, { kind: 'ipv4', host: '10.1.2.3', port: 80 }), { rep: 2, reason: 'destinations: reject 10.0.0.0/8:*' });
      assert.deepEqual(check(conn, { kind: 'ipv4', host: '192.0.2.1', port: 23 }), { rep: 2, reason: 'RejectPlaintextPorts' });
      assert.equal(check(conn, { kind: 'ipv4', host: '192.0.2.1', port: 80 }), undefined);
      const users = services.get(Tokens.UsersStore);
      assert.equal(users.size, 1);
      assert.equal(services.get(Tokens.Metrics), px.proxy.metrics);
      assert.ok(px.proxy.metrics);
    } finally {
      await px.close();
    }
  } finally {
    dir.cleanup();
  }
});
