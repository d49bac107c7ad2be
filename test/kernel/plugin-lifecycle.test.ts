/**
 * Plugin lifecycle as SocksmithProxy runs it (Caddy's modules, fastify's pluginTimeout):
 * construct → apply → start() (bounded by timeouts.pluginStart, the error names the plugin) →
 * close() in reverse order, also after a failed start. And hooks: one frozen set per proxy.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { SocksmithProxy } from '../../src/proxy.js';
import { ALL_OFF } from '../helpers/proxy.js';
import { sleep, tempDir, type Kernel } from './hook-kit.js';

const tmp = tempDir();
after(() => tmp.cleanup());

/** A plugin module that records its lifecycle into `globalThis.__socksmithLifecycle[name]`. */
function lifecycleModule(name: string, startBody: string): string {
  const file = path.join(tmp.dir, `${name}.mjs`);
  fs.writeFileSync(
    file,
    `const log = ((globalThis.__socksmithLifecycle ??= {})[${JSON.stringify(name)}] ??= []);
export default class P {
  static meta = { name: ${JSON.stringify(name)} };
  constructor() { log.push('construct'); }
  apply(kernel) { log.push('apply'); }
  async start() { log.push('start'); ${startBody} }
  close() { log.push('close'); }
}
`,
  );
  return file;
}

function lifecycle(name: string): string[] {
  return ((globalThis as { __socksmithLifecycle?: Record<string, string[]> }).__socksmithLifecycle ?? {})[name] ?? [];
}

const silent = () => createLogger('silent');

test('construct → apply at create(), start() at listen(), close() at close(), in reverse order', async () => {
  const a = lifecycleModule('life-a', '');
  const b = lifecycleModule('life-b', 'await new Promise((r) => setTimeout(r, 20));');
  const proxy = await SocksmithProxy.create(
    { listen: [{ host: '127.0.0.1', port: 0 }], plugins: { ...ALL_OFF, 'life-a': { module: a }, 'life-b': { module: b } } },
    { logger: silent() },
  );
  assert.deepEqual(lifecycle('life-a'), ['construct', 'apply']);
  assert.deepEqual(lifecycle('life-b'), ['construct', 'apply']);
  await proxy.listen();
  assert.deepEqual(lifecycle('life-b'), ['construct', 'apply', 'start']);
  const order: string[] = [];
  const la = lifecycle('life-a');
  const lb = lifecycle('life-b');
  const pa = la.push.bind(la);
  const pb = lb.push.bind(lb);
  la.push = (...x: string[]) => (order.push(`a:${x[0]}`), pa(...x));
  lb.push = (...x: string[]) => (order.push(`b:${x[0]}`), pb(...x));
  await proxy.close(0);
  assert.deepEqual(order, ['b:close', 'a:close'], 'reverse order of application');
});

test('a plugin whose start() exceeds timeouts.pluginStart: listen() rejects naming it, and no port is bound', async () => {
  const slow = lifecycleModule('slow-start', 'await new Promise((r) => setTimeout(r, 500));');
  const proxy = await SocksmithProxy.create(
    { listen: [{ host: '127.0.0.1', port: 0 }], timeouts: { pluginStart: 100 }, plugins: { ...ALL_OFF, 'slow-start': { module: slow } } },
    { logger: silent() },
  );
  const t0 = Date.now();
  await assert.rejects(proxy.listen(), { code: 'SOCKSMITH_ERR_PLUGIN_START_TIMEOUT', message: 'plugin "slow-start" did not start within 100 ms' });
  assert.ok(Date.now() - t0 < 1500);
  assert.deepEqual(proxy.addresses, []);
  await proxy.close(0);
});

test('after a failed start, listen() has already closed the plugins (as it does when a listener fails)', async () => {
  const ok = lifecycleModule('started-fine', '');
  const bad = lifecycleModule('fails-to-start', "throw new Error('no database');");
  const proxy = await SocksmithProxy.create(
    { listen: [{ host: '127.0.0.1', port: 0 }], plugins: { ...ALL_OFF, 'started-fine': { module: ok }, 'fails-to-start': { module: bad } } },
    { logger: silent() },
  );
  await assert.rejects(proxy.listen(), /no database/);
  await sleep(20);
  try {
    assert.deepEqual(lifecycle('started-fine'), ['construct', 'apply', 'start', 'close'], 'the plugin that did start was closed');
    assert.deepEqual(lifecycle('fails-to-start'), ['construct', 'apply', 'start', 'close'], 'close() also runs after a failed start');
  } finally {
    await proxy.close(0);
  }
});

test('a listener that cannot bind: SOCKSMITH_ERR_LISTEN naming the address, and plugins are closed', async () => {
  const blocker = net.createServer().listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    const mod = lifecycleModule('listen-fail', '');
    const proxy = await SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port }], plugins: { ...ALL_OFF, 'listen-fail': { module: mod } } }, { logger: silent() });
    await assert.rejects(proxy.listen(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_LISTEN');
      assert.match(err.message, new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
      return true;
    });
    assert.deepEqual(lifecycle('listen-fail'), ['construct', 'apply', 'start', 'close']);
  } finally {
    blocker.close();
  }
});

test('hooks are frozen and belong to one proxy: a tap on one kernel is not seen by another', async () => {
  const p1 = await SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: ALL_OFF }, { logger: silent() });
  const p2 = await SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: ALL_OFF }, { logger: silent() });
  const k1: Kernel = p1.kernel;
  assert.equal(Object.isFrozen(k1.hooks), true);
  assert.throws(() => {
    (k1.hooks as unknown as Record<string, unknown>).onExtra = 1;
  }, TypeError);
  assert.notEqual(k1.hooks, p2.kernel.hooks);
  k1.hooks.onRequest.tap('only-p1', () => undefined);
  assert.deepEqual(
    k1.hooks.onRequest.taps.map((t) => t.name),
    ['only-p1'],
  );
  assert.deepEqual(p2.kernel.hooks.onRequest.taps, []);
  await p1.close(0);
  await p2.close(0);
});

// STYLE.md: "Skip argument building on hot hooks when nobody listens". tapable's isUsed() is also
// true when a hook only has interceptors (and every kernel hook has the error-attribution one), so
// this checks the behaviour: a metrics interceptor (STYLE: "Tracing and metrics use
// hook.intercept()") on hooks nobody tapped sees no call while a connection is fully served.
test('the kernel does not call hooks nobody tapped (handshake, request, reply, relay)', async () => {
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const echoPort = (echo.address() as net.AddressInfo).port;
  const p = await SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: ALL_OFF }, { logger: silent() });
  const calls: string[] = [];
  for (const [name, hook] of Object.entries(p.kernel.hooks)) (hook as { intercept(i: object): void }).intercept({ call: () => calls.push(name) });
  try {
    const [l] = await p.listen();
    const c = net.connect({ port: l!.port, host: '127.0.0.1' });
    await once(c, 'connect');
    const port = Buffer.alloc(2);
    port.writeUInt16BE(echoPort);
    c.write(Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1]), port, Buffer.from('early')]));
    let got = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length === 17) c.write('later');
    });
    const deadline = Date.now() + 3000;
    while (got.length < 22 && Date.now() < deadline) await sleep(10);
    assert.equal(got.subarray(12).toString(), 'earlylater', 'the stream worked');
    c.destroy();
    assert.deepEqual(calls, [], 'no hook without taps was called');
  } finally {
    await p.close(0);
    echo.close();
  }
});
