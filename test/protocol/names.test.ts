/**
 * Pure name checks (src/protocol/names.ts). The .onion rule follows Tor (tor-socks.md a.4): such
 * names must never reach DNS; socksmith also catches the trailing-dot form Tor misses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isOnionName, normalizeName } from '../../src/protocol/names.js';

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
