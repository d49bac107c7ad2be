/**
 * Handshake and connect timeouts, and custom upstreams loaded from a module
 * (`upstream: { type: 'module', module }`): the reply a failure gives (RFC 1928 §6: 03 network
 * unreachable, 06 TTL expired), the abort signal, and options injected under Tokens.PluginOptions.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ConfigInput } from '../../src/config/schema.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import type { TestProxy } from '../helpers/proxy.js';
import { connect4, connect5, connect5Name as connectName, sleep, startWithPlugins, tempDir, waitFor } from './hook-kit.js';

/** `upstream` as a config file writes it (ConfigInput types only `type`; see the report on defineConfig typing). */
type Upstream = ConfigInput['upstream'];

const tmp = tempDir();
let echo: TestServer;
const proxies: TestProxy[] = [];
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await echo.close();
  tmp.cleanup();
});

/** Write a module into the temp folder and return its absolute path. */
function writeModule(name: string, source: string): string {
  const file = path.join(tmp.dir, name);
  fs.writeFileSync(file, source);
  return file;
}

/** An upstream whose connect never finishes on its own; it honours options.signal. */
const HANGING = `
export default class HangingUpstream {
  constructor(options) {
    this.options = options;
    this.name = 'hanging';
  }
  connect(destination, conn, { signal }) {
    this.options.report('connect ' + destination.host + ':' + destination.port);
    return new Promise((_, reject) => {
      signal.addEventListener('abort', () => {
        this.options.report('abort ' + (signal.reason && signal.reason.code) + ' rep=' + (signal.reason && signal.reason.rep));
        reject(signal.reason);
      }, { once: true });
    });
  }
}
`;

/** An upstream that fails with a deliberate reply code. */
const FAILING = `
export default class FailingUpstream {
  name = 'failing';
  async connect() {
    throw Object.assign(new Error('network is down (test)'), { rep: 0x03 });
  }
}
`;

/** An upstream that sends every stream to one fixed port, taken from its validated options. */
const FIXED = `
import net from 'node:net';
export default class FixedUpstream {
  static meta = {
    name: 'fixed',
    schema: {
      type: 'object',
      additionalProperties: false,
      required: ['port'],
      properties: { port: { type: 'integer', description: 'where every stream goes' }, report: { description: 'test callback' } },
    },
  };
  name = 'fixed';
  constructor(options) { this.options = options; }
  connect(destination, conn, { signal }) {
    this.options.report('to ' + destination.host + ':' + destination.port + ' via ' + this.options.port);
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: this.options.port, allowHalfOpen: true });
      s.once('connect', () => resolve({ stream: s, bound: undefined }));
      s.once('error', reject);
    });
  }
}
`;

describe('handshake timeout', () => {
  let px: TestProxy;
  before(async () => {
    px = await startWithPlugins([], { timeouts: { handshake: 300 } });
    proxies.push(px);
  });

  test('a silent client is closed after timeouts.handshake, with no bytes', async () => {
    const c = await RawClient.connect(px.port);
    const t0 = Date.now();
    assert.deepEqual(await c.readToEnd(3000), Buffer.alloc(0));
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 250 && elapsed < 2000, `closed after ${elapsed} ms`);
  });

  test('a client stalled mid-greeting is closed the same way', async () => {
    const c = await RawClient.connect(px.port);
    c.write(hex('05 02 00'));
    const t0 = Date.now();
    assert.deepEqual(await c.readToEnd(3000), Buffer.alloc(0));
    assert.ok(Date.now() - t0 >= 200);
  });

  test('a client that negotiated but sends no request is closed too (after its 05 00)', async () => {
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 00'));
    assert.deepEqual(await c.readToEnd(3000), hex('05 00'));
  });

  test('the timer does not cut a tunnel that outlives it', async () => {
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), connect5(echo.port)]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.equal((await c.read(10))[1], 0x00);
    await sleep(450);
    c.write('after the handshake timeout');
    assert.equal((await c.read(27)).toString(), 'after the handshake timeout');
    c.destroy();
  });
});

