/**
 * Server → client messages: SOCKS5 method selection (RFC 1928 §3), SOCKS5 replies (RFC 1928 §6,
 * including Tor's ATYP 00 RESOLVE failure) and SOCKS4 replies, with vectors from Tor
 * (connection_edge.c / relay.c as described in shared/research/tor-socks.md a.4, a.5) and
 * Arti's tor-socksproto tests (tor-socks.md c).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import ipaddr from 'ipaddr.js';
import { ZERO_ADDRESS } from '../../src/protocol/address.js';
import {
  type Socks4Reply,
  type Socks5Reply,
  encodeMethodSelection,
  encodeSocks4Reply,
  encodeSocks5Reply,
  parseMethodSelection,
  parseSocks4Reply,
  parseSocks5Reply,
} from '../../src/protocol/codec.js';
import { Method, Rep, Socks4Rep } from '../../src/protocol/constants.js';
import { socks4Rejection, socks5ErrorReply } from '../../src/protocol/server-handshake.js';
import { hex } from '../helpers/hex.js';
import { checkError, checkMessage, expectError, expectNeedMore } from './support.js';

const ZERO16 = '00000000000000000000000000000000';

describe('SOCKS5 method selection (RFC 1928 §3)', () => {
  for (const [title, msg, method] of [
    ['no auth 05 00 (tor test_socks.c, Arti socks5_init_noauth)', hex('05 00'), Method.NO_AUTH],
    ['user/pass 05 02 (Arti socks5_init_username)', hex('05 02'), Method.USERPASS],
    ['no acceptable methods 05 ff (Tor a.3)', hex('05 ff'), Method.NO_ACCEPTABLE],
    ['GSSAPI 05 01', hex('05 01'), Method.GSSAPI],
  ] as const) {
    test(title, () => {
      checkMessage(parseMethodSelection, msg, method);
      assert.deepEqual(encodeMethodSelection(method), msg);
    });
  }
  test('wrong version → BAD_REPLY with no reply', () => {
    checkError(parseMethodSelection, hex('04 00'), 2, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
    checkError(parseMethodSelection, hex('01 00'), 2, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
  });
});

describe('SOCKS5 reply (RFC 1928 §6)', () => {
  const vectors: Array<[string, Buffer, Socks5Reply]> = [
    [
      'Tor CONNECT success, IPv4 client socket (a.4); Arti socks5_request_ok_hostname SUCCEEDED',
      hex('05 00 00 01 00000000 0000'),
      { rep: Rep.SUCCEEDED, bound: { kind: 'ipv4', host: '0.0.0.0', port: 0 } },
    ],
    [
      'Tor CONNECT success, IPv6 or unix client socket: 22 bytes (a.4)',
      hex(`05 00 00 04 ${ZERO16} 0000`),
      { rep: Rep.SUCCEEDED, bound: { kind: 'ipv6', host: '::', port: 0 } },
    ],
    [
      'Tor RESOLVE IPv4 answer (a.5): 05 00 00 01 A B C D 0000',
      hex('05 00 00 01 5db8d822 0000'),
      { rep: Rep.SUCCEEDED, bound: { kind: 'ipv4', host: '93.184.216.34', port: 0 } },
    ],
    [
      'Tor RESOLVE IPv6 answer (a.5): 05 00 00 04 <16> 0000',
      hex('05 00 00 04 2606 2800 0220 0001 0248 1893 25c8 1946 0000'),
      { rep: Rep.SUCCEEDED, bound: { kind: 'ipv6', host: '2606:2800:220:1:248:1893:25c8:1946', port: 0 } },
    ],
    [
      'Tor RESOLVE_PTR name answer (a.5): 05 00 00 03 LEN NAME 0000',
      hex('05 00 00 03 0b 6578616d706c652e636f6d 0000'),
      { rep: Rep.SUCCEEDED, bound: { kind: 'domain', host: 'example.com', port: 0 } },
    ],
    [
      'Tor RESOLVE failure with ATYP 00 (a.5): 05 04 00 00 0*6 is accepted as 0.0.0.0:0',
      hex('05 04 00 00 00000000 0000'),
      { rep: Rep.HOST_UNREACHABLE, bound: { kind: 'ipv4', host: '0.0.0.0', port: 0 } },
    ],
    [
      'socksmith / Arti RESOLVE failure in RFC form: 05 04 00 01 0*6',
      hex('05 04 00 01 00000000 0000'),
      { rep: Rep.HOST_UNREACHABLE, bound: { kind: 'ipv4', host: '0.0.0.0', port: 0 } },
    ],
    [
      'Arti socks5_request_ok_ipv4 reply: HOST_UNREACHABLE with a name, 05 04 00 03 0f foo.example.com 1f90',
      hex('05 04 00 03 0f 666f6f2e6578616d706c652e636f6d 1f90'),
      { rep: Rep.HOST_UNREACHABLE, bound: { kind: 'domain', host: 'foo.example.com', port: 8080 } },
    ],
    [
      'Arti socks5_request_ok_ipv6 reply: GENERAL_FAILURE f000::ff11:8080',
      hex('05 01 00 04 f000 0000 0000 0000 0000 0000 0000 ff11 1f90'),
      { rep: Rep.GENERAL_FAILURE, bound: { kind: 'ipv6', host: 'f000::ff11', port: 8080 } },
    ],
    [
      'Tor unsupported command (test_socks.c 5_unsupported_commands): 05 07 00 01 0*6',
      hex('05 07 00 01 00000000 0000'),
      { rep: Rep.COMMAND_NOT_SUPPORTED, bound: { kind: 'ipv4', host: '0.0.0.0', port: 0 } },
    ],
    [
      'Tor RESOLVE_PTR of a name (test_socks.c 5_malformed_commands): 05 08 00 01 0*6',
      hex('05 08 00 01 00000000 0000'),
      { rep: Rep.ADDRESS_TYPE_NOT_SUPPORTED, bound: { kind: 'ipv4', host: '0.0.0.0', port: 0 } },
    ],
    [
      'Tor SafeSocks refusal (test_socks.c 5_malformed_commands): 05 02 00 01 0*6',
      hex('05 02 00 01 00000000 0000'),
      { rep: Rep.NOT_ALLOWED, bound: { kind: 'ipv4', host: '0.0.0.0', port: 0 } },
    ],
    [
      'Tor extended error F6 bad .onion address (a.4, proposal 304)',
      hex('05 f6 00 01 00000000 0000'),
      { rep: Rep.ONION_BAD_ADDRESS, bound: { kind: 'ipv4', host: '0.0.0.0', port: 0 } },
    ],
    [
      'a real bound address: 05 00 00 01 7f000001 c350 (RFC 1928 §6 BND.ADDR/BND.PORT)',
      hex('05 00 00 01 7f000001 c350'),
      { rep: Rep.SUCCEEDED, bound: { kind: 'ipv4', host: '127.0.0.1', port: 50000 } },
    ],
  ];
  for (const [title, msg, expected] of vectors) {
    test(`${title}: ${msg.toString('hex')}`, () => {
      checkMessage(parseSocks5Reply, msg, expected);
    });
  }

  test('Tor ATYP 00 reply followed by the close: a reply with trailing bytes uses exactly 10', () => {
    const r = parseSocks5Reply(hex('05 04 00 00 00000000 0000 ffff'));
    assert.equal(r.status, 'ok');
    assert.equal(r.status === 'ok' && r.length, 10);
  });

  test('RSV is not checked in replies either: 05 00 ff 01 0*6', () => {
    checkMessage(parseSocks5Reply, hex('05 00 ff 01 00000000 0000'), { rep: 0, bound: { kind: 'ipv4', host: '0.0.0.0', port: 0 } });
  });

  describe('errors', () => {
    test('unknown ATYP 23 → BAD_REPLY with no reply, decided at 4 bytes', () => {
      checkError(parseSocks5Reply, hex('05 00 00 23 00000000 0000'), 4, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
      checkError(parseSocks5Reply, hex('05 00 00 02 00000000 0000'), 4, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
    });
    test('empty BND name → BAD_REPLY with no reply', () => {
      checkError(parseSocks5Reply, hex('05 00 00 03 00 0000'), 7, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
    });
    test('invalid UTF-8 BND name → BAD_REPLY with no reply', () => {
      checkError(parseSocks5Reply, hex('05 00 00 03 02 c328 0000'), 9, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
    });
    test('wrong version → BAD_REPLY with no reply, after 1 byte', () => {
      checkError(parseSocks5Reply, hex('04 00 00 01 00000000 0000'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
      checkError(parseSocks5Reply, hex('00 5a 0000 00000000'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
    });
  });

  describe('encodeSocks5Reply', () => {
    test('ZERO_ADDRESS gives Tor\'s 10-byte form 05 REP 00 01 0*6', () => {
      assert.deepEqual(encodeSocks5Reply(Rep.SUCCEEDED, ZERO_ADDRESS), hex('05 00 00 01 00000000 0000'));
      assert.deepEqual(encodeSocks5Reply(Rep.HOST_UNREACHABLE, ZERO_ADDRESS), hex('05 04 00 01 00000000 0000'));
    });
    test('Arti vectors: name and IPv6 bound addresses', () => {
      assert.deepEqual(
        encodeSocks5Reply(Rep.HOST_UNREACHABLE, { kind: 'domain', host: 'foo.example.com', port: 8080 }),
        hex('05 04 00 03 0f 666f6f2e6578616d706c652e636f6d 1f90'),
      );
      assert.deepEqual(
        encodeSocks5Reply(Rep.GENERAL_FAILURE, { kind: 'ipv6', host: 'f000::ff11', port: 8080 }),
        hex('05 01 00 04 f000 0000 0000 0000 0000 0000 0000 ff11 1f90'),
      );
      assert.deepEqual(encodeSocks5Reply(Rep.SUCCEEDED, { kind: 'ipv6', host: '::', port: 0 }), hex(`05 00 00 04 ${ZERO16} 0000`));
    });
    test('Tor RESOLVE answers', () => {
      assert.deepEqual(encodeSocks5Reply(0, { kind: 'ipv4', host: '93.184.216.34', port: 0 }), hex('05 00 00 01 5db8d822 0000'));
      assert.deepEqual(
        encodeSocks5Reply(0, { kind: 'domain', host: 'example.com', port: 0 }),
        hex('05 00 00 03 0b 6578616d706c652e636f6d 0000'),
      );
    });
    test('socks5ErrorReply(rep) is 05 REP 00 01 0*6 for every REP', () => {
      for (let rep = 0; rep < 256; rep++) {
        assert.deepEqual(socks5ErrorReply(rep), Buffer.from([5, rep, 0, 1, 0, 0, 0, 0, 0, 0]), `rep ${rep}`);
      }
    });
  });
});

describe('SOCKS4 reply', () => {
  const vectors: Array<[string, Buffer, Socks4Reply]> = [
    ['Tor CONNECT granted (a.2): 00 5a 0000 00000000; Arti socks4a_good reply', hex('00 5a 0000 00000000'), { code: Socks4Rep.GRANTED, port: 0, ip: '0.0.0.0' }],
    ['Tor reject (a.2): 00 5b 0000 00000000', hex('00 5b 0000 00000000'), { code: Socks4Rep.REJECTED, port: 0, ip: '0.0.0.0' }],
    ['Tor RESOLVE answer (a.5): 00 5a 0000 A B C D', hex('00 5a 0000 5db8d822'), { code: Socks4Rep.GRANTED, port: 0, ip: '93.184.216.34' }],
    ['Arti socks4_good reply: 00 5B 0050 7f000001', hex('00 5b 0050 7f000001'), { code: Socks4Rep.REJECTED, port: 80, ip: '127.0.0.1' }],
    ['SOCKS4 code 5c (identd) parses', hex('00 5c 0000 00000000'), { code: Socks4Rep.NO_IDENTD, port: 0, ip: '0.0.0.0' }],
    ['SOCKS4 code 5d (identd mismatch) parses', hex('00 5d ffff ffffffff'), { code: Socks4Rep.IDENTD_MISMATCH, port: 65535, ip: '255.255.255.255' }],
  ];
  for (const [title, msg, expected] of vectors) {
    test(`${title}: ${msg.toString('hex')}`, () => {
      checkMessage(parseSocks4Reply, msg, expected);
    });
  }
  test('tor-resolve requires version byte 00: 04 5a … → BAD_REPLY with no reply', () => {
    checkError(parseSocks4Reply, hex('04 5a 0000 00000000'), 8, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
    checkError(parseSocks4Reply, hex('05 00 00 01 00000000 0000'), 8, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
  });
  test('7 bytes are need-more whatever they are', () => {
    expectNeedMore(parseSocks4Reply(hex('04 5a 0000 000000')));
    expectError(parseSocks4Reply(hex('04 5a 0000 00000000')), 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
  });
  test('encodeSocks4Reply vectors', () => {
    assert.deepEqual(encodeSocks4Reply(Socks4Rep.GRANTED), hex('00 5a 0000 00000000'));
    assert.deepEqual(encodeSocks4Reply(Socks4Rep.REJECTED, 80, '127.0.0.1'), hex('00 5b 0050 7f000001'));
    assert.deepEqual(encodeSocks4Reply(Socks4Rep.GRANTED, 0, '93.184.216.34'), hex('00 5a 0000 5db8d822'));
  });
  test('socks4Rejection() is 00 5b 0000 00000000 (Tor a.2)', () => {
    assert.deepEqual(socks4Rejection(), hex('00 5b 0000 00000000'));
  });
});

describe('encodeSocks5Reply: IPv4 bound addresses (the dotted-quad fast path)', () => {
  /** The reply as ipaddr.js reads the address (the encoder's only path before the fast one). */
  function viaIpaddr(rep: number, host: string, port: number): Buffer {
    return Buffer.concat([Buffer.from([0x05, rep, 0x00, 0x01]), Buffer.from(ipaddr.IPv4.parse(host).octets), Buffer.from([port >> 8, port & 0xff])]);
  }

  test('every strict dotted quad gives the same bytes as ipaddr.js (edges and 2000 random addresses)', () => {
    const hosts = ['0.0.0.0', '127.0.0.1', '255.255.255.255', '10.0.0.255', '1.2.3.4', '199.200.201.9'];
    for (let i = 0; i < 2000; i++) hosts.push([0, 1, 2, 3].map(() => Math.floor(Math.random() * 256)).join('.'));
    for (const h of hosts) assert.deepEqual(encodeSocks5Reply(Rep.SUCCEEDED, { kind: 'ipv4', host: h, port: 0xabcd }), viaIpaddr(0, h, 0xabcd), h);
  });

  test('other spellings are still read by ipaddr.js (octal, hex, short forms) or refused as before', () => {
    for (const h of ['01.2.3.4', '0x7f.0.0.1', '127.1', '1.2.3', '000.0.0.0', '0.0.0.00']) assert.deepEqual(encodeSocks5Reply(Rep.SUCCEEDED, { kind: 'ipv4', host: h, port: 1 }), viaIpaddr(0, h, 1), h);
    for (const h of ['1.2.3.4.5', '256.1.1.1', 'a.b.c.d', '1..2.3', '', ' 1.2.3.4', '1.2.3.4 ']) assert.throws(() => encodeSocks5Reply(Rep.SUCCEEDED, { kind: 'ipv4', host: h, port: 1 }), h);
  });
});
