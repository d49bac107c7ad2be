import 'reflect-metadata';
/**
 * Bulk and concurrent transfers through socksmith over real loopback sockets: 64 MiB each way
 * checked by SHA-256, 200 concurrent tunnels with distinct payloads, TCP half-close in both
 * directions (raw sockets, socat and nc), and CONNECT to ::1 (ATYP 04) and to a name (ATYP 03).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { hex, toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, startTcpServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { requireTool } from '../helpers/tools.js';
import { runHeld } from './helpers/run.js';
import { port16, socks5Tunnel, waitForAccessLine } from './helpers/socks.js';

const MiB = 1024 * 1024;
const BIG = 64 * MiB;

let px: TestProxy;
let echo: TestServer & { connections: number };
let echo6: TestServer;
/** Replies `<bytes> <sha256 hex>\n` once it has read the client's EOF, then ends. */
let answerAfterEof: TestServer;
let big: Buffer;
let bigSha: string;

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** `buf` as a stream of 256 KiB chunks (pipeline() then honours the socket's backpressure). */
function chunks(buf: Buffer): Readable {
  return Readable.from(
    (function* () {
      for (let off = 0; off < buf.length; off += 256 * 1024) yield buf.subarray(off, off + 256 * 1024);
    })(),
    { objectMode: false },
  );
}

/**
 * Read a socket to EOF, hashing as it goes (never holding 64 MiB twice). Event-based on purpose:
 * `for await` destroys the socket at EOF, which would also close our still-open write side.
 */
function hashToEnd(s: net.Socket): Promise<{ bytes: number; sha: string }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let bytes = 0;
    s.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    s.once('end', () => resolve({ bytes, sha: h.digest('hex') }));
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed without EOF after ${bytes} bytes`)));
    s.resume();
  });
}

/** Collect a socket to EOF, leaving its write side alone. */
function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed without EOF after ${Buffer.concat(parts).length} bytes`)));
    s.resume();
  });
}

before(async () => {
  big = randomBytes(BIG);
  bigSha = sha256(big);
  px = await startProxy();
  echo = await startEchoServer();
  echo6 = await startEchoServer('::1');
  answerAfterEof = await startTcpServer((s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    s.on('end', () => s.end(`${n} ${h.digest('hex')}\n`));
  });
});
after(async () => {
  await px?.close();
  await Promise.all([echo?.close(), echo6?.close(), answerAfterEof?.close()]);
});

describe('64 MiB, SHA-256 checked', () => {
  test('download: destination → client', { timeout: 30_000 }, async () => {
    const src = await startTcpServer((s) => {
      s.on('data', () => {});
      void pipeline(chunks(big), s).catch(() => {});
    });
    try {
      const s = await socks5Tunnel(px.port, '127.0.0.1', src.port);
      const got = await hashToEnd(s);
      assert.equal(got.bytes, BIG);
      assert.equal(got.sha, bigSha);
      s.destroy();
      const line = await waitForAccessLine(px, (l) => l.destination === `127.0.0.1:${src.port}`);
      assert.equal(line.bytesDown, BIG);
    } finally {
      await src.close();
    }
  });

  test('upload: client → destination, digest read back after the client half-closed', { timeout: 30_000 }, async () => {
    const mark = px.logs.length;
    const s = await socks5Tunnel(px.port, '127.0.0.1', answerAfterEof.port);
    const reply = readAll(s);
    await pipeline(chunks(big), s); // ends the socket's write side when done
    assert.equal((await reply).toString(), `${BIG} ${bigSha}\n`);
    s.destroy();
    const line = await waitForAccessLine(px, (l) => l.destination === `127.0.0.1:${answerAfterEof.port}`, { since: mark });
    assert.equal(line.bytesUp, BIG);
  });
});

test('200 concurrent tunnels each echo their own payload', { timeout: 30_000 }, async () => {
  const before = echo.connections;
  const N = 200;
  const results = await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const payload = Buffer.concat([Buffer.from(`tunnel ${i}:`), randomBytes(2000 + i * 53)]);
      const s = await socks5Tunnel(px.port, i % 2 ? '127.0.0.1' : 'localhost', echo.port, 15_000);
      const back = readAll(s);
      s.end(payload);
      const got = await back;
      s.destroy();
      return { i, ok: got.equals(payload), sent: payload.length, got: got.length };
    }),
  );
  const bad = results.filter((r) => !r.ok);
  assert.deepEqual(bad, [], `${bad.length} tunnels got the wrong bytes`);
  assert.equal(echo.connections - before, N);
});

