/**
 * Issue #10, items 3 and 4: destination names are normalised once where they enter, and every
 * check sees that one form.
 *
 * - Item 3: `.onion` spelled with IDN tricks (fullwidth letters and dots, `。` `｡`, soft hyphen,
 *   `º`, zero-width and variation selectors, `ⓞ`, latin-1 bytes on HTTP CONNECT) used to pass
 *   `isOnionName` raw and then be folded to `x.onion` by Node's resolver (UTS-46), which queried it.
 *   Every path (SOCKS5 CONNECT, SOCKS5 RESOLVE F0, SOCKS4a CONNECT, SOCKS4a F0, HTTP CONNECT) is
 *   driven with the system resolver and with `resolver.servers`; a property test (fast-check, fixed
 *   seed) generates spellings whose normalised form ends in `.onion` and proves none reaches a
 *   resolver.
 *   - `resolver.servers`: a loopback DNS server records every query it receives.
 *   - system resolver, in-process: `dns.lookup` and `dns.promises.lookup` (what the resolver
 *     service and node:net call to reach getaddrinfo) are replaced by recorders that answer
 *     ENOTFOUND, so the test sees every name socksmith asks the system resolver for, and nothing
 *     can ever leave the machine.
 *   - system resolver, on the wire: the CLI runs in a mount namespace whose /etc/resolv.conf names
 *     127.0.0.1, where a recording DNS server listens on port 53; no packet may arrive.
 * - Item 4: a name that is an IP literal in any spelling is an IP literal for the destination
 *   policy (`0x7f.1`, `2130706433`, `127.1`, `0177.0.0.1`, fullwidth digits, brackets,
 *   IPv4-mapped); IPv6 zone ids (`::1%lo`) are refused (REP 04 / 5B), never connected to.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { CLI, ROOT } from '../helpers/cli.js';
import { normalizeHost } from '../../src/protocol/names.js';
import { onionAddressFromKey } from '../../src/protocol/onion.js';
import { startDnsServer, type TestDnsServer } from '../plugins/helpers/dns-server.js';
import { startRecordingUpstream } from '../plugins/helpers/recording-upstream.js';
import { req4, req5, sleep, socks5Upstream } from '../plugins/helpers/socks.js';

/** A valid v3 address (a real ed25519 key): the direct upstream answers it with 04, the kernel does not refuse it as invalid. */
const VALID = onionAddressFromKey(
  (() => {
    const der = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
    return Buffer.from(der.subarray(der.length - 32));
  })(),
);
const LABEL = VALID.slice(0, 56);

/** The leaking spellings of `<56 chars>.onion`. */
const VARIANTS: Record<string, string> = {
  'fullwidth letters': `${LABEL}.ｏｎｉｏｎ`,
  'fullwidth dot': `${LABEL}．onion`,
  'ideographic full stop 。': `${LABEL}。onion`,
  'halfwidth ideographic full stop ｡': `${LABEL}｡onion`,
  'soft hyphen U+00AD': `${LABEL}.on\u00adion`,
  'masculine ordinal º': `${LABEL}.ºnion`,
  'zero-width space U+200B': `${LABEL}.onion\u200b`,
  'combining grapheme joiner U+034F': `${LABEL}.oni\u034fon`,
  'variation selector U+FE0F': `${LABEL}.onion\ufe0f`,
  'circled ⓞ': `${LABEL}.ⓞnion`,
  'upper case, trailing 。': `${LABEL.toUpperCase()}.ONION。`,
};

/** Latin-1 bytes an HTTP CONNECT request line can carry (the plugin decodes the head as latin-1). */
// `www.` in front: names not asked before in this file, so no cached answer can hide a lookup.
const HTTP_VARIANTS: Record<string, string> = {
  'soft hyphen byte 0xAD': `www.${LABEL}.on\u00adion`,
  'masculine ordinal byte 0xBA': `www.${LABEL}.\u00banion`,
};

// ---- what the process asks of the system resolver ----------------------------------------------

type LookupCb = (err: NodeJS.ErrnoException | null, address?: unknown, family?: number) => void;

