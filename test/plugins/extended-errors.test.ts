/**
 * `extended-errors` plugin: Tor's extended SOCKS5 reply codes F0–F7 (proposal 304,
 * tor-socks.md a.4). A recording socks5 upstream answers chosen names with chosen codes; a DNS
 * server's query log proves .onion names never reach DNS.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { onionAddressFromKey } from '../../plugins/extended-errors/onion.js';
import { EXTENDED_TO_RFC1928 } from '../../src/protocol/constants.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { startRecordingUpstream, type RecordingUpstream } from './helpers/recording-upstream.js';
import { readReply5, req4, req5, sleep, socks5Upstream, zeroReply } from './helpers/socks.js';

const CODES = [0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7];
/** The collapse table the issue fixes (must equal the kernel's EXTENDED_TO_RFC1928). */
const COLLAPSED: Record<number, number> = { 0xf0: 0x04, 0xf1: 0x01, 0xf2: 0x04, 0xf3: 0x04, 0xf4: 0x01, 0xf5: 0x01, 0xf6: 0x01, 0xf7: 0x04 };

function realKey(): Buffer {
  const { publicKey } = generateKeyPairSync('ed25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

const VALID = onionAddressFromKey(realKey());
const DUCKDUCKGO = 'duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion';

const sum = (pub: Buffer, version: number) => createHash('sha3-256').update('.onion checksum').update(pub).update(Buffer.from([version])).digest().subarray(0, 2);

/** `<base32(pub | checksum | version)>.onion`, checksum correct unless given. */
function onionOf(pub: Buffer, version: number, checksum: Buffer = sum(pub, version)): string {
  return `${b32(Buffer.concat([pub, checksum, Buffer.from([version])]))}.onion`;
}

/** 32 bytes that are not the encoding of any curve point (deterministic search). */
function notOnCurve(): Buffer {
  for (let i = 0; ; i++) {
    const y = createHash('sha256').update(`nc-${i}`).digest();
    y[31]! &= 0x7f;
    try {
      ed25519.Point.fromBytes(y);
    } catch {
      return y;
    }
  }
}

/** Invalid .onion names, one per kind of problem. */
function invalidOnions(): Record<string, string> {
  const label = VALID.slice(0, 56);
  const key = realKey();
  const good = sum(key, 3);
  return {
    'bad checksum': onionOf(key, 3, Buffer.from([good[0]! ^ 0xff, good[1]!])),
    'wrong length (v2, 16 chars)': 'expyuzz4wqqyqhjn.onion',
    'wrong length (55 chars)': `${label.slice(1)}.onion`,
    'version 2': onionOf(key, 2),
    'not base32': `1${label.slice(1)}.onion`,
    'key not on the curve': onionOf(notOnCurve(), 3),
    'small-order key': onionOf(Buffer.from('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'), 3),
    'two subdomains': `a.b.${VALID}`,
  };
}

function b32(bytes: Uint8Array): string {
  const A = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = '';
  for (const b of bytes) bits += b.toString(2).padStart(8, '0');
  while (bits.length % 5) bits += '0';
  let out = '';
  for (let i = 0; i < bits.length; i += 5) out += A[parseInt(bits.slice(i, i + 5), 2)];
  return out;
}

/** SOCKS5 CONNECT to `host:port`; returns everything until EOF (failure replies close) and the time taken. */
async function connect5(port: number, host: string, destPort = 80): Promise<{ bytes: Buffer; ms: number }> {
  const c = await RawClient.connect(port);
  const t0 = Date.now();
  c.write(Buffer.from([5, 1, 0]));
  assert.equal(toHex(await c.read(2)), '05 00');
  c.write(req5(1, host, destPort));
  const bytes = await c.readToEnd(5000);
  c.destroy();
  return { bytes, ms: Date.now() - t0 };
}

let dns: TestDnsServer;
let up: RecordingUpstream;
let echo: TestServer;
before(async () => {
  dns = await startDnsServer();
  echo = await startEchoServer();
  up = await startRecordingUpstream({
    answer: (req) => {
      const m = /^code-(f[0-7])\.test$/.exec(req.host);
      if (m) return { rep: parseInt(m[1]!, 16) };
      if (req.host.endsWith('.onion')) return { rep: 0xf2 }; // a valid onion the "Tor" upstream cannot reach
      return undefined;
    },
  });
});
after(async () => {
  await up.close();
  await echo.close();
  await dns.close();
});

test('the collapse table in the kernel is the one the issue fixes', () => {
  assert.deepEqual({ ...EXTENDED_TO_RFC1928 }, COLLAPSED);
});

describe('extended-errors on', () => {
  let viaUp: TestProxy;
  let direct: TestProxy;
  before(async () => {
    viaUp = await startProxy({ resolver: { servers: [dns.address] }, upstream: socks5Upstream(up.port), plugins: { 'extended-errors': true } });
    direct = await startProxy({ resolver: { servers: [dns.address] }, plugins: { 'extended-errors': true } });
  });
  after(async () => {
    await viaUp.close();
    await direct.close();
  });

  test('F0–F7 returned by the upstream reach the client unchanged', async () => {
    for (const code of CODES) {
      const name = `code-${code.toString(16)}.test`;
      const { bytes } = await connect5(viaUp.port, name);
      assert.equal(toHex(bytes), zeroReply(code), name);
    }
  });

  test('ordinary CONNECTs still work (the plugin only adds codes)', async () => {
    const c = await RawClient.connect(viaUp.port);
    c.write(Buffer.from([5, 1, 0]));
    await c.read(2);
    c.write(req5(1, 'localhost', echo.port));
    assert.equal((await readReply5(c))[1], 0);
    c.write('ok');
    assert.equal((await c.read(2)).toString(), 'ok');
    c.destroy();
  });

  test('an invalid .onion gets F6 at once, with no upstream contact (each kind of invalid)', async () => {
    const before = up.sessions.length;
    for (const [kind, name] of Object.entries(invalidOnions())) {
      const { bytes, ms } = await connect5(viaUp.port, name);
      assert.equal(toHex(bytes), zeroReply(0xf6), `${kind}: ${name}`);
      assert.ok(ms < 1000, `${kind}: at once (${ms} ms)`);
      const upper = await connect5(viaUp.port, `${name.toUpperCase()}.`);
      assert.equal(toHex(upper.bytes), zeroReply(0xf6), `${kind}, uppercase with trailing dot`);
    }
    await sleep(30);
    assert.equal(up.sessions.length, before, 'the upstream was never contacted');
  });

  test('an invalid .onion with the direct upstream gets F6 too; nothing reaches DNS', async () => {
    dns.clearLog();
    for (const [kind, name] of Object.entries(invalidOnions())) {
      assert.equal(toHex((await connect5(direct.port, name)).bytes), zeroReply(0xf6), kind);
    }
    assert.deepEqual(dns.queries, []);
  });

  test('validateOnion: false leaves the answer to the kernel, which still answers F6 before any upstream contact', async () => {
    const up0 = await startRecordingUpstream({ answer: () => ({ rep: 0 }) });
    const px = await startProxy({ upstream: socks5Upstream(up0.port), plugins: { 'extended-errors': { validateOnion: false } } });
    try {
      for (const [kind, name] of Object.entries(invalidOnions())) {
        assert.equal(toHex((await connect5(px.port, name)).bytes), zeroReply(0xf6), kind);
      }
      assert.equal(up0.sessions.length, 0);
    } finally {
      await px.close();
      await up0.close();
    }
  });

  test('a valid v3 onion (generated key, DuckDuckGo, sub., uppercase + trailing dot) with the direct upstream gets F0 and never reaches DNS', async () => {
    dns.clearLog();
    for (const name of [VALID, DUCKDUCKGO, `www.${VALID}`, `${VALID.toUpperCase()}.`]) {
      const { bytes, ms } = await connect5(direct.port, name);
      assert.equal(toHex(bytes), zeroReply(0xf0), name);
      assert.ok(ms < 1000, `${name}: at once (${ms} ms)`);
    }
    assert.deepEqual(dns.queries, [], 'the DNS server saw no query at all');
  });

  test('a valid v3 onion with a socks5 upstream is passed on, and the upstream\'s F2 reaches the client', async () => {
    const before = up.sessions.length;
    const { bytes } = await connect5(viaUp.port, DUCKDUCKGO, 443);
    assert.equal(toHex(bytes), zeroReply(0xf2));
    assert.equal(up.sessions[before]!.request!.host, DUCKDUCKGO);
  });

  test('SOCKS4 clients get 5b for any extended failure', async () => {
    const c = await RawClient.connect(viaUp.port);
    c.write(req4(1, 'code-f2.test', 80));
    assert.equal(toHex(await c.readToEnd()), '00 5b 00 00 00 00 00 00');
    c.destroy();
  });
});

describe('extended-errors off', () => {
  let viaUp: TestProxy;
  let direct: TestProxy;
  before(async () => {
    viaUp = await startProxy({ resolver: { servers: [dns.address] }, upstream: socks5Upstream(up.port), plugins: { 'extended-errors': false } });
    direct = await startProxy({ resolver: { servers: [dns.address] }, plugins: { 'extended-errors': false } });
  });
  after(async () => {
    await viaUp.close();
    await direct.close();
  });

  test('F0–F7 from the upstream collapse to RFC 1928 codes (F0→04 F1→01 F2→04 F3→04 F4→01 F5→01 F6→01 F7→04)', async () => {
    for (const code of CODES) {
      const name = `code-${code.toString(16)}.test`;
      const { bytes } = await connect5(viaUp.port, name);
      assert.equal(toHex(bytes), zeroReply(COLLAPSED[code]!), `${name} → ${COLLAPSED[code]}`);
    }
  });

  test('an invalid .onion with the direct upstream gets 01 at once (F6 collapsed, as Tor without ExtendedErrors), nothing reaches DNS', async () => {
    dns.clearLog();
    for (const [kind, name] of Object.entries(invalidOnions())) {
      const { bytes, ms } = await connect5(direct.port, name);
      assert.equal(toHex(bytes), zeroReply(1), kind);
      assert.ok(ms < 1000, `${kind}: at once`);
    }
    assert.equal(toHex((await connect5(direct.port, VALID)).bytes), zeroReply(4), 'a valid onion: 04 (the direct upstream cannot reach it)');
    assert.deepEqual(dns.queries, []);
  });

  test('issue #10: an invalid .onion with a socks5 upstream that would answer 00 gets 01 / 5B locally; nothing reaches the upstream', async () => {
    const up0 = await startRecordingUpstream({ answer: () => ({ rep: 0 }) });
    const px = await startProxy({ upstream: socks5Upstream(up0.port), plugins: { 'extended-errors': false } });
    try {
      for (const [kind, name] of Object.entries(invalidOnions())) {
        assert.equal(toHex((await connect5(px.port, name)).bytes), zeroReply(1), kind);
        const c = await RawClient.connect(px.port);
        c.write(req4(1, name, 80));
        assert.equal(toHex(await c.readToEnd()), '00 5b 00 00 00 00 00 00', `${kind} (SOCKS4a)`);
        c.destroy();
        // Spelled so that only normalisation sees the .onion: fullwidth dot and letters.
        const wide = name.replace(/\.onion$/, '．ｏｎｉｏｎ');
        assert.equal(toHex((await connect5(px.port, wide)).bytes), zeroReply(1), `${kind} (fullwidth)`);
      }
      assert.equal(up0.sessions.length, 0, 'no connection to the upstream');
      // A valid address is the upstream's business.
      const { bytes } = await connect5(px.port, VALID);
      assert.equal(bytes[1], 0);
      assert.equal(up0.sessions.length, 1);
      assert.equal(up0.sessions[0]!.request!.host, VALID);
    } finally {
      await px.close();
      await up0.close();
    }
  });
});
