/**
 * Wire constants (src/protocol/constants.ts) against the documents they cite: RFC 1928 §3-§6,
 * RFC 1929 §2, the SOCKS4 protocol document and Tor's socks-extensions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AddressType,
  AuthStatus,
  Command,
  Limits,
  Method,
  Rep,
  Socks4Rep,
  Version,
  commandName,
  repName,
} from '../../src/protocol/constants.js';

test('versions: 04, 05, RFC 1929 01, SOCKS4 reply 00', () => {
  assert.deepEqual(Version, { SOCKS4: 0x04, SOCKS5: 0x05, USERPASS: 0x01, SOCKS4_REPLY: 0x00 });
});

test('commands: RFC 1928 §4 01-03, Tor F0 RESOLVE, F1 RESOLVE_PTR, F2 CONNECT_DIR', () => {
  assert.deepEqual(Command, { CONNECT: 0x01, BIND: 0x02, UDP_ASSOCIATE: 0x03, RESOLVE: 0xf0, RESOLVE_PTR: 0xf1, CONNECT_DIR: 0xf2 });
});

test('ATYP (RFC 1928 §5), methods (§3), RFC 1929 status', () => {
  assert.deepEqual(AddressType, { IPV4: 0x01, DOMAIN: 0x03, IPV6: 0x04 });
  assert.deepEqual(Method, { NO_AUTH: 0x00, GSSAPI: 0x01, USERPASS: 0x02, NO_ACCEPTABLE: 0xff });
  assert.deepEqual(AuthStatus, { SUCCESS: 0x00, FAILURE: 0x01 });
});

test('REP codes: RFC 1928 §6 00-08 and Tor extended F0-F7', () => {
  assert.deepEqual(
    Object.values(Rep),
    [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7],
  );
  assert.equal(Rep.HOST_UNREACHABLE, 0x04);
  assert.equal(Rep.TTL_EXPIRED, 0x06);
  assert.equal(Rep.ONION_BAD_ADDRESS, 0xf6);
  assert.deepEqual(Socks4Rep, { GRANTED: 0x5a, REJECTED: 0x5b, NO_IDENTD: 0x5c, IDENTD_MISMATCH: 0x5d });
});

test('limits follow from the one-byte length fields', () => {
  assert.deepEqual(Limits, {
    SOCKS4_USERID_MAX: 255,
    SOCKS4A_HOSTNAME_MAX: 255,
    SOCKS5_GREETING_MAX: 2 + 255,
    USERPASS_MAX: 3 + 255 + 255,
    SOCKS5_REQUEST_MAX: 4 + 1 + 255 + 2,
    SOCKS4_REQUEST_MAX: 8 + 256 + 256,
  });
});

test('repName and commandName name known codes and print unknown ones as 0xNN', () => {
  assert.equal(repName(0x05), 'CONNECTION_REFUSED');
  assert.equal(repName(0xf6), 'ONION_BAD_ADDRESS');
  assert.equal(repName(0x09), '0x09');
  assert.equal(repName(0xff), '0xff');
  assert.equal(commandName(0xf0), 'RESOLVE');
  assert.equal(commandName(0xf2), 'CONNECT_DIR');
  assert.equal(commandName(0x7f), '0x7f');
  assert.equal(commandName(0x00), '0x00');
});