/** Replace dns.lookup / dns.promises.lookup with recorders that answer names with ENOTFOUND (never the host's resolver); IP literals pass. */
function recordSystemLookups(): { names: string[]; restore(): void } {
  const names: string[] = [];
  const cbApi = dns as unknown as { lookup: (...a: unknown[]) => void };
  const promiseApi = dns.promises as unknown as { lookup: (...a: unknown[]) => Promise<unknown> };
  const originalCb = cbApi.lookup;
  const originalPromise = promiseApi.lookup;
  const notFound = (name: string) => Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND', hostname: name });
  cbApi.lookup = (name: unknown, ...rest: unknown[]) => {
    // IP literals (server.listen('127.0.0.1') looks its host up) are no question to a resolver.
    if (net.isIP(String(name)) !== 0) return originalCb.call(dns, name, ...rest);
    names.push(String(name));
    const cb = rest[rest.length - 1] as LookupCb;
    setImmediate(() => cb(notFound(String(name))));
  };
  promiseApi.lookup = (name: unknown, ...rest: unknown[]) => {
    if (net.isIP(String(name)) !== 0) return originalPromise.call(dns.promises, name, ...rest);
    names.push(String(name));
    return Promise.reject(notFound(String(name)));
  };
  return {
    names,
    restore() {
      cbApi.lookup = originalCb;
      promiseApi.lookup = originalPromise;
    },
  };
}

// ---- one request per front end, read to EOF ----------------------------------------------------

type Path = 'socks5 CONNECT' | 'socks5 RESOLVE' | 'socks4a CONNECT' | 'socks4a RESOLVE' | 'http CONNECT';
const SOCKS_PATHS: readonly Path[] = ['socks5 CONNECT', 'socks5 RESOLVE', 'socks4a CONNECT', 'socks4a RESOLVE'];

/** Send `host` on `path`; resolves with everything the proxy sent until it closed. */
async function ask(port: number, p: Path, host: string | Buffer): Promise<Buffer> {
  const c = await RawClient.connect(port);
  try {
    const name = typeof host === 'string' ? host : host.toString('latin1');
    switch (p) {
      case 'socks5 CONNECT':
      case 'socks5 RESOLVE':
        c.write(Buffer.concat([Buffer.from([5, 1, 0]), req5(p === 'socks5 CONNECT' ? 1 : 0xf0, name, p === 'socks5 CONNECT' ? 80 : 0, true)]));
        break;
      case 'socks4a CONNECT':
      case 'socks4a RESOLVE':
        c.write(req4(p === 'socks4a CONNECT' ? 1 : 0xf0, name, p === 'socks4a CONNECT' ? 80 : 0));
        break;
      case 'http CONNECT':
        c.write(Buffer.concat([Buffer.from('CONNECT '), typeof host === 'string' ? Buffer.from(host, 'latin1') : host, Buffer.from(':80 HTTP/1.1\r\n\r\n')]));
        break;
    }
    return await c.readToEnd(5000);
  } finally {
    c.destroy();
  }
}

/** True when the proxy's answer on `path` is a refusal (no success, no tunnel). */
function refused(p: Path, bytes: Buffer): boolean {
  if (p === 'http CONNECT') return !bytes.toString('latin1').startsWith('HTTP/1.0 200');
  if (p.startsWith('socks5')) return toHex(bytes.subarray(0, 2)) === '05 00' && bytes.length >= 4 && bytes[2] === 5 && bytes[3] !== 0; // after the method reply 05 00
  return toHex(bytes) === '00 5b 00 00 00 00 00 00';
}

/** socks5 answers start with the method reply `05 00`; strip it. */
function answerOf(p: Path, bytes: Buffer): Buffer {
  return p.startsWith('socks5') ? bytes.subarray(2) : bytes;
}

const PLUGINS = { resolve: true, 'http-detect': { mode: 'tunnel' as const } };

let dnsServer: TestDnsServer;
let viaServers: TestProxy;
let viaSystem: TestProxy;
let system: ReturnType<typeof recordSystemLookups>;

before(async () => {
  dnsServer = await startDnsServer();
  dnsServer.setA('control.test', ['127.0.0.1']);
  system = recordSystemLookups();
  viaServers = await startProxy({ log: { level: 'silent' }, resolver: { servers: [dnsServer.address] }, plugins: PLUGINS });
  viaSystem = await startProxy({ log: { level: 'silent' }, plugins: PLUGINS });
});
after(async () => {
  await viaServers.close();
  await viaSystem.close();
  system.restore();
  await dnsServer.close();
});

