/**
 * Small SOCKS client-side helpers for the plugin tests: request builders, a raw client bound to a
 * chosen loopback source address, a SOCKS5 handshake, spawned tools (microsocks, CLI clients)
 * killed by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import assert from 'node:assert/strict';
import { RawClient } from '../../helpers/net.js';
import { hex, toHex } from '../../helpers/hex.js';
import { ipv6Bytes } from './recording-upstream.js';
import { freePort } from '../../helpers/net.js';
export { freePort };

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Two big-endian bytes. */
export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** SOCKS5 address field: ATYP 01 / 04 for literals (unless `asName`), else ATYP 03. */
export function addr5(host: string, asName = false): Buffer {
  if (!asName && net.isIPv4(host)) return Buffer.concat([Buffer.from([1]), Buffer.from(host.split('.').map(Number))]);
  if (!asName && net.isIPv6(host)) return Buffer.concat([Buffer.from([4]), ipv6Bytes(host)]);
  const n = Buffer.from(host, 'utf8');
  return Buffer.concat([Buffer.from([3, n.length]), n]);
}

/** `05 CMD 00 ATYP ADDR PORT`. */
export function req5(cmd: number, host: string, port: number, asName = false): Buffer {
  return Buffer.concat([Buffer.from([5, cmd, 0]), addr5(host, asName), u16(port)]);
}

/** SOCKS4 (IPv4 host) or SOCKS4a (name) request with `userId`. */
export function req4(cmd: number, host: string, port: number, userId = ''): Buffer {
  const uid = Buffer.from(userId, 'utf8');
  if (net.isIPv4(host)) return Buffer.concat([Buffer.from([4, cmd]), u16(port), Buffer.from(host.split('.').map(Number)), uid, Buffer.from([0])]);
  return Buffer.concat([Buffer.from([4, cmd]), u16(port), hex('00000001'), uid, Buffer.from([0]), Buffer.from(host, 'utf8'), Buffer.from([0])]);
}

/** RFC 1929 `01 ULEN USER PLEN PASS`. */
export function userpass(user: string, pass: string): Buffer {
  const u = Buffer.from(user, 'utf8');
  const p = Buffer.from(pass, 'utf8');
  return Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]);
}

/** Connect a RawClient, optionally from a chosen loopback source address (e.g. 127.0.0.2). */
export async function connectClient(port: number, opts: { host?: string; localAddress?: string } = {}): Promise<RawClient> {
  if (!opts.localAddress) return RawClient.connect(port, opts.host ?? '127.0.0.1');
  const socket = net.connect({ port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress, allowHalfOpen: true });
  await once(socket, 'connect');
  // RawClient's constructor is private to keep tests on RawClient.connect; we need a bound source.
  return new (RawClient as unknown as new (s: net.Socket) => RawClient)(socket);
}

/**
 * SOCKS5 greeting (+ RFC 1929 when `user` is given), asserting the exact replies.
 * `auth: 'offer-both'` sends `05 02 00 02`; `'userpass'` sends `05 01 02`; default `05 01 00`.
 */
export async function socks5Hello(c: RawClient, creds?: { user: string; pass: string }, offer: 'both' | 'userpass' = 'both'): Promise<void> {
  if (!creds) {
    c.write(hex('05 01 00'));
    assert.equal(toHex(await c.read(2)), '05 00');
    return;
  }
  c.write(offer === 'both' ? hex('05 02 00 02') : hex('05 01 02'));
  assert.equal(toHex(await c.read(2)), '05 02', 'the proxy asks for credentials');
  c.write(userpass(creds.user, creds.pass));
  assert.equal(toHex(await c.read(2)), '01 00');
}

/** The 10-byte SOCKS5 reply with ATYP 01 and a zero address: `05 REP 00 01 00*6`. */
export function zeroReply(rep: number): string {
  return toHex(Buffer.from([5, rep, 0, 1, 0, 0, 0, 0, 0, 0]));
}

/** Open a SOCKS5 CONNECT tunnel and return the client after a success reply (any BND). */
export async function tunnel5(proxyPort: number, host: string, port: number, opts: { creds?: { user: string; pass: string }; localAddress?: string; asName?: boolean } = {}): Promise<RawClient> {
  const c = await connectClient(proxyPort, { localAddress: opts.localAddress });
  await socks5Hello(c, opts.creds);
  c.write(req5(1, host, port, opts.asName));
  const reply = await readReply5(c);
  assert.equal(toHex(reply.subarray(0, 3)), '05 00 00', `CONNECT ${host}:${port} succeeds (reply ${toHex(reply)})`);
  return c;
}

/** Read one full SOCKS5 reply (any ATYP) and return it. */
export async function readReply5(c: RawClient, timeoutMs = 5000): Promise<Buffer> {
  const head = await c.read(4, timeoutMs);
  let rest: Buffer;
  if (head[3] === 4) rest = await c.read(18, timeoutMs);
  else if (head[3] === 3) {
    const n = await c.read(1, timeoutMs);
    rest = Buffer.concat([n, await c.read(n[0]! + 2, timeoutMs)]);
  } else rest = await c.read(6, timeoutMs);
  return Buffer.concat([head, rest]);
}

/** Wait until `cond()` is true (polling), or throw after `timeoutMs`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Run a program to completion with a bounded time; never through a shell. */
export function run(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // A program may exit without reading its input (a usage error): EPIPE on our end is no failure.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      reject(new Error(`${file} ${args.join(' ')} did not exit within ${opts.timeoutMs ?? 10000} ms; stdout ${stdout}; stderr ${stderr}`));
    }, opts.timeoutMs ?? 10000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// microsocks as an upstream: the same spawner the e2e tests use (free port, readiness probe,
// stop by PID with SIGKILL fallback).
export { startMicrosocks } from '../../e2e/helpers/daemons.js';

/** `upstream: { type: 'socks5', host: '127.0.0.1', port, ...extra }` typed for startProxy. */
export function socks5Upstream(port: number, extra: { username?: string; password?: string; pipelining?: boolean } = {}): { type: 'socks5' } {
  return { type: 'socks5', host: '127.0.0.1', port, ...extra } as { type: 'socks5' };
}
