/**
 * Shared assertions for the sans-IO protocol tests: ok / need-more / error checks, and
 * {@link checkMessage}, which runs every streaming property a valid message must have
 * (whole message, every strict prefix, every 2- and 3-way chunking, offset, leftover,
 * and a plain `Uint8Array` view with a non-zero `byteOffset`).
 */
import assert from 'node:assert/strict';
import type { ErrorCode } from '../../src/errors.js';
import { NEED_MORE, type ParseOk, type ParseResult } from '../../src/protocol/codec.js';
import { toHex } from '../helpers/hex.js';

/** Every parser in codec.ts has this shape. */
export type Parser<T> = (buf: Uint8Array, offset?: number) => ParseResult<T>;

function describe(r: ParseResult<unknown>): string {
  if (r.status === 'error') return `error ${r.error.code} (reply ${String(r.error.reply)}): ${r.error.message}`;
  if (r.status === 'ok') return `ok length ${r.length}`;
  return 'need-more';
}

/** Assert `r` is ok and return it. */
export function expectOk<T>(r: ParseResult<T>, what = ''): ParseOk<T> {
  if (r.status !== 'ok') assert.fail(`${what}: expected ok, got ${describe(r)}`);
  return r;
}

/** Assert `r` is the frozen NEED_MORE singleton (never an error). */
export function expectNeedMore(r: ParseResult<unknown>, what = ''): void {
  if (r !== NEED_MORE) assert.fail(`${what}: expected need-more, got ${describe(r)}`);
  assert.equal(r.status, 'need-more');
}

/** Assert `r` is an error with this code and this SOCKS5 `reply` value (undefined = close silently). */
export function expectError(r: ParseResult<unknown>, code: ErrorCode, reply: number | undefined, what = ''): void {
  if (r.status !== 'error') assert.fail(`${what}: expected error ${code}, got ${describe(r)}`);
  assert.equal(r.error.code, code, `${what}: error code`);
  assert.equal(r.error.reply, reply, `${what}: error reply`);
  assert.equal(r.error.name, 'ProtocolError', `${what}: error class`);
  assert.ok(r.error.message.length > 0, `${what}: error has a message`);
}

/** All ways to cut `n` bytes into 2 or 3 non-empty pieces, as lists of cut points. */
export function* splits(n: number): Generator<number[]> {
  for (let i = 1; i < n; i++) yield [i];
  for (let i = 1; i < n; i++) for (let j = i + 1; j < n; j++) yield [i, j];
}

/** Cut `msg` at the given points. */
export function cut(msg: Uint8Array, points: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, msg.length]) {
    out.push(Buffer.from(msg.subarray(prev, p)));
    prev = p;
  }
  return out;
}

/**
 * Feed chunks as a streaming caller does: append each chunk to what it has (a fresh
 * `Buffer.concat`, so the bytes usually sit at a non-zero `byteOffset` of Node's pool) and parse
 * again. Every call before the last chunk must say need-more; the last call's result is returned.
 */
export function feed<T>(parse: Parser<T>, chunks: readonly Uint8Array[], what = ''): ParseResult<T> {
  let have = Buffer.alloc(0);
  let r: ParseResult<T> = NEED_MORE;
  chunks.forEach((c, i) => {
    have = Buffer.concat([have, c]);
    r = parse(have);
    if (i < chunks.length - 1) expectNeedMore(r, `${what} after chunk ${i + 1}/${chunks.length}`);
  });
  return r;
}

const JUNK = Buffer.from([0xee, 0x5a, 0x00]);
const TRAILER = Buffer.from('GET / HTTP/1.0\r\n\r\n', 'latin1');

/**
 * Everything a valid message must satisfy:
 * - the whole message parses to `expected` and uses exactly `msg.length` bytes;
 * - every strict prefix (0 .. length-1 bytes) is need-more, also at a non-zero offset;
 * - every split into 2 or 3 chunks, fed with prefix growth, gives the same value and length;
 * - at an offset the value is the same; bytes after the message are not consumed (leftover);
 * - a plain `Uint8Array` view that starts inside a larger ArrayBuffer parses the same.
 * `maxThreeWay` bounds the 3-way chunkings for long messages (all 2-way splits are always run).
 */
export function checkMessage<T>(parse: Parser<T>, msg: Buffer, expected: T, opts: { maxThreeWayLength?: number } = {}): void {
  const label = toHex(msg.subarray(0, 24)) + (msg.length > 24 ? ' …' : '');
  const whole = expectOk(parse(msg), `whole ${label}`);
  assert.deepEqual(whole.value, expected, `value of ${label}`);
  assert.equal(whole.length, msg.length, `length of ${label}`);

  const atOffset = Buffer.concat([JUNK, msg]);
  for (let k = 0; k < msg.length; k++) {
    expectNeedMore(parse(msg.subarray(0, k)), `prefix ${k}/${msg.length} of ${label}`);
    expectNeedMore(parse(atOffset.subarray(0, JUNK.length + k), JUNK.length), `prefix ${k} at offset ${JUNK.length} of ${label}`);
  }

  const threeWay = msg.length <= (opts.maxThreeWayLength ?? 600);
  for (const points of splits(msg.length)) {
    if (points.length === 2 && !threeWay) continue;
    const r = expectOk(feed(parse, cut(msg, points), `split ${points.join(',')}`), `split ${points.join(',')} of ${label}`);
    assert.deepEqual(r.value, expected, `value after split ${points.join(',')} of ${label}`);
    assert.equal(r.length, msg.length, `length after split ${points.join(',')} of ${label}`);
  }

  const off = expectOk(parse(atOffset, JUNK.length), `offset ${label}`);
  assert.deepEqual(off.value, expected, `value at offset of ${label}`);
  assert.equal(off.length, msg.length, `length at offset of ${label}`);

  const withTrailer = Buffer.concat([JUNK, msg, TRAILER]);
  const lo = expectOk(parse(withTrailer, JUNK.length), `leftover ${label}`);
  assert.deepEqual(lo.value, expected, `value with trailing bytes of ${label}`);
  assert.equal(lo.length, msg.length, `trailing bytes are not consumed for ${label}`);

  const backing = new Uint8Array(msg.length + 7);
  backing.set(msg, 7);
  const view = backing.subarray(7);
  const v = expectOk(parse(view), `Uint8Array view ${label}`);
  assert.deepEqual(v.value, expected, `value from a Uint8Array view of ${label}`);
  assert.equal(v.length, msg.length);
}

/**
 * Every prefix of an invalid message is need-more up to `errorAt` bytes, and from `errorAt`
 * bytes on (up to the whole message, and beyond with trailing bytes) it is the given error.
 */
export function checkError(
  parse: Parser<unknown>,
  msg: Buffer,
  errorAt: number,
  code: ErrorCode,
  reply: number | undefined,
): void {
  const label = toHex(msg.subarray(0, 24)) + (msg.length > 24 ? ' …' : '');
  for (let k = 0; k < errorAt; k++) expectNeedMore(parse(msg.subarray(0, k)), `prefix ${k} of invalid ${label}`);
  for (let k = errorAt; k <= msg.length; k++) expectError(parse(msg.subarray(0, k)), code, reply, `prefix ${k} of invalid ${label}`);
  expectError(parse(Buffer.concat([msg, TRAILER])), code, reply, `invalid ${label} with trailing bytes`);
  expectError(parse(Buffer.concat([JUNK, msg]), JUNK.length), code, reply, `invalid ${label} at an offset`);
}
