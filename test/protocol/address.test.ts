/**
 * Address helpers (src/protocol/address.ts): classification of host strings, wire bytes of IPv4 /
 * IPv6 literals and host:port formatting. Pure, no DNS.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ZERO_ADDRESS,
  classifyHost,
  formatAddress,
  formatHostPort,
  ipv4FromBytes,
  ipv4ToBytes,
  ipv6FromBytes,
  ipv6ToBytes,
  isIPv4,
  isIPv6,
} from '../../src/protocol/address.js';
import { hex } from '../helpers/hex.js';

describe('classifyHost', () => {
  const cases: Array<[string, { kind: string; host: string }]> = [
    ['127.0.0.1', { kind: 'ipv4', host: '127.0.0.1' }],
    ['0.0.0.0', { kind: 'ipv4', host: '0.0.0.0' }],
    ['255.255.255.255', { kind: 'ipv4', host: '255.255.255.255' }],
    ['::1', { kind: 'ipv6', host: '::1' }],
    ['[::1]', { kind: 'ipv6', host: '::1' }],
    ['2001:DB8:0:0:0:0:0:1', { kind: 'ipv6', host: '2001:db8::1' }],
    ['[2001:db8::1]', { kind: 'ipv6', host: '2001:db8::1' }],
    ['localhost', { kind: 'domain', host: 'localhost' }],
    ['Example.COM.', { kind: 'domain', host: 'Example.COM.' }],
    // strictly four decimal parts: shorthand, octal-looking and out-of-range forms are names
    ['127.1', { kind: 'domain', host: '127.1' }],
    ['0x7f.0.0.1', { kind: 'domain', host: '0x7f.0.0.1' }],
    ['1.2.3.256', { kind: 'domain', host: '1.2.3.256' }],
    ['1.2.3.4.5', { kind: 'domain', host: '1.2.3.4.5' }],
    ['[127.0.0.1]', { kind: 'domain', host: '[127.0.0.1]' }],
    ['[not-ipv6]', { kind: 'domain', host: '[not-ipv6]' }],
  ];
  for (const [input, expected] of cases) {
    test(`${JSON.stringify(input)} → ${expected.kind} ${expected.host}`, () => {
      assert.deepEqual(classifyHost(input, 443), { ...expected, port: 443 });
    });
  }
});

describe('wire bytes', () => {
  test('ipv4ToBytes / ipv4FromBytes (Arti socks4_good 203.0.113.7 = cb007107)', () => {
    assert.deepEqual(Buffer.from(ipv4ToBytes('203.0.113.7')), hex('cb007107'));
    assert.equal(ipv4FromBytes(hex('ff cb007107'), 1), '203.0.113.7');
  });
  test('ipv6ToBytes / ipv6FromBytes (Arti f000::ff11)', () => {
    assert.deepEqual(Buffer.from(ipv6ToBytes('f000::ff11')), hex('f000 0000 0000 0000 0000 0000 0000 ff11'));
    assert.equal(ipv6FromBytes(hex('ee f000 0000 0000 0000 0000 0000 0000 ff11'), 1), 'f000::ff11');
  });
  test('ipv6FromBytes gives RFC 5952 text: lowercase, longest zero run compressed, first on a tie', () => {
    assert.equal(ipv6FromBytes(hex('2001 0db8 0000 0000 0001 0000 0000 0001'), 0), '2001:db8::1:0:0:1');
    assert.equal(ipv6FromBytes(hex('2001 0db8 0000 0001 0000 0000 0000 0001'), 0), '2001:db8:0:1::1');
    assert.equal(ipv6FromBytes(hex('00000000000000000000000000000000'), 0), '::');
    assert.equal(ipv6FromBytes(hex('ABCD 0000 0000 0000 0000 0000 0000 0000'), 0), 'abcd::');
  });
  test('isIPv4 / isIPv6', () => {
    assert.equal(isIPv4('10.0.0.1'), true);
    assert.equal(isIPv4('10.0.0'), false);
    assert.equal(isIPv6('::'), true);
    assert.equal(isIPv6('[::1]'), false);
    assert.equal(isIPv6('10.0.0.1'), false);
    assert.equal(isIPv6('example.com'), false);
  });
});

describe('formatting', () => {
  test('formatHostPort brackets IPv6 only', () => {
    assert.equal(formatHostPort('::1', 1080), '[::1]:1080');
    assert.equal(formatHostPort('127.0.0.1', 80), '127.0.0.1:80');
    assert.equal(formatHostPort('example.com', 0), 'example.com:0');
  });
  test('formatAddress and ZERO_ADDRESS', () => {
    assert.deepEqual(ZERO_ADDRESS, { kind: 'ipv4', host: '0.0.0.0', port: 0 });
    assert.ok(Object.isFrozen(ZERO_ADDRESS));
    assert.equal(formatAddress(ZERO_ADDRESS), '0.0.0.0:0');
    assert.equal(formatAddress({ kind: 'ipv6', host: 'f000::ff11', port: 8080 }), '[f000::ff11]:8080');
  });
});