describe('issue #10 item 3: .onion in IDN spellings never reaches a resolver', () => {
  test('control: a plain name does reach both resolvers (so the recorders would see a leak)', async () => {
    dnsServer.clearLog();
    system.names.length = 0;
    await ask(viaServers.port, 'socks5 RESOLVE', 'control.test');
    await ask(viaSystem.port, 'socks5 RESOLVE', 'Ｃontrol.test');
    assert.ok(dnsServer.queriesFor('control.test').length > 0);
    assert.deepEqual(system.names, ['control.test'], 'the system resolver is asked for the normalised name');
  });

  for (const [kind, name] of Object.entries(VARIANTS)) {
    test(`${kind}: refused on SOCKS5 CONNECT, RESOLVE, SOCKS4a CONNECT, RESOLVE; no query to either resolver`, async () => {
      assert.ok(normalizeHost(name)!.replace(/\.$/, '').endsWith('.onion'), 'the spelling normalises to .onion');
      dnsServer.clearLog();
      system.names.length = 0;
      for (const proxy of [viaServers, viaSystem]) {
        for (const p of SOCKS_PATHS) {
          const bytes = await ask(proxy.port, p, name);
          assert.ok(refused(p, bytes), `${p}: refused (got ${toHex(bytes)})`);
          if (p.startsWith('socks5')) assert.equal(toHex(answerOf(p, bytes)), '05 04 00 01 00 00 00 00 00 00', `${p}: REP 04`);
        }
      }
      assert.deepEqual(dnsServer.queries, []);
      assert.deepEqual(system.names, []);
    });
  }

  for (const [kind, name] of Object.entries(HTTP_VARIANTS)) {
    test(`HTTP CONNECT with the latin-1 ${kind}: refused (404), no query`, async () => {
      dnsServer.clearLog();
      system.names.length = 0;
      for (const proxy of [viaServers, viaSystem]) {
        const bytes = await ask(proxy.port, 'http CONNECT', Buffer.from(name, 'latin1'));
        assert.match(bytes.toString('latin1'), /^HTTP\/1\.0 404 /);
      }
      assert.deepEqual(dnsServer.queries, []);
      assert.deepEqual(system.names, []);
    });
  }

  test('names that do not normalise are refused before any plugin: REP 04 / 5B / 404, nothing asked', async () => {
    dnsServer.clearLog();
    system.names.length = 0;
    for (const name of ['a..b.test', '.a.test', 'x.onion..', 'a\\b.onion', 'a b.test', 'a%41.onion', 'a/b.onion', 'a?b.onion', 'a#.onion', 'xn--zz.test', '1.2.3.999', 'ｘ.onion／a', `${LABEL}.xn--onion-`, `${LABEL}.XN--ONION-.`, 'xn--onion-']) {
      for (const proxy of [viaServers, viaSystem]) {
        for (const p of SOCKS_PATHS) {
          const bytes = answerOf(p, await ask(proxy.port, p, name));
          assert.equal(toHex(bytes), p.startsWith('socks5') ? '05 04 00 01 00 00 00 00 00 00' : '00 5b 00 00 00 00 00 00', `${p} ${JSON.stringify(name)}`);
        }
      }
    }
    assert.deepEqual(dnsServer.queries, []);
    assert.deepEqual(system.names, []);
  });
});

// ---- property --------------------------------------------------------------------------------

const IGNORABLE = ['\u00ad', '\u200b', '\u034f', '\ufe0f', '\ufe00', '\u2060', '\u180b', '\u200c', '\u200d'];
const LETTERS: Record<string, string[]> = {
  o: ['o', 'O', 'ｏ', 'Ｏ', 'º', 'ⓞ', 'Ⓞ', 'ᴼ', 'ₒ'],
  n: ['n', 'N', 'ｎ', 'Ｎ', 'ⓝ', 'Ⓝ', 'ⁿ', 'ₙ'],
  i: ['i', 'I', 'ｉ', 'Ｉ', 'ⓘ', 'Ⓘ', 'ⁱ', 'ᵢ', 'ℹ'],
};
const DOTS = ['.', '。', '｡', '．'];

