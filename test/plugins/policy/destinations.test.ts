/**
 * `policy` plugin: the destination policy (`destinations`, Tor's exit-policy syntax) over
 * loopback sockets. IP literals are refused on the request; names are refused on the addresses
 * they resolve to, before the direct upstream connects (the DNS-rebinding defence). Answers such
 * as 10.0.0.5 come from a loopback DNS server and are data only: the spy on the direct upstream's
 * sockets proves node was never handed them.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../../helpers/cli.js';
import { startEchoServer, type TestServer } from '../../helpers/net.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.js';
import { startRecordingUpstream } from '../helpers/recording-upstream.js';
import { socks5Upstream } from '../helpers/socks.js';
import { REJECTED4, echoes, linesStarting, once4, once5, open5, refusal5, spyConnects } from './kit.js';
import { type ConnectSpy, GUARDED } from './kit.js';

let dns: TestDnsServer;
let echo: TestServer & { connections: number };
let echo6: TestServer & { connections: number };
/** Installed for the whole file: no test here may connect outside loopback, whatever the proxy does. */
let guard: ConnectSpy;

before(async () => {
  guard = spyConnects();
  dns = await startDnsServer();
  dns.setA('rebind.test', ['10.0.0.5']);
  dns.setA('mixed.test', ['10.0.0.5', '127.0.0.1']);
  dns.setA('loop.test', ['127.0.0.1']);
  dns.setAAAA('mapped.test', ['::ffff:7f00:1']); // ::ffff:127.0.0.1, and no A record
  echo = await startEchoServer('127.0.0.1');
  echo6 = await startEchoServer('::1');
});
after(async () => {
  guard.restore();
  assert.deepEqual(GUARDED, [], 'no non-loopback address was ever handed to node');
  await dns.close();
  await echo.close();
  await echo6.close();
});

describe('no destination rules (the default)', () => {
  let px: TestProxy;
  before(async () => {
    px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { policy: true } });
  });
  after(async () => px.close());

  test('every destination is allowed: a loopback proxy still reaches 127.0.0.1 and a name resolving to it', async () => {
    const a = await open5(px.port, '127.0.0.1', echo.port);
    await echoes(a);
    a.destroy();
    const b = await open5(px.port, 'loop.test', echo.port);
    await echoes(b);
    b.destroy();
  });

  test('no onResolve tap is added when nothing needs the resolved addresses', () => {
    assert.equal(px.proxy.kernel.hooks.onResolve.taps.length, 0);
  });
});

describe("destinations: ['reject private:*', 'accept *:*']", () => {
  let px: TestProxy;
  before(async () => {
    px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { policy: { destinations: ['reject private:*', 'accept *:*'] }, resolve: true } });
  });
  after(async () => px.close());

  test('IP literals in private networks get REP 02 on the request: ATYP 01, ATYP 04, v4-mapped ATYP 04, a name field holding a literal; SOCKS4 gets 5B', async () => {
    const before = echo.connections + echo6.connections;
    assert.equal(await once5(px.port, 1, '127.0.0.1', echo.port), refusal5(2));
    assert.equal(await once5(px.port, 1, '::1', echo6.port), refusal5(2));
    assert.equal(await once5(px.port, 1, '::ffff:7f00:1', echo.port), refusal5(2));
    assert.equal(await once5(px.port, 1, '127.0.0.1', echo.port, { asName: true }), refusal5(2));
    assert.equal(await once5(px.port, 1, '[::1]', echo6.port, { asName: true }), refusal5(2));
    assert.equal(await once4(px.port, 1, '127.0.0.1', echo.port), REJECTED4);
    assert.equal(echo.connections + echo6.connections, before, 'nothing reached the loopback servers');
    const refused = linesStarting(px.logs, 'policy: request refused');
    assert.ok(refused.length >= 6);
    assert.equal(refused[0]!.reason, 'destinations');
    assert.equal(refused[0]!.rule, 'reject private:*');
  });

  test('DNS rebinding: a name resolving to 10.0.0.5 gets REP 02 (SOCKS4a 5B), and node is never handed 10.0.0.5', async () => {
    const spy = spyConnects();
    try {
      assert.equal(await once5(px.port, 1, 'rebind.test', 80), refusal5(2));
      assert.equal(await once4(px.port, 1, 'rebind.test', 443), REJECTED4);
    } finally {
      spy.restore();
    }
    assert.ok(dns.queriesFor('rebind.test', 'A').length >= 1, 'the name was resolved');
    assert.deepEqual(spy.addressesFor('rebind.test'), [], 'no address was handed to node');
    assert.deepEqual(spy.attempts.filter((a) => a.host === 'rebind.test'), []);
    assert.deepEqual(spy.guarded, []);
    const asked = spy.lookups.filter((l) => l.host === 'rebind.test');
    assert.equal(asked.length, 2);
    assert.ok(asked.every((l) => /refused by the destination policy/.test(l.err ?? '')));
    const failed = linesStarting(px.logs, 'upstream connect failed').filter((l) => /rebind\.test/.test(String(l.err)));
    assert.ok(failed.length >= 1 && failed.every((l) => l.rep === 'NOT_ALLOWED'));
    const dropped = linesStarting(px.logs, 'policy: resolved addresses dropped').filter((l) => l.name === 'rebind.test');
    assert.deepEqual(dropped[0]!.dropped, ['10.0.0.5']);
  });

  test('a name resolving to 127.0.0.1 is refused the same way', async () => {
    assert.equal(await once5(px.port, 1, 'loop.test', echo.port), refusal5(2));
  });

  test('RESOLVE is not a connection: the destination policy does not hide answers (05 00 … 10.0.0.5)', async () => {
    assert.equal(await once5(px.port, 0xf0, 'rebind.test', 0), '05 00 00 01 0a 00 00 05 00 00');
  });

  test('BIND is left to the kernel (07), not refused by the policy', async () => {
    assert.equal(await once5(px.port, 2, '127.0.0.1', 80), refusal5(7));
  });
});

