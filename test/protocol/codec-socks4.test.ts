/**
 * SOCKS4 and SOCKS4A request parsing and encoding (SOCKS4 protocol document, SOCKS4A extension),
 * with vectors from Arti's tor-socksproto tests, Tor's src/test/test_socks.c, tor-resolve (a.9)
 * and client captures (shared/research/clients.md).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SocksAddress } from '../../src/protocol/address.js';
import { type SocksRequest, encodeSocks4Request, parseSocks4Request } from '../../src/protocol/codec.js';
import { Command, Limits } from '../../src/protocol/constants.js';
import { hex } from '../helpers/hex.js';
import { checkError, checkMessage, expectError, expectNeedMore, expectOk } from './support.js';

function req4(command: number, destination: SocksAddress, userId: Buffer, socks4a = destination.kind === 'domain'): SocksRequest {
  return { version: 4, command, destination, userId, socks4a };
}
const str = (s: string) => Buffer.from(s, 'utf8').toString('hex');
const NONE = Buffer.alloc(0);

describe('SOCKS4 / SOCKS4A request', () => {
  const vectors: Array<[string, Buffer, SocksRequest]> = [
    [
      'Arti socks4_good: 203.0.113.7:80, empty USERID, 9 bytes',
      hex('04 01 0050 cb007107 00'),
      req4(Command.CONNECT, { kind: 'ipv4', host: '203.0.113.7', port: 80 }, NONE),
    ],
    [
      'Arti socks4a_good (without its trailing 99): www.example.com:443, USERID swordfish',
      hex('04 01 01bb 00000001 73776f7264666973 68 00 7777772e6578616d706c652e636f6d 00'),
      req4(Command.CONNECT, { kind: 'domain', host: 'www.example.com', port: 443 }, Buffer.from('swordfish')),
    ],
    [
      'tor test_socks.c 4_supported_commands: CONNECT 2.2.2.3:4370',
      hex('04 01 1112 02020203 00'),
      req4(Command.CONNECT, { kind: 'ipv4', host: '2.2.2.3', port: 4370 }, NONE),
    ],
    [
      'tor test_socks.c 4_supported_commands: CONNECT 2.2.2.4:4370 with USERID me',
      hex('04 01 1112 02020204 6d65 00'),
      req4(Command.CONNECT, { kind: 'ipv4', host: '2.2.2.4', port: 4370 }, Buffer.from('me')),
    ],
    [
      'tor test_socks.c 4_supported_commands: SOCKS4A RESOLVE (F0) torproject.org, IP 0.0.0.2',
      hex('04 f0 0101 00000002 6d65 00 746f7270726f6a6563742e6f7267 00'),
      req4(Command.RESOLVE, { kind: 'domain', host: 'torproject.org', port: 257 }, Buffer.from('me')),
    ],
    [
      'tor test_socks.c 4_unsupported_commands: BIND (02) is returned, policy answers 5b',
      hex('04 02 1111 02020202 00'),
      req4(Command.BIND, { kind: 'ipv4', host: '2.2.2.2', port: 4369 }, NONE),
    ],
    [
      'tor-resolve -4 (a.9): 04 F0 0000 00000001 00 NAME 00',
      hex(`04 f0 0000 00000001 00 ${str('socksmith-dest.test')} 00`),
      req4(Command.RESOLVE, { kind: 'domain', host: 'socksmith-dest.test', port: 0 }, NONE),
    ],
    [
      'curl --socks4 capture: 127.0.0.1:18000, empty USERID',
      hex('04 01 4650 7f000001 00'),
      req4(Command.CONNECT, { kind: 'ipv4', host: '127.0.0.1', port: 18000 }, NONE),
    ],
    [
      'curl --socks4a capture: IP 0.0.0.1 + localhost',
      hex(`04 01 4650 00000001 00 ${str('localhost')} 00`),
      req4(Command.CONNECT, { kind: 'domain', host: 'localhost', port: 18000 }, NONE),
    ],
    [
      'socat SOCKS4 capture: USERID anonymous',
      hex(`04 01 4650 7f000001 ${str('anonymous')} 00`),
      req4(Command.CONNECT, { kind: 'ipv4', host: '127.0.0.1', port: 18000 }, Buffer.from('anonymous')),
    ],
    [
      'socat SOCKS4A capture: USERID anonymous + localhost',
      hex(`04 01 4650 00000001 ${str('anonymous')} 00 ${str('localhost')} 00`),
      req4(Command.CONNECT, { kind: 'domain', host: 'localhost', port: 18000 }, Buffer.from('anonymous')),
    ],
    [
      'Arti: IP 0.0.0.0 is plain SOCKS4 to 0.0.0.0, not 4A (policy refuses it)',
      hex('04 01 0050 00000000 00'),
      req4(Command.CONNECT, { kind: 'ipv4', host: '0.0.0.0', port: 80 }, NONE),
    ],
    [
      'SOCKS4A: 0.0.0.255 is also the 4A marker',
      hex('04 01 0050 000000ff 00 61 00'),
      req4(Command.CONNECT, { kind: 'domain', host: 'a', port: 80 }, NONE),
    ],
    [
      'SOCKS4A marker is 0.0.0.x only: 0.0.1.0 is a plain IP',
      hex('04 01 0050 00000100 00'),
      req4(Command.CONNECT, { kind: 'ipv4', host: '0.0.1.0', port: 80 }, NONE),
    ],
    [
      'Arti allows F1 over SOCKS4: RESOLVE_PTR 8.8.8.8 is returned',
      hex('04 f1 0000 08080808 00'),
      req4(Command.RESOLVE_PTR, { kind: 'ipv4', host: '8.8.8.8', port: 0 }, NONE),
    ],
    [
      'unknown SOCKS4 command 7F is returned, not an error',
      hex('04 7f ffff 0a000001 00'),
      req4(0x7f, { kind: 'ipv4', host: '10.0.0.1', port: 65535 }, NONE),
    ],
    [
      'USERID is raw bytes (01 ff 80), not text',
      hex('04 01 0050 7f000001 01ff80 00'),
      req4(Command.CONNECT, { kind: 'ipv4', host: '127.0.0.1', port: 80 }, hex('01ff80')),
    ],
    [
      'SOCKS4A UTF-8 name bücher.example is decoded and kept as sent',
      hex('04 01 01bb 00000001 00 62 c3bc 636865722e6578616d706c65 00'),
      req4(Command.CONNECT, { kind: 'domain', host: 'bücher.example', port: 443 }, NONE),
    ],
  ];
  for (const [title, msg, expected] of vectors) {
    test(`${title}: ${msg.toString('hex')}`, () => {
      checkMessage(parseSocks4Request, msg, expected);
    });
  }

  test('Arti socks4a_good with its trailing 99: the 99 is not consumed (length = total - 1)', () => {
    const msg = hex('04 01 01bb 00000001 73776f7264666973 68 00 7777772e6578616d706c652e636f6d 00 99');
    const r = expectOk(parseSocks4Request(msg));
    assert.equal(r.length, msg.length - 1);
    assert.equal(r.value.destination.host, 'www.example.com');
  });

  test('SOCKS4A followed by optimistic data (tor-socks.md a.8): length excludes the data at every split', () => {
    const request = hex(`04 01 4650 00000001 00 ${str('localhost')} 00`);
    const data = Buffer.from('GET / HTTP/1.0\r\nHost: x\r\n\r\n', 'latin1');
    const all = Buffer.concat([request, data]);
    for (let k = request.length; k <= all.length; k++) {
      const r = expectOk(parseSocks4Request(all.subarray(0, k)), `with ${k - request.length} data bytes`);
      assert.equal(r.length, request.length);
      assert.deepEqual(r.value, req4(Command.CONNECT, { kind: 'domain', host: 'localhost', port: 18000 }, NONE));
    }
  });

  test('SOCKS4 data bytes that contain NULs are not taken as a 4A hostname', () => {
    const msg = hex('04 01 0050 7f000001 00 00 61 00');
    const r = expectOk(parseSocks4Request(msg));
    assert.equal(r.length, 9);
    assert.equal(r.value.socks4a, false);
  });

  test('SOCKS4A marker with the USERID NUL but no hostname yet is need-more (04 01 0050 00000005 00)', () => {
    expectNeedMore(parseSocks4Request(hex('04 01 0050 00000005 00')));
    expectNeedMore(parseSocks4Request(hex('04 01 0050 00000005 00 6162')));
  });

  test('the returned USERID is a copy: reusing the input buffer does not change it', () => {
    const buf = hex('04 01 0050 7f000001 6d65 00');
    const r = expectOk(parseSocks4Request(buf));
    buf.fill(0x41);
    assert.deepEqual(r.value.userId, Buffer.from('me'));
  });

  describe('length limits (Limits.SOCKS4_USERID_MAX = Limits.SOCKS4A_HOSTNAME_MAX = 255)', () => {
    test('limits are 255', () => {
      assert.equal(Limits.SOCKS4_USERID_MAX, 255);
      assert.equal(Limits.SOCKS4A_HOSTNAME_MAX, 255);
    });

    test('USERID of 255 bytes + NUL parses (264 bytes)', () => {
      const uid = Buffer.alloc(255, 0x75);
      const msg = Buffer.concat([hex('04 01 0050 7f000001'), uid, hex('00')]);
      checkMessage(parseSocks4Request, msg, req4(Command.CONNECT, { kind: 'ipv4', host: '127.0.0.1', port: 80 }, uid), {
        maxThreeWayLength: 0,
      });
    });

    test('USERID with no NUL: need-more up to 255 bytes, TOO_LONG (reply 01) at 256 bytes', () => {
      const msg = Buffer.concat([hex('04 01 0050 7f000001'), Buffer.alloc(300, 0x75)]);
      checkError(parseSocks4Request, msg, 8 + 256, 'SOCKSMITH_ERR_PROTOCOL_TOO_LONG', 0x01);
    });

    test('USERID with no NUL in SOCKS4A form: same limit before any hostname is looked at', () => {
      const msg = Buffer.concat([hex('04 01 0050 00000001'), Buffer.alloc(256, 0x75), hex('00 61 00')]);
      checkError(parseSocks4Request, msg, 8 + 256, 'SOCKSMITH_ERR_PROTOCOL_TOO_LONG', 0x01);
    });

    test('SOCKS4A hostname of 255 bytes + NUL parses (265 bytes)', () => {
      const name = 'h'.repeat(255);
      const msg = Buffer.concat([hex('04 01 0050 00000001 00'), Buffer.from(name), hex('00')]);
      checkMessage(parseSocks4Request, msg, req4(Command.CONNECT, { kind: 'domain', host: name, port: 80 }, NONE), {
        maxThreeWayLength: 0,
      });
    });

    test('SOCKS4A hostname with no NUL: need-more up to 255 bytes, TOO_LONG (reply 01) at 256 bytes', () => {
      const head = hex('04 01 0050 00000001 6d65 00');
      const msg = Buffer.concat([head, Buffer.alloc(300, 0x68)]);
      checkError(parseSocks4Request, msg, head.length + 256, 'SOCKSMITH_ERR_PROTOCOL_TOO_LONG', 0x01);
    });

    test('largest SOCKS4A request: 255-byte USERID and 255-byte name, 520 bytes = Limits.SOCKS4_REQUEST_MAX', () => {
      const uid = Buffer.alloc(255, 0x75);
      const name = 'n'.repeat(255);
      const msg = Buffer.concat([hex('04 f0 0000 00000001'), uid, hex('00'), Buffer.from(name), hex('00')]);
      assert.equal(msg.length, Limits.SOCKS4_REQUEST_MAX);
      checkMessage(parseSocks4Request, msg, req4(Command.RESOLVE, { kind: 'domain', host: name, port: 0 }, uid), {
        maxThreeWayLength: 0,
      });
    });
  });

  describe('errors', () => {
    test('SOCKS4A empty hostname → BAD_HOSTNAME, reply 01: 04 01 0050 00000001 00 00', () => {
      checkError(parseSocks4Request, hex('04 01 0050 00000001 00 00'), 10, 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 0x01);
    });

    for (const [what, bytes] of [
      ['c3 28', 'c328'],
      ['80', '80'],
      ['c0 af (overlong)', 'c0af'],
      ['ed a0 80 (surrogate)', 'eda080'],
      ['ff fe', 'fffe'],
    ] as const) {
      test(`SOCKS4A invalid UTF-8 hostname ${what} → BAD_HOSTNAME, reply 01`, () => {
        const msg = hex(`04 01 0050 00000001 00 ${bytes} 00`);
        checkError(parseSocks4Request, msg, msg.length, 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', 0x01);
      });
    }

    test('wrong version byte → BAD_VERSION with no reply, after 1 byte', () => {
      checkError(parseSocks4Request, hex('05 01 0050 7f000001 00'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
      checkError(parseSocks4Request, hex('00 5a 0000 00000000'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
      expectError(parseSocks4Request(hex('47')), 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION', undefined);
    });
  });

  describe('BOM handling (names are kept exactly as sent)', () => {
    test('SOCKS4A name starting with EF BB BF keeps U+FEFF: 04 01 0050 00000001 00 efbbbf 61 00', () => {
      const r = expectOk(parseSocks4Request(hex('04 01 0050 00000001 00 efbbbf 61 00')));
      assert.equal(r.value.destination.host, '\ufeffa');
    });
  });

  describe('encodeSocks4Request', () => {
    test('Arti socks4_good bytes', () => {
      assert.deepEqual(encodeSocks4Request(Command.CONNECT, { kind: 'ipv4', host: '203.0.113.7', port: 80 }), hex('04 01 0050 cb007107 00'));
    });
    test('Arti socks4a_good bytes: a domain uses the 4A form with IP 0.0.0.1', () => {
      assert.deepEqual(
        encodeSocks4Request(Command.CONNECT, { kind: 'domain', host: 'www.example.com', port: 443 }, 'swordfish'),
        hex('04 01 01bb 00000001 73776f7264666973 68 00 7777772e6578616d706c652e636f6d 00'),
      );
    });
    test('tor-resolve -4 bytes: 04 F0 0000 00000001 00 NAME 00', () => {
      assert.deepEqual(
        encodeSocks4Request(Command.RESOLVE, { kind: 'domain', host: 'socksmith-dest.test', port: 0 }),
        hex(`04 f0 0000 00000001 00 ${str('socksmith-dest.test')} 00`),
      );
    });
    test('USERID given as bytes is sent as is', () => {
      assert.deepEqual(
        encodeSocks4Request(Command.CONNECT, { kind: 'ipv4', host: '127.0.0.1', port: 80 }, hex('01ff80')),
        hex('04 01 0050 7f000001 01ff80 00'),
      );
    });
    test('IPv6 cannot be expressed in SOCKS4 (RangeError)', () => {
      assert.throws(() => encodeSocks4Request(Command.CONNECT, { kind: 'ipv6', host: '::1', port: 80 }), RangeError);
    });
  });
});
