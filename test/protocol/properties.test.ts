/**
 * Property tests with fast-check (fixed seed, modest numRuns): encode → parse round trips for
 * every message (Arti handshake.rs round-trip test), encoders checked against bytes built here by
 * hand, and parsers fed arbitrary bytes (Arti fuzz targets): never throw, always one of
 * need-more / ok / error, prefixes of an ok message are need-more, an error never turns into
 * something else when more bytes arrive.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { SocksAddress } from '../../src/protocol/address.js';
import {
  NEED_MORE,
  type ParseResult,
  encodeMethodSelection,
  encodeSocks4Reply,
  encodeSocks4Request,
  encodeSocks5Greeting,
  encodeSocks5Reply,
  encodeSocks5Request,
  encodeUserPass,
  encodeUserPassReply,
  parseMethodSelection,
  parseSocks4Reply,
  parseSocks4Request,
  parseSocks5Greeting,
  parseSocks5Reply,
  parseSocks5Request,
  parseUserPass,
  parseUserPassReply,
} from '../../src/protocol/codec.js';
import { ServerHandshake } from '../../src/protocol/server-handshake.js';
import { type Parser, expectOk } from './support.js';

const SEED = 0x50c4;
const RUNS = 300;
const params = { seed: SEED, numRuns: RUNS };

// ---- arbitraries -----------------------------------------------------------------------------

const port = fc.integer({ min: 0, max: 0xffff });
const byte = fc.integer({ min: 0, max: 0xff });
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);

/** An IPv4 address with its 4 wire bytes. */
const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => ({ bytes: Buffer.from(b), host: Array.from(b).join('.') }));

/**
 * An IPv6 address with its 16 wire bytes and its canonical RFC 5952 text, computed by the WHATWG
 * URL serializer (an oracle independent of ipaddr.js, which the code under test uses).
 */
const ipv6 = fc
  .oneof(
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    // mostly-zero addresses, to exercise "::" compression
    fc.array(fc.constantFrom(0, 0, 0, 1, 0xff), { minLength: 16, maxLength: 16 }).map((a) => Uint8Array.from(a)),
  )
  .map((b) => {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
    const host = new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
    return { bytes: Buffer.from(b), host };
  });

/**
 * One Unicode scalar value, with 1-, 2-, 3- and 4-byte UTF-8 forms equally likely (surrogate
 * code points excluded: they cannot be encoded). Built by hand because fast-check's 'binary'
 * unit costs over a second to set up.
 */
const scalar = fc
  .oneof(
    fc.integer({ min: 0x01, max: 0x7f }),
    fc.integer({ min: 0x80, max: 0x7ff }),
    fc.integer({ min: 0x800, max: 0xffff }).filter((c) => c < 0xd800 || c > 0xdfff),
    fc.integer({ min: 0x10000, max: 0x10ffff }),
  )
  .map((c) => String.fromCodePoint(c));

/** A domain name of 1..255 UTF-8 bytes with no NUL, any Unicode (astral, combining, RTL…). */
const domain = fc
  .oneof(
    fc.array(scalar, { minLength: 1, maxLength: 80 }).map((a) => a.join('')),
    fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 255 }),
    fc.stringMatching(/^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63}){0,3}$/),
  )
  .filter((s) => !s.includes('\0') && Buffer.byteLength(s, 'utf8') >= 1 && Buffer.byteLength(s, 'utf8') <= 255)
  .map((host) => ({ bytes: Buffer.from(host, 'utf8'), host }));

type Wire = { addr: SocksAddress; wire: Buffer };

/** A SOCKS5 address with the ATYP + ADDR + PORT bytes built by hand from RFC 1928 §5. */
const socks5Address: fc.Arbitrary<Wire> = fc.oneof(
  fc.tuple(ipv4, port).map(([a, p]) => ({
    addr: { kind: 'ipv4' as const, host: a.host, port: p },
    wire: Buffer.concat([Buffer.from([0x01]), a.bytes, u16(p)]),
  })),
  fc.tuple(ipv6, port).map(([a, p]) => ({
    addr: { kind: 'ipv6' as const, host: a.host, port: p },
    wire: Buffer.concat([Buffer.from([0x04]), a.bytes, u16(p)]),
  })),
  fc.tuple(domain, port).map(([d, p]) => ({
    addr: { kind: 'domain' as const, host: d.host, port: p },
    wire: Buffer.concat([Buffer.from([0x03, d.bytes.length]), d.bytes, u16(p)]),
  })),
);

/** A SOCKS4 USERID: 0..255 bytes without NUL. */
const userId = fc.uint8Array({ minLength: 0, maxLength: 255 }).map((b) => Buffer.from(b.map((x) => (x === 0 ? 1 : x))));