/** `<label><dot>onion[.]`, each letter and dot in any spelling, ignorables sprinkled anywhere. */
const onionSpelling = fc
  .record({
    label: fc.constantFrom(LABEL, 'www.' + LABEL, 'a', 'x-y', LABEL.toUpperCase(), 'ｅｘａｍｐｌｅ'),
    dot: fc.constantFrom(...DOTS),
    o1: fc.constantFrom(...LETTERS.o!),
    n1: fc.constantFrom(...LETTERS.n!),
    i: fc.constantFrom(...LETTERS.i!),
    o2: fc.constantFrom(...LETTERS.o!),
    n2: fc.constantFrom(...LETTERS.n!),
    trailing: fc.constantFrom('', '', '.', '。', '．'),
    noise: fc.array(fc.tuple(fc.nat(80), fc.constantFrom(...IGNORABLE)), { maxLength: 4 }),
  })
  .map((r) => {
    let s = `${r.label}${r.dot}${r.o1}${r.n1}${r.i}${r.o2}${r.n2}${r.trailing}`;
    for (const [at, ch] of r.noise) {
      const i = at % (s.length + 1);
      s = s.slice(0, i) + ch + s.slice(i);
    }
    return s;
  });

/** Arbitrary unicode (any plane) around an `onion` suffix in any spelling. */
const noisySpelling = fc
  .tuple(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.constantFrom(...DOTS), fc.constantFrom('onion', 'ｏｎｉｏｎ', 'ONION', 'ºnion'), fc.string({ unit: 'binary', maxLength: 3 }))
  .map(([a, dot, onion, b]) => `${a}${dot}${onion}${b}`);

function normalisesToOnion(s: string): boolean {
  const n = normalizeHost(s);
  if (n === undefined) return false;
  const body = n.endsWith('.') ? n.slice(0, -1) : n;
  return body === 'onion' || body.endsWith('.onion');
}

describe('issue #10 item 3: property: a name whose normalised form ends in .onion never reaches a resolver', () => {
  const check = async (s: string) => {
    fc.pre(normalisesToOnion(s) && Buffer.byteLength(s, 'utf8') <= 255);
    dnsServer.clearLog();
    system.names.length = 0;
    for (const proxy of [viaServers, viaSystem]) {
      for (const p of SOCKS_PATHS) {
        const bytes = await ask(proxy.port, p, s);
        assert.ok(refused(p, bytes), `${p} ${JSON.stringify(s)}: refused (got ${toHex(bytes)})`);
      }
      // HTTP CONNECT carries latin-1: only spellings made of latin-1 characters can be sent as such.
      if ([...s].every((ch) => ch.charCodeAt(0) <= 0xff)) {
        const bytes = await ask(proxy.port, 'http CONNECT', Buffer.from(s, 'latin1'));
        assert.ok(refused('http CONNECT', bytes), `http ${JSON.stringify(s)}`);
      }
    }
    assert.deepEqual(dnsServer.queries, [], `DNS server queried for ${JSON.stringify(s)}`);
    assert.deepEqual(system.names, [], `system resolver asked for ${JSON.stringify(s)}`);
  };

  test('spellings of <label>.onion (fullwidth, circled, super/subscript, ordinal, IDN dots, ignorables)', async () => {
    await fc.assert(fc.asyncProperty(onionSpelling, check), { seed: 0x0a10, numRuns: 80 });
  });

  test('arbitrary unicode around an onion suffix', async () => {
    await fc.assert(fc.asyncProperty(noisySpelling, check), { seed: 0x0a11, numRuns: 80 });
  });

  test('latin-1 only spellings also on HTTP CONNECT', async () => {
    const latin = fc
      .tuple(fc.constantFrom(LABEL, 'a', 'A-B'), fc.constantFrom('.'), fc.array(fc.constantFrom('\u00ad', ''), { maxLength: 3 }), fc.constantFrom('o', 'O', 'º'), fc.constantFrom('', '.'))
      .map(([l, d, soft, o, t]) => `${l}${d}${soft.join('')}${o}n${soft.join('')}i${o}n${t}`);
    await fc.assert(fc.asyncProperty(latin, check), { seed: 0x0a12, numRuns: 40 });
  });
});

// ---- the normalisation is the resolver's own ---------------------------------------------------

