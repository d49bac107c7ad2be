/**
 * `policy` plugin: the client ACL (`clients`, Tor's SocksPolicy). A refused client is closed
 * right after accept, before any byte is read or sent (tor-socks.md a.6). Clients are bound to
 * chosen loopback source addresses (127.0.0.1 / 127.0.0.2, ::1).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import PolicyPlugin from '../../../plugins/policy/index.js';
import type { PolicyOptions } from '../../../plugins/policy/schema.js';
import { ConnectionContext } from '../../../src/kernel/context.js';
import { validateOptions } from '../../../src/kernel/plugin-loader.js';
import { createLogger } from '../../../src/logger.js';
import { SocksmithProxy } from '../../../src/proxy.js';
import { hex, toHex } from '../../helpers/hex.js';
import { RawClient } from '../../helpers/net.js';
import { ALL_OFF, startProxy } from '../../helpers/proxy.js';
import { connectClient, req4 } from '../helpers/socks.js';
import { linesStarting } from './kit.js';

/** Options with the schema's defaults filled in, as the plugin loader hands them over. */
function options(o: Partial<PolicyOptions>): PolicyOptions {
  return validateOptions(PolicyPlugin.meta.schema, o, 'plugins.policy') as PolicyOptions;
}

describe('client ACL over loopback sockets', () => {
  test('accept 127.0.0.1, reject *: 127.0.0.1 is served; 127.0.0.2 is closed before any byte, with a debug line naming the rule', async () => {
    const px = await startProxy({ plugins: { policy: { clients: ['accept 127.0.0.1', 'reject *'] } } });
    try {
      const ok = await connectClient(px.port, { localAddress: '127.0.0.1' });
      ok.write(hex('05 01 00'));
      assert.equal(toHex(await ok.read(2)), '05 00');
      ok.destroy();

      const refused = await connectClient(px.port, { localAddress: '127.0.0.2' });
      refused.write(hex('05 01 00'));
      assert.equal((await refused.readToEnd(3000)).length, 0, 'closed without a byte');
      refused.destroy();

      const lines = linesStarting(px.logs, 'policy: client refused');
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!.level, 'debug');
      assert.equal(lines[0]!.client, '127.0.0.2');
      assert.equal(lines[0]!.rule, 'reject *');
    } finally {
      await px.close();
    }
  });

  test('a silent refused client is closed at once (no waiting for its first byte); SOCKS4 gets no 5B either', async () => {
    const px = await startProxy({ plugins: { policy: { clients: ['reject 127.0.0.2/32'] } }, timeouts: { handshake: 20000 } });
    try {
      const silent = await connectClient(px.port, { localAddress: '127.0.0.2' });
      const t0 = Date.now();
      assert.equal((await silent.readToEnd(3000)).length, 0);
      assert.ok(Date.now() - t0 < 2000, 'not held until the handshake timeout');
      silent.destroy();

      const v4 = await connectClient(px.port, { localAddress: '127.0.0.2' });
      v4.write(req4(1, '127.0.0.1', 80));
      assert.equal((await v4.readToEnd(3000)).length, 0);
      v4.destroy();

      // An address no rule matches is accepted (Tor's SocksPolicy).
      const other = await connectClient(px.port, { localAddress: '127.0.0.1' });
      other.write(hex('05 01 00'));
      assert.equal(toHex(await other.read(2)), '05 00');
      other.destroy();
    } finally {
      await px.close();
    }
  });

  test('port specifiers in client rules are ignored; netmask and bit-count masks cover their range', async () => {
    const px = await startProxy({ plugins: { policy: { clients: ['reject 127.0.0.2/255.255.255.254:9999', 'reject 127.0.0.4/31', 'accept *'] } } });
    try {
      for (const [localAddress, refused] of [
        ['127.0.0.1', false],
        ['127.0.0.2', true],
        ['127.0.0.3', true],
        ['127.0.0.4', true],
        ['127.0.0.5', true],
        ['127.0.0.6', false],
      ] as const) {
        const c = await connectClient(px.port, { localAddress });
        c.write(hex('05 01 00'));
        if (refused) assert.equal((await c.readToEnd(3000)).length, 0, localAddress);
        else assert.equal(toHex(await c.read(2)), '05 00', localAddress);
        c.destroy();
      }
    } finally {
      await px.close();
    }
  });

  test('IPv6 clients: reject [::1] closes a ::1 client; reject *4 leaves it alone', async () => {
    for (const [rule, refused] of [
      ['reject [::1]', true],
      ['reject *4', false],
    ] as const) {
      const px = await startProxy({ listen: [{ host: '::1', port: 0 }], plugins: { policy: { clients: [rule] } } });
      try {
        const c = await RawClient.connect(px.port, '::1');
        c.write(hex('05 01 00'));
        if (refused) assert.equal((await c.readToEnd(3000)).length, 0, rule);
        else assert.equal(toHex(await c.read(2)), '05 00', rule);
        c.destroy();
      } finally {
        await px.close();
      }
    }
  });

  test('an IPv4-mapped IPv6 client address meets the IPv4 rules (onAccept called with a fake context)', async () => {
    const px = await startProxy({ plugins: { policy: { clients: ['reject 10.0.0.0/8', 'accept *'] } } });
    try {
      const ctx = (clientAddress: string, clientFamily: 'IPv4' | 'IPv6' | 'unix') =>
        new ConnectionContext({
          id: 1,
          listener: { index: 0, host: '::', port: 1080 },
          clientAddress,
          clientPort: 50000,
          clientFamily,
          acceptedAt: 0,
          log: px.proxy.kernel.logger.child({ conn: 1 }),
          signal: new AbortController().signal,
        });
      const onAccept = px.proxy.kernel.hooks.onAccept;
      assert.equal(onAccept.call(ctx('::ffff:10.1.2.3', 'IPv6')), false);
      assert.equal(onAccept.call(ctx('::ffff:a01:203', 'IPv6')), false);
      assert.equal(onAccept.call(ctx('10.1.2.3', 'IPv4')), false);
      assert.equal(onAccept.call(ctx('::ffff:192.0.2.1', 'IPv6')), undefined);
      assert.equal(onAccept.call(ctx('', 'unix')), undefined, 'unix-socket clients have no address and pass, as in Tor');
    } finally {
      await px.close();
    }
  });

  test('NAT64 clients (issue #10 review): with accept private, reject * on 0.0.0.0 behind a PROXY-protocol balancer, 64:ff9b::808:808 is refused like ::ffff:8.8.8.8; 64:ff9b::a00:5 is admitted like 10.0.0.5; 64:ff9b:1::/48 is not private', async () => {
    // The open-proxy guard lets this start (only private clients are admitted), so every public
    // client must be refused, also one a NAT64/SIIT translator presents in 64:ff9b::/96 (RFC 6052).
    const px = await startProxy({ listen: [{ host: '0.0.0.0', port: 0, proxyProtocol: { trusted: ['127.0.0.1/32'] } }], plugins: { policy: { clients: ['accept private', 'reject *'] } } });
    try {
      const attempt = async (source: string, admitted: boolean): Promise<void> => {
        const c = await RawClient.connect(px.port, '127.0.0.1');
        c.write(Buffer.concat([Buffer.from(`PROXY TCP6 ${source} ::1 40001 1080\r\n`), hex('05 01 00')]));
        if (admitted) assert.equal(toHex(await c.read(2)), '05 00', `${source} is admitted`);
        else assert.equal(toHex(await c.readToEnd(3000)), '', `${source} is closed without a byte`);
        c.destroy();
      };
      for (const [source, admitted] of [
        ['::ffff:8.8.8.8', false],
        ['2001:db8::8', false],
        ['64:ff9b::808:808', false],
        ['64:ff9b::8.8.8.8', false],
        ['64:ff9b:1::808:808', false],
        ['64:ff9b:1:a00::5', false],
        ['64:ff9b::a00:5', true],
        ['64:ff9b::7f00:1', true],
        ['fd00::1', true],
      ] as const) {
        await attempt(source, admitted);
      }
      const refused = linesStarting(px.logs, 'policy: client refused');
      assert.deepEqual(
        refused.map((l) => l.client),
        ['8.8.8.8', '2001:db8::8', '64:ff9b::808:808', '64:ff9b::8.8.8.8', '64:ff9b:1::808:808', '64:ff9b:1:a00::5'],
        'the log names the address as received',
      );
      assert.equal(refused[2]!.rule, 'reject *');
    } finally {
      await px.close();
    }
  });

  test('without clients rules, onAccept is not tapped at all', async () => {
    const px = await startProxy({ plugins: { policy: true } });
    try {
      assert.equal(px.proxy.kernel.hooks.onAccept.taps.length, 0);
    } finally {
      await px.close();
    }
  });
});

