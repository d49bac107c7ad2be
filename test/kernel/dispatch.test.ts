/**
 * The upstream dispatch chain (issue 12): CONNECT and the F0/F1 commands that go to the upstream
 * pass through one `dispatch`, which plugins (`kernel.dispatch.intercept`) and the config
 * (`upstream.interceptors`) wrap. Order, outermost first: plugin interceptors by stage, then the
 * config's in list order, then the upstream.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ConfigInput } from '../../src/config/schema.js';
import { hasCode } from '../../src/errors.js';
import type { SocksAddress } from '../../src/protocol/address.js';
import { Command, Rep } from '../../src/protocol/constants.js';
import { Stage } from '../../src/kernel/stages.js';
import type { Dispatch } from '../../src/upstream/types.js';
import { toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { startRecordingUpstream, type RecordingUpstream } from '../plugins/helpers/recording-upstream.js';
import { req5 } from '../plugins/helpers/socks.js';
import { startWithPlugins, tempDir, type Kernel } from './hook-kit.js';

declare global {
  // eslint-disable-next-line no-var
  var __socksmithDispatchLog: string[] | undefined;
}

/** An `upstream.interceptors` module: logs every dispatch with its tag, then calls next. */
const LOG_INTERCEPTOR = `
export default class LogInterceptor {
  static meta = { name: 'log', schema: { type: 'object', properties: { tag: { type: 'string' } }, required: ['tag'], additionalProperties: false } };
  constructor(options) { this.tag = options.tag; }
  intercept(next) {
    return (destination, conn, options) => {
      (globalThis.__socksmithDispatchLog ??= []).push(this.tag + ' ' + options.command.toString(16) + ' ' + destination.host + ':' + destination.port);
      return next(destination, conn, options);
    };
  }
}
`;

async function socks5(port: number, request: Buffer): Promise<{ reply: Buffer; client: RawClient }> {
  const c = await RawClient.connect(port);
  c.write(Buffer.from([5, 1, 0]));
  assert.equal(toHex(await c.read(2)), '05 00');
  c.write(request);
  return { reply: await c.read(10), client: c };
}

describe('upstream.interceptors: a config interceptor sees CONNECT and F0', () => {
  const tmp = tempDir('socksmith-dispatch-');
  let up: RecordingUpstream;
  let echo: TestServer;
  let px: TestProxy;
  before(async () => {
    fs.writeFileSync(path.join(tmp.dir, 'log.mjs'), LOG_INTERCEPTOR);
    echo = await startEchoServer();
    up = await startRecordingUpstream({ answer: (req) => (req.command === 0xf0 && req.host === 'up.test' ? { rep: 0, bound: '10.7.7.7' } : undefined) });
    px = await startProxy(
      {
        upstream: {
          type: 'socks5',
          host: '127.0.0.1',
          port: up.port,
          interceptors: [
            { module: './log.mjs', options: { tag: 'a' } },
            { module: './log.mjs', options: { tag: 'b' } },
          ],
        } as ConfigInput['upstream'],
        plugins: { resolve: true },
      },
      { cwd: tmp.dir },
    );
  });
  after(async () => {
    await px.close();
    await up.close();
    await echo.close();
    tmp.cleanup();
    globalThis.__socksmithDispatchLog = undefined;
  });

  test('CONNECT and RESOLVE both pass through the interceptors, in list order, and the wire is unchanged', async () => {
    globalThis.__socksmithDispatchLog = [];
    const { reply, client } = await socks5(px.port, req5(Command.CONNECT, '127.0.0.1', echo.port));
    assert.equal(toHex(reply.subarray(0, 2)), '05 00');
    client.write('ping');
    assert.equal((await client.read(4)).toString(), 'ping');
    client.destroy();
    const r = await socks5(px.port, req5(Command.RESOLVE, 'up.test', 0, true));
    assert.equal(toHex(r.reply), '05 00 00 01 0a 07 07 07 00 00');
    r.client.destroy();
    assert.deepEqual(globalThis.__socksmithDispatchLog, [`a 1 127.0.0.1:${echo.port}`, `b 1 127.0.0.1:${echo.port}`, 'a f0 up.test:0', 'b f0 up.test:0']);
  });
});

