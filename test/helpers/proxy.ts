/**
 * Start socksmith in-process for a test, with a config object, on 127.0.0.1 port 0, logging to
 * a buffer the test can inspect. Plugins default to all off unless the test says otherwise.
 */
import 'reflect-metadata';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { ConfigInput } from '../../src/config/schema.js';
import { createLogger } from '../../src/logger.js';
import { SocksmithProxy } from '../../src/proxy.js';

/** Every built-in plugin off. */
export const ALL_OFF = Object.freeze({
  isolation: false,
  resolve: false,
  'resolve-ptr': false,
  'http-detect': false,
  'optimistic-data': false,
  'extended-errors': false,
  auth: false,
  policy: false,
  bind: false,
  'udp-associate': false,
});

/** A running test proxy. */
export interface TestProxy {
  readonly proxy: SocksmithProxy;
  readonly port: number;
  /** Parsed JSON log lines written so far. */
  readonly logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * Start a proxy. `config.plugins` is merged over {@link ALL_OFF}; `listen` defaults to
 * 127.0.0.1:0.
 */
export async function startProxy(config: ConfigInput = {}, opts: { cwd?: string } = {}): Promise<TestProxy> {
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
    { logger, cwd: opts.cwd },
  );
  const [first] = await proxy.listen();
  return { proxy, port: first!.port, logs, close: () => proxy.close(500) };
}
