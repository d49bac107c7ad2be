/**
 * `resolve-ptr` plugin: Tor's RESOLVE_PTR (F1), SOCKS5 reverse lookups (tor-socks.md a.5).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { toHex } from '../helpers/hex.js';
import { RawClient } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { ptrName, startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { startRecordingUpstream } from './helpers/recording-upstream.js';
import { req4, req5, zeroReply } from './helpers/socks.js';

let dns: TestDnsServer;
before(async () => {
  dns = await startDnsServer();
  dns.setPTR('10.1.2.3', ['host.example.test']);
  dns.setPTR('2001:db8::7', ['six.example.test']);
  dns.setPTR('127.0.0.1', ['loopback.example.test']);
  dns.setNxdomain(ptrName('10.9.9.9'));
});
after(async () => {
  await dns.close();
});

/** `05 00 00 03 LEN NAME 00 00`. */
function nameReply(name: string): string {
  const n = Buffer.from(name);
  return toHex(Buffer.concat([Buffer.from([5, 0, 0, 3, n.length]), n, Buffer.from([0, 0])]));
}

async function ptr5(port: number, host: string, asName = false): Promise<Buffer> {
  const c = await RawClient.connect(port);
  c.write(Buffer.from([5, 1, 0]));
  assert.equal(toHex(await c.read(2)), '05 00');
  c.write(req5(0xf1, host, 0, asName));
  const all = await c.readToEnd(5000); // closes after the reply
  c.destroy();
  return all;
}

test('ptrName builds in-addr.arpa and ip6.arpa names', () => {
  assert.equal(ptrName('10.1.2.3'), '3.2.1.10.in-addr.arpa');
  assert.equal(ptrName('2001:db8::7'), '7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
});

describe('resolve-ptr on', () => {
  let px: TestProxy;
  before(async () => {
    px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { 'resolve-ptr': true } });
  });
  after(async () => px.close());

  test('IPv4 target: exactly 05 00 00 03 LEN NAME 00 00, then close', async () => {
    dns.clearLog();
    assert.equal(toHex(await ptr5(px.port, '10.1.2.3')), nameReply('host.example.test'));
    assert.equal(dns.queriesFor(ptrName('10.1.2.3'), 'PTR').length, 1, 'one PTR query at the DNS server');
  });

  test('127.0.0.1 (listed in /etc/hosts): the answer comes from resolver.servers, which sees the PTR query', async () => {
    dns.clearLog();
    assert.equal(toHex(await ptr5(px.port, '127.0.0.1')), nameReply('loopback.example.test'));
    assert.equal(dns.queriesFor(ptrName('127.0.0.1'), 'PTR').length, 1, 'the configured DNS server was asked');
  });

  test('IPv6 target (ATYP 04 and a bracketed name): the PTR name', async () => {
    assert.equal(toHex(await ptr5(px.port, '2001:db8::7')), nameReply('six.example.test'));
    assert.equal(toHex(await ptr5(px.port, '[2001:db8::7]', true)), nameReply('six.example.test'));
  });

  test('no PTR record: 05 04 00 01 00*6, then close', async () => {
    assert.equal(toHex(await ptr5(px.port, '10.9.9.9')), zeroReply(4));
    assert.equal(toHex(await ptr5(px.port, '10.8.8.8')), zeroReply(4), 'unknown name: NXDOMAIN too');
  });

  test('a hostname target gets 05 08 00 01 00*6 and nothing reaches DNS', async () => {
    dns.clearLog();
    assert.equal(toHex(await ptr5(px.port, 'host.example.test')), zeroReply(8));
    assert.equal(toHex(await ptr5(px.port, 'abcdefghijklmnop.onion')), zeroReply(8));
    assert.deepEqual(dns.queries, []);
  });

  test('SOCKS4 F1 is refused with 00 5b 00*6 (Tor: SOCKS4 has no RESOLVE_PTR)', async () => {
    const c = await RawClient.connect(px.port);
    c.write(req4(0xf1, '10.1.2.3', 0));
    assert.equal(toHex(await c.readToEnd()), '00 5b 00 00 00 00 00 00');
    c.destroy();
  });
});

describe('resolve-ptr off', () => {
  test('F1 gets 05 07 00 01 00*6 and nothing reaches DNS', async () => {
    const px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { 'resolve-ptr': false } });
    try {
      dns.clearLog();
      assert.equal(toHex(await ptr5(px.port, '10.1.2.3')), zeroReply(7));
      assert.equal(toHex(await ptr5(px.port, 'host.example.test')), zeroReply(7));
      assert.deepEqual(dns.queries, []);
    } finally {
      await px.close();
    }
  });
});

describe("resolve-ptr with a socks5 upstream", () => {
  test("auto: forwarded as F1 (the upstream's name relayed, DNS untouched); mode 'local': the local DNS, upstream untouched", async () => {
    const up = await startRecordingUpstream({
      answer: (req) => (req.command === 0xf1 && req.host === '10.1.2.3' ? { rep: 0, bound: 'from-upstream.test' } : req.command === 0xf1 ? { rep: 4 } : undefined),
    });
    const upstream = { type: 'socks5' as const, host: '127.0.0.1', port: up.port };
    const auto = await startProxy({ resolver: { servers: [dns.address] }, upstream, plugins: { 'resolve-ptr': true } });
    const local = await startProxy({ resolver: { servers: [dns.address] }, upstream, plugins: { 'resolve-ptr': { mode: 'local' } } });
    try {
      dns.clearLog();
      assert.equal(toHex(await ptr5(auto.port, '10.1.2.3')), nameReply('from-upstream.test'));
      assert.equal(toHex(up.sessions[0]!.request!.raw), '05 f1 00 01 0a 01 02 03 00 00');
      assert.equal(toHex(await ptr5(auto.port, '10.9.9.9')), zeroReply(4), "the upstream's failure");
      assert.deepEqual(dns.queries, [], 'auto mode: no local DNS query');
      const n = up.sessions.length;
      assert.equal(toHex(await ptr5(local.port, '10.1.2.3')), nameReply('host.example.test'));
      assert.equal(up.sessions.length, n, 'local mode: the upstream was not asked');
      assert.equal(dns.queriesFor(ptrName('10.1.2.3'), 'PTR').length, 1);
    } finally {
      await auto.close();
      await local.close();
      await up.close();
    }
  });
});