describe('a name with some refused addresses keeps the others', () => {
  let px: TestProxy;
  before(async () => {
    px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { policy: { destinations: ['reject 10.0.0.0/8:*', 'accept *:*'] } } });
  });
  after(async () => px.close());

  test('mixed.test (10.0.0.5, 127.0.0.1) connects to 127.0.0.1 only; 10.0.0.5 is never handed to node', async () => {
    const spy = spyConnects();
    try {
      const c = await open5(px.port, 'mixed.test', echo.port);
      await echoes(c);
      c.destroy();
    } finally {
      spy.restore();
    }
    assert.deepEqual(spy.addressesFor('mixed.test'), ['127.0.0.1']);
    assert.ok(!spy.attempts.some((a) => a.address === '10.0.0.5'));
    assert.deepEqual(spy.guarded, []);
  });
});

describe('the test guard itself', () => {
  test('a non-loopback literal the proxy lets through is withheld from node (the client gets 01) and recorded', async () => {
    const px = await startProxy({ plugins: { policy: true } });
    const spy = spyConnects();
    try {
      assert.equal(await once5(px.port, 1, '192.0.2.1', 9), refusal5(1));
    } finally {
      spy.restore();
      await px.close();
    }
    assert.deepEqual(spy.guarded, ['192.0.2.1']);
    assert.deepEqual(GUARDED.splice(0), ['192.0.2.1'], 'expected here; cleared so that the file-level check stays meaningful');
  });
});

describe('IPv4-mapped answers meet IPv4 rules', () => {
  test("an AAAA answer ::ffff:127.0.0.1 is refused by 'reject 127.0.0.0/8:*' and never handed to node", async () => {
    const px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { policy: { destinations: ['reject 127.0.0.0/8:*', 'accept *:*'] } } });
    const spy = spyConnects();
    const before = echo.connections;
    try {
      assert.equal(await once5(px.port, 1, 'mapped.test', echo.port), refusal5(2));
    } finally {
      spy.restore();
      await px.close();
    }
    assert.deepEqual(spy.addressesFor('mapped.test'), []);
    assert.equal(echo.connections, before);
  });
});

describe('port rules', () => {
  let px: TestProxy;
  let other: TestServer & { connections: number };
  before(async () => {
    other = await startEchoServer('127.0.0.1');
    px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { policy: { destinations: [`accept 127.0.0.1:${echo.port}`, `accept [::1]:${echo6.port}-${echo6.port}`, 'reject *:*'] } } });
  });
  after(async () => {
    await px.close();
    await other.close();
  });

  test('the listed host:port is allowed, the same host on another port is refused (literal and name)', async () => {
    const a = await open5(px.port, '127.0.0.1', echo.port);
    await echoes(a);
    a.destroy();
    const b = await open5(px.port, 'loop.test', echo.port);
    await echoes(b);
    b.destroy();
    const c = await open5(px.port, '::1', echo6.port);
    await echoes(c);
    c.destroy();
    assert.equal(await once5(px.port, 1, '127.0.0.1', other.port), refusal5(2));
    assert.equal(await once5(px.port, 1, 'loop.test', other.port), refusal5(2));
    assert.equal(other.connections, 0);
  });
});

