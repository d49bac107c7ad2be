/**
 * onRequest, onResolve, onReply and onData over real loopback sockets, stage ordering, and what a
 * plugin that throws costs (its connection only). Reply vectors in Tor's form for errors:
 * `05 REP 00 01 00000000 0000` (RFC 1928 §6; tor proto_socks.c); SOCKS4 `00 5B 0000 00000000`.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { DataDirection, Reply, ResolveQuery } from '../../src/kernel/hooks.js';
import { Stage } from '../../src/kernel/stages.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, startTcpServer, type TestServer } from '../helpers/net.js';
import type { TestProxy } from '../helpers/proxy.js';
import { closedPort, connect4, connect5, connect5Name, logsAt, sleep, startWithPlugins, waitFor, type Kernel } from './hook-kit.js';

let echo: TestServer & { connections: number };
const proxies: TestProxy[] = [];
const servers: TestServer[] = [];
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await Promise.all(servers.map((s) => s.close()));
  await echo.close();
});

async function start(...plugins: Array<{ apply(k: Kernel): void }>): Promise<TestProxy> {
  const px = await startWithPlugins(plugins);
  proxies.push(px);
  return px;
}

/** Connect, negotiate no-auth, send `request`; return the client. */
async function socks5(px: TestProxy, request: Buffer): Promise<RawClient> {
  const c = await RawClient.connect(px.port);
  c.write(hex('05 01 00'));
  assert.deepEqual(await c.read(2), hex('05 00'));
  c.write(request);
  return c;
}

/** A plugin built from a function that taps the kernel. */
function plugin(name: string, apply: (kernel: Kernel, name: string) => void): { apply(k: Kernel): void } {
  const C = class {
    static meta = { name };
    apply(kernel: Kernel): void {
      apply(kernel, name);
    }
  };
  return new C();
}

describe('onRequest', () => {
  test('a bail with { rep: 0x02 } answers 05 02 00 01 00000000 0000 and opens no upstream connection', async () => {
    const dest = await startEchoServer();
    servers.push(dest);
    const px = await start(plugin('deny-all', (k, n) => k.hooks.onRequest.tapPromise({ name: n, stage: Stage.POLICY }, async () => ({ rep: 0x02 }))));
    const c = await socks5(px, connect5(dest.port));
    assert.deepEqual(await c.readToEnd(3000), hex('05 02 00 01 00000000 0000'));
    await sleep(100);
    assert.equal(dest.connections, 0, 'the destination saw no connection');
  });

  test('the same bail answers a SOCKS4 client 00 5b 0000 00000000', async () => {
    const dest = await startEchoServer();
    servers.push(dest);
    const px = await start(plugin('deny-all', (k, n) => k.hooks.onRequest.tapPromise(n, async () => ({ rep: 0x02 }))));
    const c = await RawClient.connect(px.port);
    c.write(connect4(dest.port, 'u'));
    assert.deepEqual(await c.readToEnd(3000), hex('00 5b 0000 00000000'));
    await sleep(50);
    assert.equal(dest.connections, 0);
  });

  test('changing conn.destination reroutes the stream', async () => {
    const nowhere = await closedPort();
    const seen: string[] = [];
    const px = await start(
      plugin('address-map', (k, n) =>
        k.hooks.onRequest.tapPromise({ name: n, stage: Stage.REWRITE }, async (conn, request) => {
          seen.push(`${request.destination.host}:${request.destination.port}`);
          conn.destination = { kind: 'ipv4', host: '127.0.0.1', port: echo.port };
          return undefined;
        }),
      ),
    );
    const c = await socks5(px, connect5(nowhere));
    assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
    c.write('rerouted');
    assert.equal((await c.read(8)).toString(), 'rerouted');
    c.destroy();
    assert.deepEqual(seen, [`127.0.0.1:${nowhere}`]);
  });

  test('stages order taps: lower stage first whatever the tap order; a bail stops the later ones', async () => {
    const order: string[] = [];
    const px = await start(
      plugin('late', (k, n) =>
        k.hooks.onRequest.tapPromise({ name: n, stage: Stage.OBSERVE }, async () => {
          order.push(n);
          return undefined;
        }),
      ),
      plugin('policy', (k, n) =>
        k.hooks.onRequest.tapPromise({ name: n, stage: Stage.POLICY }, async (_conn, req) => {
          order.push(n);
          return req.destination.port === 9 ? { rep: 0x02 } : undefined;
        }),
      ),
      plugin('default', (k, n) =>
        k.hooks.onRequest.tap(n, () => {
          order.push(n);
          return undefined;
        }),
      ),
      plugin('classify', (k, n) =>
        k.hooks.onRequest.tapPromise({ name: n, stage: Stage.CLASSIFY }, async () => {
          order.push(n);
          return undefined;
        }),
      ),
    );
    const c = await socks5(px, connect5(echo.port));
    assert.equal((await c.read(10))[1], 0x00);
    c.destroy();
    assert.deepEqual(order, ['classify', 'default', 'policy', 'late']);
    order.length = 0;
    const c2 = await socks5(px, connect5(9));
    assert.deepEqual(await c2.readToEnd(3000), hex('05 02 00 01 00000000 0000'));
    assert.deepEqual(order, ['classify', 'default', 'policy'], 'the OBSERVE tap does not run after a bail');
  });

  test('a deliberate error (with rep) thrown in onRequest answers that rep without a warn log', async () => {
    const px = await start(
      plugin('refuser', (k, n) =>
        k.hooks.onRequest.tapPromise(n, async () => {
          throw Object.assign(new Error('not here'), { rep: 0x02 });
        }),
      ),
    );
    const c = await socks5(px, connect5(echo.port));
    assert.deepEqual(await c.readToEnd(3000), hex('05 02 00 01 00000000 0000'));
    await sleep(20);
    assert.deepEqual(logsAt(px.logs, 'warn'), []);
  });
});

