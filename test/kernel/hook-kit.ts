/**
 * Shared helpers for the kernel hook tests: start a proxy with tiny in-test plugin classes applied
 * to its kernel before it listens, build SOCKS messages, and wait boundedly.
 *
 * Not a test file itself (no `.test.` in its name), so run-tests.mjs does not run it.
 */
import 'reflect-metadata';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { ConfigInput } from '../../src/config/schema.js';
import type { Kernel } from '../../src/kernel/kernel.js';
import type { SocksmithPlugin } from '../../src/kernel/plugin.js';
import { createLogger } from '../../src/logger.js';
import { SocksmithProxy } from '../../src/proxy.js';
import { ALL_OFF, type TestProxy } from '../helpers/proxy.js';
import { freePort } from '../helpers/net.js';
/** A loopback port nothing listens on. */
export const closedPort = (): Promise<number> => freePort();

/** A plugin instance together with its class's `meta`. */
export type TestPlugin = SocksmithPlugin & { constructor: { meta: { name: string } } };

/**
 * Start a proxy on 127.0.0.1:0 with all built-ins off, apply `plugins` (instances of test plugin
 * classes) to its kernel, and only then listen. Logs are captured as parsed JSON lines.
 */
export async function startWithPlugins(plugins: readonly SocksmithPlugin[], config: ConfigInput = {}): Promise<TestProxy> {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = createLogger(config.log?.level ?? 'debug', sink as unknown as pino.DestinationStream);
  const proxy = await SocksmithProxy.create(
    { listen: [{ host: '127.0.0.1', port: 0 }], ...config, plugins: { ...ALL_OFF, ...config.plugins } },
    { logger },
  );
  for (const p of plugins) p.apply(proxy.kernel);
  const [first] = await proxy.listen();
  return { proxy, port: first!.port, logs, close: () => proxy.close(500) };
}

/** Big-endian 16-bit port. */
export function port16(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(port);
  return b;
}

/** SOCKS5 CONNECT to an IPv4 literal: `05 01 00 01 ADDR PORT`. */
export function connect5(port: number, ip = '127.0.0.1'): Buffer {
  return Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x01, ...ip.split('.').map(Number)]), port16(port)]);
}

/** SOCKS5 CONNECT to a name: `05 01 00 03 LEN NAME PORT`. */
export function connect5Name(name: string, port: number): Buffer {
  const n = Buffer.from(name, 'utf8');
  return Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x03, n.length]), n, port16(port)]);
}

/** SOCKS4 CONNECT to an IPv4 literal with a USERID: `04 01 PORT ADDR USERID 00`. */
export function connect4(port: number, userId = '', ip = '127.0.0.1'): Buffer {
  return Buffer.concat([Buffer.from([0x04, 0x01]), port16(port), Buffer.from(ip.split('.').map(Number)), Buffer.from(userId), Buffer.from([0])]);
}

/** RFC 1929 request: `01 ULEN USER PLEN PASS`. */
export function userPass(user: string, pass: string): Buffer {
  return Buffer.concat([Buffer.from([0x01, Buffer.byteLength(user)]), Buffer.from(user), Buffer.from([Buffer.byteLength(pass)]), Buffer.from(pass)]);
}


/** Poll `pred` every 10 ms until it is true; throws after `timeoutMs`. */
export async function waitFor(pred: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Promise-based sleep. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Make a fresh temporary folder; `cleanup` removes it. */
export function tempDir(prefix = 'socksmith-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Log lines at `level` (pino level label). */
export function logsAt(logs: ReadonlyArray<Record<string, unknown>>, level: string): Array<Record<string, unknown>> {
  return logs.filter((l) => l.level === level);
}

/** Kernel type re-exported for the test plugins' `apply(kernel)` signatures. */
export type { Kernel };
