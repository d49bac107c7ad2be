/**
 * The server handshake state machine (src/protocol/server-handshake.ts): events, reply bytes,
 * state changes, Tor's leniencies (shared/research/tor-socks.md a.1, a.3) and Arti's
 * step-API shape (tor-socks.md c), fed whole, pipelined, and chunked at every 2- and 3-way split.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type HandshakeEvent, ServerHandshake, classifyFirstByte } from '../../src/protocol/server-handshake.js';
import { Command, Method } from '../../src/protocol/constants.js';
import { hex, toHex } from '../helpers/hex.js';
import { cut, splits } from './support.js';

function expectEvent<T extends HandshakeEvent['type']>(ev: HandshakeEvent, type: T): Extract<HandshakeEvent, { type: T }> {
  if (ev.type !== type) assert.fail(`expected event ${type}, got ${JSON.stringify(ev)}`);
  return ev as Extract<HandshakeEvent, { type: T }>;
}

interface Decisions {
  /** Method to select for each greeting. */
  readonly method: number;
  /** Answer to each auth event. */
  readonly accept: boolean;
}

interface Transcript {
  /** Events in order, as plain data (need-more never appears). */
  readonly events: unknown[];
  /** Every byte string the server sends, in order (selectMethod / authResult / error replies). */
  readonly sent: string[];
  /** Bytes the handshake did not use (optimistic data), including chunks never fed. */
  readonly leftover: Buffer;
  readonly state: string;
}

function summarize(ev: HandshakeEvent): unknown {
  switch (ev.type) {
    case 'greeting':
      return { type: ev.type, methods: [...ev.greeting.methods], length: ev.length };
    case 'auth':
      return { type: ev.type, username: toHex(ev.auth.username), password: toHex(ev.auth.password), length: ev.length };
    case 'request':
      return { type: ev.type, request: { ...ev.request, userId: ev.request.userId && toHex(ev.request.userId) }, length: ev.length };
    case 'error':
      return { type: ev.type, code: ev.error.code, reply: ev.reply && toHex(ev.reply) };
    default:
      return ev;
  }
}

/**
 * Drive a ServerHandshake the way src/kernel/connection.ts does: append each chunk, call step()
 * with the current offset until need-more, answer greetings and auth with `decisions`, advance
 * the offset by each event's length, stop at request / error / unknown-protocol.
 */
function drive(chunks: readonly Uint8Array[], decisions: Decisions): Transcript {
  const hs = new ServerHandshake();
  let buf = Buffer.alloc(0);
  let off = 0;
  const events: unknown[] = [];
  const sent: string[] = [];
  for (let i = 0; i < chunks.length; i++) {
    buf = Buffer.concat([buf, chunks[i]!]);
    for (;;) {
      const ev = hs.step(buf, off);
      if (ev.type === 'need-more') break;
      events.push(summarize(ev));
      if (ev.type === 'greeting') {
        off += ev.length;
        sent.push(toHex(hs.selectMethod(decisions.method)));
        if (hs.state === 'failed') return { events, sent, leftover: Buffer.concat([buf.subarray(off), ...chunks.slice(i + 1)]), state: hs.state };
      } else if (ev.type === 'auth') {
        off += ev.length;
        sent.push(toHex(hs.authResult(decisions.accept)));
        if (hs.state === 'failed') return { events, sent, leftover: Buffer.concat([buf.subarray(off), ...chunks.slice(i + 1)]), state: hs.state };
      } else {
        if (ev.type === 'request') off += ev.length;
        if (ev.type === 'error' && ev.reply) sent.push(toHex(ev.reply));
        return { events, sent, leftover: Buffer.concat([buf.subarray(off), ...chunks.slice(i + 1)]), state: hs.state };
      }
    }
  }
  return { events, sent, leftover: buf.subarray(off), state: hs.state };
}

/** The transcript is the same for the whole input and for every 2- and 3-way chunking of it. */
function checkAllChunkings(input: Buffer, decisions: Decisions, expected: Transcript): void {
  const whole = drive([input], decisions);
  assert.deepEqual(whole, expected, 'whole input');
  for (const points of splits(input.length)) {
    assert.deepEqual(drive(cut(input, points), decisions), expected, `chunks cut at ${points.join(',')}`);
  }
  // one byte at a time, as the slowest client would send it
  const bytes = Array.from(input, (b) => Buffer.from([b]));
  assert.deepEqual(drive(bytes, decisions), expected, 'one byte at a time');
}

