import 'reflect-metadata';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer } from '../helpers/net.js';
import { startProxy } from '../helpers/proxy.js';

async function greet(c: RawClient): Promise<void> {
  c.write(hex('05 01 00'));
  assert.deepEqual(await c.read(2), hex('05 00'));
}

/** Greeting and a CONNECT to `echoPort`: an established tunnel (never shed to make room, unlike a handshake). */
async function tunnel(c: RawClient, echoPort: number): Promise<void> {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(echoPort);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.equal((await c.read(10))[1], 0);
}

async function fromSocket(port: number, localAddress: string): Promise<RawClient> {
  // RawClient.connect cannot bind a source address; wrap a bound socket the same way.
  const s = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true });
  await once(s, 'connect');
  return new RawClient(s);
}

test('limits.maxConnections: with every slot an open tunnel, one more connection is closed at accept without a byte, and a warn line says which limit; a slot that frees up is reused', async () => {
  const px = await startProxy({ limits: { maxConnections: 3 } });
  const echo = await startEchoServer();
  try {
    const held = [await RawClient.connect(px.port), await RawClient.connect(px.port), await RawClient.connect(px.port)];
    for (const c of held) await tunnel(c, echo.port);
    const over = await RawClient.connect(px.port);
    over.write(hex('05 01 00'));
    assert.equal((await over.readToEnd(3000)).length, 0, 'refused without a byte');
    over.destroy();
    const line = px.logs.find((l) => String(l.msg).includes('limits.maxConnections'));
    assert.ok(line, 'a log line names the limit');
    assert.equal(line!.level, 'warn');
    held[0]!.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const again = await RawClient.connect(px.port);
    await greet(again);
    again.destroy();
    for (const c of held) c.destroy();
  } finally {
    await px.close();
    await echo.close();
  }
});

test('limits.maxConnectionsPerClient: counted per client address (127.0.0.1 full, 127.0.0.2 still served), loopback too when set in the config', async () => {
  const px = await startProxy({ limits: { maxConnectionsPerClient: 2 } });
  const echo = await startEchoServer();
  try {
    const a1 = await fromSocket(px.port, '127.0.0.1');
    const a2 = await fromSocket(px.port, '127.0.0.1');
    await tunnel(a1, echo.port);
    await tunnel(a2, echo.port);
    const a3 = await fromSocket(px.port, '127.0.0.1');
    a3.write(hex('05 01 00'));
    assert.equal((await a3.readToEnd(3000)).length, 0, 'third from 127.0.0.1 refused');
    const b1 = await fromSocket(px.port, '127.0.0.2');
    await greet(b1);
    for (const c of [a1, a2, a3, b1]) c.destroy();
  } finally {
    await px.close();
    await echo.close();
  }
});

test('resolver.maxPending: with lookups stuck at a silent DNS server, one more distinct name fails at once with REP 01', async () => {
  const silent = dgram.createSocket('udp4');
  silent.bind(0, '127.0.0.1');
  await once(silent, 'listening');
  const dnsPort = (silent.address() as net.AddressInfo).port;
  let queries = 0;
  silent.on('message', () => queries++);
  const px = await startProxy({ resolver: { servers: [`127.0.0.1:${dnsPort}`], maxPending: 2, timeout: 5000, tries: 1 }, timeouts: { connect: 10000 } });
  const clients: RawClient[] = [];
  try {
    const request = async (name: string) => {
      const c = await RawClient.connect(px.port);
      clients.push(c);
      await greet(c);
      const n = Buffer.from(name);
      c.write(Buffer.concat([hex('05 01 00 03'), Buffer.from([n.length]), n, hex('0050')]));
      return c;
    };
    await request('one.test');
    await request('two.test');
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const third = await request('three.test');
    assert.deepEqual(await third.read(10, 3000), hex('05 01 00 01 00000000 0000'));
    assert.ok(Date.now() - t0 < 3000);
    assert.ok(queries >= 2, 'the first two really went to the DNS server');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
    silent.close();
  }
});

test("log.safeLogging: the access line says [scrubbed] instead of the destination (Tor's SafeLogging)", async () => {
  const px = await startProxy({ log: { level: 'info', safeLogging: true } });
  try {
    const c = await RawClient.connect(px.port);
    // An IP literal to a closed loopback port: refused, no DNS involved.
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001 0001')]));
    await c.readToEnd(8000);
    c.destroy();
    for (let i = 0; i < 50 && !px.logs.some((l) => l.msg === 'stream closed'); i++) await new Promise((r) => setTimeout(r, 20));
    const line = px.logs.find((l) => l.msg === 'stream closed');
    assert.equal(line?.destination, '[scrubbed]');
    assert.ok(!px.logs.filter((l) => l.level !== 'debug').some((l) => JSON.stringify(l).includes('127.0.0.1:1"')), 'the destination appears in no log line at info or above');
  } finally {
    await px.close();
  }
});
