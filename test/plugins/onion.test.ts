/**
 * Unit tests of plugins/extended-errors/onion.ts: v3 onion address validation (rend-spec-v3 §6).
 * Addresses are built here with an independent base32 encoder, so a bug in the module's own
 * encoder cannot hide a bug in its decoder.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { base32Decode, isValidOnion, onionAddressFromKey, onionProblem } from '../../plugins/extended-errors/onion.js';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/** RFC 4648 base32, lowercase, no padding. */
function b32(bytes: Uint8Array): string {
  let bits = '';
  for (const b of bytes) bits += b.toString(2).padStart(8, '0');
  while (bits.length % 5) bits += '0';
  let out = '';
  for (let i = 0; i < bits.length; i += 5) out += ALPHABET[parseInt(bits.slice(i, i + 5), 2)];
  return out;
}

function checksum(pubkey: Uint8Array, version: number): Buffer {
  return createHash('sha3-256').update('.onion checksum').update(pubkey).update(Buffer.from([version])).digest().subarray(0, 2);
}

/** The 56-character label for (pubkey, checksum, version); checksum defaults to the correct one. */
function label(pubkey: Uint8Array, version = 3, sum: Uint8Array = checksum(pubkey, version)): string {
  return b32(Buffer.concat([Buffer.from(pubkey), Buffer.from(sum), Buffer.from([version])]));
}

/** A real ed25519 public key (raw 32 bytes) from node:crypto. */
function realKey(): Buffer {
  const { publicKey } = generateKeyPairSync('ed25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

const DUCKDUCKGO = 'duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion';

/** 32 bytes that do not decode to a curve point (deterministic search). */
function notOnCurve(): Buffer {
  for (let i = 0; ; i++) {
    const y = createHash('sha256').update(`not-on-curve-${i}`).digest();
    y[31]! &= 0x7f; // a canonical-looking y, so only "no x for this y" can reject it
    try {
      ed25519.Point.fromBytes(y);
    } catch {
      return y;
    }
  }
}

describe('onion address validation', () => {
  test('a real ed25519 key gives a valid address; our encoding equals onionAddressFromKey', () => {
    const key = realKey();
    const addr = `${label(key)}.onion`;
    assert.equal(onionAddressFromKey(key), addr);
    assert.equal(addr.length, 56 + 6);
    assert.equal(onionProblem(addr), undefined);
    assert.equal(isValidOnion(addr), true);
  });

  test("DuckDuckGo's published v3 address is valid", () => {
    assert.equal(onionProblem(DUCKDUCKGO), undefined);
  });

  test('uppercase, mixed case and one trailing dot are accepted', () => {
    const addr = onionAddressFromKey(realKey());
    assert.equal(onionProblem(addr.toUpperCase()), undefined);
    assert.equal(onionProblem(`${addr}.`), undefined);
    assert.equal(onionProblem(`${addr.toUpperCase()}.`), undefined);
    assert.equal(onionProblem(DUCKDUCKGO.replace('duck', 'DuCk').replace('.onion', '.Onion')), undefined);
  });

  test('one subdomain is accepted (sub.<valid>.onion); two are not', () => {
    const addr = onionAddressFromKey(realKey());
    assert.equal(onionProblem(`www.${addr}`), undefined);
    assert.equal(onionProblem(`WWW.${addr.toUpperCase()}.`), undefined);
    assert.ok(onionProblem(`a.b.${addr}`));
  });

  test('bad checksum is rejected', () => {
    const key = realKey();
    const good = checksum(key, 3);
    const bad = Buffer.from([good[0]! ^ 0x01, good[1]!]);
    assert.match(onionProblem(`${label(key, 3, bad)}.onion`)!, /checksum/);
    // One changed key character keeps the old checksum: also a mismatch.
    const l = label(key);
    const flipped = (l[0] === 'a' ? 'b' : 'a') + l.slice(1);
    assert.ok(onionProblem(`${flipped}.onion`));
    assert.equal(isValidOnion(`${flipped}.onion`), false);
  });

  test('version other than 3 is rejected (even with a checksum computed for that version)', () => {
    const key = realKey();
    for (const v of [2, 4, 0, 255]) {
      const problem = onionProblem(`${label(key, v)}.onion`);
      assert.match(problem ?? '', /version/, `version ${v}: ${problem}`);
    }
  });

  test('wrong length is rejected: v2-style 16 characters, 55, 57, empty label, bare "onion"', () => {
    const l = label(realKey());
    for (const name of ['expyuzz4wqqyqhjn.onion', `${l.slice(1)}.onion`, `${l}a.onion`, '.onion', 'onion', 'onion.']) {
      assert.ok(onionProblem(name), `${name} must be invalid`);
      assert.equal(isValidOnion(name), false);
    }
    assert.match(onionProblem('expyuzz4wqqyqhjn.onion')!, /56|characters|length/);
  });

  test('characters outside the base32 alphabet are rejected (0, 1, 8, 9, -, _)', () => {
    const l = label(realKey());
    for (const ch of ['0', '1', '8', '9', '-', '_']) {
      const name = `${ch}${l.slice(1)}.onion`;
      assert.match(onionProblem(name) ?? '', /base32/, `${ch}: ${onionProblem(name)}`);
    }
    assert.equal(base32Decode('ab1c'), undefined);
  });

  test('a key that is not a point on the curve is rejected', () => {
    const y = notOnCurve();
    const name = `${label(y)}.onion`;
    assert.match(onionProblem(name) ?? '', /point/);
  });

  test('small-order points (identity, order 2, 4, 8) and a point with a torsion component are rejected', () => {
    const small = [
      '0100000000000000000000000000000000000000000000000000000000000000', // identity
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // (0, -1), order 2
      '0000000000000000000000000000000000000000000000000000000000000000', // order 4
      '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', // order 8
      'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
    ];
    for (const hexKey of small) {
      const key = Buffer.from(hexKey, 'hex');
      const problem = onionProblem(`${label(key)}.onion`);
      assert.ok(problem, `${hexKey} must be rejected`);
      assert.match(problem!, /small-order|torsion|point/);
    }
    const t8 = ed25519.Point.fromBytes(Buffer.from(small[3]!, 'hex'));
    const mixed = ed25519.Point.BASE.add(t8).toBytes();
    assert.ok(onionProblem(`${label(mixed)}.onion`), 'a prime-order point plus a torsion point is rejected');
  });

  test('not a .onion name at all', () => {
    assert.ok(onionProblem('example.com'));
    assert.ok(onionProblem(`${label(realKey())}.onion.com`));
  });
});
