/**
 * Every per-client budget counts an IPv6 client by its /64 and an IPv4-mapped one as the IPv4
 * address (`clientKey()`, issue #10): the per-client connection cap, handshake shedding "same
 * address first", the DNS pending share and the scrypt queue share. The IPv6 client addresses
 * come in PROXY headers from a trusted balancer on loopback (the test never uses them as
 * sockets' addresses).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { V1ProxyProtocol, INETProtocol, Peer } from 'proxy-protocol-js';
import { clientKey } from '../../src/kernel/client-key.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { formatUserLine, hashPassword, scryptStats } from '../../plugins/auth/users-file.js';
import { hex, toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer } from '../helpers/net.js';
import { startProxy } from '../helpers/proxy.js';
import { tempDir } from '../plugins/auth/helpers.js';
import { req5, userpass, waitFor } from '../plugins/helpers/socks.js';
import { startSilentDnsServer } from '../plugins/helpers/dns-server.js';

/** A PROXY v1 header saying the client is `src` (IPv6 or IPv4). */
function proxyHeader(src: string): Buffer {
  const v6 = src.includes(':');
  return Buffer.from(new V1ProxyProtocol(v6 ? INETProtocol.TCP6 : INETProtocol.TCP4, new Peer(src, 40000), new Peer(v6 ? '::1' : '127.0.0.1', 1080)).build(), 'latin1');
}

