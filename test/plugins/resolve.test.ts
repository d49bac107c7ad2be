/**
 * `resolve` plugin: Tor's RESOLVE (F0) over SOCKS4, SOCKS4a and SOCKS5 (tor-socks.md a.5).
 * Names go to a loopback dns2 server whose query log proves what reached DNS.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { toHex } from '../helpers/hex.js';
import { RawClient } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { startRecordingUpstream, type RecordingUpstream } from './helpers/recording-upstream.js';
import { req4, req5, sleep, zeroReply } from './helpers/socks.js';

let dns: TestDnsServer;
before(async () => {
  dns = await startDnsServer();
  dns.setA('example.test', ['10.1.2.3']);
  dns.setA('dual.test', ['10.1.2.4']);
  dns.setAAAA('dual.test', ['2001:db8::4']);
  dns.setAAAA('only6.test', ['2001:db8::6']);
  dns.setA('cached.test', (n) => [`10.2.0.${n}`], 300);
  dns.setA('shortttl.test', (n) => [`10.3.0.${n}`], 1);
  dns.setNxdomain('nx.test');
});
after(async () => {
  await dns.close();
});

const upstreamConfig = (port: number) => ({ type: 'socks5' as const, host: '127.0.0.1', port });

/** Send a SOCKS5 RESOLVE (`05 F0 00 03 LEN NAME 00 00` or a literal ATYP) and return everything until EOF. */
async function resolve5(port: number, host: string, opts: { asName?: boolean; cmd?: number } = {}): Promise<{ reply: Buffer; ms: number }> {
  const c = await RawClient.connect(port);
  const t0 = Date.now();
  c.write(Buffer.from([5, 1, 0]));
  assert.equal(toHex(await c.read(2)), '05 00');
  c.write(req5(opts.cmd ?? 0xf0, host, 0, opts.asName));
  // The proxy closes after the reply: reading to EOF proves it and catches stray bytes.
  const reply = await c.readToEnd(5000);
  const ms = Date.now() - t0;
  c.destroy();
  return { reply, ms };
}

/** Send a SOCKS4 / SOCKS4a RESOLVE and return everything until EOF. */
async function resolve4(port: number, host: string, userId = ''): Promise<Buffer> {
  const c = await RawClient.connect(port);
  c.write(req4(0xf0, host, 0, userId));
  const reply = await c.readToEnd(5000);
  c.destroy();
  return reply;
}

