/**
 * The relay never loses, corrupts or reorders a byte, through the real CLI at the repository's
 * default config (proxy.config.ts, only the listen address changed): 2 GiB down, 2 GiB up and
 * 2 GiB each way at once, SHA-256 and byte counts compared at both ends and with the access log;
 * a client that reads slowly in random sizes with frequent pauses while the destination writes
 * fast in random sizes (the case in which reusing a read buffer too early would corrupt the
 * stream: src/kernel/relay.ts, `onRelayRead`); and a client that does not read at all, against
 * which the proxy's memory stays bounded. Every transfer has a deadline that fails with what
 * arrived so far; none of this is a timing assertion.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { ROOT, portOf, startCli, type CliProcess } from '../helpers/cli.js';
import { socks5Tunnel } from './helpers/socks.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** How long one transfer may take before the test fails with what it got (not a timing check). */
const DEADLINE_MS = 120_000;

/** 16 random 1 MiB blocks; the stream is a sequence of them in an order no two neighbours share. */
const BLOCKS = Array.from({ length: 16 }, () => randomBytes(MiB));
function blockAt(i: number): Buffer {
  return BLOCKS[(i * 7 + (i >> 4)) % 16]!;
}

let cli: CliProcess;
let proxyPort: number;

before(async () => {
  cli = await startCli(['--config', path.join(ROOT, 'proxy.config.ts'), '--listen', '127.0.0.1:0']);
  proxyPort = portOf(cli.listening[0]!);
});
after(async () => {
  await cli?.stop();
});