/** Parse the whole `wire`, and at an offset with trailing bytes; both must give `value` and use all of `wire`. */
function roundTrip<T>(parse: Parser<T>, wire: Buffer, value: T): void {
  const r = expectOk(parse(wire), 'round trip');
  assert.deepEqual(r.value, value);
  assert.equal(r.length, wire.length);
  const r2 = expectOk(parse(Buffer.concat([Buffer.from([0xaa]), wire, Buffer.from([0x05, 0x01, 0x00])]), 1), 'round trip at offset');
  assert.deepEqual(r2.value, value);
  assert.equal(r2.length, wire.length);
  // the byte just before the end is missing → need-more
  assert.equal(parse(wire.subarray(0, wire.length - 1)), NEED_MORE);
}

// ---- round trips -----------------------------------------------------------------------------

describe('encode → parse round trips (fast-check, seed 0x50c4)', () => {
  test('SOCKS5 greeting: 1..255 arbitrary methods', () => {
    fc.assert(
      fc.property(fc.array(byte, { minLength: 1, maxLength: 255 }), (methods) => {
        const wire = encodeSocks5Greeting(methods);
        assert.deepEqual(wire, Buffer.from([0x05, methods.length, ...methods]));
        roundTrip(parseSocks5Greeting, wire, { methods });
      }),
      params,
    );
  });

  test('RFC 1929 request: arbitrary bytes 0..255 long (empty included) for username and password', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 255 }), fc.uint8Array({ maxLength: 255 }), (u, p) => {
        const wire = encodeUserPass(u, p);
        assert.deepEqual(wire, Buffer.concat([Buffer.from([0x01, u.length]), u, Buffer.from([p.length]), p]));
        roundTrip(parseUserPass, wire, { username: Buffer.from(u), password: Buffer.from(p) });
      }),
      params,
    );
  });

  test('RFC 1929 request: the empty/empty and 255/255 extremes are among the cases', () => {
    roundTrip(parseUserPass, encodeUserPass('', ''), { username: Buffer.alloc(0), password: Buffer.alloc(0) });
    const big = Buffer.alloc(255, 0xff);
    roundTrip(parseUserPass, encodeUserPass(big, big), { username: big, password: big });
  });

  test('SOCKS5 request: any command, IPv4 / IPv6 / 1..255-byte UTF-8 names, any port', () => {
    fc.assert(
      fc.property(byte, socks5Address, (command, { addr, wire: a }) => {
        const wire = encodeSocks5Request(command, addr);
        assert.deepEqual(wire, Buffer.concat([Buffer.from([0x05, command, 0x00]), a]));
        roundTrip(parseSocks5Request, wire, { version: 5, command, destination: addr, userId: undefined, socks4a: false });
      }),
      params,
    );
  });

  test('SOCKS5 reply: any REP, IPv4 / IPv6 / names, any port', () => {
    fc.assert(
      fc.property(byte, socks5Address, (rep, { addr, wire: a }) => {
        const wire = encodeSocks5Reply(rep, addr);
        assert.deepEqual(wire, Buffer.concat([Buffer.from([0x05, rep, 0x00]), a]));
        roundTrip(parseSocks5Reply, wire, { rep, bound: addr });
      }),
      params,
    );
  });

  test('SOCKS4 request: any command, any IPv4 that is not a 4A marker (0.0.0.x, x≠0), USERID 0..255 bytes', () => {
    fc.assert(
      fc.property(
        byte,
        ipv4.filter((a) => !(a.bytes[0] === 0 && a.bytes[1] === 0 && a.bytes[2] === 0 && a.bytes[3] !== 0)),
        port,
        userId,
        (command, a, p, uid) => {
          const dest: SocksAddress = { kind: 'ipv4', host: a.host, port: p };
          const wire = encodeSocks4Request(command, dest, uid);
          assert.deepEqual(wire, Buffer.concat([Buffer.from([0x04, command]), u16(p), a.bytes, uid, Buffer.from([0])]));
          roundTrip(parseSocks4Request, wire, { version: 4, command, destination: dest, userId: uid, socks4a: false });
        },
      ),
      params,
    );
  });

  test('SOCKS4A request: any command, 1..255-byte UTF-8 names, USERID 0..255 bytes', () => {
    fc.assert(
      fc.property(byte, domain, port, userId, (command, d, p, uid) => {
        const dest: SocksAddress = { kind: 'domain', host: d.host, port: p };
        const wire = encodeSocks4Request(command, dest, uid);
        assert.deepEqual(
          wire,
          Buffer.concat([Buffer.from([0x04, command]), u16(p), Buffer.from([0, 0, 0, 1]), uid, Buffer.from([0]), d.bytes, Buffer.from([0])]),
        );
        roundTrip(parseSocks4Request, wire, { version: 4, command, destination: dest, userId: uid, socks4a: true });
      }),
      params,
    );
  });

  test('SOCKS4 reply: any code, port and IPv4', () => {
    fc.assert(
      fc.property(byte, port, ipv4, (code, p, a) => {
        const wire = encodeSocks4Reply(code, p, a.host);
        assert.deepEqual(wire, Buffer.concat([Buffer.from([0x00, code]), u16(p), a.bytes]));
        roundTrip(parseSocks4Reply, wire, { code, port: p, ip: a.host });
      }),
      params,
    );
  });

  test('method selection and RFC 1929 status: every byte', () => {
    for (let b = 0; b < 256; b++) {
      roundTrip(parseMethodSelection, encodeMethodSelection(b), b);
      roundTrip(parseUserPassReply, encodeUserPassReply(b), b);
    }
  });
});

