/**
 * Early (optimistic) data: client bytes sent right behind the request, before the upstream is
 * connected. They are held, bounded by limits.earlyData (the client is paused beyond it, never
 * dropped), and delivered intact and in order once the stream is open (Arti
 * `Finished::into_output_and_vec`; tor-spec optimistic data).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { after, test } from 'node:test';
import type { ConnectionContext } from '../../src/kernel/context.js';
import { Command } from '../../src/protocol/constants.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startTcpServer, type TestServer } from '../helpers/net.js';
import type { TestProxy } from '../helpers/proxy.js';
import { connect5Name, sleep, startWithPlugins, waitFor, type Kernel } from './hook-kit.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A destination that reads nothing for `delayMs`, then collects everything and reports it. */
interface Sink extends TestServer {
  received(): Buffer;
  ended(): boolean;
}
async function startSlowSink(delayMs: number): Promise<Sink> {
  const chunks: Buffer[] = [];
  let ended = false;
  const server = await startTcpServer((s: net.Socket) => {
    s.pause();
    setTimeout(() => {
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => {
        ended = true;
        s.end(`got ${Buffer.concat(chunks).length}`);
      });
      s.resume();
    }, delayMs);
  });
  return Object.assign(server, { received: () => Buffer.concat(chunks), ended: () => ended });
}

/** Resolves `slow.socksmith.invalid` to 127.0.0.1 after `delayMs`: an upstream that is slow to open. */
class SlowDnsPlugin {
  static meta = { name: 'slow-dns' };
  /** `bytesUp` of the connection when the answer was given (how much early data the kernel had taken). */
  readonly bytesUpAtAnswer: number[] = [];
  constructor(
    private readonly delayMs: number,
    private readonly optimistic = false,
  ) {}
  apply(kernel: Kernel): void {
    // What the optimistic-data plugin does: an interceptor that passes the held bytes on as `early`.
    if (this.optimistic) {
      kernel.dispatch.intercept({ name: SlowDnsPlugin.meta.name }, (next) => (destination, conn: ConnectionContext, o) =>
        next(destination, conn, o.command === Command.CONNECT ? { ...o, early: o.held } : o),
      );
    }
    kernel.hooks.onResolve.tapPromise(SlowDnsPlugin.meta.name, async (q) => {
      if (q.name !== 'slow.socksmith.invalid') return undefined;
      await sleep(this.delayMs);
      this.bytesUpAtAnswer.push(q.conn?.bytesUp ?? -1);
      return { addresses: [{ address: '127.0.0.1', family: 4 }] };
    });
  }
}

const proxies: TestProxy[] = [];
const servers: TestServer[] = [];
after(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await Promise.all(servers.map((s) => s.close()));
});

for (const optimistic of [false, true]) {
  const mode = optimistic ? 'an interceptor passes held bytes as early (sent with the connect)' : 'held until the upstream confirms';
  test(`greeting + request + payload in one write reach a slow destination intact (${mode})`, async () => {
    const sink = await startSlowSink(200);
    servers.push(sink);
    const slow = new SlowDnsPlugin(250, optimistic);
    const px = await startWithPlugins([slow]);
    proxies.push(px);
    const payload = Buffer.concat([Buffer.from('GET / HTTP/1.0\r\n\r\n'), randomBytes(20_000)]);
    const c = await RawClient.connect(px.port);
    c.write(Buffer.concat([hex('05 01 00'), connect5Name('slow.socksmith.invalid', sink.port), payload]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
    c.end();
    assert.equal((await c.readToEnd(5000)).toString(), `got ${payload.length}`);
    assert.equal(sha(sink.received()), sha(payload), 'byte-exact, in order');
  });
}

test('early data far beyond limits.earlyData is not lost: the client is paused, then everything arrives', async () => {
  const sink = await startSlowSink(0);
  servers.push(sink);
  const slow = new SlowDnsPlugin(400);
  const px = await startWithPlugins([slow], { limits: { earlyData: 65536 } });
  proxies.push(px);
  const payload = randomBytes(1024 * 1024);
  const c = await RawClient.connect(px.port);
  c.write(Buffer.concat([hex('05 01 00'), connect5Name('slow.socksmith.invalid', sink.port), payload]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.deepEqual((await c.read(10, 5000)).subarray(0, 4), hex('05 00 00 01'));
  c.end();
  assert.equal((await c.readToEnd(10_000)).toString(), `got ${payload.length}`);
  assert.equal(sha(sink.received()), sha(payload), 'all 1 MiB arrived byte-exact');
  assert.equal(slow.bytesUpAtAnswer.length, 1);
  assert.ok(
    slow.bytesUpAtAnswer[0]! < 512 * 1024,
    `backpressure: the kernel had taken ${slow.bytesUpAtAnswer[0]} bytes of the 1 MiB while the upstream was not open (limit 65536)`,
  );
  await waitFor(() => sink.ended(), 2000, 'sink saw EOF');
});

test('request + payload + FIN before the upstream is open (nc -N style): payload, then EOF, reach the destination; the answer comes back', async () => {
  const sink = await startSlowSink(0);
  servers.push(sink);
  const px = await startWithPlugins([new SlowDnsPlugin(250)]);
  proxies.push(px);
  const c = await RawClient.connect(px.port);
  c.write(Buffer.concat([hex('05 01 00'), connect5Name('slow.socksmith.invalid', sink.port), Buffer.from('whole request')]));
  c.end();
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
  assert.equal((await c.readToEnd(5000)).toString(), 'got 13');
  assert.equal(sink.received().toString(), 'whole request');
});
