/**
 * Type tests for the public plugin API: this file must compile (it is part of `npm test`'s tsc
 * step), and each `@ts-expect-error` must stay an error. The runtime part checks the exports exist.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as socksmith from '../../src/index.js';
import {
  type ConnectFn,
  type GreetingDecision,
  type Kernel,
  type Reply,
  type SocksmithPlugin,
  type Upstream,
  type UpstreamInterceptor,
  Rep,
  Stage,
  Tokens,
  composeUpstream,
  defineConfig,
  inject,
  injectable,
} from '../../src/index.js';

@injectable()
class DenyPortPlugin implements SocksmithPlugin {
  static readonly meta = { name: 'deny-port', schema: { type: 'object', properties: { port: { type: 'integer' } }, additionalProperties: false } };
  constructor(@inject(Tokens.PluginOptions) private readonly options: { port: number }) {}
  apply(kernel: Kernel): void {
    kernel.hooks.onRequest.tapPromise({ name: 'deny-port', stage: Stage.POLICY }, async (conn, request): Promise<Reply | undefined> => {
      if (request.destination.port === this.options.port) return { rep: Rep.NOT_ALLOWED };
      conn.destination = request.destination;
      return undefined;
    });
    kernel.hooks.onGreeting.tapPromise('deny-port', async (g): Promise<GreetingDecision | undefined> => (g.firstByte === 0x05 ? { method: 0x00 } : undefined));
    kernel.hooks.onData.tap('deny-port', (chunk, info) => (info.direction === 'up' ? chunk : chunk));
    // @ts-expect-error onRequest taps must return a Reply or undefined, not a string
    kernel.hooks.onRequest.tapPromise('bad', async () => 'nope');
    // @ts-expect-error a reply needs a numeric rep
    const bad: Reply = { bound: undefined };
    void bad;
  }
}

const logging: UpstreamInterceptor = (next: ConnectFn): ConnectFn => async (dest, conn, opts) => {
  conn.log.debug({ dest: dest.host }, 'connecting');
  return next(dest, conn, opts);
};

test('the public API exports what plugin authors and configs use', () => {
  const config = defineConfig({ listen: [{ host: '127.0.0.1', port: 0 }], upstream: { type: 'socks5', host: '127.0.0.1', port: 9050 }, plugins: { 'extended-errors': true, isolation: { IsolateDestPort: true } } });
  // @ts-expect-error plugin options are typed
  defineConfig({ plugins: { isolation: { IsolateDestPorts: true } } });
  // @ts-expect-error unknown top-level keys are type errors in a typed config
  defineConfig({ lissen: [] });
  assert.equal(config.plugins?.['extended-errors'], true);
  assert.equal(typeof DenyPortPlugin.meta.name, 'string');
  const up: Upstream = { name: 'x', connect: async () => Promise.reject(new socksmith.UpstreamError(Rep.HOST_UNREACHABLE, 'no')) };
  const composed = composeUpstream(up, logging);
  assert.equal(composed.name, 'x');
  for (const name of ['SocksmithProxy', 'createProxy', 'Kernel', 'Stage', 'Tokens', 'DirectUpstream', 'Socks5Upstream', 'ServerHandshake', 'parseSocks5Request', 'encodeSocks5Reply', 'SocksmithError', 'hasCode', 'defineConfig', 'injectable', 'inject']) {
    assert.ok(name in socksmith, `socksmith exports ${name}`);
  }
  assert.ok(Object.isFrozen(Tokens));
});