describe('issue #10 item 3: normalizeHost gives the name Node\'s resolver itself would query', () => {
  test('property: for any name normalizeHost accepts, dns.Resolver (c-ares) queries exactly that name, or nothing', async () => {
    // Node applies UTS-46 (ada's to_ascii) to every name before c-ares or getaddrinfo see it; a
    // loopback DNS server shows what that produced. normalizeHost must agree whenever it accepts a
    // name, or a check could judge one name while the resolver is asked for another.
    const resolver = new dns.promises.Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([dnsServer.address]);
    const arb = fc
      .tuple(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }), fc.constantFrom(...DOTS), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }), fc.constantFrom('.test', '．ｔｅｓｔ', '.TEST', '.test.'))
      .map(([a, d, b, tld]) => `${a}${d}${b}${tld}`);
    let compared = 0;
    await fc.assert(
      fc.asyncProperty(arb, async (s) => {
        const n = normalizeHost(s);
        if (n === undefined || net.isIP(n) !== 0) return;
        dnsServer.clearLog();
        await resolver.resolve4(s).catch(() => {});
        const asked = [...new Set(dnsServer.queries.map((q) => q.name))];
        // c-ares sends nothing for some names (punctuation such as `&`): nothing to compare then.
        if (asked.length === 0) return;
        assert.deepEqual(asked, [n.replace(/\.$/, '')], `${JSON.stringify(s)}: socksmith says ${n}`);
        compared++;
      }),
      { seed: 0x0a14, numRuns: 150 },
    );
    assert.ok(compared > 30, `${compared} names compared`);
  });
});

// ---- item 4: IP literals in every spelling -----------------------------------------------------

describe('issue #10 item 4: a name that is an IP literal is one for the destination policy', () => {
  let echo: TestServer & { connections: number };
  let px: TestProxy;
  before(async () => {
    echo = await startEchoServer();
    px = await startProxy({
      log: { level: 'silent' },
      resolver: { servers: [dnsServer.address] },
      plugins: { policy: { destinations: ['reject private:*'], AllowNonRFC953Hostnames: true } },
    });
  });
  after(async () => {
    await px.close();
    await echo.close();
  });

  const refusedByPolicy = ['127.0.0.1', '0x7f.1', '2130706433', '127.1', '0177.0.0.1', '0x7F000001', '１２７.０.０.１', '127.0.0.1.', '[127.0.0.1]', '::1', '[::1]', '::ffff:127.0.0.1', '[::ffff:127.0.0.1]', '0:0:0:0:0:ffff:7f00:1'];
  const zoneIds = ['::ffff:127.0.0.1%lo', '::1%lo', '[::1%lo]', '::1%1', 'fe80::1%lo'];

  test('numeric, bracketed and IPv4-mapped spellings of a loopback address get REP 02 (SOCKS5 name) / 5B (SOCKS4a); nothing connects', async () => {
    dnsServer.clearLog();
    for (const host of refusedByPolicy) {
      const five = answerOf('socks5 CONNECT', await ask(px.port, 'socks5 CONNECT', host));
      assert.equal(toHex(five), '05 02 00 01 00 00 00 00 00 00', `SOCKS5 ${host}`);
      const four = await ask(px.port, 'socks4a CONNECT', host);
      assert.equal(toHex(four), '00 5b 00 00 00 00 00 00', `SOCKS4a ${host}`);
    }
    await sleep(20);
    assert.equal(echo.connections, 0);
    assert.deepEqual(dnsServer.queries, [], 'IP literals are never looked up');
  });

  test('IPv6 zone ids are refused as names that do not normalise: REP 04 / 5B; nothing connects', async () => {
    for (const host of zoneIds) {
      const five = answerOf('socks5 CONNECT', await ask(px.port, 'socks5 CONNECT', host));
      assert.equal(toHex(five), '05 04 00 01 00 00 00 00 00 00', `SOCKS5 ${host}`);
      const four = await ask(px.port, 'socks4a CONNECT', host);
      assert.equal(toHex(four), '00 5b 00 00 00 00 00 00', `SOCKS4a ${host}`);
    }
    await sleep(20);
    assert.equal(echo.connections, 0);
  });

  test('without a policy, numeric spellings are canonicalised and reach the address they mean', async () => {
    const open = await startProxy({ log: { level: 'silent' }, resolver: { servers: [dnsServer.address] } });
    try {
      for (const host of ['0x7f.1', '2130706433', '127.1', '0177.0.0.1', '１２７.０.０.１']) {
        const c = await RawClient.connect(open.port);
        c.write(Buffer.concat([Buffer.from([5, 1, 0]), req5(1, host, echo.port, true)]));
        const head = await c.read(4);
        assert.equal(toHex(head.subarray(0, 2)), '05 00', `method reply for ${host}`);
        assert.equal(head[3], 0x00, `${host}: success`);
        await c.read(8); // rest of the reply (ATYP 01)
        c.write('ping');
        assert.equal((await c.read(4)).toString(), 'ping');
        c.destroy();
      }
    } finally {
      await open.close();
    }
  });
});

