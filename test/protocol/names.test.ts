/**
 * Pure name checks (src/protocol/names.ts). The .onion rule follows Tor (tor-socks.md a.4): such
 * names must never reach DNS; socksmith also catches the trailing-dot form Tor misses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { domainToASCII } from 'node:url';
import fc from 'fast-check';
import { isOnionName, normalizeDestination, normalizeHost, normalizeName } from '../../src/protocol/names.js';

describe('isOnionName', () => {
  const yes = [
    'x.onion',
    'X.ONION.',
    'onion',
    'ONION',
    'onion.',
    'x.Onion',
    // a v3 onion (56 base32 chars) and one with a subdomain (Tor parse_extended_hostname)
    '2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion',
    'www.2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion',
    // torsocks capture destination (clients.md)
    'abcdefghijklmnop.onion',
    'a.b.c.onion.',
  ];
  const no = [
    'foo.onion.example',
    'onionx',
    'xonion',
    'x.onionx',
    'onion.example',
    'x.onion-',
    'example.com',
    '',
    '.',
    'x-onion',
    'x_onion',
  ];
  for (const name of yes) test(`${JSON.stringify(name)} is an onion name`, () => assert.equal(isOnionName(name), true));
  for (const name of no) test(`${JSON.stringify(name)} is not an onion name`, () => assert.equal(isOnionName(name), false));
});

describe('normalizeName', () => {
  test('lowercases and drops exactly one trailing dot', () => {
    assert.equal(normalizeName('Example.COM.'), 'example.com');
    assert.equal(normalizeName('example.com'), 'example.com');
    assert.equal(normalizeName('x.onion..'), 'x.onion.');
    assert.equal(normalizeName('.'), '');
    assert.equal(normalizeName(''), '');
  });
  test('leaves non-ASCII letters lowercased the JavaScript way, nothing else changed', () => {
    assert.equal(normalizeName('BÜCHER.Example'), 'bücher.example');
    assert.equal(normalizeName('a-b_c.d'), 'a-b_c.d');
  });
});

describe('normalizeHost (issue #10: one form for every check)', () => {
  const cases: Array<[string, string | undefined]> = [
    ['Example.COM', 'example.com'],
    ['example.com.', 'example.com.'],
    ['ｅｘａｍｐｌｅ．ｃｏｍ', 'example.com'],
    ['x。onion', 'x.onion'],
    ['x｡onion', 'x.onion'],
    ['x.on\u00adion', 'x.onion'],
    ['x.ºnion', 'x.onion'],
    ['x.ⓞnion', 'x.onion'],
    ['x.onion\u200b', 'x.onion'],
    ['x.oni\u034fon', 'x.onion'],
    ['x.onion\ufe0f', 'x.onion'],
    ['bücher.de', 'xn--bcher-kva.de'],
    ['ß.de', 'xn--zca.de'],
    ['under_score.test', 'under_score.test'],
    ['127.0.0.1', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['１２７.０.０.１', '127.0.0.1'],
    ['0', '0.0.0.0'],
    ['[::1]', '::1'],
    ['::ffff:127.0.0.1', '::ffff:7f00:1'],
    ['[0:0:0:0:0:0:0:1]', '::1'],
    ['::1%lo', undefined],
    ['[::1%lo]', undefined],
    ['fe80::1%eth0', undefined],
    ['a..b', undefined],
    ['.a', undefined],
    ['.', undefined],
    ['x.onion..', undefined],
    ['a b', undefined],
    ['a\tb.onion', undefined],
    ['a\\b.onion', undefined],
    ['a/b', undefined],
    ['a%41', undefined],
    ['a:80', undefined],
    ['u@h', undefined],
    ['ｘ.onion／a', undefined],
    ['xn--zz.test', undefined],
    // an xn-- label that decodes to ASCII only: `xn--onion-` reads `onion` (UTS-46 15.1: an error)
    ['xn--onion-', undefined],
    ['x.xn--onion-', undefined],
    ['x.XN--ONION-.', undefined],
    ['xn--abc-.test', undefined],
    ['xn--ls8h.test', 'xn--ls8h.test'],
    // IPv4-compatible IPv6 (`::a.b.c.d`) is the IPv6 address it writes, not IPv4-mapped
    ['::127.0.0.1', '::7f00:1'],
    ['[::127.0.0.1]', '::7f00:1'],
    ['::0.0.0.1', '::1'],
    ['0:0:0:0:0:0:127.0.0.1', '::7f00:1'],
    ['1.2.3.999', undefined],
    ['[foo]', undefined],
    ['a'.repeat(256), undefined],
  ];
  for (const [input, want] of cases) {
    test(`${JSON.stringify(input)} → ${JSON.stringify(want)}`, () => assert.equal(normalizeHost(input), want));
  }

  test('idempotent, and its output is what url.domainToASCII gives for names (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), (s) => {
        const n = normalizeHost(s);
        if (n === undefined) return;
        assert.equal(normalizeHost(n), n);
        assert.ok(/^[\x21-\x7e]+$/.test(n), 'printable ASCII only');
        if (!/^[\d.]+$/.test(n) && !n.includes(':')) assert.equal(domainToASCII(n), n);
      }),
      { seed: 0x0a13, numRuns: 2000 },
    );
  });

  test('normalizeDestination: addresses pass untouched; names keep kind domain with the normalised host', () => {
    const v4 = { kind: 'ipv4', host: '127.0.0.1', port: 1 } as const;
    assert.equal(normalizeDestination(v4), v4);
    assert.deepEqual(normalizeDestination({ kind: 'domain', host: '0x7f.1', port: 80 }), { kind: 'domain', host: '127.0.0.1', port: 80 });
    assert.equal(normalizeDestination({ kind: 'domain', host: '::1%lo', port: 80 }), undefined);
    const plain = { kind: 'domain', host: 'example.com', port: 80 } as const;
    assert.equal(normalizeDestination(plain), plain, 'no copy when nothing changes');
  });
});