test('4 MiB pipelined behind greeting and request (far over limits.earlyData) is held, not dropped', { timeout: 20_000 }, async () => {
  const c = await RawClient.connect(px.port);
  try {
    const early = randomBytes(4 * MiB);
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), port16(echo.port), early]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
    const back = await c.read(early.length, 15_000);
    assert.equal(sha256(back), sha256(early));
  } finally {
    c.destroy();
  }
});

describe('TCP half-close', () => {
  test('SOCKS5: client sends, shuts down its write side, and still gets the whole answer', async () => {
    const s = await socks5Tunnel(px.port, '127.0.0.1', answerAfterEof.port);
    const reply = readAll(s);
    s.end('question');
    assert.equal((await reply).toString(), `8 ${sha256(Buffer.from('question'))}\n`);
    s.destroy();
  });

  test('SOCKS4: the same over a SOCKS4 tunnel', async () => {
    const c = await RawClient.connect(px.port);
    try {
      c.write(Buffer.concat([hex('04 01'), port16(answerAfterEof.port), hex('7f000001 00')]));
      assert.equal(toHex(await c.read(8)), toHex(hex('00 5a 0000 00000000')));
      c.write('socks4 question');
      c.end();
      assert.equal((await c.readToEnd()).toString(), `15 ${sha256(Buffer.from('socks4 question'))}\n`);
    } finally {
      c.destroy();
    }
  });

  test('greeting, request, data and EOF all at once (printf | nc style): reply, the answer, then EOF', async () => {
    for (const [name, request] of [
      ['SOCKS5', Buffer.concat([hex('05 01 00'), hex('05 01 00 03 09'), Buffer.from('localhost'), port16(answerAfterEof.port)])],
      ['SOCKS4A', Buffer.concat([hex('04 01'), port16(answerAfterEof.port), hex('00000001 00'), Buffer.from('localhost\0')])],
    ] as const) {
      const c = await RawClient.connect(px.port);
      try {
        c.socket.end(Buffer.concat([request, Buffer.from('eager')]));
        const all = await c.readToEnd();
        const replyLen = name === 'SOCKS5' ? 12 : 8;
        assert.equal(all.subarray(replyLen).toString(), `5 ${sha256(Buffer.from('eager'))}\n`, `${name}: ${toHex(all.subarray(0, replyLen))}`);
        assert.equal(all[name === 'SOCKS5' ? 3 : 1], name === 'SOCKS5' ? 0x00 : 0x5a);
      } finally {
        c.destroy();
      }
    }
  });

  test('destination half-closes first: the client reads its EOF and can still send', async () => {
    let received: Promise<string> | undefined;
    const dest = await startTcpServer((s) => {
      received = new Promise((resolve) => {
        let acc = '';
        s.on('data', (d: Buffer) => (acc += d.toString()));
        s.on('end', () => {
          resolve(acc);
          s.destroy();
        });
      });
      s.end('server speaks first and is done\n');
    });
    try {
      const s = await socks5Tunnel(px.port, '127.0.0.1', dest.port);
      const fromServer = readAll(s); // resolves on the server's EOF
      assert.equal((await fromServer).toString(), 'server speaks first and is done\n');
      s.end('client still talking after EOF');
      assert.equal(await received, 'client still talking after EOF');
      s.destroy();
    } finally {
      await dest.close();
    }
  });

  test('socat SOCKS4A with stdin closed: the answer after EOF still arrives', async (t) => {
    if (!requireTool(t, 'socat')) return;
    const r = await runHeld('socat', ['-t', '5', '-', `SOCKS4A:127.0.0.1:localhost:${answerAfterEof.port},socksport=${px.port}`], 'from socat', {
      closeStdin: true,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), `10 ${sha256(Buffer.from('from socat'))}\n`);
  });

  test('nc -N -X 5 (shutdown after stdin EOF): the answer after EOF still arrives', async (t) => {
    if (!requireTool(t, 'nc', 'netcat-openbsd')) return;
    const r = await runHeld('nc', ['-N', '-X', '5', '-x', `127.0.0.1:${px.port}`, 'localhost', String(answerAfterEof.port)], 'from nc', {
      closeStdin: true,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), `7 ${sha256(Buffer.from('from nc'))}\n`);
  });
});

