/**
 * The SOCKS5 UDP datagram header (RFC 1928 §7): `RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA`.
 * Datagrams arrive whole, so a short one is an error, never need-more; arbitrary bytes never throw.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encodeUdpHeader, parseUdpHeader } from '../../src/protocol/codec.js';
import type { SocksAddress } from '../../src/protocol/address.js';
import { hex } from '../helpers/hex.js';

describe('SOCKS5 UDP header (RFC 1928 §7)', () => {
  const vectors: Array<[string, Buffer, number, SocksAddress, number]> = [
    ['IPv4, FRAG 0', hex('0000 00 01 7f000001 0035 aabb'), 0, { kind: 'ipv4', host: '127.0.0.1', port: 53 }, 10],
    ['IPv6', hex('0000 00 04 00000000000000000000000000000001 1f90'), 0, { kind: 'ipv6', host: '::1', port: 8080 }, 22],
    ['a name', hex('0000 00 03 0b 6578616d706c652e636f6d 0035 ff'), 0, { kind: 'domain', host: 'example.com', port: 53 }, 18],
    ['FRAG 1 is parsed (the caller drops it)', hex('0000 01 01 0a000001 0007'), 1, { kind: 'ipv4', host: '10.0.0.1', port: 7 }, 10],
    ['RSV ignored; empty DATA', hex('ffff 00 01 01020304 0001'), 0, { kind: 'ipv4', host: '1.2.3.4', port: 1 }, 10],
  ];
  for (const [title, bytes, frag, address, length] of vectors) {
    test(title, () => {
      const r = parseUdpHeader(bytes);
      assert.equal(r.status, 'ok');
      if (r.status !== 'ok') return;
      assert.deepEqual(r.value, { frag, address, length });
      assert.equal(r.length, length);
      if (bytes[0] === 0 && bytes[1] === 0) assert.deepEqual(encodeUdpHeader(address, frag), bytes.subarray(0, length));
    });
  }

  const errors: Array<[string, Buffer, string]> = [
    ['empty', hex(''), 'SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM'],
    ['three bytes', hex('000000'), 'SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM'],
    ['IPv4 address cut short', hex('0000 00 01 7f0000'), 'SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM'],
    ['port missing', hex('0000 00 01 7f000001'), 'SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM'],
    ['name length past the end', hex('0000 00 03 20 6162'), 'SOCKSMITH_ERR_PROTOCOL_SHORT_DATAGRAM'],
    ['bad ATYP 02', hex('0000 00 02 7f000001 0035'), 'SOCKSMITH_ERR_PROTOCOL_BAD_ADDRESS_TYPE'],
    ['ATYP 00', hex('0000 00 00 7f000001 0035'), 'SOCKSMITH_ERR_PROTOCOL_BAD_ADDRESS_TYPE'],
    ['empty name', hex('0000 00 03 00 0035'), 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME'],
    ['a NUL in the name', hex('0000 00 03 03 610062 0035'), 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME'],
  ];
  for (const [title, bytes, code] of errors) {
    test(`error: ${title}`, () => {
      const r = parseUdpHeader(bytes);
      assert.equal(r.status, 'error');
      if (r.status === 'error') assert.equal(r.error.code, code);
    });
  }

  test('an offset is honoured', () => {
    const r = parseUdpHeader(Buffer.concat([hex('eeee'), hex('0000 00 01 7f000001 0035')]), 2);
    assert.equal(r.status, 'ok');
  });

  test('encodeUdpHeader refuses a FRAG that is not a byte and a name over 255 bytes', () => {
    assert.throws(() => encodeUdpHeader({ kind: 'ipv4', host: '1.2.3.4', port: 1 }, 256), RangeError);
    assert.throws(() => encodeUdpHeader({ kind: 'domain', host: 'a'.repeat(256), port: 1 }), RangeError);
  });

  test('arbitrary bytes: never throws; ok or error; an ok header round-trips through the encoder', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const r = parseUdpHeader(bytes);
        assert.ok(r.status === 'ok' || r.status === 'error');
        if (r.status === 'ok') {
          assert.ok(r.length <= bytes.length);
          const again = parseUdpHeader(Buffer.concat([encodeUdpHeader(r.value.address, r.value.frag), Buffer.from(bytes.subarray(r.length))]));
          assert.equal(again.status, 'ok');
          if (again.status === 'ok') assert.deepEqual(again.value.address, r.value.address);
        }
      }),
      { seed: 0x5d9, numRuns: 500 },
    );
  });
});