describe('upstream.interceptors: mistakes are config errors naming the entry', () => {
  test('a module without intercept(), and options its schema refuses', async () => {
    const tmp = tempDir('socksmith-dispatch-');
    try {
      fs.writeFileSync(path.join(tmp.dir, 'log.mjs'), LOG_INTERCEPTOR);
      fs.writeFileSync(path.join(tmp.dir, 'bad.mjs'), 'export default class Bad { static meta = { name: "bad" }; }\n');
      await assert.rejects(
        startProxy({ upstream: { type: 'direct', interceptors: [{ module: './bad.mjs' }, { module: './log.mjs', options: { tag: 1 } }] } as ConfigInput['upstream'] }, { cwd: tmp.dir }),
        (err: Error) => {
          assert.match(err.message, /upstream\.interceptors\.0\.module: .*bad\.mjs must export \(default\) a class with an intercept\(next\) method/);
          assert.match(err.message, /upstream\.interceptors\.1\.options\.tag/);
          return hasCode(err, 'SOCKSMITH_ERR_CONFIG_INVALID') || hasCode(err, 'SOCKSMITH_ERR_CONFIG_MODULE');
        },
      );
    } finally {
      tmp.cleanup();
    }
  });
});

describe('kernel.dispatch: plugin interceptors', () => {
  let echo: TestServer;
  before(async () => {
    echo = await startEchoServer();
  });
  after(async () => {
    await echo.close();
  });

  test('run outermost by stage (ties in registration order); a rejection with a rep is the reply; intercept() after start throws', async () => {
    const seen: string[] = [];
    const tag =
      (name: string): ((next: Dispatch) => Dispatch) =>
      (next) =>
      (d: SocksAddress, conn, o) => {
        seen.push(name);
        return next(d, conn, o);
      };
    const refuse: (next: Dispatch) => Dispatch = (next) => (d, conn, o) =>
      d.port === 9 ? Promise.reject(Object.assign(new Error('refused by a test interceptor'), { rep: Rep.NOT_ALLOWED })) : next(d, conn, o);
    const plugin = {
      apply(kernel: Kernel): void {
        kernel.dispatch.intercept({ name: 'late', stage: Stage.OBSERVE }, tag('observe'));
        kernel.dispatch.intercept({ name: 'first' }, tag('default-1'));
        kernel.dispatch.intercept({ name: 'early', stage: Stage.CLASSIFY }, tag('classify'));
        kernel.dispatch.intercept({ name: 'second' }, tag('default-2'));
        kernel.dispatch.intercept({ name: 'refuse', stage: Stage.POLICY }, refuse);
      },
    };
    const px = await startWithPlugins([plugin]);
    try {
      const ok = await socks5(px.port, req5(Command.CONNECT, '127.0.0.1', echo.port));
      assert.equal(toHex(ok.reply.subarray(0, 2)), '05 00');
      ok.client.destroy();
      assert.deepEqual(seen, ['classify', 'default-1', 'default-2', 'observe']);
      const refused = await socks5(px.port, req5(Command.CONNECT, '127.0.0.1', 9));
      assert.equal(toHex(refused.reply), '05 02 00 01 00 00 00 00 00 00');
      refused.client.destroy();
      assert.throws(
        () => px.proxy.kernel.dispatch.intercept({ name: 'too-late' }, tag('x')),
        (err: Error) => hasCode(err, 'SOCKSMITH_ERR_PLUGIN_LATE') && err.message === 'plugin "too-late": intercept() after start',
      );
    } finally {
      await px.close();
    }
  });
});