describe('restrictsClients and the open-proxy check', () => {
  test('restrictsClients(): true when the ACL admits only loopback and private clients', () => {
    assert.equal(new PolicyPlugin(options({})).restrictsClients(), false, 'no ACL');
    assert.equal(new PolicyPlugin(options({ destinations: ['reject private:*', 'accept *:*'] })).restrictsClients(), false, 'a destination policy does not keep clients out');
    assert.equal(new PolicyPlugin(options({ clients: ['accept 192.168.0.0/16', 'reject *'] })).restrictsClients(), true);
    assert.equal(new PolicyPlugin(options({ clients: ['reject 203.0.113.0/24'] })).restrictsClients(), false, 'refusing some of the public admits the rest (issue #10)');
    assert.equal(new PolicyPlugin(options({ clients: ['accept 203.0.113.0/24', 'reject *'] })).restrictsClients(), false, 'a public network is admitted');
    assert.equal(new PolicyPlugin(options({ clients: ['accept 192.168.0.0/16'] })).restrictsClients(), false, 'accept rules alone admit everyone');
    assert.equal(new PolicyPlugin(options({ clients: ['accept *', 'reject 10.0.0.0/8'] })).restrictsClients(), false, 'the reject is never reached');
  });

  test('a non-loopback listener passes the open-proxy check with a client ACL, and fails without one (nothing is bound)', async () => {
    const check = async (policy: object | false): Promise<unknown> => {
      const proxy = await SocksmithProxy.create({ listen: [{ host: '0.0.0.0', port: 0 }], plugins: { ...ALL_OFF, policy } }, { logger: createLogger('silent') });
      try {
        // The check listen() runs before binding; called alone so that no socket is ever bound.
        (proxy as unknown as { checkOpenProxy(): void }).checkOpenProxy();
        return undefined;
      } catch (err) {
        return err;
      } finally {
        await proxy.close(0);
      }
    };
    assert.equal(await check({ clients: ['accept 192.168.0.0/16', 'reject *'] }), undefined);
    const onlyAccept = (await check({ clients: ['accept 192.168.0.0/16'] })) as Error & { code?: string };
    assert.equal(onlyAccept?.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
    assert.match(onlyAccept.message, /^plugins\.policy\.clients: admits clients outside loopback and private networks \(e\.g\. 1\.0\.0\.0\), and listen\.0\.host 0\.0\.0\.0 is not a loopback address/);
    const off = (await check(false)) as Error & { code?: string };
    assert.equal(off?.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
  });

  test('an ACL that cannot refuse anyone is applied but logged as a warning', async () => {
    const px = await startProxy({ plugins: { policy: { clients: ['accept 192.168.0.0/16'] } } });
    try {
      const warn = linesStarting(px.logs, 'policy: no rule in "clients" can refuse anyone');
      assert.equal(warn.length, 1);
      assert.equal(warn[0]!.level, 'warn');
    } finally {
      await px.close();
    }
  });
});