// ---- arbitrary input -------------------------------------------------------------------------

const parsers: Array<[string, Parser<unknown>, number]> = [
  ['parseSocks5Greeting', parseSocks5Greeting, 0x05],
  ['parseUserPass', parseUserPass, 0x01],
  ['parseSocks5Request', parseSocks5Request, 0x05],
  ['parseSocks4Request', parseSocks4Request, 0x04],
  ['parseSocks5Reply', parseSocks5Reply, 0x05],
  ['parseMethodSelection', parseMethodSelection, 0x05],
  ['parseUserPassReply', parseUserPassReply, 0x01],
  ['parseSocks4Reply', parseSocks4Reply, 0x00],
];

/**
 * Arbitrary input: random bytes, or random bytes after the parser's own version byte and a
 * plausible second/fourth byte, so that deeper paths (ATYP, lengths, NUL search) are reached.
 */
function input(version: number): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    fc
      .tuple(fc.constantFrom(0x01, 0x03, 0x04, 0x00, 0x02, 0x23), fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 560 }))
      .map(([atyp, head, tail]) => Uint8Array.from([version, head[0] ?? 1, 0, atyp, ...head.subarray(1), ...tail])),
    fc.uint8Array({ maxLength: 40 }).map((b) => Uint8Array.from([version, ...b])),
  );
}

function checkResult(r: ParseResult<unknown>, avail: number): void {
  assert.ok(r.status === 'need-more' || r.status === 'ok' || r.status === 'error', `status ${String((r as { status: unknown }).status)}`);
  if (r.status === 'need-more') assert.equal(r, NEED_MORE);
  if (r.status === 'ok') {
    assert.ok(Number.isInteger(r.length) && r.length >= 2 && r.length <= avail, `length ${r.length} of ${avail}`);
  }
  if (r.status === 'error') {
    assert.match(r.error.code, /^SOCKSMITH_ERR_PROTOCOL_/);
    assert.ok(r.error.reply === undefined || (Number.isInteger(r.error.reply) && r.error.reply >= 0 && r.error.reply <= 0xff));
  }
}

describe('arbitrary bytes (fast-check, seed 0x50c4)', () => {
  for (const [name, parse, version] of parsers) {
    test(`${name} never throws and returns need-more / ok / error, at any offset`, () => {
      fc.assert(
        fc.property(input(version), fc.nat(8), (bytes, off) => {
          const buf = Buffer.concat([Buffer.alloc(off, 0xee), bytes]);
          let r: ParseResult<unknown>;
          try {
            r = parse(buf, off);
          } catch (e) {
            assert.fail(`${name} threw on ${Buffer.from(bytes).toString('hex')}: ${String(e)}`);
          }
          checkResult(r, bytes.length);
        }),
        params,
      );
    });

    test(`${name}: prefixes of an ok result are need-more; more bytes never change ok or error`, () => {
      fc.assert(
        fc.property(input(version), fc.uint8Array({ minLength: 1, maxLength: 16 }), (bytes, more) => {
          const buf = Buffer.from(bytes);
          const r = parse(buf);
          const longer = parse(Buffer.concat([buf, more]));
          if (r.status === 'ok') {
            for (let k = 0; k < r.length; k++) assert.equal(parse(buf.subarray(0, k)), NEED_MORE, `prefix ${k} of an ok message`);
            const l = expectOk(longer, 'same message with more bytes');
            assert.deepEqual(l.value, r.value);
            assert.equal(l.length, r.length);
          } else if (r.status === 'error') {
            assert.equal(longer.status, 'error', 'an error stays an error');
            if (longer.status === 'error') {
              assert.equal(longer.error.code, r.error.code);
              assert.equal(longer.error.reply, r.error.reply);
            }
          }
        }),
        params,
      );
    });
  }

  test('ServerHandshake.step never throws on arbitrary bytes in any reachable state', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('initial', 'after-00', 'after-02'),
        fc.constantFrom(0x04, 0x05, 0x01, 0x47, 0x00),
        fc.uint8Array({ maxLength: 300 }),
        (where, first, rest) => {
          const hs = new ServerHandshake();
          if (where !== 'initial') {
            hs.step(Uint8Array.from([5, 1, 0]));
            hs.selectMethod(where === 'after-00' ? 0x00 : 0x02);
          }
          const ev = hs.step(Uint8Array.from([first, ...rest]));
          assert.ok(['need-more', 'greeting', 'auth', 'request', 'unknown-protocol', 'error'].includes(ev.type));
          if (ev.type === 'error') {
            assert.equal(hs.state, 'failed');
            if (ev.reply !== undefined) assert.ok(ev.reply.length === 10 || ev.reply.length === 8, 'reply is a SOCKS5 or SOCKS4 error reply');
          }
          if (ev.type === 'greeting' || ev.type === 'auth' || ev.type === 'request') assert.ok(ev.length <= rest.length + 1);
        },
      ),
      params,
    );
  });
});