describe('issue #10 item 4 follow-up: the IPv4-compatible spelling ::a.b.c.d is the IPv6 address it writes', () => {
  // ipaddr.js reads `::127.0.0.1` as `::ffff:127.0.0.1`; canonicalised that way, a request for
  // ::7f00:1 (which nothing routes to 127.0.0.1) was answered or connected as 127.0.0.1.
  test('RESOLVE of ::127.0.0.1 (name field, and HTTP-style brackets) answers ::7f00:1 (ATYP 04), not ::ffff:7f00:1', async () => {
    for (const host of ['::127.0.0.1', '[::127.0.0.1]', '0:0:0:0:0:0:127.0.0.1']) {
      const bytes = answerOf('socks5 RESOLVE', await ask(viaServers.port, 'socks5 RESOLVE', host));
      assert.equal(toHex(bytes), '05 00 00 04 00 00 00 00 00 00 00 00 00 00 00 00 7f 00 00 01 00 00', host);
    }
  });

  test('a socks5 upstream is asked for ::7f00:1 (SOCKS5 name field and HTTP CONNECT [::127.0.0.1]), never 127.0.0.1 or ::ffff:7f00:1', async () => {
    const up = await startRecordingUpstream({ answer: () => ({ rep: 4 }) });
    const px = await startProxy({ log: { level: 'silent' }, upstream: socks5Upstream(up.port), plugins: PLUGINS });
    try {
      await ask(px.port, 'socks5 CONNECT', '::127.0.0.1');
      await ask(px.port, 'http CONNECT', '[::127.0.0.1]');
      await up.waitSessions(2);
      // the name field keeps ATYP 03 with the canonical text; HTTP CONNECT's bracketed literal goes as ATYP 04 (the recorder prints it uncompressed)
      assert.deepEqual(
        up.sessions.map((x) => [x.request?.atyp, x.request?.host]),
        [
          [3, '::7f00:1'],
          [4, '0:0:0:0:0:0:7f00:1'],
        ],
      );
    } finally {
      await px.close();
      await up.close();
    }
  });
});

// ---- what a socks5 upstream receives ------------------------------------------------------------

describe('issue #10 item 3: a socks5 upstream receives the normalised ASCII form', () => {
  test('CONNECT and RESOLVE: fullwidth, IDN, upper-case and numeric spellings arrive as the name every local check saw (ATYP 03)', async () => {
    const up = await startRecordingUpstream({ answer: () => ({ rep: 4 }) });
    const px = await startProxy({ log: { level: 'silent' }, upstream: socks5Upstream(up.port), plugins: { resolve: true } });
    try {
      const cases: Array<[string, string]> = [
        ['ＥＸＡＭＰＬＥ．ｔｅｓｔ', 'example.test'],
        ['bücher.test', 'xn--bcher-kva.test'],
        ['Example.TEST.', 'example.test.'],
        [`${LABEL.toUpperCase()}．ｏｎｉｏｎ`, VALID],
        ['0x7f.1', '127.0.0.1'],
      ];
      for (const [sent, expected] of cases) {
        for (const cmd of [1, 0xf0]) {
          const n = up.sessions.length;
          if (cmd === 0xf0 && expected === '127.0.0.1') {
            // RESOLVE of an IP literal is answered locally (resolve plugin), in any spelling.
            assert.equal(toHex(answerOf('socks5 RESOLVE', await ask(px.port, 'socks5 RESOLVE', sent))), '05 00 00 01 7f 00 00 01 00 00');
            assert.equal(up.sessions.length, n);
            continue;
          }
          if (cmd === 0xf0 && expected === VALID) {
            // RESOLVE of a .onion fails at once, as in Tor, in any spelling.
            assert.equal(toHex(answerOf('socks5 RESOLVE', await ask(px.port, 'socks5 RESOLVE', sent))), '05 04 00 01 00 00 00 00 00 00');
            assert.equal(up.sessions.length, n);
            continue;
          }
          const bytes = await ask(px.port, cmd === 1 ? 'socks5 CONNECT' : 'socks5 RESOLVE', sent);
          assert.equal(bytes[3], 4, `${JSON.stringify(sent)}: the upstream's 04 comes back`);
          if (!up.sessions[n]) await up.waitSessions(n + 1).catch(() => {});
          const req = up.sessions[n]?.request;
          assert.ok(req, `${JSON.stringify(sent)} (command ${cmd.toString(16)}): reached the upstream; got ${toHex(bytes)}`);
          assert.equal(req.atyp, 3);
          assert.equal(req.host, expected, `${JSON.stringify(sent)} (command ${cmd.toString(16)})`);
        }
      }
    } finally {
      await px.close();
      await up.close();
    }
  });
});

