/**
 * SOCKS5 greeting and request parsing and encoding (RFC 1928 §3, §4, §5), with vectors from
 * RFC 1928, curl / ncat / torsocks / tor-resolve captures (shared/research/clients.md),
 * Tor's src/test/test_socks.c and Arti's tor-socksproto tests (shared/research/tor-socks.md).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SocksAddress } from '../../src/protocol/address.js';
import {
  type SocksRequest,
  encodeSocks5Greeting,
  encodeSocks5Request,
  parseSocks5Greeting,
  parseSocks5Request,
} from '../../src/protocol/codec.js';
import { Command } from '../../src/protocol/constants.js';
import { hex } from '../helpers/hex.js';
import { checkError, checkMessage, expectError, expectNeedMore, expectOk } from './support.js';

function req5(command: number, destination: SocksAddress): SocksRequest {
  return { version: 5, command, destination, userId: undefined, socks4a: false };
}

const A255 = 'a'.repeat(255);

describe('SOCKS5 greeting (RFC 1928 §3)', () => {
  const vectors: Array<[string, Buffer, number[]]> = [
    ['RFC 1928 §3 / tor test_socks.c / Arti socks5_init_noauth: no-auth only', hex('05 01 00'), [0x00]],
    ['curl --socks5-hostname capture: methods [00,01]', hex('05 02 00 01'), [0x00, 0x01]],
    ['curl socks5h://alice:s3cret@ capture: methods [00,01,02]', hex('05 03 00 01 02'), [0x00, 0x01, 0x02]],
    ['ncat / PySocks / npm socks with credentials: methods [00,02]', hex('05 02 00 02'), [0x00, 0x02]],
    ['torsocks -u -p capture: methods [02] only', hex('05 01 02'), [0x02]],
    ['Arti client with credentials: 02 before 00', hex('05 02 02 00'), [0x02, 0x00]],
    ['Arti socks5_init_username', hex('05 04 00 02 30 31'), [0x00, 0x02, 0x30, 0x31]],
    ['Arti socks5_init_nothing_works: unknown methods are returned, policy decides', hex('05 02 99 88'), [0x99, 0x88]],
    ['Tor test_socks.c 5_unsupported_commands: greeting 05 02 00 01', hex('05 02 00 01'), [0x00, 0x01]],
  ];
  for (const [name, msg, methods] of vectors) {
    test(`${name}: ${msg.toString('hex')}`, () => {
      checkMessage(parseSocks5Greeting, msg, { methods });
    });
  }

  test('largest greeting: 255 methods 00..fe (RFC 1928 §3 NMETHODS is one byte)', () => {
    const methods = Array.from({ length: 255 }, (_, i) => i);
    const msg = Buffer.concat([hex('05 ff'), Buffer.from(methods)]);
    assert.equal(msg.length, 257);
    checkMessage(parseSocks5Greeting, msg, { methods }, { maxThreeWayLength: 0 });
  });

  test('NMETHODS = 0 is an error with no reply (Tor: "no reply, close"), as soon as 2 bytes are in', () => {
    checkError(parseSocks5Greeting, hex('05 00'), 2, 'SOCKSMITH_ERR_PROTOCOL_NO_METHODS', undefined);
    expectError(parseSocks5Greeting(hex('05 00 05 01 00')), 'SOCKSMITH_ERR_PROTOCOL_NO_METHODS', undefined);
  });

  test('wrong version byte is an error with no reply after 1 byte (Arti bad_version 06 01 00; SOCKS4 04)', () => {
    checkError(parseSocks5Greeting, hex('06 01 00'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
    checkError(parseSocks5Greeting, hex('04 01 00'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
    checkError(parseSocks5Greeting, hex('01 02 6d65 02 6d65'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
  });

  test('an empty buffer and an offset at the end are need-more', () => {
    expectNeedMore(parseSocks5Greeting(new Uint8Array(0)));
    expectNeedMore(parseSocks5Greeting(hex('05 01 00'), 3));
  });

  test('encodeSocks5Greeting gives the exact capture bytes', () => {
    assert.deepEqual(encodeSocks5Greeting([0x00]), hex('05 01 00'));
    assert.deepEqual(encodeSocks5Greeting([0x00, 0x01]), hex('05 02 00 01'));
    assert.deepEqual(encodeSocks5Greeting([0x00, 0x01, 0x02]), hex('05 03 00 01 02'));
    assert.deepEqual(encodeSocks5Greeting([0x02, 0x00]), hex('05 02 02 00'));
  });

  test('encodeSocks5Greeting refuses 0 and 256 methods (RangeError)', () => {
    assert.throws(() => encodeSocks5Greeting([]), RangeError);
    assert.throws(() => encodeSocks5Greeting(new Array<number>(256).fill(0)), RangeError);
    assert.equal(encodeSocks5Greeting(new Array<number>(255).fill(0)).length, 257);
  });
});

describe('SOCKS5 request (RFC 1928 §4, §5)', () => {
  const name = (s: string) => Buffer.from(s, 'utf8').toString('hex');
  const vectors: Array<[string, Buffer, SocksRequest]> = [
    [
      'RFC 1928 §4 CONNECT ATYP 01; curl --socks5 capture (localhost resolved, port 18000)',
      hex('05 01 00 01 7f000001 4650'),
      req5(Command.CONNECT, { kind: 'ipv4', host: '127.0.0.1', port: 18000 }),
    ],
    [
      'curl --socks5-hostname capture: CONNECT ATYP 03 localhost:18000',
      hex('05 01 00 03 09 6c6f63616c686f7374 4650'),
      req5(Command.CONNECT, { kind: 'domain', host: 'localhost', port: 18000 }),
    ],
    [
      'tor test_socks.c 5_supported_commands: CONNECT 2.2.2.2:4369',
      hex('05 01 00 01 02020202 1111'),
      req5(Command.CONNECT, { kind: 'ipv4', host: '2.2.2.2', port: 4369 }),
    ],
    [
      'tor test_socks.c 5_supported_commands: CONNECT torproject.org:4369',
      hex('05 01 00 03 0e 746f7270726f6a6563742e6f7267 1111'),
      req5(Command.CONNECT, { kind: 'domain', host: 'torproject.org', port: 4369 }),
    ],
    [
      'tor test_socks.c 5_supported_commands: RESOLVE (F0) torproject.org:258',
      hex('05 f0 00 03 0e 746f7270726f6a6563742e6f7267 0102'),
      req5(Command.RESOLVE, { kind: 'domain', host: 'torproject.org', port: 258 }),
    ],
    [
      'tor test_socks.c 5_supported_commands: RESOLVE_PTR (F1) 2.2.2.5',
      hex('05 f1 00 01 02020205 0103'),
      req5(Command.RESOLVE_PTR, { kind: 'ipv4', host: '2.2.2.5', port: 259 }),
    ],
    [
      'tor test_socks.c 5_malformed_commands: RESOLVE_PTR of a name parses (policy answers 08)',
      hex('05 f1 00 03 0e 746f7270726f6a6563742e6f7267 1111'),
      req5(Command.RESOLVE_PTR, { kind: 'domain', host: 'torproject.org', port: 4369 }),
    ],
    [
      'tor test_socks.c 5_malformed_commands: """"".com parses (name syntax is policy, Tor answers 01)',
      hex('05 01 00 03 09 2222222222 2e636f6d 1111'),
      req5(Command.CONNECT, { kind: 'domain', host: '""""".com', port: 4369 }),
    ],
    [
      'tor test_socks.c 5_unsupported_commands: BIND (02) is returned, not an error',
      hex('05 02 00 01 02020201 0101'),
      req5(Command.BIND, { kind: 'ipv4', host: '2.2.2.1', port: 257 }),
    ],
    [
      'tor test_socks.c 5_unsupported_commands: UDP ASSOCIATE (03) is returned, not an error',
      hex('05 03 00 01 02020201 0101'),
      req5(Command.UDP_ASSOCIATE, { kind: 'ipv4', host: '2.2.2.1', port: 257 }),
    ],
    [
      'tor-resolve a.9: RESOLVE (F0) 05 F0 00 03 LEN NAME 0000',
      hex(`05 f0 00 03 13 ${name('socksmith-dest.test')} 0000`),
      req5(Command.RESOLVE, { kind: 'domain', host: 'socksmith-dest.test', port: 0 }),
    ],
    [
      'tor-resolve -x a.9: RESOLVE_PTR (F1) 05 F1 00 01 A B C D 0000',
      hex('05 f1 00 01 7f000001 0000'),
      req5(Command.RESOLVE_PTR, { kind: 'ipv4', host: '127.0.0.1', port: 0 }),
    ],
    [
      'tor-resolve -x a.9: RESOLVE_PTR (F1) IPv6 05 F1 00 04 <16> 0000',
      hex('05 f1 00 04 20010db8000000000000000000000001 0000'),
      req5(Command.RESOLVE_PTR, { kind: 'ipv6', host: '2001:db8::1', port: 0 }),
    ],
    [
      'torsocks capture: gethostbyname becomes RESOLVE (F0) with port 42',
      hex(`05 f0 00 03 13 ${name('socksmith-dest.test')} 002a`),
      req5(Command.RESOLVE, { kind: 'domain', host: 'socksmith-dest.test', port: 42 }),
    ],
    [
      'Tor socks-extensions: CONNECT_DIR (F2) is returned, not an error',
      hex('05 f2 00 01 7f000001 0050'),
      req5(Command.CONNECT_DIR, { kind: 'ipv4', host: '127.0.0.1', port: 80 }),
    ],
    [
      'unknown command 7F is returned, not an error (policy answers 07)',
      hex('05 7f 00 01 7f000001 0050'),
      req5(0x7f, { kind: 'ipv4', host: '127.0.0.1', port: 80 }),
    ],
    [
      'unknown command 00 is returned, not an error',
      hex('05 00 00 03 01 61 0050'),
      req5(0x00, { kind: 'domain', host: 'a', port: 80 }),
    ],
    [
      'unknown command FF is returned, not an error',
      hex('05 ff 00 04 00000000000000000000000000000001 ffff'),
      req5(0xff, { kind: 'ipv6', host: '::1', port: 65535 }),
    ],
    [
      'Arti socks5_request_ok_ipv4: 127.0.0.7:8080',
      hex('05 01 00 01 7f000007 1f90'),
      req5(Command.CONNECT, { kind: 'ipv4', host: '127.0.0.7', port: 8080 }),
    ],
    [
      'Arti socks5_request_ok_ipv6: f000::ff11:8080 (canonical RFC 5952 text)',
      hex('05 01 00 04 f000 0000 0000 0000 0000 0000 0000 ff11 1f90'),
      req5(Command.CONNECT, { kind: 'ipv6', host: 'f000::ff11', port: 8080 }),
    ],
    [
      'Arti socks5_request_ok_hostname: foo.example.com:8080',
      hex('05 01 00 03 0f 666f6f2e6578616d706c652e636f6d 1f90'),
      req5(Command.CONNECT, { kind: 'domain', host: 'foo.example.com', port: 8080 }),
    ],
    [
      'RFC 1928 §5 ATYP 04: all-zero IPv6 is "::"',
      hex('05 01 00 04 00000000000000000000000000000000 0050'),
      req5(Command.CONNECT, { kind: 'ipv6', host: '::', port: 80 }),
    ],
    [
      'RFC 1928 §5 ATYP 04: IPv4-mapped address keeps RFC 5952 hex form',
      hex('05 01 00 04 00000000000000000000ffff01020304 0050'),
      req5(Command.CONNECT, { kind: 'ipv6', host: '::ffff:102:304', port: 80 }),
    ],
    [
      'RFC 1928 §5 ATYP 03: UTF-8 name bücher.example is decoded',
      hex('05 01 00 03 0f 62 c3bc 636865722e6578616d706c65 01bb'),
      req5(Command.CONNECT, { kind: 'domain', host: 'bücher.example', port: 443 }),
    ],
    [
      'RFC 1928 §5 ATYP 03: the name is kept as sent (case, trailing dot)',
      hex('05 01 00 03 0c 4578616d706c652e434f4d2e 0050'),
      req5(Command.CONNECT, { kind: 'domain', host: 'Example.COM.', port: 80 }),
    ],
    [
      'RFC 1928 §5 ATYP 01 with port 0 parses (port policy is not the codec\'s)',
      hex('05 01 00 01 0a000001 0000'),
      req5(Command.CONNECT, { kind: 'ipv4', host: '10.0.0.1', port: 0 }),
    ],
    [
      'Arti: RSV is ignored (RSV = FF still parses)',
      hex('05 01 ff 01 7f000001 0050'),
      req5(Command.CONNECT, { kind: 'ipv4', host: '127.0.0.1', port: 80 }),
    ],
  ];
  for (const [title, msg, expected] of vectors) {
    test(`${title}: ${msg.toString('hex')}`, () => {
      checkMessage(parseSocks5Request, msg, expected);
    });
  }

  test('longest name: 255 bytes (RFC 1928 §5 one length byte), request of 262 bytes', () => {
    const msg = Buffer.concat([hex('05 01 00 03 ff'), Buffer.from(A255), hex('0050')]);
    assert.equal(msg.length, 262);
    checkMessage(parseSocks5Request, msg, req5(Command.CONNECT, { kind: 'domain', host: A255, port: 80 }), { maxThreeWayLength: 0 });
  });

  test('longest name: all 3-way chunkings of a 262-byte request give the same request', () => {
    const msg = Buffer.concat([hex('05 f0 00 03 ff'), Buffer.from(A255), hex('0000')]);
    checkMessage(parseSocks5Request, msg, req5(Command.RESOLVE, { kind: 'domain', host: A255, port: 0 }));
  });

  test('a SOCKS5 request followed by optimistic data: length excludes the data', () => {
    const request = hex('05 01 00 03 09 6c6f63616c686f7374 4650');
    const data = Buffer.from('GET / HTTP/1.0\r\nHost: x\r\n\r\n', 'latin1');
    const r = expectOk(parseSocks5Request(Buffer.concat([request, data])));
    assert.equal(r.length, 16);
    assert.deepEqual(r.value.destination, { kind: 'domain', host: 'localhost', port: 18000 });
  });

  test('tor test_socks.c 5_authenticate_with_data: request after RFC 1929 parsed at its offset', () => {
    const buf = hex('01 02 6d65 03 796f75 05 01 00 01 02020202 1111');
    const r = expectOk(parseSocks5Request(buf, 8));
    assert.equal(r.length, 10);
    assert.deepEqual(r.value, req5(Command.CONNECT, { kind: 'ipv4', host: '2.2.2.2', port: 4369 }));
  });

  describe('errors', () => {
    test('tor test_socks.c 5_malformed_commands: ATYP 23 → BAD_ADDRESS_TYPE, reply 08, decided at 4 bytes', () => {
      checkError(parseSocks5Request, hex('05 01 00 23 02020202 1111'), 4, 'SOCKSMITH_ERR_PROTOCOL_BAD_ADDRESS_TYPE', 0x08);
    });

    for (const atyp of [0x00, 0x02, 0x05, 0xff]) {
      test(`unknown ATYP ${atyp.toString(16).padStart(2, '0')} → BAD_ADDRESS_TYPE, reply 08 (RFC 1928 §6)`, () => {
        const msg = Buffer.concat([hex('05 01 00'), Buffer.from([atyp]), hex('7f000001 0050')]);
        checkError(parseSocks5Request, msg, 4, 'SOCKSMITH_ERR_PROTOCOL_BAD_ADDRESS_TYPE', 0x08);
      });
    }

    test('empty hostname (ATYP 03 LEN 00) → BAD_HOSTNAME, reply 01 (Tor string_is_valid_dest)', () => {
      checkError(parseSocks5Request, hex('05 01 00 03 00 0050'), 7, 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 0x01);
    });

    test('NUL inside the hostname → BAD_HOSTNAME, reply 01', () => {
      checkError(parseSocks5Request, hex('05 01 00 03 05 6162 00 6364 0050'), 12, 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 0x01);
      checkError(parseSocks5Request, hex('05 01 00 03 01 00 0050'), 8, 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 0x01);
      checkError(parseSocks5Request, hex('05 01 00 03 02 61 00 0050'), 9, 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 0x01);
    });

    const badUtf8: Array<[string, string]> = [
      ['c3 28 (bad continuation)', 'c328'],
      ['80 (lone continuation byte)', '80'],
      ['c0 af (overlong /)', 'c0af'],
      ['ed a0 80 (encoded surrogate D800)', 'eda080'],
      ['f4 90 80 80 (above U+10FFFF)', 'f4908080'],
      ['ff', 'ff'],
      ['61 e2 82 (truncated 3-byte sequence)', '61e282'],
    ];
    for (const [what, bytes] of badUtf8) {
      test(`invalid UTF-8 hostname ${what} → BAD_HOSTNAME, reply 01`, () => {
        const n = bytes.length / 2;
        const msg = hex(`05 01 00 03 ${n.toString(16).padStart(2, '0')} ${bytes} 0050`);
        checkError(parseSocks5Request, msg, msg.length, 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 0x01);
      });
    }

    test('wrong version byte → BAD_VERSION with no reply, after 1 byte', () => {
      checkError(parseSocks5Request, hex('04 01 0050 7f000001 00'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
      checkError(parseSocks5Request, hex('01 02 6d65 02 6d65'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
      checkError(parseSocks5Request, hex('06 01 00 01 7f000001 0050'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
    });
  });

  describe('BOM handling (names are kept exactly as sent, address.ts SocksAddress)', () => {
    // TextDecoder strips a leading EF BB BF unless ignoreBOM is set; the codec must not.
    test('a name starting with EF BB BF (U+FEFF) keeps it: 05 01 00 03 0e efbbbf 6578616d706c652e636f6d 0050', () => {
      const r = expectOk(parseSocks5Request(hex('05 01 00 03 0e efbbbf 6578616d706c652e636f6d 0050')));
      assert.equal(r.value.destination.host, '\ufeffexample.com');
    });

    test('a name that is only EF BB BF stays U+FEFF, not an empty host: 05 01 00 03 03 efbbbf 0050', () => {
      const r = expectOk(parseSocks5Request(hex('05 01 00 03 03 efbbbf 0050')));
      assert.equal(r.value.destination.host, '\ufeff');
    });
  });

  describe('encodeSocks5Request', () => {
    test('tor-resolve RESOLVE bytes: 05 F0 00 03 LEN NAME 0000', () => {
      assert.deepEqual(
        encodeSocks5Request(Command.RESOLVE, { kind: 'domain', host: 'socksmith-dest.test', port: 0 }),
        hex(`05 f0 00 03 13 ${name('socksmith-dest.test')} 0000`),
      );
    });
    test('tor-resolve -x RESOLVE_PTR bytes: 05 F1 00 01 7f000001 0000', () => {
      assert.deepEqual(encodeSocks5Request(Command.RESOLVE_PTR, { kind: 'ipv4', host: '127.0.0.1', port: 0 }), hex('05 f1 00 01 7f000001 0000'));
    });
    test('Arti IPv6 vector: 05 01 00 04 f000…ff11 1f90', () => {
      assert.deepEqual(
        encodeSocks5Request(Command.CONNECT, { kind: 'ipv6', host: 'f000::ff11', port: 8080 }),
        hex('05 01 00 04 f000 0000 0000 0000 0000 0000 0000 ff11 1f90'),
      );
    });
    test('curl --socks5-hostname vector: 05 01 00 03 09 localhost 4650', () => {
      assert.deepEqual(
        encodeSocks5Request(Command.CONNECT, { kind: 'domain', host: 'localhost', port: 18000 }),
        hex('05 01 00 03 09 6c6f63616c686f7374 4650'),
      );
    });
    test('UTF-8 names are sent as UTF-8 with the byte length', () => {
      assert.deepEqual(
        encodeSocks5Request(Command.CONNECT, { kind: 'domain', host: 'bücher.example', port: 443 }),
        hex('05 01 00 03 0f 62 c3bc 636865722e6578616d706c65 01bb'),
      );
    });
    test('a 255-byte name is encoded; a 256-byte name is a RangeError', () => {
      assert.equal(encodeSocks5Request(1, { kind: 'domain', host: A255, port: 1 }).length, 262);
      assert.throws(() => encodeSocks5Request(1, { kind: 'domain', host: A255 + 'a', port: 1 }), RangeError);
      // 128 two-byte characters: 128 code units but 256 bytes.
      assert.throws(() => encodeSocks5Request(1, { kind: 'domain', host: 'é'.repeat(128), port: 1 }), RangeError);
    });
  });
});