describe('resolve on, direct upstream (local resolver = the loopback DNS server)', () => {
  let px: TestProxy;
  before(async () => {
    px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { resolve: true } });
  });
  after(async () => px.close());

  test('SOCKS5 RESOLVE of a name: exactly 05 00 00 01 A B C D 00 00, then the connection closes', async () => {
    const { reply } = await resolve5(px.port, 'example.test');
    assert.equal(toHex(reply), '05 00 00 01 0a 01 02 03 00 00');
    assert.ok(dns.queriesFor('example.test', 'A').length >= 1, 'the DNS server was asked');
  });

  test('SOCKS4a RESOLVE of a name: exactly 00 5a 00 00 A B C D, then the connection closes', async () => {
    const reply = await resolve4(px.port, 'example.test');
    assert.equal(toHex(reply), '00 5a 00 00 0a 01 02 03');
  });

  test('SOCKS4 RESOLVE of an IPv4 (plain SOCKS4 form) is answered locally: 00 5a 00 00 + the same address, no DNS', async () => {
    dns.clearLog();
    const reply = await resolve4(px.port, '10.20.30.40');
    assert.equal(toHex(reply), '00 5a 00 00 0a 14 1e 28');
    assert.equal(dns.queries.length, 0, 'no DNS query for an IP literal');
  });

  test('SOCKS5 RESOLVE of IP literals (ATYP 01, ATYP 04, name-typed v4, [v6] and bare v6) is answered locally, no DNS', async () => {
    dns.clearLog();
    assert.equal(toHex((await resolve5(px.port, '10.20.30.40')).reply), '05 00 00 01 0a 14 1e 28 00 00');
    assert.equal(toHex((await resolve5(px.port, '2001:db8::1')).reply), '05 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 00 00');
    assert.equal(toHex((await resolve5(px.port, '10.20.30.41', { asName: true })).reply), '05 00 00 01 0a 14 1e 29 00 00');
    assert.equal(toHex((await resolve5(px.port, '[2001:db8::2]', { asName: true })).reply), '05 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02 00 00');
    assert.equal(toHex((await resolve5(px.port, '2001:db8::3', { asName: true })).reply), '05 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 03 00 00');
    assert.deepEqual(dns.queries, [], 'the DNS server saw no query');
  });

  test('answers are cached by TTL: a second RESOLVE within the TTL asks DNS no more and gets the same answer', async () => {
    const first = await resolve5(px.port, 'cached.test');
    const second = await resolve5(px.port, 'cached.test');
    assert.equal(toHex(first.reply), '05 00 00 01 0a 02 00 01 00 00');
    assert.equal(toHex(second.reply), '05 00 00 01 0a 02 00 01 00 00', 'the cached answer, not the next one the server would give');
    assert.equal(dns.queriesFor('cached.test', 'A').length, 1, 'one A query for two RESOLVEs');
    // SOCKS4a asks for IPv4 only (its own cache entry); it is cached as well.
    const v4a = await resolve4(px.port, 'cached.test');
    const v4b = await resolve4(px.port, 'cached.test');
    assert.equal(toHex(v4a.subarray(0, 4)), '00 5a 00 00');
    assert.deepEqual(v4b, v4a, 'SOCKS4a: same answer the second time');
    assert.ok(dns.queriesFor('cached.test', 'A').length <= 2, 'at most one more A query for the IPv4-only lookup');
  });

  test('an answer with TTL 1 s expires: after the TTL the name is asked again and the new answer is returned', async () => {
    const a = await resolve5(px.port, 'shortttl.test');
    assert.equal(toHex(a.reply), '05 00 00 01 0a 03 00 01 00 00');
    const b = await resolve5(px.port, 'shortttl.test');
    assert.equal(toHex(b.reply), '05 00 00 01 0a 03 00 01 00 00', 'within the TTL: cached');
    assert.equal(dns.queriesFor('shortttl.test', 'A').length, 1);
    await sleep(1150);
    const c = await resolve5(px.port, 'shortttl.test');
    assert.equal(toHex(c.reply), '05 00 00 01 0a 03 00 02 00 00', 'after the TTL: asked again');
    assert.equal(dns.queriesFor('shortttl.test', 'A').length, 2);
  });

  test('a failed lookup: SOCKS5 05 04 00 01 00*6, SOCKS4a 00 5b 00*6, each followed by close', async () => {
    assert.equal(toHex((await resolve5(px.port, 'nx.test')).reply), zeroReply(4));
    assert.equal(toHex(await resolve4(px.port, 'nx.test')), '00 5b 00 00 00 00 00 00');
    assert.ok(dns.queriesFor('nx.test').length >= 1, 'the DNS server was asked (and said NXDOMAIN)');
  });

  test('IPv4 is preferred by default when a name has both families; an IPv6-only name gives ATYP 04 to SOCKS5 and 5b to SOCKS4a', async () => {
    assert.equal(toHex((await resolve5(px.port, 'dual.test')).reply), '05 00 00 01 0a 01 02 04 00 00');
    assert.equal(toHex((await resolve5(px.port, 'only6.test')).reply), '05 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 06 00 00');
    assert.equal(toHex(await resolve4(px.port, 'only6.test')), '00 5b 00 00 00 00 00 00');
  });

  test('.onion names (any case, trailing dot) fail at once and never reach DNS', async () => {
    dns.clearLog();
    const names = ['abcdefghijklmnop.onion', 'Duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.ONION.', 'x.y.OnIoN', 'onion.', 'a.onion.'];
    for (const n of names) {
      const { reply, ms } = await resolve5(px.port, n);
      assert.equal(toHex(reply), zeroReply(4), n);
      assert.ok(ms < 1000, `${n}: answered at once (${ms} ms)`);
      assert.equal(toHex(await resolve4(px.port, n)), '00 5b 00 00 00 00 00 00', `${n} over SOCKS4a`);
    }
    assert.deepEqual(
      dns.queries.filter((q) => q.name.includes('onion')),
      [],
      'the DNS query log has no .onion name',
    );
    assert.deepEqual(dns.queries, [], 'no DNS query at all');
  });
});