describe('requests no plugin answers', () => {
  test('a command other than CONNECT gets REP 07 (BIND, UDP ASSOCIATE, Tor RESOLVE without a plugin)', async () => {
    const px = await start();
    for (const cmd of ['02', '03', 'f0']) {
      const c = await socks5(px, hex(`05 ${cmd} 00 01 7f000001 0050`));
      assert.deepEqual(await c.readToEnd(3000), hex('05 07 00 01 00000000 0000'), `CMD ${cmd}`);
    }
  });

  test('port 0 and the unspecified address are answered 01 without connecting', async () => {
    const px = await start();
    for (const req of ['05 01 00 01 7f000001 0000', '05 01 00 01 00000000 0050']) {
      const c = await socks5(px, hex(req));
      assert.deepEqual(await c.readToEnd(3000), hex('05 01 00 01 00000000 0000'), req);
    }
  });

  test('a plugin may answer a non-CONNECT command with a bound address (RESOLVE F0 style)', async () => {
    const px = await start(
      plugin('answer-resolve', (k, n) =>
        k.hooks.onRequest.tapPromise({ name: n, stage: Stage.ANSWER }, async (_conn, req) =>
          req.command === 0xf0 ? { rep: 0, bound: { kind: 'ipv4', host: '192.0.2.33', port: 0 } } : undefined,
        ),
      ),
    );
    const c = await socks5(px, hex('05 f0 00 03 0b 6578616d706c652e636f6d 0000'));
    assert.deepEqual(await c.readToEnd(3000), hex('05 00 00 01 c0000221 0000'));
  });
});