const NO_AUTH: Decisions = { method: Method.NO_AUTH, accept: true };
const USERPASS: Decisions = { method: Method.USERPASS, accept: true };

describe('classifyFirstByte (Arti classify_protocol_from_first_byte)', () => {
  test('05 → socks5, 04 → socks4, 01 → userpass, every other byte → unknown', () => {
    for (let b = 0; b < 256; b++) {
      const expected = b === 5 ? 'socks5' : b === 4 ? 'socks4' : b === 1 ? 'userpass' : 'unknown';
      assert.equal(classifyFirstByte(b), expected, `byte ${b}`);
    }
  });
});

describe('ServerHandshake', () => {
  test('a fresh handshake is initial, version 0, method -1, not authenticated; empty input is need-more', () => {
    const hs = new ServerHandshake();
    assert.equal(hs.state, 'initial');
    assert.equal(hs.version, 0);
    assert.equal(hs.method, -1);
    assert.equal(hs.authenticated, false);
    expectEvent(hs.step(new Uint8Array(0)), 'need-more');
    expectEvent(hs.step(hex('05 01 00'), 3), 'need-more');
    assert.equal(hs.state, 'initial');
  });

  test('RFC 1928 §3 greeting 05 01 00 → greeting event; selectMethod(00) gives 05 00 (tor test_socks.c, Arti socks5_init_noauth)', () => {
    const hs = new ServerHandshake();
    const ev = expectEvent(hs.step(hex('05 01 00')), 'greeting');
    assert.deepEqual(ev.greeting.methods, [0]);
    assert.equal(ev.length, 3);
    assert.equal(hs.state, 'await-method-decision');
    assert.equal(hs.version, 5);
    assert.deepEqual(hs.selectMethod(Method.NO_AUTH), hex('05 00'));
    assert.equal(hs.state, 'await-request');
    assert.equal(hs.method, 0);
  });

  test('every prefix of a greeting is need-more and leaves the state initial', () => {
    const msg = hex('05 03 00 01 02');
    for (let k = 0; k < msg.length; k++) {
      const hs = new ServerHandshake();
      expectEvent(hs.step(msg.subarray(0, k)), 'need-more');
      assert.equal(hs.state, 'initial');
    }
  });

  test('curl --socks5-hostname: 05 02 00 01, 05 00, CONNECT localhost:18000 at all chunkings', () => {
    const input = hex('05 02 00 01  05 01 00 03 09 6c6f63616c686f7374 4650');
    checkAllChunkings(input, NO_AUTH, {
      events: [
        { type: 'greeting', methods: [0, 1], length: 4 },
        {
          type: 'request',
          request: { version: 5, command: 1, destination: { kind: 'domain', host: 'localhost', port: 18000 }, userId: undefined, socks4a: false },
          length: 16,
        },
      ],
      sent: ['05 00'],
      leftover: Buffer.alloc(0),
      state: 'done',
    });
  });

  test('selectMethod(02) → 05 02, then RFC 1929 → auth event, authResult(true) → 01 00 (tor test_socks.c 5_authenticate)', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 01 02')), 'greeting');
    assert.deepEqual(hs.selectMethod(Method.USERPASS), hex('05 02'));
    assert.equal(hs.state, 'await-auth');
    const ev = expectEvent(hs.step(hex('01 02 6d65 08 6d79706173737764')), 'auth');
    assert.deepEqual(ev.auth.username, Buffer.from('me'));
    assert.deepEqual(ev.auth.password, Buffer.from('mypasswd'));
    assert.equal(ev.length, 13);
    assert.equal(hs.state, 'await-auth-decision');
    assert.deepEqual(hs.authResult(true), hex('01 00'));
    assert.equal(hs.state, 'await-request');
    assert.equal(hs.authenticated, true);
  });

  test('authResult(false) → 01 01 and state failed; later input is ignored', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 01 02')), 'greeting');
    hs.selectMethod(Method.USERPASS);
    expectEvent(hs.step(hex('01 05 616c696365 05 77726f6e67')), 'auth');
    assert.deepEqual(hs.authResult(false), hex('01 01'));
    assert.equal(hs.state, 'failed');
    assert.equal(hs.authenticated, false);
    expectEvent(hs.step(hex('05 01 00 01 7f000001 0050')), 'need-more');
  });

  test('tor#29175: empty username and password are accepted (01 00 00)', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 02 00 02')), 'greeting');
    hs.selectMethod(Method.USERPASS);
    const ev = expectEvent(hs.step(hex('01 00 00')), 'auth');
    assert.deepEqual(ev.auth.username, Buffer.alloc(0));
    assert.deepEqual(ev.auth.password, Buffer.alloc(0));
    assert.equal(ev.length, 3);
    assert.deepEqual(hs.authResult(true), hex('01 00'));
  });

  test('after 02 the next message is RFC 1929 whatever its first byte: 05 … → error, reply 05 01 00 01 00000000 0000', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 01 02')), 'greeting');
    hs.selectMethod(Method.USERPASS);
    const ev = expectEvent(hs.step(hex('05 01 00 01 7f000001 0050')), 'error');
    assert.equal(ev.error.code, 'SOCKSMITH_ERR_PROTOCOL_BAD_AUTH_VERSION');
    assert.deepEqual(ev.reply, hex('05 01 00 01 00000000 0000'));
    assert.equal(hs.state, 'failed');
  });

  test('tor test_socks_5_auth_unsupported_version: 02 02 me 02 me after 02 → reply 05 01 00 01 0*6', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 01 02')), 'greeting');
    hs.selectMethod(Method.USERPASS);
    const ev = expectEvent(hs.step(hex('02 02 6d65 02 6d65')), 'error');
    assert.equal(ev.error.code, 'SOCKSMITH_ERR_PROTOCOL_BAD_AUTH_VERSION');
    assert.equal(ev.error.reply, 0x01);
    assert.deepEqual(ev.reply, hex('05 01 00 01 00000000 0000'));
  });

  test('Tor leniency (test_socks.c 5_no_authenticate): RFC 1929 after method 00 is accepted once', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 01 00')), 'greeting');
    assert.deepEqual(hs.selectMethod(Method.NO_AUTH), hex('05 00'));
    const ev = expectEvent(hs.step(hex('01 02 0101 02 0101')), 'auth');
    assert.deepEqual(ev.auth.username, hex('0101'));
    assert.deepEqual(ev.auth.password, hex('0101'));
    assert.equal(ev.length, 7);
    assert.deepEqual(hs.authResult(true), hex('01 00'));
    assert.equal(hs.authenticated, true);
    assert.equal(hs.state, 'await-request');
    // a second RFC 1929 message is not accepted: it is parsed as a request and fails
    const again = expectEvent(hs.step(hex('01 02 6d65 02 6d65')), 'error');
    assert.equal(again.error.code, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION');
    assert.equal(again.reply, undefined);
    assert.equal(hs.state, 'failed');
  });

  test('no second RFC 1929 message after a successful 02 authentication', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 01 02')), 'greeting');
    hs.selectMethod(Method.USERPASS);
    expectEvent(hs.step(hex('01 02 6d65 02 6d65')), 'auth');
    hs.authResult(true);
    const ev = expectEvent(hs.step(hex('01 02 6d65 02 6d65')), 'error');
    assert.equal(ev.error.code, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION');
  });

  test('tor test_socks.c 5_auth_before_negotiation: RFC 1929 first → error with no reply bytes, after 1 byte', () => {
    for (const input of [hex('01 02 6d65 02 6d65'), hex('01')]) {
      const hs = new ServerHandshake();
      const ev = expectEvent(hs.step(input), 'error');
      assert.equal(ev.error.code, 'SOCKSMITH_ERR_PROTOCOL_UNEXPECTED');
      assert.equal(ev.reply, undefined);
      assert.equal(ev.error.reply, undefined);
      assert.equal(hs.state, 'failed');
    }
  });

  test('Arti socks4_good at start → request event, length 9, state done, no reply yet', () => {
    const hs = new ServerHandshake();
    const ev = expectEvent(hs.step(hex('04 01 0050 cb007107 00')), 'request');
    assert.equal(ev.length, 9);
    assert.deepEqual(ev.request, {
      version: 4,
      command: Command.CONNECT,
      destination: { kind: 'ipv4', host: '203.0.113.7', port: 80 },
      userId: Buffer.alloc(0),
      socks4a: false,
    });
    assert.equal(hs.state, 'done');
    assert.equal(hs.version, 4);
  });

  test('Arti socks4a_good: SOCKS4A + trailing 99 at all chunkings → request, 99 is leftover', () => {
    const input = hex('04 01 01bb 00000001 73776f7264666973 68 00 7777772e6578616d706c652e636f6d 00 99');
    checkAllChunkings(input, NO_AUTH, {
      events: [
        {
          type: 'request',
          request: {
            version: 4,
            command: 1,
            destination: { kind: 'domain', host: 'www.example.com', port: 443 },
            userId: toHex(Buffer.from('swordfish')),
            socks4a: true,
          },
          length: input.length - 1,
        },
      ],
      sent: [],
      leftover: hex('99'),
      state: 'done',
    });
  });

  test('SOCKS4 request with a too-long USERID → error with reply 00 5b 0000 00000000', () => {
    const hs = new ServerHandshake();
    const ev = expectEvent(hs.step(Buffer.concat([hex('04 01 0050 7f000001'), Buffer.alloc(256, 0x75)])), 'error');
    assert.equal(ev.error.code, 'SOCKSMITH_ERR_PROTOCOL_TOO_LONG');
    assert.deepEqual(ev.reply, hex('00 5b 0000 00000000'));
    assert.equal(hs.state, 'failed');
    assert.equal(hs.version, 4);
  });

  test('SOCKS4A empty hostname → error with reply 00 5b 0000 00000000', () => {
    const hs = new ServerHandshake();
    const ev = expectEvent(hs.step(hex('04 01 0050 00000001 00 00')), 'error');
    assert.equal(ev.error.code, 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME');
    assert.deepEqual(ev.reply, hex('00 5b 0000 00000000'));
  });

  for (const byte of [0x47, 0x43, 0x48, 0x50, 0x00, 0x06, 0x16, 0xff]) {
    test(`unknown first byte ${byte.toString(16).padStart(2, '0')} → unknown-protocol immediately with 1 byte (Tor a.1, Arti c)`, () => {
      const hs = new ServerHandshake();
      const ev = expectEvent(hs.step(Buffer.from([byte])), 'unknown-protocol');
      assert.equal(ev.firstByte, byte);
      assert.equal(hs.state, 'failed');
      expectEvent(hs.step(hex('05 01 00')), 'need-more');
    });
  }

  test('HTTP on the SOCKS port: "GET / HTTP/1.0" → unknown-protocol 47 at an offset too', () => {
    const hs = new ServerHandshake();
    const buf = Buffer.concat([hex('ee ee'), Buffer.from('GET / HTTP/1.0\r\n\r\n')]);
    assert.deepEqual(hs.step(buf, 2), { type: 'unknown-protocol', firstByte: 0x47 });
  });

  test('selectMethod(FF) → 05 ff and state failed (Tor a.3; Arti closes silently instead)', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 02 99 88')), 'greeting');
    assert.deepEqual(hs.selectMethod(Method.NO_ACCEPTABLE), hex('05 ff'));
    assert.equal(hs.state, 'failed');
    assert.equal(hs.method, 0xff);
    expectEvent(hs.step(hex('05 01 00 01 7f000001 0050')), 'need-more');
  });

  test('greeting with 0 methods → error NO_METHODS with no reply (Tor: close without reply)', () => {
    const hs = new ServerHandshake();
    const ev = expectEvent(hs.step(hex('05 00')), 'error');
    assert.equal(ev.error.code, 'SOCKSMITH_ERR_PROTOCOL_NO_METHODS');
    assert.equal(ev.reply, undefined);
    assert.equal(hs.state, 'failed');
  });

  test('request errors carry Tor-form replies: ATYP 23 → 05 08 00 01 0*6, empty name → 05 01 00 01 0*6', () => {
    for (const [req, code, reply] of [
      [hex('05 01 00 23 02020202 1111'), 'SOCKSMITH_ERR_PROTOCOL_BAD_ADDRESS_TYPE', hex('05 08 00 01 00000000 0000')],
      [hex('05 01 00 03 00 0050'), 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', hex('05 01 00 01 00000000 0000')],
      [hex('05 01 00 03 02 c328 0050'), 'SOCKSMITH_ERR_PROTOCOL_BAD_HOSTNAME', hex('05 01 00 01 00000000 0000')],
    ] as const) {
      const hs = new ServerHandshake();
      expectEvent(hs.step(hex('05 01 00')), 'greeting');
      hs.selectMethod(Method.NO_AUTH);
      const ev = expectEvent(hs.step(req), 'error');
      assert.equal(ev.error.code, code);
      assert.deepEqual(ev.reply, reply);
      assert.equal(hs.state, 'failed');
    }
  });

  test('a SOCKS4 request after a SOCKS5 greeting is an error with no reply', () => {
    const hs = new ServerHandshake();
    expectEvent(hs.step(hex('05 01 00')), 'greeting');
    hs.selectMethod(Method.NO_AUTH);
    const ev = expectEvent(hs.step(hex('04 01 0050 7f000001 00')), 'error');
    assert.equal(ev.error.code, 'SOCKSMITH_ERR_PROTOCOL_BAD_VERSION');
    assert.equal(ev.reply, undefined);
  });

  test('Tor F0 / F1 / F2 and unknown commands come back as request events, not errors', () => {
    for (const [req, command] of [
      [hex('05 f0 00 03 0e 746f7270726f6a6563742e6f7267 0102'), 0xf0],
      [hex('05 f1 00 01 02020205 0103'), 0xf1],
      [hex('05 f2 00 01 7f000001 0050'), 0xf2],
      [hex('05 7f 00 01 7f000001 0050'), 0x7f],
      [hex('05 02 00 01 02020201 0101'), 0x02],
    ] as const) {
      const hs = new ServerHandshake();
      expectEvent(hs.step(hex('05 01 00')), 'greeting');
      hs.selectMethod(Method.NO_AUTH);
      const ev = expectEvent(hs.step(req), 'request');
      assert.equal(ev.request.command, command);
      assert.equal(ev.length, req.length);
      assert.equal(hs.state, 'done');
    }
  });

  test('between greeting and selectMethod, and between auth and authResult, step is need-more', () => {
    const input = hex('05 01 02  01 02 6d65 02 6d65  05 01 00 01 7f000001 0050');
    const hs = new ServerHandshake();
    const g = expectEvent(hs.step(input), 'greeting');
    expectEvent(hs.step(input, g.length), 'need-more');
    hs.selectMethod(Method.USERPASS);
    const a = expectEvent(hs.step(input, g.length), 'auth');
    expectEvent(hs.step(input, g.length + a.length), 'need-more');
    hs.authResult(true);
    expectEvent(hs.step(input, g.length + a.length), 'request');
  });

  test('after done, step is need-more whatever follows (leftover is the caller\'s)', () => {
    const hs = new ServerHandshake();
    const input = hex('04 01 0050 7f000001 00 05 01 00');
    const ev = expectEvent(hs.step(input), 'request');
    expectEvent(hs.step(input, ev.length), 'need-more');
    expectEvent(hs.step(hex('05 01 00')), 'need-more');
    assert.equal(hs.state, 'done');
  });

  test('selectMethod and authResult in the wrong state throw', () => {
    const hs = new ServerHandshake();
    assert.throws(() => hs.selectMethod(0), /selectMethod in state initial/);
    assert.throws(() => hs.authResult(true), /authResult in state initial/);
    expectEvent(hs.step(hex('05 01 00')), 'greeting');
    assert.throws(() => hs.authResult(true), /authResult in state await-method-decision/);
    hs.selectMethod(0);
    assert.throws(() => hs.selectMethod(0), /selectMethod in state await-request/);
  });

  describe('pipelined input (one buffer, successive step() calls using the returned lengths)', () => {
    test('tor test_socks.c 5_authenticate_with_data: greeting + auth + request + data in one buffer', () => {
      const data = Buffer.from('GET / HTTP/1.0\r\n\r\n', 'latin1');
      const buf = Buffer.concat([hex('05 01 02  01 02 6d65 03 796f75  05 01 00 01 02020202 1111'), data]);
      const hs = new ServerHandshake();
      let off = 0;
      const g = expectEvent(hs.step(buf, off), 'greeting');
      assert.equal(g.length, 3);
      off += g.length;
      assert.deepEqual(hs.selectMethod(Method.USERPASS), hex('05 02'));
      const a = expectEvent(hs.step(buf, off), 'auth');
      assert.equal(a.length, 8);
      off += a.length;
      assert.deepEqual(hs.authResult(true), hex('01 00'));
      const r = expectEvent(hs.step(buf, off), 'request');
      assert.equal(r.length, 10);
      off += r.length;
      assert.deepEqual(r.request.destination, { kind: 'ipv4', host: '2.2.2.2', port: 4369 });
      assert.deepEqual(buf.subarray(off), data);
    });

    test('curl socks5h://alice:s3cret@ pipelined at all chunkings: 05 02, 01 00, request, optimistic data', () => {
      const input = Buffer.concat([
        hex('05 03 00 01 02  01 05 616c696365 06 733363726574  05 01 00 03 09 6c6f63616c686f7374 4650'),
        Buffer.from('GET /'),
      ]);
      checkAllChunkings(input, USERPASS, {
        events: [
          { type: 'greeting', methods: [0, 1, 2], length: 5 },
          { type: 'auth', username: toHex(Buffer.from('alice')), password: toHex(Buffer.from('s3cret')), length: 14 },
          {
            type: 'request',
            request: { version: 5, command: 1, destination: { kind: 'domain', host: 'localhost', port: 18000 }, userId: undefined, socks4a: false },
            length: 16,
          },
        ],
        sent: ['05 02', '01 00'],
        leftover: Buffer.from('GET /'),
        state: 'done',
      });
    });

    test('Tor leniency pipelined at all chunkings: 05 01 00 + 01 02 0101 02 0101 + request', () => {
      const input = hex('05 01 00  01 02 0101 02 0101  05 01 00 01 02020202 1111');
      checkAllChunkings(input, NO_AUTH, {
        events: [
          { type: 'greeting', methods: [0], length: 3 },
          { type: 'auth', username: '01 01', password: '01 01', length: 7 },
          {
            type: 'request',
            request: { version: 5, command: 1, destination: { kind: 'ipv4', host: '2.2.2.2', port: 4369 }, userId: undefined, socks4a: false },
            length: 10,
          },
        ],
        sent: ['05 00', '01 00'],
        leftover: Buffer.alloc(0),
        state: 'done',
      });
    });

    test('tor-resolve -5 pipelined at all chunkings: 05 01 00 + 05 F0 00 03 LEN NAME 0000', () => {
      const name = Buffer.from('socksmith-dest.test');
      const input = Buffer.concat([hex('05 01 00  05 f0 00 03 13'), name, hex('0000')]);
      checkAllChunkings(input, NO_AUTH, {
        events: [
          { type: 'greeting', methods: [0], length: 3 },
          {
            type: 'request',
            request: { version: 5, command: 0xf0, destination: { kind: 'domain', host: 'socksmith-dest.test', port: 0 }, userId: undefined, socks4a: false },
            length: 26,
          },
        ],
        sent: ['05 00'],
        leftover: Buffer.alloc(0),
        state: 'done',
      });
    });

    test('tor-resolve -4 at all chunkings: 04 F0 0000 00000001 00 NAME 00', () => {
      const input = Buffer.concat([hex('04 f0 0000 00000001 00'), Buffer.from('socksmith-dest.test'), hex('00')]);
      checkAllChunkings(input, NO_AUTH, {
        events: [
          {
            type: 'request',
            request: { version: 4, command: 0xf0, destination: { kind: 'domain', host: 'socksmith-dest.test', port: 0 }, userId: '', socks4a: true },
            length: 29,
          },
        ],
        sent: [],
        leftover: Buffer.alloc(0),
        state: 'done',
      });
    });

    test('failed auth pipelined: the request after it is never parsed and stays unused', () => {
      const input = hex('05 01 02  01 02 6d65 02 6d65  05 01 00 01 7f000001 0050');
      checkAllChunkings(input, { method: Method.USERPASS, accept: false }, {
        events: [
          { type: 'greeting', methods: [2], length: 3 },
          { type: 'auth', username: '6d 65', password: '6d 65', length: 7 },
        ],
        sent: ['05 02', '01 01'],
        leftover: hex('05 01 00 01 7f000001 0050'),
        state: 'failed',
      });
    });

    test('no acceptable method pipelined: 05 ff, nothing after the greeting is parsed', () => {
      const input = hex('05 01 80  05 01 00 01 7f000001 0050');
      checkAllChunkings(input, { method: Method.NO_ACCEPTABLE, accept: true }, {
        events: [{ type: 'greeting', methods: [0x80], length: 3 }],
        sent: ['05 ff'],
        leftover: hex('05 01 00 01 7f000001 0050'),
        state: 'failed',
      });
    });

    test('invalid request pipelined after the greeting (tor test_socks_5_bad_arguments shape): 05 00, then 05 08 …', () => {
      const input = hex('05 01 00  05 01 00 23 02020202 1111');
      checkAllChunkings(input, NO_AUTH, {
        events: [
          { type: 'greeting', methods: [0], length: 3 },
          { type: 'error', code: 'SOCKSMITH_ERR_PROTOCOL_BAD_ADDRESS_TYPE', reply: '05 08 00 01 00 00 00 00 00 00' },
        ],
        sent: ['05 00', '05 08 00 01 00 00 00 00 00 00'],
        // the error is decided at the ATYP byte; what follows it is not looked at
        leftover: hex('05 01 00 23 02020202 1111'),
        state: 'failed',
      });
    });
  });
});
