/**
 * Validation of v3 onion addresses (rend-spec-v3 §6 "Encoding onion addresses"):
 * label = base32(PUBKEY[32] | CHECKSUM[2] | VERSION[1]), 56 characters; VERSION = 3;
 * CHECKSUM = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2]; PUBKEY a valid ed25519 point
 * without torsion (Tor's client rejects small-order and torsion components too).
 * @packageDocumentation
 */
import { createHash } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { normalizeName } from './names.js';

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** RFC 4648 base32 decode (lowercase, no padding); undefined on a bad character. */
export function base32Decode(s: string): Buffer | undefined {
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const ch of s) {
    const v = B32.indexOf(ch);
    if (v < 0) return undefined;
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** Why an onion name is invalid, or undefined when it is a valid v3 address. */
export function onionProblem(name: string): string | undefined {
  const labels = normalizeName(name).split('.');
  if (labels.pop() !== 'onion') return 'not a .onion name';
  // `<56>.onion` or one subdomain in front (`www.<56>.onion`), as Tor's parse_extended_hostname.
  if (labels.length < 1 || labels.length > 2) return 'a .onion name has the form [sub.]<56 characters>.onion';
  const label = labels[labels.length - 1]!;
  if (label.length !== 56) return `onion label has ${label.length} characters, v3 needs 56`;
  const raw = base32Decode(label);
  if (!raw || raw.length !== 35) return 'onion label is not base32';
  const pubkey = raw.subarray(0, 32);
  const checksum = raw.subarray(32, 34);
  const version = raw[34];
  if (version !== 3) return `onion version ${version}, only 3 exists`;
  const expected = createHash('sha3-256').update('.onion checksum').update(pubkey).update(Buffer.from([3])).digest().subarray(0, 2);
  if (!expected.equals(checksum)) return 'onion checksum mismatch';
  try {
    const p = ed25519.Point.fromBytes(pubkey);
    if (p.is0() || !p.isTorsionFree()) return 'onion key is a small-order or torsion point';
  } catch {
    return 'onion key is not a valid ed25519 point';
  }
  return undefined;
}

/** True for a valid v3 onion address (case-insensitive, one trailing dot allowed). */
export function isValidOnion(name: string): boolean {
  return onionProblem(name) === undefined;
}

/** Build the v3 onion address of a 32-byte ed25519 public key (for tests and tools). */
export function onionAddressFromKey(pubkey: Uint8Array): string {
  const checksum = createHash('sha3-256').update('.onion checksum').update(pubkey).update(Buffer.from([3])).digest().subarray(0, 2);
  const raw = Buffer.concat([Buffer.from(pubkey), checksum, Buffer.from([3])]);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of raw) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return `${out}.onion`;
}