describe('a plugin that throws in onRequest', () => {
  let px: TestProxy;
  before(async () => {
    px = await start(
      plugin('sync-thrower', (k, n) =>
        k.hooks.onRequest.tap(n, (_conn, req) => {
          if (req.destination.port === 7) throw new Error('sync boom');
          return undefined;
        }),
      ),
      plugin('promise-rejecter', (k, n) =>
        k.hooks.onRequest.tapPromise(n, (_conn, req) => (req.destination.port === 8 ? Promise.reject(new TypeError('async boom')) : Promise.resolve(undefined))),
      ),
      plugin('throws-before-promise', (k, n) =>
        k.hooks.onRequest.tapPromise(n, (_conn, req) => {
          if (req.destination.port === 9) throw new RangeError('early boom');
          return Promise.resolve(undefined);
        }),
      ),
      plugin('callback-error', (k, n) =>
        k.hooks.onRequest.tapAsync(n, (_conn, req, done) => {
          if (req.destination.port === 10) return void setImmediate(() => done(new Error('callback boom')));
          done();
        }),
      ),
      plugin('callback-thrower', (k, n) =>
        k.hooks.onRequest.tapAsync(n, (_conn, req, done) => {
          if (req.destination.port === 11) throw new Error('callback tap threw');
          done();
        }),
      ),
    );
  });

  for (const [port, name, text] of [
    [7, 'sync-thrower', 'sync boom'],
    [8, 'promise-rejecter', 'async boom'],
    [9, 'throws-before-promise', 'early boom'],
    [10, 'callback-error', 'callback boom'],
    [11, 'callback-thrower', 'callback tap threw'],
  ] as const) {
    test(`${name}: client gets 05 01 00 01 00000000 0000, a warn log names the plugin, the proxy serves the next connection`, async () => {
      const c = await socks5(px, connect5(port));
      assert.deepEqual(await c.readToEnd(3000), hex('05 01 00 01 00000000 0000'));
      await waitFor(() => logsAt(px.logs, 'warn').some((l) => l.plugin === name), 2000, `warn log naming ${name}`);
      const warn = logsAt(px.logs, 'warn').find((l) => l.plugin === name)!;
      assert.equal(warn.hook, 'onRequest');
      assert.equal(warn.err, text);
      assert.match(String(warn.msg), new RegExp(`plugin "${name}" failed in onRequest`));
      assert.equal(typeof warn.conn, 'number', 'the log line carries the connection id');
      const ok = await socks5(px, connect5(echo.port));
      assert.deepEqual((await ok.read(10)).subarray(0, 4), hex('05 00 00 01'));
      ok.write('still here');
      assert.equal((await ok.read(10)).toString(), 'still here');
      ok.destroy();
    });
  }

  test('a SOCKS4 client gets 00 5b when a plugin throws', async () => {
    const c = await RawClient.connect(px.port);
    c.write(connect4(8, 'u'));
    assert.deepEqual(await c.readToEnd(3000), hex('00 5b 0000 00000000'));
  });
});

describe('onResolve', () => {
  test('answering a made-up name makes CONNECT reach the echo server on 127.0.0.1', async () => {
    const queries: Array<Omit<ResolveQuery, 'conn'> & { hasConn: boolean }> = [];
    const px = await start(
      plugin('fake-dns', (k, n) =>
        k.hooks.onResolve.tapPromise(n, async (q) => {
          queries.push({ type: q.type, name: q.name, family: q.family, hasConn: q.conn !== undefined });
          return q.name === 'echo.socksmith.invalid' ? { addresses: [{ address: '127.0.0.1', family: 4 }] } : undefined;
        }),
      ),
    );
    const c = await socks5(px, connect5Name('echo.socksmith.invalid', echo.port));
    assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
    c.write('by name');
    assert.equal((await c.read(7)).toString(), 'by name');
    c.destroy();
    assert.equal(queries.length >= 1, true);
    assert.deepEqual(queries[0]!.type, 'forward');
    assert.deepEqual(queries[0]!.name, 'echo.socksmith.invalid');
    assert.equal(queries[0]!.hasConn, true, 'the query carries the connection');
  });

  test('an answer with no addresses fails the CONNECT with 05 04 (host unreachable)', async () => {
    const px = await start(plugin('empty-dns', (k, n) => k.hooks.onResolve.tapPromise(n, async () => ({ addresses: [] }))));
    const c = await socks5(px, connect5Name('nothing.socksmith.invalid', echo.port));
    assert.deepEqual(await c.readToEnd(3000), hex('05 04 00 01 00000000 0000'));
  });
});

