/**
 * onGreeting and onAuth over real loopback sockets, with tiny plugin classes defined here and
 * applied to the kernel before it listens. Vectors: RFC 1928 §3 (method selection), RFC 1929 §2
 * (username/password), SOCKS4 (`00 5A` / `00 5B`), Tor's leniencies (proto_socks.c: RFC 1929
 * after method 00; empty username/password, tor#29175).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { AuthInfo, GreetingDecision, GreetingInfo, Takeover } from '../../src/kernel/hooks.js';
import { Command } from '../../src/protocol/constants.js';
import { Stage } from '../../src/kernel/stages.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import type { TestProxy } from '../helpers/proxy.js';
import { connect4, connect5, logsAt, sleep, startWithPlugins, userPass, waitFor, type Kernel } from './hook-kit.js';

let echo: TestServer & { connections: number };
const proxies: TestProxy[] = [];
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await echo.close();
});

/** Start a proxy with these plugin instances and remember it for after(). */
async function start(...plugins: Array<{ apply(k: Kernel): void }>): Promise<TestProxy> {
  const px = await startWithPlugins(plugins);
  proxies.push(px);
  return px;
}

/** Send CONNECT to the echo server (after method negotiation) and check the relay with one ping. */
async function connectAndPing(c: RawClient): Promise<void> {
  c.write(connect5(echo.port));
  const reply = await c.read(10);
  assert.deepEqual(reply.subarray(0, 4), hex('05 00 00 01'), 'SOCKS5 success reply');
  c.write('ping');
  assert.equal((await c.read(4)).toString(), 'ping');
}

/** Records every greeting it sees and answers with `decide(info)`. */
class GreetingPlugin {
  static meta = { name: 'greeting-test' };
  readonly seen: Array<{ firstByte: number; methods: number[]; protocol: string }> = [];
  constructor(private readonly decide: (info: GreetingInfo) => GreetingDecision | undefined | Promise<GreetingDecision | undefined> = () => undefined) {}
  apply(kernel: Kernel): void {
    kernel.hooks.onGreeting.tapPromise(GreetingPlugin.meta.name, async (info) => {
      this.seen.push({ firstByte: info.firstByte, methods: [...info.methods], protocol: info.conn.protocol });
      return this.decide(info);
    });
  }
}

/** Records credentials and answers with `accept`. */
class AuthPlugin {
  static meta = { name: 'auth-test' };
  readonly seen: Array<{ source: string; username: string; password: string | undefined }> = [];
  constructor(private readonly accept: (info: AuthInfo) => boolean | undefined) {}
  apply(kernel: Kernel): void {
    kernel.hooks.onAuth.tapPromise({ name: AuthPlugin.meta.name, stage: Stage.AUTH }, async (info) => {
      const c = info.credentials;
      this.seen.push({ source: c.source, username: c.username.toString('latin1'), password: c.password?.toString('latin1') });
      const a = this.accept(info);
      return a === undefined ? undefined : { accept: a };
    });
  }
}