describe('socks5 upstream: names cannot be checked by address', () => {
  test('IP literals are refused before the upstream is contacted; a name is passed on as a name (documented limitation)', async () => {
    const up = await startRecordingUpstream();
    const px = await startProxy({ upstream: socks5Upstream(up.port), plugins: { policy: { destinations: ['reject private:*', 'accept *:*'] } } });
    try {
      assert.equal(await once5(px.port, 1, '127.0.0.1', echo.port), refusal5(2));
      assert.equal(up.sessions.length, 0, 'the upstream was never contacted');
      // The recording upstream answers 04 for anything but loopback; what matters is that the name went on unresolved.
      const reply = await once5(px.port, 1, 'rebind.test', 80);
      assert.equal(reply, refusal5(4));
      assert.equal(up.sessions.length, 1);
      assert.equal(up.sessions[0]!.request?.atyp, 3);
      assert.equal(up.sessions[0]!.request?.host, 'rebind.test');
    } finally {
      await px.close();
      await up.close();
    }
  });
});

describe('config errors name the rule', () => {
  test('a bad destinations entry: ConfigError plugins.policy.destinations.N with a one-line reason', async () => {
    await assert.rejects(
      startProxy({ plugins: { policy: { destinations: ['reject private:*', 'reject 10.0.0.0/33:*'] } } }),
      (err: Error & { code?: string; key?: string }) => {
        assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
        assert.equal(err.key, 'plugins.policy.destinations.1');
        assert.equal(err.message, 'plugins.policy.destinations.1: "reject 10.0.0.0/33:*": mask /33 is out of range for IPv4 (0-32)');
        return true;
      },
    );
  });

  test('a bad clients entry names plugins.policy.clients.N', async () => {
    await assert.rejects(startProxy({ plugins: { policy: { clients: ['permit 10.0.0.0/8'] } } }), (err: Error & { key?: string }) => {
      assert.equal(err.key, 'plugins.policy.clients.0');
      assert.match(err.message, /^plugins\.policy\.clients\.0: "permit 10\.0\.0\.0\/8": "permit" is not accept, reject, accept6 or reject6$/);
      return true;
    });
  });

  test('schema errors: a misspelled flag and a wrong type name the key', async () => {
    await assert.rejects(startProxy({ plugins: { policy: { SafeSocksx: true } } }), /plugins\.policy.*SafeSocksx.*did you mean "SafeSocks"/);
    await assert.rejects(startProxy({ plugins: { policy: { destinations: 'reject *:*' } } }), /^ConfigError: plugins\.policy\.destinations: must be array/);
    await assert.rejects(startProxy({ plugins: { policy: { RejectPlaintextPorts: [0] } } }), /^ConfigError: plugins\.policy\.RejectPlaintextPorts\.0: must be >= 1/);
  });

  test('OnionTrafficOnly with NoOnionTraffic, and all families off with onions off, are config errors', async () => {
    await assert.rejects(startProxy({ plugins: { policy: { OnionTrafficOnly: true, NoOnionTraffic: true } } }), /^ConfigError: plugins\.policy\.NoOnionTraffic: cannot be combined with OnionTrafficOnly/);
    await assert.rejects(startProxy({ plugins: { policy: { NoIPv4Traffic: true, IPv6Traffic: false, NoOnionTraffic: true } } }), /^ConfigError: plugins\.policy: NoIPv4Traffic, IPv6Traffic: false and NoOnionTraffic together allow no request at all$/);
  });

  test('socksmith --check reports a bad rule with exit 78 and one line naming the key', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-policy-'));
    try {
      const bad = path.join(dir, 'bad.json');
      const good = path.join(dir, 'good.json');
      fs.writeFileSync(bad, JSON.stringify({ plugins: { policy: { destinations: ['accept *:80', 'reject ::1'] } } }));
      fs.writeFileSync(good, JSON.stringify({ plugins: { policy: { destinations: ['reject private:*', 'accept *:*'], clients: ['accept 127.0.0.1', 'reject *'] } } }));
      const [r, ok] = await Promise.all([runCli(['--config', bad, '--check']), runCli(['--config', good, '--check'])]);
      assert.equal(r.code, 78);
      assert.equal(r.stderr, 'socksmith: config error: plugins.policy.destinations.1: "reject ::1": "::1": IPv6 addresses go in brackets, e.g. [::1]:80\n');
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
