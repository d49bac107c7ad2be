/**
 * RFC 1929 username/password request and reply, with vectors from the RFC 1929 §2 layout,
 * a curl capture (shared/research/clients.md), Tor's src/test/test_socks.c and Arti's
 * tor-socksproto tests (shared/research/tor-socks.md a.3, c).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type UserPassRequest,
  encodeUserPass,
  encodeUserPassReply,
  parseUserPass,
  parseUserPassReply,
} from '../../src/protocol/codec.js';
import { AuthStatus, Limits } from '../../src/protocol/constants.js';
import { hex } from '../helpers/hex.js';
import { checkError, checkMessage, expectError, expectOk } from './support.js';

function up(username: Buffer | string, password: Buffer | string): UserPassRequest {
  return {
    username: typeof username === 'string' ? Buffer.from(username, 'latin1') : username,
    password: typeof password === 'string' ? Buffer.from(password, 'latin1') : password,
  };
}

describe('RFC 1929 request', () => {
  const vectors: Array<[string, Buffer, UserPassRequest]> = [
    ['RFC 1929 §2 layout; curl socks5h://alice:s3cret@ capture', hex('01 05 616c696365 06 733363726574'), up('alice', 's3cret')],
    ['tor test_socks.c 5_authenticate: me / mypasswd', hex('01 02 6d65 08 6d79706173737764'), up('me', 'mypasswd')],
    ['tor test_socks.c 5_authenticate_with_data: me / you', hex('01 02 6d65 03 796f75'), up('me', 'you')],
    ['tor test_socks.c 5_no_authenticate ("pretend to be broken"): 0101 / 0101', hex('01 02 0101 02 0101'), up(hex('0101'), hex('0101'))],
    ['tor test_socks.c 5_auth_before_negotiation body: me / me', hex('01 02 6d65 02 6d65'), up('me', 'me')],
    ['tor#29175 test_socks_5_authenticate_empty_user_pass: empty / empty', hex('01 00 00'), up('', '')],
    ['empty username, password you (tor#29175)', hex('01 00 03 796f75'), up('', 'you')],
    ['username me, empty password (tor#29175)', hex('01 02 6d65 00'), up('me', '')],
    ['Arti socks5_username_ok: Wagstaff / $wordfi5h, drain 20', hex('01 08 5761677374616666 09 24776f726466693568'), up('Wagstaff', '$wordfi5h')],
    ['fields are raw bytes: 00 ff 80 / 00 00', hex('01 03 00ff80 02 0000'), up(hex('00ff80'), hex('0000'))],
    ['Tor prop 351 isolation: <torS0X>0 / abc', hex('01 09 3c746f725330583e30 03 616263'), up('<torS0X>0', 'abc')],
  ];
  for (const [title, msg, expected] of vectors) {
    test(`${title}: ${msg.toString('hex')}`, () => {
      checkMessage(parseUserPass, msg, expected);
    });
  }

  test('Arti socks5_username_ok uses exactly 20 bytes', () => {
    assert.equal(expectOk(parseUserPass(hex('01 08 5761677374616666 09 24776f726466693568'))).length, 20);
  });

  test('largest message: 255-byte username and password, 513 bytes = Limits.USERPASS_MAX', () => {
    const u = Buffer.alloc(255, 0x75);
    const p = Buffer.alloc(255, 0x70);
    const msg = Buffer.concat([hex('01 ff'), u, hex('ff'), p]);
    assert.equal(msg.length, Limits.USERPASS_MAX);
    checkMessage(parseUserPass, msg, up(u, p), { maxThreeWayLength: 0 });
  });

  test('username and password are copies: reusing the input buffer does not change them', () => {
    const buf = hex('01 05 616c696365 06 733363726574');
    const r = expectOk(parseUserPass(buf));
    buf.fill(0);
    assert.deepEqual(r.value, up('alice', 's3cret'));
  });

  test('tor test_socks.c 5_authenticate_with_data: the request after it is not consumed', () => {
    const buf = hex('01 02 6d65 03 796f75 05 01 00 01 02020202 1111');
    const r = expectOk(parseUserPass(buf));
    assert.equal(r.length, 8);
    assert.deepEqual(r.value, up('me', 'you'));
  });

  describe('errors', () => {
    test('tor test_socks_5_auth_unsupported_version: version 02 → BAD_AUTH_VERSION, reply 01, after 1 byte', () => {
      checkError(parseUserPass, hex('02 02 6d65 02 6d65'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_AUTH_VERSION', 0x01);
    });
    test('a SOCKS5 request where RFC 1929 is expected (first byte 05) → BAD_AUTH_VERSION, reply 01', () => {
      checkError(parseUserPass, hex('05 01 00 01 7f000001 0050'), 1, 'SOCKSMITH_ERR_PROTOCOL_BAD_AUTH_VERSION', 0x01);
    });
    test('version 00 and FF → BAD_AUTH_VERSION, reply 01', () => {
      expectError(parseUserPass(hex('00')), 'SOCKSMITH_ERR_PROTOCOL_BAD_AUTH_VERSION', 0x01);
      expectError(parseUserPass(hex('ff 00 00')), 'SOCKSMITH_ERR_PROTOCOL_BAD_AUTH_VERSION', 0x01);
    });
  });

  describe('encodeUserPass', () => {
    test('strings: curl alice / s3cret bytes', () => {
      assert.deepEqual(encodeUserPass('alice', 's3cret'), hex('01 05 616c696365 06 733363726574'));
    });
    test('strings are sent as UTF-8 (ü = c3 bc)', () => {
      assert.deepEqual(encodeUserPass('ü', ''), hex('01 02 c3bc 00'));
    });
    test('bytes are sent as is, empty fields allowed', () => {
      assert.deepEqual(encodeUserPass(hex('00ff80'), new Uint8Array(0)), hex('01 03 00ff80 00'));
      assert.deepEqual(encodeUserPass('', ''), hex('01 00 00'));
    });
    test('Arti socks5_username_ok bytes', () => {
      assert.deepEqual(encodeUserPass('Wagstaff', '$wordfi5h'), hex('01 08 5761677374616666 09 24776f726466693568'));
    });
    test('255-byte fields are encoded; 256-byte fields are a RangeError', () => {
      assert.equal(encodeUserPass(Buffer.alloc(255), Buffer.alloc(255)).length, 513);
      assert.throws(() => encodeUserPass(Buffer.alloc(256), ''), RangeError);
      assert.throws(() => encodeUserPass('', Buffer.alloc(256)), RangeError);
      assert.throws(() => encodeUserPass('é'.repeat(128), ''), RangeError);
    });
  });
});

describe('RFC 1929 reply', () => {
  test('RFC 1929 §2 success 01 00 (Tor, Arti always send it)', () => {
    checkMessage(parseUserPassReply, hex('01 00'), AuthStatus.SUCCESS);
  });
  test('RFC 1929 §2 failure 01 01', () => {
    checkMessage(parseUserPassReply, hex('01 01'), AuthStatus.FAILURE);
  });
  test('any non-zero status byte is returned as is (RFC 1929 §2 "other than 00 is failure")', () => {
    checkMessage(parseUserPassReply, hex('01 ff'), 0xff);
  });
  test('servers that answer 05 STATUS are accepted (documented leniency)', () => {
    checkMessage(parseUserPassReply, hex('05 00'), 0x00);
  });
  test('version byte 02 → BAD_REPLY with no reply', () => {
    checkError(parseUserPassReply, hex('02 00'), 2, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
    checkError(parseUserPassReply, hex('00 00'), 2, 'SOCKSMITH_ERR_PROTOCOL_BAD_REPLY', undefined);
  });
  test('encodeUserPassReply: 01 00 and 01 01', () => {
    assert.deepEqual(encodeUserPassReply(AuthStatus.SUCCESS), hex('01 00'));
    assert.deepEqual(encodeUserPassReply(AuthStatus.FAILURE), hex('01 01'));
  });
});