describe('abortive closes', () => {
  // socksmith ends the other side with a FIN (socket.destroy()), not a reset: the peer sees EOF.
  test('client RST mid-stream: the destination sees EOF promptly, and the proxy keeps serving', async () => {
    let destClosed!: Promise<void>;
    const dest = await startTcpServer((sock) => {
      destClosed = new Promise((resolve) => {
        sock.once('end', () => resolve());
        sock.once('close', () => resolve());
      });
      sock.on('data', () => {});
      sock.write(Buffer.alloc(1024 * 1024)); // unread by the client: the reset discards it
    });
    try {
      const s = await socks5Tunnel(px.port, '127.0.0.1', dest.port);
      s.write('some bytes');
      await new Promise((r) => setTimeout(r, 50));
      s.resetAndDestroy();
      await Promise.race([destClosed, new Promise((_, reject) => setTimeout(() => reject(new Error('destination still open 3 s after the client reset')), 3000))]);
      const again = await socks5Tunnel(px.port, '127.0.0.1', echo.port);
      const back = readAll(again);
      again.end('still alive');
      assert.equal((await back).toString(), 'still alive');
      again.destroy();
    } finally {
      await dest.close();
    }
  });

  test('destination RST mid-stream: the client sees EOF promptly', async () => {
    const dest = await startTcpServer((sock) => {
      sock.once('data', () => sock.resetAndDestroy());
    });
    try {
      const s = await socks5Tunnel(px.port, '127.0.0.1', dest.port);
      const closed = new Promise<void>((resolve) => {
        s.once('end', () => resolve());
        s.once('close', () => resolve());
      });
      s.on('error', () => {});
      s.resume();
      s.write('trigger');
      await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('client still open 3 s after the destination reset')), 3000))]);
    } finally {
      await dest.close();
    }
  });
});

test('a handshake written one byte per segment still connects', async () => {
  const c = await RawClient.connect(px.port);
  try {
    c.socket.setNoDelay(true);
    const bytes = Buffer.concat([hex('05 02 00 02'), hex('05 01 00 03 09'), Buffer.from('localhost'), port16(echo.port)]);
    for (let i = 0; i < 4; i++) {
      c.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.deepEqual(await c.read(2), hex('05 00'));
    for (let i = 4; i < bytes.length; i++) {
      c.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
    c.write('one by one');
    assert.equal((await c.read(10)).toString(), 'one by one');
  } finally {
    c.destroy();
  }
});

describe('destination address types', () => {
  test('CONNECT to ::1 (ATYP 04): BND.ADDR is ::1 and bytes flow', async () => {
    const c = await RawClient.connect(px.port);
    try {
      c.write(hex('05 01 00'));
      assert.deepEqual(await c.read(2), hex('05 00'));
      c.write(Buffer.concat([hex('05 01 00 04 00000000000000000000000000000001'), port16(echo6.port)]));
      const reply = await c.read(22);
      assert.equal(toHex(reply.subarray(0, 20)), toHex(hex('05 00 00 04 00000000000000000000000000000001')), 'BND.ADDR: the ::1 end of the upstream socket');
      assert.notEqual(reply.readUInt16BE(20), 0);
      c.write('over ipv6');
      assert.equal((await c.read(9)).toString(), 'over ipv6');
    } finally {
      c.destroy();
    }
    await waitForAccessLine(px, (l) => l.destination === `[::1]:${echo6.port}`);
  });

  test('CONNECT to the name localhost (ATYP 03) resolves on the proxy and bytes flow', async () => {
    const mark = px.logs.length;
    const c = await RawClient.connect(px.port);
    try {
      c.write(hex('05 01 00'));
      assert.deepEqual(await c.read(2), hex('05 00'));
      c.write(Buffer.concat([hex('05 01 00 03 09'), Buffer.from('localhost'), port16(echo.port)]));
      const reply = await c.read(10);
      assert.equal(toHex(reply.subarray(0, 8)), toHex(hex('05 00 00 01 7f000001')));
      c.write('by name');
      assert.equal((await c.read(7)).toString(), 'by name');
    } finally {
      c.destroy();
    }
    await waitForAccessLine(px, (l) => l.destination === `localhost:${echo.port}`, { since: mark });
  });
});