/** A destination server; `onConn` gets each accepted socket (with an 'error' listener). */
async function startServer(onConn: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    onConn(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}
function portOfServer(s: net.Server): number {
  return (s.address() as net.AddressInfo).port;
}
function closeServer(s: net.Server): Promise<void> {
  return new Promise((r) => s.close(() => r()));
}

interface Sent {
  bytes: number;
  sha: string;
}

/**
 * Write `total` bytes of the block sequence to `s` with backpressure, hashing what is written;
 * `chunkSize` picks each write's size (views of the blocks, never copies). Ends `s` when done.
 */
async function sendPattern(s: net.Socket, total: number, chunkSize: () => number = () => MiB, yieldEvery = 0): Promise<Sent> {
  const h = createHash('sha256');
  let sent = 0;
  let writes = 0;
  while (sent < total && !s.destroyed) {
    const block = blockAt(Math.floor(sent / MiB));
    const off = sent % MiB;
    const n = Math.min(chunkSize(), MiB - off, total - sent);
    const view = block.subarray(off, off + n);
    h.update(view);
    sent += n;
    const ok = s.write(view);
    if (!ok) {
      await new Promise<void>((resolve) => {
        const done = () => {
          s.removeListener('drain', done);
          s.removeListener('close', done);
          resolve();
        };
        s.once('drain', done);
        s.once('close', done);
      });
    } else if (yieldEvery > 0 && ++writes % yieldEvery === 0) {
      await new Promise((r) => setImmediate(r));
    }
  }
  s.end();
  return { bytes: sent, sha: h.digest('hex') };
}

/** Read `s` to EOF, hashing; `progress` shows the count so far (for the deadline message). */
function hashToEnd(s: net.Socket, progress: { bytes: number }): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    s.on('data', (c: Buffer) => {
      h.update(c);
      progress.bytes += c.length;
    });
    s.once('end', () => resolve({ bytes: progress.bytes, sha: h.digest('hex') }));
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed without EOF after ${progress.bytes} bytes`)));
    s.resume();
  });
}

/** `p`, or a failure naming what arrived so far once `ms` have passed (then `onTimeout` cleans up). */
async function deadline<T>(p: Promise<T>, ms: number, what: () => string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout();
          reject(new Error(`no result within ${ms / 1000} s: ${what()}`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

interface AccessLine {
  msg?: string;
  destination?: string;
  bytesUp?: number;
  bytesDown?: number;
}

/** The CLI's access-log line for `destination` (stderr, JSON), waited for up to 5 s. */
async function accessLine(destination: string): Promise<AccessLine> {
  const until = Date.now() + 5000;
  for (;;) {
    for (const l of cli.stderr().split('\n')) {
      if (!l.includes('"stream closed"') || !l.includes(destination)) continue;
      const j = JSON.parse(l) as AccessLine;
      if (j.msg === 'stream closed' && j.destination === destination) return j;
    }
    if (Date.now() > until) throw new Error(`no 'stream closed' line for ${destination} within 5 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resident set size of a process in bytes (/proc/PID/status VmRSS). */
function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

describe('2 GiB through the CLI at its default config, SHA-256 compared at both ends', () => {
  const TOTAL = 2 * GiB;

  test('down: destination → client', { timeout: DEADLINE_MS + 30_000 }, async () => {
    let sending!: Promise<Sent>;
    const dest = await startServer((s) => {
      s.resume();
      sending = sendPattern(s, TOTAL);
    });
    try {
      const c = await socks5Tunnel(proxyPort, '127.0.0.1', portOfServer(dest));
      const got = { bytes: 0 };
      const recv = await deadline(hashToEnd(c, got), DEADLINE_MS, () => `client got ${got.bytes} of ${TOTAL} bytes`, () => c.destroy());
      const sent = await sending;
      c.destroy();
      assert.equal(sent.bytes, TOTAL);
      assert.equal(recv.bytes, TOTAL, 'bytes at the client');
      assert.equal(recv.sha, sent.sha, 'SHA-256 at the client = at the destination');
      const line = await accessLine(`127.0.0.1:${portOfServer(dest)}`);
      assert.equal(line.bytesDown, TOTAL);
    } finally {
      await closeServer(dest);
    }
  });

  test('up: client → destination', { timeout: DEADLINE_MS + 30_000 }, async () => {
    const got = { bytes: 0 };
    let receiving!: Promise<Sent>;
    const dest = await startServer((s) => {
      receiving = hashToEnd(s, got);
      void receiving.then(() => s.end(), () => s.destroy());
    });
    try {
      const c = await socks5Tunnel(proxyPort, '127.0.0.1', portOfServer(dest));
      c.resume();
      const sent = await deadline(
        (async () => {
          const r = await sendPattern(c, TOTAL);
          await receiving;
          return r;
        })(),
        DEADLINE_MS,
        () => `destination got ${got.bytes} of ${TOTAL} bytes`,
        () => c.destroy(),
      );
      const recv = await receiving;
      c.destroy();
      assert.equal(recv.bytes, TOTAL, 'bytes at the destination');
      assert.equal(recv.sha, sent.sha, 'SHA-256 at the destination = at the client');
      const line = await accessLine(`127.0.0.1:${portOfServer(dest)}`);
      assert.equal(line.bytesUp, TOTAL);
    } finally {
      await closeServer(dest);
    }
  });

  test('both at once: 2 GiB each way on one tunnel', { timeout: DEADLINE_MS + 30_000 }, async () => {
    const atDest = { bytes: 0 };
    const atClient = { bytes: 0 };
    let destRecv!: Promise<Sent>;
    let destSent!: Promise<Sent>;
    const dest = await startServer((s) => {
      destRecv = hashToEnd(s, atDest);
      destSent = sendPattern(s, TOTAL);
    });
    try {
      const c = await socks5Tunnel(proxyPort, '127.0.0.1', portOfServer(dest));
      const [clientRecv, clientSent] = await deadline(
        Promise.all([hashToEnd(c, atClient), sendPattern(c, TOTAL)]),
        DEADLINE_MS,
        () => `client got ${atClient.bytes}, destination ${atDest.bytes}, of ${TOTAL} bytes each`,
        () => c.destroy(),
      );
      const [dRecv, dSent] = await Promise.all([destRecv, destSent]);
      c.destroy();
      assert.equal(clientRecv.bytes, TOTAL, 'bytes at the client');
      assert.equal(dRecv.bytes, TOTAL, 'bytes at the destination');
      assert.equal(clientRecv.sha, dSent.sha, 'down: SHA-256 at the client = at the destination');
      assert.equal(dRecv.sha, clientSent.sha, 'up: SHA-256 at the destination = at the client');
      const line = await accessLine(`127.0.0.1:${portOfServer(dest)}`);
      assert.equal(line.bytesDown, TOTAL);
      assert.equal(line.bytesUp, TOTAL);
    } finally {
      await closeServer(dest);
    }
  });
});

/** A tiny deterministic PRNG (xorshift32), so a failing run can be repeated with its seed. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

test('a client reading slowly in random sizes with frequent pauses, while the destination writes fast in random sizes, gets every byte in order', { timeout: DEADLINE_MS + 30_000 }, async () => {
  const TOTAL = 96 * MiB;
  const seed = randomBytes(4).readUInt32LE();
  const rand = rng(seed);
  const destRand = rng(seed ^ 0x9e3779b9);
  let sending!: Promise<Sent>;
  const dest = await startServer((s) => {
    s.resume();
    // Mostly small writes (up to 4 KiB), one in four up to 256 KiB, yielding every few writes:
    // the proxy's reads come in every size, small ones while its writes to the client wait.
    sending = sendPattern(s, TOTAL, () => (destRand(4) === 0 ? 1 + destRand(256 * 1024) : 1 + destRand(4096)), 4);
  });
  try {
    // The client reads through its own small buffer in random sizes (1 byte to 16 KiB), pauses
    // after about one read in six for 0–2 ms and after one in 1,500 for 300 ms: the socket buffers
    // between proxy and client fill, and the proxy's writes to it keep going asynchronous.
    const store = Buffer.alloc(16 * 1024);
    const h = createHash('sha256');
    let skip = 2 + 10; // method reply, then a CONNECT reply with an IPv4 BND (the upstream's local address)
    let bytes = 0;
    let resolveEnd!: () => void;
    const ended = new Promise<void>((r) => (resolveEnd = r));
    const c = net.connect({
      host: '127.0.0.1',
      port: proxyPort,
      allowHalfOpen: true,
      onread: {
        buffer: () => store.subarray(0, 1 + rand(store.length)),
        callback(n: number, buf: Uint8Array): boolean {
          let off = 0;
          if (skip > 0) {
            off = Math.min(skip, n);
            skip -= off;
          }
          if (n > off) {
            h.update(buf.subarray(off, n));
            bytes += n - off;
          }
          const r = rand(1500);
          if (r < 250) {
            setTimeout(() => c.resume(), r === 0 ? 300 : rand(3));
            return false;
          }
          return true;
        },
      },
    });
    c.on('error', () => {});
    c.on('end', () => resolveEnd());
    await once(c, 'connect');
    const port = portOfServer(dest);
    c.write(Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, port >> 8, port & 0xff]));
    await deadline(ended, DEADLINE_MS, () => `client got ${bytes} of ${TOTAL} bytes (seed ${seed})`, () => c.destroy());
    const sent = await sending;
    c.destroy();
    assert.equal(bytes, TOTAL, `bytes at the client (seed ${seed})`);
    assert.equal(h.digest('hex'), sent.sha, `SHA-256 at the client = at the destination (seed ${seed})`);
    const line = await accessLine(`127.0.0.1:${port}`);
    assert.equal(line.bytesDown, TOTAL);
  } finally {
    await closeServer(dest);
  }
});

test('a client that does not read: the proxy stops reading the destination, its memory stays bounded, and every byte arrives once the client reads', { timeout: DEADLINE_MS + 30_000 }, async () => {
  const TOTAL = 512 * MiB;
  const pid = cli.child.pid!;
  let written = 0;
  let sending!: Promise<Sent>;
  const dest = await startServer((s) => {
    s.resume();
    sending = sendPattern(s, TOTAL, () => {
      const n = 256 * 1024;
      written += n;
      return n;
    });
  });
  try {
    const rssBefore = rssOf(pid);
    const c = await socks5Tunnel(proxyPort, '127.0.0.1', portOfServer(dest));
    c.pause();
    // Wait until the destination's writes have stalled (backpressure reached it), bounded.
    let last = -1;
    for (let i = 0; i < 100 && written !== last; i++) {
      last = written;
      await new Promise((r) => setTimeout(r, 300));
    }
    const rssStalled = rssOf(pid);
    const stalledAt = written;
    assert.ok(stalledAt < 128 * MiB, `the destination wrote ${(stalledAt / MiB).toFixed(1)} MiB to a client that reads nothing`);
    assert.ok(rssStalled - rssBefore < 128 * MiB, `proxy RSS grew by ${((rssStalled - rssBefore) / MiB).toFixed(1)} MiB behind a client that reads nothing`);
    const got = { bytes: 0 };
    const recv = await deadline(hashToEnd(c, got), DEADLINE_MS, () => `client got ${got.bytes} of ${TOTAL} bytes`, () => c.destroy());
    const sent = await sending;
    c.destroy();
    assert.equal(recv.bytes, TOTAL);
    assert.equal(recv.sha, sent.sha);
  } finally {
    await closeServer(dest);
  }
});