describe('resolve on, IPv6 preference and family options', () => {
  test('PreferIPv6: SOCKS5 gets the IPv6 answer (ATYP 04); SOCKS4a still gets IPv4', async () => {
    const px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { resolve: { PreferIPv6: true } } });
    try {
      assert.equal(toHex((await resolve5(px.port, 'dual.test')).reply), '05 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 04 00 00');
      assert.equal(toHex(await resolve4(px.port, 'dual.test')), '00 5a 00 00 0a 01 02 04');
      assert.equal(toHex((await resolve5(px.port, 'example.test')).reply), '05 00 00 01 0a 01 02 03 00 00', 'no IPv6 answer: IPv4');
    } finally {
      await px.close();
    }
  });

  test('IPv6Traffic off: an IPv6-only name fails, a dual name answers IPv4, an IPv6 literal fails', async () => {
    const px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { resolve: { IPv6Traffic: false } } });
    try {
      assert.equal(toHex((await resolve5(px.port, 'only6.test')).reply), zeroReply(4));
      assert.equal(toHex((await resolve5(px.port, 'dual.test')).reply), '05 00 00 01 0a 01 02 04 00 00');
      assert.equal(toHex((await resolve5(px.port, '2001:db8::1')).reply), zeroReply(4));
    } finally {
      await px.close();
    }
  });

  test('IPv4Traffic off: an IPv4-only name fails, a dual name answers IPv6', async () => {
    const px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { resolve: { IPv4Traffic: false } } });
    try {
      assert.equal(toHex((await resolve5(px.port, 'example.test')).reply), zeroReply(4));
      assert.equal(toHex((await resolve5(px.port, 'dual.test')).reply), '05 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 04 00 00');
      assert.equal(toHex(await resolve4(px.port, 'example.test')), '00 5b 00 00 00 00 00 00');
    } finally {
      await px.close();
    }
  });
});

describe('resolve on, socks5 upstream', () => {
  let up: RecordingUpstream;
  let px: TestProxy;
  before(async () => {
    up = await startRecordingUpstream({
      answer: (req) => {
        if (req.command === 0xf0 && req.host === 'up.test') return { rep: 0, bound: '10.7.7.7' };
        if (req.command === 0xf0 && req.host === 'up6.test') return { rep: 0, bound: '2001:db8::77' };
        if (req.command === 0xf0 && req.host === 'upfail.test') return { rep: 4 };
        // Tor's own RESOLVE failure is malformed (ATYP 00, tor-socks.md a.5).
        if (req.command === 0xf0 && req.host === 'torfail.test') return { rep: 4, raw: Buffer.from('05040000000000000000', 'hex') };
        if (req.command === 0xf1 && req.host === '10.7.7.7') return { rep: 0, bound: 'ptr.up.test' };
        return undefined;
      },
    });
    px = await startProxy({ resolver: { servers: [dns.address] }, upstream: upstreamConfig(up.port), plugins: { resolve: true, 'resolve-ptr': true } });
  });
  after(async () => {
    await px.close();
    await up.close();
  });

  test('SOCKS5 RESOLVE is forwarded to the upstream as F0 (ATYP 03, port 0), its answer relayed; DNS sees nothing', async () => {
    dns.clearLog();
    const before = up.sessions.length;
    const { reply } = await resolve5(px.port, 'up.test');
    assert.equal(toHex(reply), '05 00 00 01 0a 07 07 07 00 00');
    const s = up.sessions[before]!;
    assert.equal(toHex(s.request!.raw), '05 f0 00 03 07 75 70 2e 74 65 73 74 00 00', 'the upstream got F0 for the name');
    assert.deepEqual(dns.queries, [], 'no local DNS query');
  });

  test('an IPv6 answer from the upstream is relayed as ATYP 04', async () => {
    const { reply } = await resolve5(px.port, 'up6.test');
    assert.equal(toHex(reply), '05 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 77 00 00');
  });

  test('SOCKS4a RESOLVE is forwarded as SOCKS5 F0 too and answered in SOCKS4 form', async () => {
    dns.clearLog();
    const before = up.sessions.length;
    assert.equal(toHex(await resolve4(px.port, 'up.test')), '00 5a 00 00 0a 07 07 07');
    assert.equal(up.sessions[before]!.request!.command, 0xf0);
    assert.equal(up.sessions[before]!.request!.host, 'up.test');
    assert.deepEqual(dns.queries, []);
  });

  test("the upstream's failure is relayed: 05 04 00 01 00*6, SOCKS4a 00 5b", async () => {
    assert.equal(toHex((await resolve5(px.port, 'upfail.test')).reply), zeroReply(4));
    assert.equal(toHex(await resolve4(px.port, 'upfail.test')), '00 5b 00 00 00 00 00 00');
  });

  test("Tor's malformed failure (05 04 00 00 00*6) from the upstream reaches the client well-formed: 05 04 00 01 00*6", async () => {
    assert.equal(toHex((await resolve5(px.port, 'torfail.test')).reply), zeroReply(4));
    assert.equal(toHex(await resolve4(px.port, 'torfail.test')), '00 5b 00 00 00 00 00 00');
  });

  test('an unreachable upstream: RESOLVE fails with 05 04 00 01 00*6 / 00 5b and DNS is not used instead', async () => {
    const gone = await startRecordingUpstream();
    const port = gone.port;
    await gone.close();
    const px2 = await startProxy({ resolver: { servers: [dns.address] }, upstream: upstreamConfig(port), plugins: { resolve: true } });
    try {
      dns.clearLog();
      assert.equal(toHex((await resolve5(px2.port, 'example.test')).reply), zeroReply(4));
      assert.equal(toHex(await resolve4(px2.port, 'example.test')), '00 5b 00 00 00 00 00 00');
      assert.deepEqual(dns.queries, [], 'no fallback to local DNS (that would leak the name)');
    } finally {
      await px2.close();
    }
  });

  test('RESOLVE_PTR is forwarded to the upstream as F1 and its name relayed as ATYP 03; DNS sees nothing', async () => {
    dns.clearLog();
    const before = up.sessions.length;
    const { reply } = await resolve5(px.port, '10.7.7.7', { cmd: 0xf1 });
    assert.equal(toHex(reply), toHex(Buffer.concat([Buffer.from([5, 0, 0, 3, 11]), Buffer.from('ptr.up.test'), Buffer.from([0, 0])])));
    assert.equal(toHex(up.sessions[before]!.request!.raw), '05 f1 00 01 0a 07 07 07 00 00');
    assert.deepEqual(dns.queries, []);
  });

  test('.onion RESOLVE fails at once without contacting the upstream', async () => {
    const before = up.sessions.length;
    assert.equal(toHex((await resolve5(px.port, 'abcdefghijklmnop.onion')).reply), zeroReply(4));
    assert.equal(toHex(await resolve4(px.port, 'ABCDEFGHIJKLMNOP.onion.')), '00 5b 00 00 00 00 00 00');
    await sleep(50);
    assert.equal(up.sessions.length, before, 'the upstream was not contacted');
  });

  test('an IP literal RESOLVE is answered locally, without the upstream', async () => {
    const before = up.sessions.length;
    assert.equal(toHex((await resolve5(px.port, '10.20.30.40')).reply), '05 00 00 01 0a 14 1e 28 00 00');
    assert.equal(up.sessions.length, before);
  });
});