const proxied = (extra: ConfigInput = {}): ConfigInput => ({ listen: [{ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.0/8'] } }], ...extra });

test('clientKey: IPv4 as it is, IPv6 by its /64, IPv4-mapped as the IPv4 address, zone kept, unix clients and non-addresses unchanged', () => {
  assert.equal(clientKey('203.0.113.7'), '203.0.113.7');
  assert.equal(clientKey('2001:db8:1:2::a'), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:db8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:0DB8:0001:0002:0:0:0:1'), '2001:db8:1:2::/64');
  assert.notEqual(clientKey('2001:db8:1:3::a'), clientKey('2001:db8:1:2::a'));
  assert.equal(clientKey('::ffff:203.0.113.7'), '203.0.113.7');
  assert.equal(clientKey('::ffff:cb00:7107'), '203.0.113.7');
  // NAT64 (RFC 6052 well-known prefix): the IPv4 clients of one translator are separate clients.
  assert.equal(clientKey('64:ff9b::cb00:7107'), '203.0.113.7');
  assert.equal(clientKey('64:ff9b::203.0.113.8'), '203.0.113.8');
  assert.notEqual(clientKey('64:ff9b::cb00:7107'), clientKey('64:ff9b::cb00:7108'));
  assert.equal(clientKey('64:ff9b:1::cb00:7107'), '64:ff9b:1::/64', 'the local-use prefix (RFC 8215) is an ordinary /64');
  assert.equal(clientKey('fe80::1%eth0'), 'fe80::/64%eth0');
  assert.equal(clientKey('::1'), '::/64');
  assert.equal(clientKey(''), '');
  assert.equal(clientKey('not:an:address'), 'not:an:address');
});

test('maxConnectionsPerClient counts an IPv6 client by its /64: a third address in the same /64 is refused at a cap of 2, one in the next /64 is served; NAT64 clients count as their IPv4 addresses', async () => {
  const echo = await startEchoServer();
  const px = await startProxy(proxied({ limits: { maxConnectionsPerClient: 2 } }));
  const clients: RawClient[] = [];
  const tunnel = async (src: string): Promise<RawClient> => {
    const c = await RawClient.connect(px.port);
    clients.push(c);
    c.write(Buffer.concat([proxyHeader(src), hex('05 01 00'), req5(1, '127.0.0.1', echo.port)]));
    return c;
  };
  try {
    for (const src of ['2001:db8:1:2::1', '2001:db8:1:2::2']) {
      const c = await tunnel(src);
      assert.deepEqual(await c.read(2, 10000), hex('05 00'));
      assert.equal((await c.read(10, 10000))[1], 0);
    }
    const third = await tunnel('2001:db8:1:2:abcd::3');
    assert.equal((await third.readToEnd(5000)).length, 0, 'a new address in the same /64 is the same client: refused without a byte');
    const next = await tunnel('2001:db8:1:3::1');
    assert.deepEqual(await next.read(2, 10000), hex('05 00'), 'another /64 is another client');
    // Three IPv4 hosts behind one NAT64 translator (64:ff9b::/96): three clients, not one /64.
    for (const src of ['64:ff9b::cb00:7101', '64:ff9b::cb00:7102', '64:ff9b::cb00:7103']) {
      const c = await tunnel(src);
      assert.deepEqual(await c.read(2, 10000), hex('05 00'), `${src} is its own client`);
    }
    await waitFor(() => px.logs.some((l) => l.msg === 'connections refused: limits.maxConnectionsPerClient reached'), 'the refusal line');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
    await echo.close();
  }
});

test('handshake shedding takes the oldest handshake of the same /64 first: with maxConnections full, a newcomer from a /64 at its cap closes that /64’s oldest, not an older one of another client', async () => {
  const px = await startProxy(proxied({ limits: { maxConnections: 3, maxConnectionsPerClient: 2 } }));
  const clients: RawClient[] = [];
  const stall = async (src: string, n: number): Promise<RawClient> => {
    const c = await RawClient.connect(px.port);
    clients.push(c);
    c.write(proxyHeader(src)); // then not a byte of SOCKS
    await waitFor(() => px.proxy.kernel.connectionCount === n, 'the proxy to accept it');
    return c;
  };
  try {
    const other = await stall('2001:db8:9::1', 1); // the oldest handshake of all
    const a1 = await stall('2001:db8:1:2::1', 2);
    const a2 = await stall('2001:db8:1:2::2', 3);
    const a3 = await RawClient.connect(px.port);
    clients.push(a3);
    a3.write(Buffer.concat([proxyHeader('2001:db8:1:2::3'), hex('05 01 00')]));
    assert.deepEqual(await a3.read(2, 10000), hex('05 00'), 'the newcomer is served');
    assert.equal((await a1.readToEnd(5000)).length, 0, 'the oldest handshake of its /64 was closed, without a byte');
    assert.equal(other.closed || other.ended, false, 'the older handshake of another client is untouched');
    assert.equal(a2.closed || a2.ended, false);
    await waitFor(() => px.logs.some((l) => l.msg === 'handshakes closed to make room: limits.maxConnectionsPerClient reached'), 'the batched warn line');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
  }
});

test('resolver.maxPendingPerClient counts an IPv6 client by its /64: at a share of 2, a third lookup from another address of the same /64 gets REP 04 at once, one from the next /64 is sent', async () => {
  const silent = await startSilentDnsServer();
  const asked = { has: (name: string) => silent.asked.includes(name) };
  const px = await startProxy(
    proxied({
      resolver: { servers: [`127.0.0.1:${silent.port}`], timeout: 8000, tries: 1, maxPending: 8, maxPendingPerClient: 2 },
      plugins: { resolve: true },
    }),
  );
  const clients: RawClient[] = [];
  const resolve = async (src: string, name: string): Promise<RawClient> => {
    const c = await RawClient.connect(px.port);
    clients.push(c);
    c.write(Buffer.concat([proxyHeader(src), hex('05 01 00'), req5(0xf0, name, 0, true)]));
    assert.deepEqual(await c.read(2, 10000), hex('05 00'));
    return c;
  };
  try {
    await resolve('2001:db8:1:2::1', 'a1.test');
    await resolve('2001:db8:1:2::2', 'a2.test');
    await waitFor(() => asked.has('a1.test') && asked.has('a2.test'), 'both lookups to reach the DNS server');
    const third = await resolve('2001:db8:1:2::3', 'a3.test');
    assert.deepEqual(await third.read(10, 5000), hex('05 04 00 01 00000000 0000'), 'over the /64’s share: REP 04 at once');
    await resolve('2001:db8:1:3::1', 'b1.test');
    await waitFor(() => asked.has('b1.test'), 'the next /64’s lookup to reach the DNS server');
    assert.equal(asked.has('a3.test'), false, 'the lookup over the share never reached DNS');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
    silent.close();
  }
});

test('auth: the 64-logins cap counts an IPv6 client by its /64: 100 logins from 100 addresses of one /64 at once, the extra ones get 01 01 without hashing', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'users.txt');
  await fs.writeFile(file, `${formatUserLine('victim', await hashPassword('victim-pass', { N: 4096, r: 8, p: 1 }))}\n`);
  const px = await startProxy(proxied({ plugins: { auth: { usersFile: file } } as ConfigInput['plugins'] }));
  const clients: RawClient[] = [];
  try {
    const before = scryptStats.calls;
    const total = 100;
    const answers = await Promise.all(
      Array.from({ length: total }, async (_, i) => {
        const c = await RawClient.connect(px.port);
        clients.push(c);
        c.write(Buffer.concat([proxyHeader(`2001:db8:1:2::${(i + 1).toString(16)}`), hex('05 01 02'), userpass('victim', `wrong-${i}`)]));
        assert.equal(toHex(await c.read(2, 20000)), '05 02');
        return toHex(await c.read(2, 60000));
      }),
    );
    assert.ok(answers.every((a) => a === '01 01'));
    const refused = px.logs.filter((l) => l.msg === 'auth: too many logins waiting from this address; refused without hashing').length;
    assert.ok(refused >= 1, 'some logins were over the cap of their /64');
    assert.equal(scryptStats.calls - before, total - refused, 'a refused login runs no scrypt');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
