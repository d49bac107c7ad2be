/**
 * Destination-side faults for tests (issue #10): servers that misbehave in each way a real
 * destination can, addresses that fail in each way a network can, and a count of a process's
 * open file descriptors. Everything is on loopback or inside the private network namespace the
 * runner puts the suite in (scripts/run-tests.mjs): nothing can leave the machine.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import type { TestContext } from 'node:test';
import { freePort, startTcpServer, type TestServer } from './net.js';

/** True inside the runner's private network namespace (only `lo`). */
export const IN_NETNS = process.env.SOCKSMITH_TEST_NETNS === '1';

/**
 * For a test that needs the private network namespace (unroutable or blackholed addresses):
 * true inside it; in CI outside it the test fails; elsewhere it is skipped.
 */
export function requireNetns(t: TestContext): boolean {
  if (IN_NETNS) return true;
  if (process.env.CI) throw new Error('this test needs the private network namespace (scripts/run-tests.mjs runs the suite in one; unshare -n as root)');
  t.skip('needs the private network namespace (run through npm test as root)');
  return false;
}

/**
 * An address with no route at all inside the namespace (TEST-NET-1): `connect` fails at once with
 * ENETUNREACH. Outside the namespace it could be routed, so it is only used inside it.
 */
export const UNROUTABLE = '192.0.2.1';

/**
 * A blackholed address (benchmarking range 198.18.0.0/15): inside the namespace
 * {@link setUpBlackhole} routes 198.18.0.0/24 to `lo` without assigning it, so a SYN to it goes
 * out on `lo`, comes back in, is not addressed to this host and, with forwarding off, is dropped.
 * No SYN-ACK and no RST ever come: `connect` hangs until the caller gives up, every time.
 */
export const BLACKHOLED = '198.18.0.1';

/** Install the blackhole route (idempotent; the namespace and its routes die with the runner). */
export function setUpBlackhole(): void {
  if (!IN_NETNS) throw new Error('setUpBlackhole() only inside the private network namespace');
  execFileSync('ip', ['route', 'replace', '198.18.0.0/24', 'dev', 'lo'], { stdio: 'ignore' });
}