describe("resolve mode 'local' with a socks5 upstream", () => {
  test('names go to the local DNS server, never to the upstream', async () => {
    const up = await startRecordingUpstream({ answer: () => ({ rep: 0, bound: '10.99.99.99' }) });
    const px = await startProxy({ resolver: { servers: [dns.address] }, upstream: upstreamConfig(up.port), plugins: { resolve: { mode: 'local' } } });
    try {
      dns.clearLog();
      assert.equal(toHex((await resolve5(px.port, 'example.test')).reply), '05 00 00 01 0a 01 02 03 00 00');
      assert.equal(toHex(await resolve4(px.port, 'example.test')), '00 5a 00 00 0a 01 02 03');
      assert.ok(dns.queriesFor('example.test').length >= 1, 'the local DNS server was asked');
      assert.equal(up.sessions.length, 0, 'the upstream never saw a request');
    } finally {
      await px.close();
      await up.close();
    }
  });
});

describe('resolve off', () => {
  test('F0 gets 05 07 00 01 00*6 (SOCKS5) and 00 5b 00*6 (SOCKS4/4a); nothing reaches DNS', async () => {
    const px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { resolve: false } });
    try {
      dns.clearLog();
      assert.equal(toHex((await resolve5(px.port, 'example.test')).reply), zeroReply(7));
      assert.equal(toHex((await resolve5(px.port, '10.20.30.40')).reply), zeroReply(7));
      assert.equal(toHex(await resolve4(px.port, 'example.test')), '00 5b 00 00 00 00 00 00');
      assert.equal(toHex(await resolve4(px.port, '10.20.30.40')), '00 5b 00 00 00 00 00 00');
      assert.deepEqual(dns.queries, []);
    } finally {
      await px.close();
    }
  });

  test('off with a socks5 upstream: F0 gets 07 and the upstream is not asked', async () => {
    const up = await startRecordingUpstream({ answer: () => ({ rep: 0, bound: '10.99.99.99' }) });
    const px = await startProxy({ upstream: upstreamConfig(up.port), plugins: { resolve: false } });
    try {
      assert.equal(toHex((await resolve5(px.port, 'example.test')).reply), zeroReply(7));
      assert.equal(up.sessions.length, 0);
    } finally {
      await px.close();
      await up.close();
    }
  });
});
