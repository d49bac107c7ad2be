/**
 * `policy` plugin: Tor's SocksPort flags and ClientDNSRejectInternalAddresses over loopback
 * sockets (tor-socks.md a.4 and b; connection_edge.c `connection_ap_handshake_rewrite_and_attach`,
 * proto_socks.c `process_socks{4,5}_…_request`). Names resolve through a loopback DNS server.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import PolicyPlugin from '../../../plugins/policy/index.js';
import { validateOptions } from '../../../src/kernel/plugin-loader.js';
import { toHex } from '../../helpers/hex.js';
import { startEchoServer, type TestServer } from '../../helpers/net.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.js';
import { connectClient, readReply5, req4, req5, socks5Hello } from '../helpers/socks.js';
import { REJECTED4, echoes, linesStarting, once4, once5, open5, refusal5, spyConnects } from './kit.js';
import { type ConnectSpy, GUARDED } from './kit.js';

/** A valid v3 onion address (DuckDuckGo's), used as data only: nothing can reach it here. */
const ONION = 'duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion';

let dns: TestDnsServer;
let echo: TestServer & { connections: number };
let echo6: TestServer & { connections: number };
/** Installed for the whole file: no test here may connect outside loopback, whatever the proxy does. */
let guard: ConnectSpy;

before(async () => {
  guard = spyConnects();
  dns = await startDnsServer();
  dns.setA('safe.test', ['127.0.0.1']);
  dns.setA('dual.test', ['127.0.0.1']);
  dns.setAAAA('dual.test', ['::1']);
  dns.setA('v4only.test', ['127.0.0.1']);
  dns.setA('rebind.test', ['10.0.0.5']);
  dns.setA('split.test', ['10.0.0.5', '192.0.2.1']);
  dns.setPTR('127.0.0.1', ['loop.test']);
  dns.setPTR('192.0.2.1', ['public.test']);
  dns.setPTR('10.0.0.5', ['internal.test']);
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

/** Start a proxy with the loopback DNS server, resolve and resolve-ptr on, and these policy options. */
function withPolicy(policy: object, extra: object = {}): Promise<TestProxy> {
  return startProxy({ resolver: { servers: [dns.address] }, plugins: { resolve: true, 'resolve-ptr': true, policy, ...extra } });
}

describe('SafeSocks', () => {
  let px: TestProxy;
  before(async () => {
    px = await withPolicy({ SafeSocks: true });
  });
  after(async () => px.close());

  test('SOCKS5 CONNECT with ATYP 01 or 04: REP 02; SOCKS4 (not 4a): 5B; nothing connects', async () => {
    const before = echo.connections + echo6.connections;
    assert.equal(await once5(px.port, 1, '127.0.0.1', echo.port), refusal5(2));
    assert.equal(await once5(px.port, 1, '::1', echo6.port), refusal5(2));
    assert.equal(await once4(px.port, 1, '127.0.0.1', echo.port), REJECTED4);
    assert.equal(echo.connections + echo6.connections, before);
    const lines = linesStarting(px.logs, 'policy: request refused').filter((l) => l.reason === 'SafeSocks');
    assert.equal(lines.length, 3);
  });

  test('RESOLVE of an address is refused at parse time as in Tor: SOCKS5 REP 02 (not 04), SOCKS4 5B', async () => {
    assert.equal(await once5(px.port, 0xf0, '10.20.30.40', 0), refusal5(2));
    assert.equal(await once4(px.port, 0xf0, '10.20.30.40', 0), REJECTED4);
  });

  test('RESOLVE_PTR (an address by nature) is exempt', async () => {
    assert.equal(await once5(px.port, 0xf1, '127.0.0.1', 0), `05 00 00 03 09 ${toHex(Buffer.from('loop.test'))} 00 00`);
  });

  test('names are safe: SOCKS5 ATYP 03, SOCKS4a, and an address in a name field (Tor checks the ATYP only)', async () => {
    const a = await open5(px.port, 'safe.test', echo.port);
    await echoes(a);
    a.destroy();
    const b = await open5(px.port, '127.0.0.1', echo.port, true);
    await echoes(b);
    b.destroy();
    const c = await connectClient(px.port);
    c.write(req4(1, 'safe.test', echo.port));
    assert.equal(toHex(await c.read(8)), `00 5a 00 00 00 00 00 00`);
    await echoes(c);
    c.destroy();
  });
});

describe('TestSocks', () => {
  test('logs at info whether each request was safe (a name) or unsafe (an address), per protocol; nothing is refused', async () => {
    const px = await withPolicy({ TestSocks: true });
    try {
      for (const c of [await open5(px.port, '127.0.0.1', echo.port), await open5(px.port, 'safe.test', echo.port)]) {
        await echoes(c);
        c.destroy();
      }
      for (const host of ['127.0.0.1', 'safe.test']) {
        const c = await connectClient(px.port);
        c.write(req4(1, host, echo.port));
        assert.equal(toHex((await c.read(8)).subarray(0, 2)), '00 5a');
        c.destroy();
      }
      const seen = linesStarting(px.logs, 'TestSocks: ').map((l) => `${l.level} ${l.protocol} ${String(l.msg).startsWith('TestSocks: safe') ? 'safe' : 'unsafe'}`);
      assert.deepEqual(seen, ['info socks5 unsafe', 'info socks5 safe', 'info socks4 unsafe', 'info socks4a safe']);
    } finally {
      await px.close();
    }
  });
});

describe('NoDNSRequest', () => {
  let px: TestProxy;
  before(async () => {
    px = await withPolicy({ NoDNSRequest: true });
  });
  after(async () => px.close());

  test('CONNECT to a name: REP 02 and no DNS query; RESOLVE of a name: 04, as Tor answers a refused lookup', async () => {
    dns.clearLog();
    assert.equal(await once5(px.port, 1, 'safe.test', echo.port), refusal5(2));
    assert.equal(await once4(px.port, 1, 'safe.test', echo.port), REJECTED4);
    assert.equal(await once5(px.port, 0xf0, 'safe.test', 0), refusal5(4));
    assert.deepEqual(dns.queriesFor('safe.test'), []);
  });

  test('addresses still work', async () => {
    const c = await open5(px.port, '127.0.0.1', echo.port);
    await echoes(c);
    c.destroy();
  });
});

describe('NoOnionTraffic and OnionTrafficOnly', () => {
  test('NoOnionTraffic: .onion gets REP 02, ahead of extended-errors (which would answer F0 or F6); RESOLVE 04; names pass', async () => {
    const px = await withPolicy({ NoOnionTraffic: true }, { 'extended-errors': true });
    try {
      assert.equal(await once5(px.port, 1, ONION, 443), refusal5(2));
      assert.equal(await once5(px.port, 1, 'not-valid.onion', 443), refusal5(2));
      assert.equal(await once5(px.port, 0xf0, ONION, 0), refusal5(4));
      const c = await open5(px.port, 'safe.test', echo.port);
      await echoes(c);
      c.destroy();
    } finally {
      await px.close();
    }
  });

  test('without NoOnionTraffic the policy leaves .onion to extended-errors (F0 with the direct upstream)', async () => {
    const px = await withPolicy({}, { 'extended-errors': true });
    try {
      assert.equal(await once5(px.port, 1, ONION, 443), refusal5(0xf0));
    } finally {
      await px.close();
    }
  });

  test('OnionTrafficOnly: names, IPv4, IPv6 and an address in a name field get REP 02 (SOCKS4 5B); .onion passes to the upstream', async () => {
    const px = await withPolicy({ OnionTrafficOnly: true });
    try {
      assert.equal(await once5(px.port, 1, 'safe.test', echo.port), refusal5(2));
      assert.equal(await once5(px.port, 1, '127.0.0.1', echo.port), refusal5(2));
      assert.equal(await once5(px.port, 1, '::1', echo6.port), refusal5(2));
      assert.equal(await once5(px.port, 1, '127.0.0.1', echo.port, { asName: true }), refusal5(2));
      assert.equal(await once4(px.port, 1, '127.0.0.1', echo.port), REJECTED4);
      assert.equal(await once5(px.port, 0xf0, 'safe.test', 0), refusal5(4));
      const refused = linesStarting(px.logs, 'policy: request refused').length;
      // The direct upstream cannot reach onion services (04), but the policy let it through.
      assert.equal(await once5(px.port, 1, ONION, 443), refusal5(4));
      assert.equal(linesStarting(px.logs, 'policy: request refused').length, refused);
    } finally {
      await px.close();
    }
  });
});

describe('address families: NoIPv4Traffic, IPv6Traffic, PreferIPv6', () => {
  test('NoIPv4Traffic: IPv4 (also v4-mapped) literals get REP 02; a name uses only its IPv6 addresses and no A query is made', async () => {
    const px = await withPolicy({ NoIPv4Traffic: true });
    const spy = spyConnects();
    try {
      assert.equal(await once5(px.port, 1, '127.0.0.1', echo.port), refusal5(2));
      assert.equal(await once5(px.port, 1, '::ffff:7f00:1', echo.port), refusal5(2));
      const v6 = await open5(px.port, '::1', echo6.port);
      await echoes(v6);
      v6.destroy();
      dns.clearLog();
      const c = await open5(px.port, 'dual.test', echo6.port);
      await echoes(c);
      c.destroy();
      assert.deepEqual(spy.addressesFor('dual.test'), ['::1']);
      assert.deepEqual(dns.queriesFor('dual.test', 'A'), []);
      assert.equal(await once5(px.port, 1, 'v4only.test', echo.port), refusal5(4), 'no address of an allowed family: a failed lookup');
    } finally {
      spy.restore();
      await px.close();
    }
  });

  test('IPv6Traffic false: IPv6 literals get REP 02; a name uses only its IPv4 addresses', async () => {
    const px = await withPolicy({ IPv6Traffic: false });
    const spy = spyConnects();
    try {
      assert.equal(await once5(px.port, 1, '::1', echo6.port), refusal5(2));
      assert.equal(await once5(px.port, 1, '[::1]', echo6.port, { asName: true }), refusal5(2));
      const c = await open5(px.port, 'dual.test', echo.port);
      await echoes(c);
      c.destroy();
      assert.deepEqual(spy.addressesFor('dual.test'), ['127.0.0.1']);
    } finally {
      spy.restore();
      await px.close();
    }
  });

  test('PreferIPv6: IPv6 addresses are handed to node first (the resolver returns A first otherwise)', async () => {
    for (const [PreferIPv6, order] of [
      [true, ['::1', '127.0.0.1']],
      [false, ['127.0.0.1', '::1']],
    ] as const) {
      const px = await withPolicy({ PreferIPv6 });
      const spy = spyConnects();
      try {
        const c = await open5(px.port, 'dual.test', echo6.port);
        await echoes(c);
        c.destroy();
        assert.deepEqual(spy.addressesFor('dual.test'), order, `PreferIPv6 ${PreferIPv6}`);
        if (PreferIPv6) assert.equal(spy.attempts.filter((a) => a.host === 'dual.test')[0]?.address, '::1', 'tried first');
      } finally {
        spy.restore();
        await px.close();
      }
    }
  });
});

describe('RejectPlaintextPorts and WarnPlaintextPorts', () => {
  test('RejectPlaintextPorts: CONNECT to a listed port gets REP 02 (literal and name), with the warning when also in WarnPlaintextPorts', async () => {
    const px = await withPolicy({ RejectPlaintextPorts: [echo.port], WarnPlaintextPorts: [echo.port] });
    try {
      const before = echo.connections;
      assert.equal(await once5(px.port, 1, '127.0.0.1', echo.port), refusal5(2));
      assert.equal(await once5(px.port, 1, 'safe.test', echo.port), refusal5(2));
      assert.equal(echo.connections, before);
      const warn = linesStarting(px.logs, 'WarnPlaintextPorts:');
      assert.equal(warn.length, 2);
      assert.equal(warn[0]!.rejected, true);
      const other = await open5(px.port, '::1', echo6.port);
      await echoes(other);
      other.destroy();
    } finally {
      await px.close();
    }
  });

  test('WarnPlaintextPorts: a warning line, and the stream goes through', async () => {
    const px = await withPolicy({ WarnPlaintextPorts: [echo.port] });
    try {
      const c = await open5(px.port, '127.0.0.1', echo.port);
      await echoes(c);
      c.destroy();
      const warn = linesStarting(px.logs, 'WarnPlaintextPorts:');
      assert.equal(warn.length, 1);
      assert.equal(warn[0]!.level, 'warn');
      assert.equal(warn[0]!.port, echo.port);
      assert.equal(warn[0]!.rejected, false);
    } finally {
      await px.close();
    }
  });

  test("defaults: WarnPlaintextPorts is Tor's 23, 109, 110, 143; RejectPlaintextPorts is empty", async () => {
    const o = validateOptions(PolicyPlugin.meta.schema, {}, 'plugins.policy') as { WarnPlaintextPorts: number[]; RejectPlaintextPorts: number[] };
    assert.deepEqual(o.WarnPlaintextPorts, [23, 109, 110, 143]);
    assert.deepEqual(o.RejectPlaintextPorts, []);
    const px = await withPolicy({});
    try {
      const c = await connectClient(px.port);
      await socks5Hello(c);
      c.write(req5(1, '127.0.0.1', 23));
      await readReply5(c); // whatever the loopback port 23 answers
      c.destroy();
      assert.equal(linesStarting(px.logs, 'WarnPlaintextPorts:')[0]?.port, 23);
    } finally {
      await px.close();
    }
  });
});

describe('AllowNonRFC953Hostnames', () => {
  test('default false: a name outside [A-Za-z0-9._-] gets REP 01 (RESOLVE: 04) and never reaches DNS; underscores and IPv6 in brackets pass', async () => {
    const px = await withPolicy({});
    try {
      dns.clearLog();
      assert.equal(await once5(px.port, 1, 'bad!name.test', 80), refusal5(1));
      assert.equal(await once4(px.port, 1, 'bad!name.test', 80), REJECTED4);
      assert.equal(await once5(px.port, 0xf0, 'bad!name.test', 0), refusal5(4));
      assert.equal(dns.queries.length, 0);
      // The check runs on the normalised name (issue #10): a space never normalises (REP 04 from
      // the kernel, before any plugin), and a UTF-8 IDN is checked in its xn-- form, the name a
      // resolver would be asked for.
      assert.equal(await once5(px.port, 1, 'bad name.test', 80), refusal5(4));
      assert.equal(dns.queries.length, 0);
      assert.equal(await once4(px.port, 1, 'bäd.test', 80), REJECTED4, 'NXDOMAIN');
      assert.deepEqual([...new Set(dns.queries.map((q) => q.name))], ['xn--bd-via.test']);
      dns.clearLog();
      assert.equal(await once5(px.port, 1, 'Under_score-OK.test', 80), refusal5(4), 'allowed: NXDOMAIN from the DNS server');
      assert.equal(dns.queriesFor('under_score-ok.test').length > 0, true);
      const c = await open5(px.port, '[::1]', echo6.port, true);
      await echoes(c);
      c.destroy();
      assert.deepEqual(
        linesStarting(px.logs, 'policy: request refused').map((l) => l.reason),
        ['AllowNonRFC953Hostnames', 'AllowNonRFC953Hostnames', 'AllowNonRFC953Hostnames'],
      );
    } finally {
      await px.close();
    }
  });

  test('true: such names go on to the resolver like any other', async () => {
    const px = await withPolicy({ AllowNonRFC953Hostnames: true });
    try {
      const reply = await once5(px.port, 1, 'bad!name.test', 80);
      assert.notEqual(reply, refusal5(1));
      assert.equal(linesStarting(px.logs, 'policy: request refused').length, 0);
    } finally {
      await px.close();
    }
  });
});

describe('ClientDNSRejectInternalAddresses', () => {
  let px: TestProxy;
  before(async () => {
    px = await withPolicy({ ClientDNSRejectInternalAddresses: true });
  });
  after(async () => px.close());

  test('CONNECT to a name that resolves only to internal addresses: REP 04, and node is never handed them', async () => {
    const spy = spyConnects();
    try {
      assert.equal(await once5(px.port, 1, 'rebind.test', 80), refusal5(4));
      assert.equal(await once5(px.port, 1, 'safe.test', echo.port), refusal5(4), '127.0.0.1 is internal too');
    } finally {
      spy.restore();
    }
    assert.deepEqual(spy.addressesFor('rebind.test'), []);
    assert.deepEqual(spy.addressesFor('safe.test'), []);
    assert.deepEqual(spy.guarded, []);
  });

  test('RESOLVE drops internal answers: split.test (10.0.0.5, 192.0.2.1) → 192.0.2.1; only internal → 04', async () => {
    assert.equal(await once5(px.port, 0xf0, 'split.test', 0), '05 00 00 01 c0 00 02 01 00 00');
    assert.equal(await once5(px.port, 0xf0, 'rebind.test', 0), refusal5(4));
  });

  test('RESOLVE_PTR of an internal address fails at once with 04 and no PTR query; a public one is answered', async () => {
    dns.clearLog();
    assert.equal(await once5(px.port, 0xf1, '10.0.0.5', 0), refusal5(4));
    assert.equal(dns.queries.length, 0);
    assert.equal(await once5(px.port, 0xf1, '192.0.2.1', 0), `05 00 00 03 0b ${toHex(Buffer.from('public.test'))} 00 00`);
  });

  test('an address literal is not a DNS answer: CONNECT 127.0.0.1 still works', async () => {
    const c = await open5(px.port, '127.0.0.1', echo.port);
    await echoes(c);
    c.destroy();
  });
});