describe('onReply', () => {
  test('the waterfall transforms a failure code (05 → 01); each tap sees the previous result', async () => {
    const refused = await closedPort();
    const seen: Array<[string, number]> = [];
    const px = await start(
      plugin('collapse', (k, n) =>
        k.hooks.onReply.tapPromise(n, async (reply: Reply) => {
          seen.push([n, reply.rep]);
          return reply.rep === 0x05 ? { rep: 0x01 } : reply;
        }),
      ),
      plugin('observer', (k, n) =>
        k.hooks.onReply.tap({ name: n, stage: Stage.OBSERVE }, (reply: Reply) => {
          seen.push([n, reply.rep]);
          return undefined as unknown as Reply; // undefined keeps the previous value
        }),
      ),
    );
    const c = await socks5(px, connect5(refused));
    assert.deepEqual(await c.readToEnd(3000), hex('05 01 00 01 00000000 0000'));
    assert.deepEqual(seen, [
      ['collapse', 0x05],
      ['observer', 0x01],
    ]);
  });

  /** A destination that greets with a banner and reports when its side of the connection closes. */
  async function bannerServer(): Promise<TestServer & { closed: () => number }> {
    let closed = 0;
    const dest = await startTcpServer((s: net.Socket) => {
      s.write('banner');
      // allowHalfOpen server: the proxy's FIN shows as 'end' (or 'close' if it reset).
      let counted = false;
      const count = () => {
        if (!counted) closed++;
        counted = true;
      };
      s.on('end', count);
      s.on('close', count);
    });
    servers.push(dest);
    return Object.assign(dest, { closed: () => closed });
  }

  test('turning a success into a failure sends the failure and never relays', async () => {
    const dest = await bannerServer();
    const px = await start(plugin('veto', (k, n) => k.hooks.onReply.tapPromise(n, async (r) => (r.rep === 0 ? { rep: 0x02 } : r))));
    const c = await socks5(px, connect5(dest.port));
    assert.deepEqual(await c.readToEnd(3000), hex('05 02 00 01 00000000 0000'), 'no banner byte reaches the client');
    c.destroy();
    await waitFor(() => dest.closed() === 1, 2000, 'upstream connection closed');
  });

  test('a vetoed upstream connection is closed at once, not held while the client lingers half-open', async () => {
    const dest = await bannerServer();
    const px = await start(plugin('veto', (k, n) => k.hooks.onReply.tapPromise(n, async (r) => (r.rep === 0 ? { rep: 0x02 } : r))));
    const c = await socks5(px, connect5(dest.port));
    assert.deepEqual(await c.readToEnd(3000), hex('05 02 00 01 00000000 0000'));
    // The client keeps its own half open (allowHalfOpen), as a slow or hostile client would.
    await waitFor(() => dest.closed() === 1, 1000, 'the destination connection to be closed while the client still holds its half');
    c.destroy();
  });

  test('a plugin that throws in onReply on a success: REP 01, no relay, warn log naming it', async () => {
    const px = await start(
      plugin('reply-thrower', (k, n) =>
        k.hooks.onReply.tapPromise(n, async () => {
          throw new Error('reply boom');
        }),
      ),
    );
    const c = await socks5(px, connect5(echo.port));
    assert.deepEqual(await c.readToEnd(3000), hex('05 01 00 01 00000000 0000'));
    await waitFor(() => logsAt(px.logs, 'warn').some((l) => l.plugin === 'reply-thrower' && l.hook === 'onReply'), 2000, 'warn log naming reply-thrower');
  });

  test('success replies pass through onReply with the bound address', async () => {
    let bound: Reply['bound'];
    const px = await start(
      plugin('peek', (k, n) =>
        k.hooks.onReply.tapPromise(n, async (r) => {
          bound = r.bound;
          return r;
        }),
      ),
    );
    const c = await socks5(px, connect5(echo.port));
    const reply = await c.read(10);
    assert.deepEqual(reply.subarray(0, 8), hex('05 00 00 01 7f000001'));
    assert.equal(bound?.host, '127.0.0.1');
    assert.equal(bound?.port, reply.readUInt16BE(8), 'BND.PORT is what onReply saw');
    c.destroy();
  });
});

