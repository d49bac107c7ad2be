/** Test helper: bytes from spaced hex grouped by field, e.g. `hex('05 01 00 01 7f000001 0050')`. */
export function hex(s: string): Buffer {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error(`bad hex: ${s}`);
  return Buffer.from(clean, 'hex');
}

/** Spaced lowercase hex of a buffer, for readable assertion messages. */
export function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex').replace(/(..)/g, '$1 ').trim();
}