/** Open file descriptors of `pid` (entries of /proc/<pid>/fd). */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** What each descriptor of `pid` is (for a failure message). */
export function fdList(pid: number): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(`${fd} -> ${fs.readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/**
 * Wait (polling, at most `ms`) until `pid` has no more than `baseline` descriptors; returns the
 * last count (`eachPoll` runs before each look). The wait is bounded: teardown is asynchronous
 * (a socket closes on the next turns of the event loop), not instant.
 */
export async function settleFds(pid: number, baseline: number, ms = 4000, eachPoll?: () => void): Promise<number> {
  const end = Date.now() + ms;
  for (;;) {
    eachPoll?.();
    const n = fdCount(pid);
    if (n <= baseline || Date.now() > end) return n;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The destination-side faults of the matrix. */
export type DestinationFault = 'refused' | 'unroutable' | 'blackholed' | 'accept-reset' | 'close-unread' | 'reset-after-n' | 'never-reads';

export const DESTINATION_FAULTS: readonly DestinationFault[] = ['refused', 'unroutable', 'blackholed', 'accept-reset', 'close-unread', 'reset-after-n', 'never-reads'];

/** Bytes a `reset-after-n` destination echoes before it resets. */
export const RESET_AFTER = 4096;

/** Running destinations, one per fault, and where each one is. */
export interface FaultyDestinations {
  readonly where: Readonly<Record<DestinationFault, { readonly host: string; readonly port: number }>>;
  /**
   * Reset every connection the destinations hold open (a `never-reads` destination keeps a
   * half-closed tunnel open for as long as it likes: this is the destination finally going away).
   */
  dropConnections(): void;
  close(): Promise<void>;
}

/**
 * Start one destination per fault:
 * - `refused`: a loopback port nothing listens on (RST to the SYN: ECONNREFUSED);
 * - `unroutable`: {@link UNROUTABLE} (ENETUNREACH at once; namespace only);
 * - `blackholed`: {@link BLACKHOLED} (the SYN is never answered; namespace only, after {@link setUpBlackhole});
 * - `accept-reset`: accepts, then resets at once;
 * - `close-unread`: accepts and closes at once without reading (what arrives later is answered with RST);
 * - `reset-after-n`: echoes, and resets once it has received {@link RESET_AFTER} bytes;
 * - `never-reads`: accepts and never reads nor closes (the proxy must apply backpressure).
 */
export async function startFaultyDestinations(): Promise<FaultyDestinations> {
  const servers: TestServer[] = [];
  const open = new Set<net.Socket>();
  const add = async (f: (s: net.Socket) => void) => {
    const s = await startTcpServer((sock) => {
      open.add(sock);
      sock.once('close', () => open.delete(sock));
      f(sock);
    });
    servers.push(s);
    return { host: '127.0.0.1', port: s.port };
  };
  const where: Record<DestinationFault, { host: string; port: number }> = {
    refused: { host: '127.0.0.1', port: await freePort() },
    unroutable: { host: UNROUTABLE, port: 80 },
    blackholed: { host: BLACKHOLED, port: 80 },
    'accept-reset': await add((s) => s.resetAndDestroy()),
    'close-unread': await add((s) => {
      s.pause();
      s.destroy();
    }),
    'reset-after-n': await add((s) => {
      let n = 0;
      s.on('data', (c: Buffer) => {
        if (s.destroyed) return;
        n += c.length;
        s.write(c);
        if (n >= RESET_AFTER) s.resetAndDestroy();
      });
    }),
    'never-reads': await add((s) => s.pause()),
  };
  return {
    where,
    dropConnections: () => {
      for (const sock of open) if (!sock.destroyed) sock.resetAndDestroy();
    },
    close: async () => {
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}

/** The client-side faults of the matrix. */
export type ClientFault =
  /** Send the first `at` bytes of the handshake, then reset after `waitMs` (default 5; 0: at once, -1: next turn of the loop). */
  | { readonly kind: 'handshake-reset'; readonly at: number; readonly waitMs?: number }
  /** Send the whole handshake and 256 KiB of data right behind it, then reset before any reply. */
  | { readonly kind: 'early-reset' }
  /** Handshake and 16 KiB; once answered (or closed) 64 KiB more, then reset. */
  | { readonly kind: 'relay-reset' }
  /** Handshake and 16 KiB, then FIN; wait for the answer (or the close). */
  | { readonly kind: 'half-close' }
  /** Handshake, then data streamed behind it without pause until the proxy closes (at most `max` bytes, then wait for the close). */
  | { readonly kind: 'stream'; readonly max: number };

/** What a faulty client saw. */
export interface ClientOutcome {
  /** Everything the proxy sent. */
  readonly received: Buffer;
  /** A whole SOCKS reply arrived (after `prefix` method/auth bytes). */
  readonly replied: boolean;
  /** The proxy closed or reset the connection (or the client reset it itself). */
  readonly closed: boolean;
  /** The client reset the connection itself (a handshake or early-data fault). */
  readonly selfReset: boolean;
}

/** True when `buf` holds `prefix` bytes and then a complete SOCKS5 reply (or a SOCKS4 one if `v4`). */
function hasReply(buf: Buffer, prefix: number, v4: boolean): boolean {
  if (v4) return buf.length >= 8;
  if (buf.length < prefix + 5) return false;
  const atyp = buf[prefix + 3];
  const len = atyp === 0x01 ? 10 : atyp === 0x04 ? 22 : 7 + buf[prefix + 4]!;
  return buf.length >= prefix + len;
}

const CONNECT_MS = 5000;

/**
 * Connect to `port`, send `handshake` (all of it pipelined, as Tor Browser does), and misbehave
 * as `fault` says. `prefix` is how many bytes come before the reply (method selection, RFC 1929
 * status); the wait for an answer is bounded by `answerMs`. The socket is gone when this resolves.
 */
export async function runFaultyClient(
  port: number,
  handshake: Buffer,
  fault: ClientFault,
  opts: { prefix: number; v4?: boolean; answerMs?: number; host?: string },
): Promise<ClientOutcome> {
  const { createConnection } = await import('node:net');
  const s = createConnection({ port, host: opts.host ?? '127.0.0.1', allowHalfOpen: true });
  let received: Buffer = Buffer.alloc(0);
  let closed = false;
  let wake: (() => void) | undefined;
  s.on('data', (c: Buffer) => {
    received = Buffer.concat([received, c]);
    wake?.();
  });
  s.on('end', () => {
    closed = true;
    wake?.();
  });
  s.on('error', () => {
    closed = true;
    wake?.();
  });
  s.on('close', () => {
    closed = true;
    wake?.();
  });
  s.on('drain', () => wake?.());
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('could not connect to the proxy within 5 s')), CONNECT_MS);
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(t);
      reject(new Error(`could not connect to the proxy (${err.code}): is the process still alive?`));
    });
    s.once('connect', () => {
      clearTimeout(t);
      resolve();
    });
  });
  const replied = () => hasReply(received, opts.prefix, opts.v4 ?? false);
  const until = async (done: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!done() && Date.now() < end) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, end - Date.now()));
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
      wake = undefined;
    }
  };
  const tick = () => new Promise((r) => setTimeout(r, 5));
  const answerMs = opts.answerMs ?? 5000;
  let selfReset = false;
  const reset = () => {
    selfReset = true;
    if (!s.destroyed) s.resetAndDestroy();
  };
  switch (fault.kind) {
    case 'handshake-reset':
      if (fault.at > 0) s.write(handshake.subarray(0, fault.at));
      if (fault.waitMs === -1) await new Promise((r) => setImmediate(r));
      else if (fault.waitMs !== 0) await new Promise((r) => setTimeout(r, fault.waitMs ?? 5));
      reset();
      break;
    case 'early-reset':
      s.write(handshake);
      s.write(Buffer.alloc(256 * 1024, 0x61));
      await tick();
      reset();
      break;
    case 'relay-reset':
      s.write(Buffer.concat([handshake, Buffer.alloc(16 * 1024, 0x62)]));
      await until(() => replied() || closed, answerMs);
      if (!s.destroyed) {
        s.write(Buffer.alloc(64 * 1024, 0x63));
        await tick();
      }
      reset();
      break;
    case 'half-close':
      s.write(Buffer.concat([handshake, Buffer.alloc(16 * 1024, 0x64)]));
      s.end();
      await until(() => replied() || closed, answerMs);
      break;
    case 'stream': {
      s.write(handshake);
      const chunk = Buffer.alloc(64 * 1024, 0x65);
      let sent = 0;
      await until(() => {
        while (!closed && !s.destroyed && sent < fault.max && s.writableLength < 1024 * 1024) {
          s.write(chunk);
          sent += chunk.length;
        }
        return closed || sent >= fault.max;
      }, answerMs);
      await until(() => closed, answerMs);
      break;
    }
  }
  const outcome: ClientOutcome = { received, replied: replied(), closed, selfReset };
  s.destroy();
  return outcome;
}