describe('onData', () => {
  test('transforms relayed bytes in both directions and sees early data', async () => {
    const received: Buffer[] = [];
    const dest = await startTcpServer((s: net.Socket) => {
      s.on('data', (d: Buffer) => {
        received.push(d);
        if (Buffer.concat(received).toString() === 'EARLYPING') s.end('pong');
      });
    });
    servers.push(dest);
    const calls: Array<[DataDirection, string]> = [];
    const px = await start(
      plugin('shout', (k, n) =>
        k.hooks.onData.tap(n, (chunk, info) => {
          calls.push([info.direction, chunk.toString()]);
          return Buffer.from(chunk.toString('latin1').toUpperCase(), 'latin1');
        }),
      ),
    );
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), connect5(dest.port), Buffer.from('early')]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.equal((await c.read(10))[1], 0x00);
    await waitFor(() => Buffer.concat(received).length >= 5, 3000, 'early data at the destination');
    c.write('ping');
    assert.equal((await c.readToEnd(3000)).toString(), 'PONG', 'down direction transformed');
    assert.equal(Buffer.concat(received).toString(), 'EARLYPING', 'up direction transformed, early data included');
    const up = calls.filter(([d]) => d === 'up').map(([, s]) => s).join('');
    const down = calls.filter(([d]) => d === 'down').map(([, s]) => s).join('');
    assert.equal(up, 'earlyping');
    assert.equal(down, 'pong');
    assert.equal(calls[0]![0], 'up');
    assert.equal(calls[0]![1], 'early', 'the first chunk onData sees is the early data');
    c.destroy();
  });

  test('returning an empty buffer drops the chunk; the byte counters count what was forwarded', async () => {
    const px = await start(plugin('dropper', (k, n) => k.hooks.onData.tap(n, (chunk, info) => (info.direction === 'up' && chunk.includes('secret') ? Buffer.alloc(0) : chunk))));
    const c = await socks5(px, connect5(echo.port));
    assert.equal((await c.read(10))[1], 0x00);
    c.write('secret');
    await sleep(100);
    c.write('public');
    assert.equal((await c.read(6)).toString(), 'public', 'the dropped chunk never reached the echo server');
    c.destroy();
    await waitFor(() => px.logs.some((l) => l.msg === 'stream closed'), 3000, 'access log line');
    const line = px.logs.find((l) => l.msg === 'stream closed')!;
    assert.equal(line.bytesUp, 6);
    assert.equal(line.bytesDown, 6);
  });
});

test('a plugin that throws in onData during the relay ends that tunnel with a warn log naming it; the proxy keeps serving', async () => {
  const px = await start(
    plugin('fragile-filter', (k, n) =>
      k.hooks.onData.tap(n, (chunk) => {
        if (chunk.includes('poison')) throw new Error('cannot parse');
        return chunk;
      }),
    ),
  );
  const c = await socks5(px, connect5(echo.port));
  assert.equal((await c.read(10))[1], 0x00);
  c.write('fine');
  assert.equal((await c.read(4)).toString(), 'fine');
  c.write('poison');
  assert.deepEqual(await c.readToEnd(3000), Buffer.alloc(0), 'nothing relayed after the throw; the tunnel closed');
  await waitFor(() => logsAt(px.logs, 'warn').some((l) => l.plugin === 'fragile-filter'), 2000, 'warn log naming fragile-filter');
  const w = logsAt(px.logs, 'warn').find((l) => l.plugin === 'fragile-filter')!;
  assert.equal(w.hook, 'onData');
  const ok = await socks5(px, connect5(echo.port));
  assert.equal((await ok.read(10))[1], 0x00);
  ok.destroy();
});