describe('onGreeting', () => {
  test('decision { method: 0x02 } makes the kernel answer 05 02 although 00 was offered', async () => {
    const g = new GreetingPlugin(() => ({ method: 0x02 }));
    const a = new AuthPlugin(() => true);
    const px = await start(g, a);
    const c = await RawClient.connect(px.port);
    c.write(hex('05 02 00 02'));
    assert.deepEqual(await c.read(2), hex('05 02'));
    c.write(userPass('user', 'pass'));
    assert.deepEqual(await c.read(2), hex('01 00'), 'RFC 1929 success');
    await connectAndPing(c);
    c.destroy();
    assert.deepEqual(g.seen, [{ firstByte: 0x05, methods: [0x00, 0x02], protocol: 'socks5' }]);
    assert.deepEqual(a.seen, [{ source: 'rfc1929', username: 'user', password: 'pass' }]);
  });

  test('decision { reject: true } answers 05 ff and closes', async () => {
    const px = await start(new GreetingPlugin(() => ({ reject: true })));
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 00'));
    assert.deepEqual(await c.readToEnd(3000), hex('05 ff'));
  });

  test('decision { reject: true } for SOCKS4 closes without a reply', async () => {
    const px = await start(new GreetingPlugin(() => ({ reject: true })));
    const c = await RawClient.connect(px.port);
    c.write(connect4(echo.port, 'u'));
    assert.deepEqual(await c.readToEnd(3000), Buffer.alloc(0));
  });

  test('sees firstByte 0x04 (no methods) for SOCKS4, and the request still goes through', async () => {
    const g = new GreetingPlugin();
    const px = await start(g);
    const c = await RawClient.connect(px.port);
    c.write(connect4(echo.port, 'bob'));
    assert.deepEqual(await c.read(8), hex('00 5a 0000 00000000'), 'SOCKS4 granted, zero address as Tor sends it');
    c.write('ping');
    assert.equal((await c.read(4)).toString(), 'ping');
    c.destroy();
    assert.deepEqual(g.seen, [{ firstByte: 0x04, methods: [], protocol: 'socks4' }]);
  });

  test('sees an unknown first byte; with no decision the connection is closed silently', async () => {
    const g = new GreetingPlugin();
    const px = await start(g);
    const c = await RawClient.connect(px.port);
    c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.deepEqual(await c.readToEnd(3000), Buffer.alloc(0));
    assert.deepEqual(g.seen, [{ firstByte: 0x47, methods: [], protocol: 'unknown' }]);
  });

  test('a takeover handler receives `buffered` starting with the first byte and can answer', async () => {
    let got: Buffer | undefined;
    const px = await start(
      new GreetingPlugin((info) =>
        info.firstByte === 0x47
          ? {
              takeover: (t: Takeover) => {
                got = Buffer.from(t.buffered);
                t.finish(Buffer.from('HTTP/1.0 501 Not Implemented\r\n\r\n'));
              },
            }
          : undefined,
      ),
    );
    const sent = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const c = await RawClient.connect(px.port);
    c.write(sent);
    assert.equal((await c.readToEnd(3000)).toString(), 'HTTP/1.0 501 Not Implemented\r\n\r\n');
    assert.ok(got && got.length > 0, 'buffered is not empty');
    assert.equal(got[0], 0x47, 'buffered starts with the first byte');
    assert.deepEqual(got, sent.subarray(0, got.length), 'buffered is exactly what the client sent, from its first byte');
  });

  test('a SOCKS4 takeover also gets the whole request in `buffered`, version byte first', async () => {
    let got: Buffer | undefined;
    const px = await start(
      new GreetingPlugin(() => ({
        takeover: (t: Takeover) => {
          got = Buffer.from(t.buffered);
          t.finish();
        },
      })),
    );
    const req = connect4(echo.port, 'carol');
    const c = await RawClient.connect(px.port);
    c.write(req);
    await c.waitEnd(3000);
    assert.deepEqual(got, req.subarray(0, got!.length));
    assert.equal(got![0], 0x04);
  });

  test('a takeover can run a request through the kernel pipeline (HTTP CONNECT style), leftover relayed', async () => {
    const px = await start(
      new GreetingPlugin((info) =>
        info.firstByte === 0x43 // 'C'
          ? {
              takeover: async (t: Takeover) => {
                const text = t.buffered.toString('latin1');
                const end = text.indexOf('\r\n\r\n');
                const m = /^CONNECT ([\d.]+):(\d+) /.exec(text);
                assert.ok(m && end > 0, 'the whole header is in buffered');
                await t.runRequest(
                  { version: 5, command: Command.CONNECT, destination: { kind: 'ipv4', host: m[1]!, port: Number(m[2]) }, userId: undefined, socks4a: false },
                  (reply) => Buffer.from(reply.rep === 0 ? 'HTTP/1.1 200 OK\r\n\r\n' : `HTTP/1.1 502 rep ${reply.rep}\r\n\r\n`),
                  t.buffered.subarray(end + 4),
                );
              },
            }
          : undefined,
      ),
    );
    const c = await RawClient.connect(px.port);
    c.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\nearly`);
    const head = 'HTTP/1.1 200 OK\r\n\r\n';
    assert.equal((await c.read(head.length)).toString(), head);
    assert.equal((await c.read(5)).toString(), 'early', 'bytes after the header are relayed, never dropped');
    c.write('more');
    assert.equal((await c.read(4)).toString(), 'more');
    c.destroy();
  });

  test('a plugin that throws in onGreeting gives 05 ff, a warn log naming it, and the proxy keeps serving', async () => {
    let calls = 0;
    class Thrower {
      static meta = { name: 'greeting-thrower' };
      apply(kernel: Kernel): void {
        kernel.hooks.onGreeting.tapPromise(Thrower.meta.name, async () => {
          if (calls++ === 0) throw new Error('boom in greeting');
          return undefined;
        });
      }
    }
    const px = await start(new Thrower());
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 00'));
    assert.deepEqual(await c.readToEnd(3000), hex('05 ff'));
    await waitFor(() => logsAt(px.logs, 'warn').length > 0, 2000, 'a warn log line');
    const warn = logsAt(px.logs, 'warn')[0]!;
    assert.equal(warn.plugin, 'greeting-thrower');
    assert.equal(warn.hook, 'onGreeting');
    assert.match(String(warn.msg), /greeting-thrower/);
    const c2 = await RawClient.connect(px.port);
    c2.write(hex('05 01 00'));
    assert.deepEqual(await c2.read(2), hex('05 00'));
    await connectAndPing(c2);
    c2.destroy();
  });

  test('a plugin that throws in onGreeting for a SOCKS4 client gives 00 5b (general failure), not a silent close', async () => {
    class Thrower {
      static meta = { name: 'greeting-thrower-4' };
      apply(kernel: Kernel): void {
        kernel.hooks.onGreeting.tap(Thrower.meta.name, () => {
          throw new Error('boom');
        });
      }
    }
    const px = await start(new Thrower());
    const c = await RawClient.connect(px.port);
    c.write(connect4(echo.port, 'x'));
    assert.deepEqual(await c.readToEnd(3000), hex('00 5b 0000 00000000'));
  });
});

describe('onAuth', () => {
  test('{ accept: false } answers 01 01 and closes', async () => {
    const a = new AuthPlugin(() => false);
    const px = await start(a);
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 02'));
    assert.deepEqual(await c.read(2), hex('05 02'));
    c.write(userPass('mallory', 'guess'));
    assert.deepEqual(await c.readToEnd(3000), hex('01 01'));
    assert.deepEqual(a.seen, [{ source: 'rfc1929', username: 'mallory', password: 'guess' }]);
  });

  test('SOCKS4 USERID rejected → 00 5b 0000 00000000 and close; onAuth saw the user id without a password', async () => {
    const a = new AuthPlugin((info) => info.credentials.username.toString() !== 'alice');
    const before = echo.connections;
    const px = await start(a);
    const c = await RawClient.connect(px.port);
    c.write(connect4(echo.port, 'alice'));
    assert.deepEqual(await c.readToEnd(3000), hex('00 5b 0000 00000000'));
    assert.deepEqual(a.seen, [{ source: 'socks4-userid', username: 'alice', password: undefined }]);
    assert.equal(echo.connections, before, 'no upstream connection for a rejected client');
  });

  test('a plugin that throws in onAuth answers 01 01', async () => {
    class Thrower {
      static meta = { name: 'auth-thrower' };
      apply(kernel: Kernel): void {
        kernel.hooks.onAuth.tapPromise(Thrower.meta.name, () => Promise.reject(new Error('auth backend down')));
      }
    }
    const px = await start(new Thrower());
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 02'));
    assert.deepEqual(await c.read(2), hex('05 02'));
    c.write(userPass('u', 'p'));
    assert.deepEqual(await c.readToEnd(3000), hex('01 01'));
    await waitFor(() => logsAt(px.logs, 'warn').some((l) => l.plugin === 'auth-thrower' && l.hook === 'onAuth'), 2000, 'warn log naming auth-thrower');
  });
});

describe('default method choice (no plugin decides)', () => {
  let px: TestProxy;
  before(async () => {
    px = await start();
  });

  test('00 when offered (even after 02)', async () => {
    const c = await RawClient.connect(px.port);
    c.write(hex('05 02 02 00'));
    assert.deepEqual(await c.read(2), hex('05 00'));
    await connectAndPing(c);
    c.destroy();
  });

  test('02 when 00 is not offered; any credentials are accepted unchecked', async () => {
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 02'));
    assert.deepEqual(await c.read(2), hex('05 02'));
    c.write(userPass('anyone', 'anything'));
    assert.deepEqual(await c.read(2), hex('01 00'));
    await connectAndPing(c);
    c.destroy();
  });

  test('ff when neither is offered, then close', async () => {
    const c = await RawClient.connect(px.port);
    c.write(hex('05 02 01 80'));
    assert.deepEqual(await c.readToEnd(3000), hex('05 ff'));
  });
});

describe("Tor's leniencies", () => {
  test('RFC 1929 after method 00 was chosen is accepted with 01 00, and onAuth sees it', async () => {
    const a = new AuthPlugin(() => undefined);
    const px = await start(a);
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 00'));
    assert.deepEqual(await c.read(2), hex('05 00'));
    c.write(userPass('iso', 'key'));
    assert.deepEqual(await c.read(2), hex('01 00'));
    await connectAndPing(c);
    c.destroy();
    assert.deepEqual(a.seen, [{ source: 'rfc1929', username: 'iso', password: 'key' }]);
  });

  test('RFC 1929 after method 00, pipelined with the greeting and the request, without any plugin', async () => {
    const px = await start();
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), userPass('a', 'b'), connect5(echo.port)]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual(await c.read(2), hex('01 00'));
    assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
    c.write('ping');
    assert.equal((await c.read(4)).toString(), 'ping');
    c.destroy();
  });

  test('empty username and password are accepted (01 00 00 → 01 00) and reach onAuth as empty buffers', async () => {
    const a = new AuthPlugin(() => undefined);
    const px = await start(a);
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 02'));
    assert.deepEqual(await c.read(2), hex('05 02'));
    c.write(hex('01 00 00'));
    assert.deepEqual(await c.read(2), hex('01 00'));
    await connectAndPing(c);
    c.destroy();
    assert.deepEqual(a.seen, [{ source: 'rfc1929', username: '', password: '' }]);
  });
});

test('greeting decided by a slow async tap still gets its replies in order (request pipelined behind it)', async () => {
  const px = await start(
    new GreetingPlugin(async () => {
      await sleep(100);
      return undefined;
    }),
  );
  const c = await RawClient.connect(px.port);
  c.write(Buffer.concat([hex('05 01 00'), connect5(echo.port), Buffer.from('hi')]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
  assert.equal((await c.read(2)).toString(), 'hi');
  c.destroy();
});