describe('connect and idle timeouts with the direct upstream', () => {
  test('timeouts.connect covers name resolution: an onResolve that never answers gives REP 06', async () => {
    const hang = {
      apply(kernel: import('./hook-kit.js').Kernel) {
        kernel.hooks.onResolve.tapPromise('hang-dns', () => new Promise(() => {}));
      },
    };
    const px = await startWithPlugins([hang], { timeouts: { connect: 300 } });
    proxies.push(px);
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), connectName('never.socksmith.invalid', echo.port)]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    const t0 = Date.now();
    assert.deepEqual(await c.readToEnd(3000), hex('05 06 00 01 00000000 0000'));
    assert.ok(Date.now() - t0 >= 250);
  });

  test('timeouts.idle closes a tunnel without traffic, and not one with traffic', async () => {
    const px = await startWithPlugins([], { timeouts: { idle: 400 } });
    proxies.push(px);
    const open = async () => {
      const c = await RawClient.connect(px.port);
      c.write(Buffer.concat([hex('05 01 00'), connect5(echo.port)]));
      assert.deepEqual(await c.read(2), hex('05 00'));
      assert.equal((await c.read(10))[1], 0x00);
      return c;
    };
    const quiet = await open();
    const busy = await open();
    const t0 = Date.now();
    for (let i = 0; i < 6; i++) {
      await sleep(100);
      busy.write('.');
      await busy.read(1);
    }
    await quiet.waitEnd(2000);
    assert.ok(Date.now() - t0 >= 350, 'the quiet tunnel lived for timeouts.idle');
    assert.equal(busy.ended || busy.closed, false, 'the busy tunnel is still open');
    busy.destroy();
  });
});

describe('custom upstream module', () => {
  test('connect timeout: an upstream that never connects gives REP 06 after timeouts.connect, and its signal is aborted', async () => {
    const events: string[] = [];
    const report = (e: string) => events.push(e);
    const px = await startWithPlugins([], { timeouts: { connect: 300 }, upstream: { type: 'module', module: writeModule('hanging.mjs', HANGING), options: { report } } as Upstream });
    proxies.push(px);
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), connect5(4242, '192.0.2.1')]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    const t0 = Date.now();
    assert.deepEqual(await c.readToEnd(3000), hex('05 06 00 01 00000000 0000'));
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 250 && elapsed < 2000, `REP 06 after ${elapsed} ms`);
    assert.deepEqual(events, ['connect 192.0.2.1:4242', 'abort SOCKSMITH_ERR_UPSTREAM_TIMEOUT rep=6']);
  });

  // A FIN from the client is a half-close (it may still read the reply, by design); a reset is "gone".
  test('a client that resets while the upstream connects aborts the upstream signal', async () => {
    const events: string[] = [];
    const report = (e: string) => events.push(e);
    const px = await startWithPlugins([], { timeouts: { connect: 10_000 }, upstream: { type: 'module', module: writeModule('hanging2.mjs', HANGING), options: { report } } as Upstream });
    proxies.push(px);
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), connect5(4242, '192.0.2.1')]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    await waitFor(() => events.length === 1, 2000, 'connect called');
    c.socket.resetAndDestroy();
    await waitFor(() => events.length === 2, 2000, 'upstream signal aborted');
    assert.match(events[1]!, /^abort /);
  });

  test('an upstream error carrying rep 0x03 gives the client REP 03 (SOCKS4: 5B)', async () => {
    const px = await startWithPlugins([], { upstream: { type: 'module', module: writeModule('failing.mjs', FAILING) } as Upstream });
    proxies.push(px);
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), connect5(echo.port)]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual(await c.readToEnd(3000), hex('05 03 00 01 00000000 0000'));
    const c4 = await RawClient.connect(px.port);
    c4.write(connect4(echo.port, 'x'));
    assert.deepEqual(await c4.readToEnd(3000), hex('00 5b 0000 00000000'));
  });

  test('an upstream class gets its validated options and its stream is relayed; a missing bound address replies 0.0.0.0:0', async () => {
    const events: string[] = [];
    const report = (e: string) => events.push(e);
    const px = await startWithPlugins([], { upstream: { type: 'module', module: writeModule('fixed.mjs', FIXED), options: { port: echo.port, report } } as Upstream });
    proxies.push(px);
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), connect5(1, '192.0.2.7')]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual(await c.read(10), hex('05 00 00 01 00000000 0000'));
    c.write('via module');
    assert.equal((await c.read(10)).toString(), 'via module');
    c.destroy();
    assert.deepEqual(events, [`to 192.0.2.7:1 via ${echo.port}`]);
  });

  test("upstream options are checked against the class's meta.schema and the error names upstream.options.<key>", async () => {
    await assert.rejects(
      startWithPlugins([], { upstream: { type: 'module', module: writeModule('fixed2.mjs', FIXED), options: { port: 'eighty' } } as Upstream }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
        assert.equal(err.message, 'upstream.options.port: must be integer (where every stream goes)');
        return true;
      },
    );
  });

  test('a module without a connect method is refused with SOCKSMITH_ERR_CONFIG_MODULE naming upstream.module', async () => {
    const file = writeModule('not-upstream.mjs', 'export default class Nope {}\n');
    await assert.rejects(startWithPlugins([], { upstream: { type: 'module', module: file } as Upstream }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_MODULE');
      assert.equal(err.message, `upstream.module: ${file} must export (default) a class with a connect(destination, conn, options) method`);
      return true;
    });
  });
});