describe('issue #10 item 3: isolation by destination address sees the normalised name', () => {
  test('IsolateDestAddr: ＥＸＡＭＰＬＥ．test and example.test share a key (same upstream credentials); other.test does not', async () => {
    const up = await startRecordingUpstream({ answer: () => ({ rep: 4 }) });
    const px = await startProxy({ log: { level: 'silent' }, upstream: socks5Upstream(up.port), plugins: { isolation: { IsolateDestAddr: true } } });
    try {
      for (const name of ['ＥＸＡＭＰＬＥ．test', 'example.test', 'other.test']) await ask(px.port, 'socks5 CONNECT', name);
      await up.waitSessions(3);
      const users = up.sessions.map((x) => x.credentials?.username.toString('utf8'));
      assert.ok(users[0], 'isolation credentials were sent');
      assert.equal(users[0], users[1], 'the fullwidth spelling is the same destination');
      assert.notEqual(users[0], users[2]);
    } finally {
      await px.close();
      await up.close();
    }
  });
});

// ---- the system resolver on the wire ---------------------------------------------------------------

describe('issue #10 item 3 on the wire: the CLI with the system resolver sends no DNS packet for any spelling', () => {
  test('resolv.conf names 127.0.0.1 (mount namespace); a DNS server on 127.0.0.1:53 records nothing for .onion spellings, and sees the control name', async (t) => {
    const inNetns = process.env.SOCKSMITH_TEST_NETNS === '1';
    const canMount = inNetns && (await run('unshare', ['-m', '--', 'true'])) === 0;
    if (!canMount) {
      if (process.env.CI) throw new Error('this test needs the private network namespace and unshare -m (root), as scripts/run-tests.mjs sets up in CI');
      t.skip('needs the private network namespace and unshare -m');
      return;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-resolv-'));
    const dns53 = await startDnsServer({ port: 53 });
    dns53.setA('control.test', ['127.0.0.1']);
    let child: ReturnType<typeof spawn> | undefined;
    try {
      fs.writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
      fs.writeFileSync(
        path.join(dir, 'socksmith.config.json'),
        JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], log: { level: 'warn' }, plugins: { resolve: true, 'http-detect': { mode: 'tunnel' } } }),
      );
      const script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"';
      child = spawn('unshare', ['-m', '--', 'sh', '-c', script, path.join(dir, 'resolv.conf'), process.execPath, CLI, '--config', path.join(dir, 'socksmith.config.json')], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stderr!.resume();
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`CLI did not listen: ${out}`)), 20000);
        child!.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
        child!.once('exit', (code) => reject(new Error(`CLI exited with ${code}`)));
      });
      for (const name of [...Object.values(VARIANTS), `${LABEL}.onion`]) {
        for (const p of SOCKS_PATHS) assert.ok(refused(p, await ask(port, p, name)), `${p} ${JSON.stringify(name)}`);
      }
      for (const name of Object.values(HTTP_VARIANTS)) assert.ok(refused('http CONNECT', await ask(port, 'http CONNECT', Buffer.from(name, 'latin1'))));
      assert.deepEqual(dns53.queries, [], 'no DNS packet for any .onion spelling');
      // Control: the same process does query this server for an ordinary name.
      await ask(port, 'socks5 RESOLVE', 'control.test');
      assert.ok(dns53.queriesFor('control.test').length > 0, 'the control name was queried on 127.0.0.1:53');
    } finally {
      if (child && child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child!.once('exit', r));
      }
      await dns53.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Run a command; resolves with its exit code (bounded by a 10 s timer). */
function run(file: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    child.on('error', () => resolve(null));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}
