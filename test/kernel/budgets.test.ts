/**
 * Budgets per client under pressure (issue #10 items 7, 8 and 13): each client address has a
 * share of `resolver.maxPending`, reverse lookups included (a client with lookups stuck at a
 * silent DNS server leaves room for the others); the default per-client connection cap leaves
 * loopback clients alone (every local program is one loopback client) but still caps a public
 * address; over a limit the oldest connection still in its handshake is closed to make room
 * (never an established tunnel); closes on a PROXY-protocol listener (an untrusted peer, or no
 * valid header from a trusted one) are logged in batches.
 * Source addresses 127.0.0.2… are bound on loopback; a public client address comes in a PROXY
 * header.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { V1ProxyProtocol, INETProtocol, Peer } from 'proxy-protocol-js';
import { resolveConfig } from '../../src/config/normalize.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { queryName, startDnsServer } from '../plugins/helpers/dns-server.js';
import { connectClient, req5, waitFor } from '../plugins/helpers/socks.js';

let echo: TestServer;
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  await echo.close();
});

/** A PROXY v1 header saying the client is `src`. */
function proxyHeader(src: string): Buffer {
  return Buffer.from(new V1ProxyProtocol(INETProtocol.TCP4, new Peer(src, 40000), new Peer('127.0.0.1', 1080)).build(), 'latin1');
}

/** Greeting + CONNECT to the echo server in one write; resolves once the success reply came back. */
async function tunnel(c: RawClient, prefix: Buffer = Buffer.alloc(0)): Promise<void> {
  c.write(Buffer.concat([prefix, hex('05 01 00'), req5(1, '127.0.0.1', echo.port)]));
  assert.deepEqual(await c.read(2, 20000), hex('05 00'));
  assert.equal((await c.read(10, 20000))[1], 0);
}

async function echoes(c: RawClient, probe: string): Promise<void> {
  c.write(probe);
  assert.equal((await c.read(probe.length)).toString(), probe);
}

/** Open `n` connections with at most `batch` connecting at once. */
async function inBatches<T>(n: number, batch: number, open: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += batch) out.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, j) => open(i + j)))));
  return out;
}

test('defaults: maxConnectionsPerClient is 1024 but does not count loopback clients unless set in the config', () => {
  const d = resolveConfig({}, { file: undefined, dir: process.cwd() }).limits;
  assert.equal(d.maxConnectionsPerClient, 1024);
  assert.equal(d.perClientCountsLoopback, false);
  const set = resolveConfig({ limits: { maxConnectionsPerClient: 1024 } }, { file: undefined, dir: process.cwd() }).limits;
  assert.equal(set.perClientCountsLoopback, true);
});

test('default config: 1,100 tunnels from 127.0.0.1 (a browser and a torrent client behind one local proxy) are all served', async () => {
  const px = await startProxy();
  const clients: RawClient[] = [];
  try {
    await inBatches(1100, 100, async () => {
      const c = await RawClient.connect(px.port);
      clients.push(c);
      await tunnel(c);
    });
    await echoes(clients[1099]!, 'the 1,100th');
    assert.ok(!px.logs.some((l) => String(l.msg).startsWith('connections refused')), 'nothing refused');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
  }
});

test('default config: a public client address (from a PROXY header) is still capped at 1,024; the 1,025th is closed without a byte and its tunnels keep working', async () => {
  const px = await startProxy({ listen: [{ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.0/8'] } }] });
  const clients: RawClient[] = [];
  try {
    const header = proxyHeader('203.0.113.7');
    await inBatches(1024, 100, async () => {
      const c = await RawClient.connect(px.port);
      clients.push(c);
      await tunnel(c, header);
    });
    const over = await RawClient.connect(px.port);
    clients.push(over);
    over.write(Buffer.concat([header, hex('05 01 00')]));
    assert.equal((await over.readToEnd(5000)).length, 0, 'refused without a byte');
    await echoes(clients[0]!, 'still open');
    await waitFor(() => px.logs.some((l) => l.msg === 'connections refused: limits.maxConnectionsPerClient reached'), 'the refusal line');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
  }
});

test('per-client cap full of stalled handshakes: a new connection from the same address closes the oldest one and is served', async () => {
  const px = await startProxy({ limits: { maxConnectionsPerClient: 4 } });
  const clients: RawClient[] = [];
  try {
    // An attacker sharing 127.0.0.2 with an honest program holds 4 half-open handshakes.
    const stalled: RawClient[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await connectClient(px.port, { localAddress: '127.0.0.2' });
      c.write(hex('05')); // half a greeting, then nothing
      stalled.push(c);
      clients.push(c);
      await waitFor(() => px.proxy.kernel.connectionCount === i + 1, 'the proxy to accept it');
    }
    const honest = await connectClient(px.port, { localAddress: '127.0.0.2' });
    clients.push(honest);
    await tunnel(honest);
    await echoes(honest, 'served');
    assert.equal((await stalled[0]!.readToEnd(5000)).length, 0, 'the oldest stalled handshake was closed, without a byte');
    for (const c of stalled.slice(1)) assert.equal(c.closed || c.ended, false, 'the younger ones are untouched');
    await waitFor(() => px.logs.some((l) => l.msg === 'handshakes closed to make room: limits.maxConnectionsPerClient reached'), 'the batched warn line');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
  }
});

test('established tunnels are never shed: with the cap full of tunnels, one more connection is refused and the tunnels keep working', async () => {
  const px = await startProxy({ limits: { maxConnectionsPerClient: 2 } });
  const clients: RawClient[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = await connectClient(px.port, { localAddress: '127.0.0.3' });
      clients.push(c);
      await tunnel(c);
    }
    const over = await connectClient(px.port, { localAddress: '127.0.0.3' });
    clients.push(over);
    over.write(hex('05 01 00'));
    assert.equal((await over.readToEnd(5000)).length, 0);
    for (const c of clients.slice(0, 2)) await echoes(c, 'tunnel');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
  }
});

test('limits.maxConnections full of stalled handshakes from one address: a client from another address closes the oldest and is served', async () => {
  const px = await startProxy({ limits: { maxConnections: 3 } });
  const clients: RawClient[] = [];
  try {
    const stalled: RawClient[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await connectClient(px.port, { localAddress: '127.0.0.4' });
      stalled.push(c);
      clients.push(c);
      await waitFor(() => px.proxy.kernel.connectionCount === i + 1, 'the proxy to accept it');
    }
    const other = await connectClient(px.port, { localAddress: '127.0.0.5' });
    clients.push(other);
    await tunnel(other);
    await echoes(other, 'served');
    assert.equal((await stalled[0]!.readToEnd(5000)).length, 0, 'the oldest handshake was closed');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
  }
});

test('2,000 connections from an untrusted peer on a PROXY-protocol listener: a few batched warn lines that count them all, not 2,000', async () => {
  const px = await startProxy({ listen: [{ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['10.0.0.0/8'] } }] });
  const MSG = 'PROXY protocol listener: connections from an untrusted address closed';
  try {
    const t0 = Date.now();
    await inBatches(2000, 100, async () => {
      const s = net.connect({ port: px.port, host: '127.0.0.1' });
      s.on('error', () => {});
      await once(s, 'close');
    });
    const total = () => px.logs.filter((l) => l.msg === MSG).reduce((n, l) => n + Number(l.refused), 0);
    await waitFor(() => total() === 2000, 'every refusal to be counted in a log line', 5000);
    const lines = px.logs.filter((l) => l.msg === MSG);
    // One line at the first refusal, then at most one a second.
    assert.ok(lines.length <= 2 + Math.ceil((Date.now() - t0) / 1000), `${lines.length} lines`);
    assert.ok(lines.every((l) => l.level === 'warn' && l.peer === '127.0.0.1'));
  } finally {
    await px.close();
  }
});

/**
 * The DNS server the proxy asks: never answers the names `silent` picks (it records them), and
 * passes the rest to `answering` (UDP, as the resolver asks first).
 */
async function startSilentFront(answeringPort: number, silent: (name: string) => boolean): Promise<{ port: number; silentFor: Set<string>; close(): void }> {
  const front = dgram.createSocket('udp4');
  front.on('error', () => {});
  front.bind(0, '127.0.0.1');
  await once(front, 'listening');
  const silentFor = new Set<string>();
  const relays = new Set<dgram.Socket>();
  front.on('message', (msg, rinfo) => {
    const name = queryName(msg);
    if (silent(name)) {
      silentFor.add(name);
      return;
    }
    const relay = dgram.createSocket('udp4');
    relays.add(relay);
    relay.on('error', () => {});
    relay.once('message', (answer) => {
      front.send(answer, rinfo.port, rinfo.address);
      relay.close();
      relays.delete(relay);
    });
    relay.send(msg, answeringPort, '127.0.0.1');
  });
  return {
    port: (front.address() as net.AddressInfo).port,
    silentFor,
    close() {
      for (const r of relays) r.close();
      front.close();
    },
  };
}

test('resolver.maxPending is shared per client: 300 lookups from 127.0.0.2 stuck at a DNS server that never answers hold 64 (the default quarter), the rest get REP 04 at once, and a RESOLVE from 127.0.0.3 is answered', async () => {
  // The answering server: a real DNS server (dns2) on loopback.
  const answering = await startDnsServer();
  answering.setA('honest.test', ['192.0.2.10']);
  const front = await startSilentFront(answering.port, (name) => name.endsWith('.flood.test'));
  const silentFor = front.silentFor;
  const px = await startProxy({
    resolver: { servers: [`127.0.0.1:${front.port}`], timeout: 8000, tries: 1 }, // the flood stays pending while the test runs
    plugins: { resolve: true },
  });
  const clients: RawClient[] = [];
  const resolve5 = (name: string) => Buffer.concat([hex('05 01 00'), req5(0xf0, name, 0, true)]);
  try {
    const answers: number[] = [];
    await inBatches(300, 100, async (i) => {
      const c = await connectClient(px.port, { localAddress: '127.0.0.2' });
      clients.push(c);
      c.write(resolve5(`n${i}.flood.test`));
      void c.read(4, 30000).then(
        (r) => answers.push(r[3]!),
        () => {},
      );
    });
    // Every flood lookup is either pending at the silent server or already answered.
    await waitFor(() => answers.length + silentFor.size === 300, 'the flood to settle', 10000);
    const honest = await connectClient(px.port, { localAddress: '127.0.0.3' });
    clients.push(honest);
    honest.write(resolve5('honest.test'));
    assert.deepEqual(await honest.read(12, 5000), hex('05 00 05 00 00 01 c000020a 0000'), "another client's RESOLVE is answered");
    assert.equal(silentFor.size, 64, 'the flood never got more than its share (a quarter of 256) to the DNS server');
    assert.equal(answers.length, 300 - 64);
    assert.ok(answers.every((rep) => rep === 0x04), 'the lookups over the share get REP 04 (host unreachable), at once');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
    front.close();
    await answering.close();
  }
});

test('reverse lookups (RESOLVE_PTR) count in the same budgets: 40 RESOLVE + 30 RESOLVE_PTR from 127.0.0.2 stuck at a silent DNS server hold 64 queries, the other 6 get REP 04 at once, and a RESOLVE_PTR from 127.0.0.3 is answered', async () => {
  const answering = await startDnsServer();
  answering.setPTR('192.0.2.10', ['honest.test']);
  const front = await startSilentFront(answering.port, (name) => name.endsWith('.flood.test') || name.endsWith('.100.51.198.in-addr.arpa'));
  const px = await startProxy({
    resolver: { servers: [`127.0.0.1:${front.port}`], timeout: 8000, tries: 1 },
    plugins: { resolve: true, 'resolve-ptr': true },
  });
  const clients: RawClient[] = [];
  try {
    const answers: number[] = [];
    await inBatches(70, 35, async (i) => {
      const c = await connectClient(px.port, { localAddress: '127.0.0.2' });
      clients.push(c);
      c.write(Buffer.concat([hex('05 01 00'), i < 40 ? req5(0xf0, `n${i}.flood.test`, 0, true) : req5(0xf1, `198.51.100.${i}`, 0)]));
      void c.read(4, 30000).then(
        (r) => answers.push(r[3]!),
        () => {},
      );
    });
    await waitFor(() => answers.length + front.silentFor.size === 70, 'the flood to settle', 10000);
    const honest = await connectClient(px.port, { localAddress: '127.0.0.3' });
    clients.push(honest);
    honest.write(Buffer.concat([hex('05 01 00'), req5(0xf1, '192.0.2.10', 0)]));
    const name = Buffer.from('honest.test');
    assert.deepEqual(await honest.read(2 + 5 + name.length + 2, 5000), Buffer.concat([hex('05 00 05 00 00 03'), Buffer.from([name.length]), name, hex('00 00')]), "another client's RESOLVE_PTR is answered");
    assert.equal(front.silentFor.size, 64, 'forward and reverse lookups together never got more than the share to the DNS server');
    assert.equal(answers.length, 70 - 64);
    assert.ok(answers.every((rep) => rep === 0x04), 'the lookups over the share get REP 04 at once');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
    front.close();
    await answering.close();
  }
});

test('300 connections from a TRUSTED balancer without a valid PROXY header: a few batched warn lines that count them all, not 300', async () => {
  const px = await startProxy({ listen: [{ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.0/8'] } }] });
  const MSG = 'PROXY protocol header missing or invalid, closed';
  try {
    const t0 = Date.now();
    await inBatches(300, 100, async (i) => {
      const s = net.connect({ port: px.port, host: '127.0.0.1' });
      s.on('error', () => {});
      await once(s, 'connect');
      // Half of them send a SOCKS greeting instead of a header, the others close before one.
      if (i % 2 === 0) s.write(hex('05 01 00'));
      else s.end();
      await once(s, 'close');
    });
    const total = () => px.logs.filter((l) => l.msg === MSG).reduce((n, l) => n + Number(l.refused), 0);
    await waitFor(() => total() === 300, 'every connection to be counted in a log line', 5000);
    const lines = px.logs.filter((l) => l.msg === MSG);
    assert.ok(lines.length <= 2 + Math.ceil((Date.now() - t0) / 1000), `${lines.length} lines`);
    assert.ok(lines.every((l) => l.level === 'warn' && l.peer === '127.0.0.1' && typeof l.err === 'string'));
  } finally {
    await px.close();
  }
});

test('a reload (SIGHUP) does not reset the limits: tunnels the old configuration still serves count against the new one (per client and in all)', async () => {
  // Before: each generation counted only its own connections, so every reload gave each client a
  // fresh maxConnectionsPerClient (and the proxy a fresh maxConnections): 3 tunnels per client
  // became 6 after one reload, 9 after two (found by adversarial testing, issue #10).
  const px = await startProxy({ limits: { maxConnectionsPerClient: 3, maxConnections: 5 } });
  const clients: RawClient[] = [];
  const open = async (localAddress: string): Promise<RawClient> => {
    const c = await connectClient(px.port, { localAddress });
    clients.push(c);
    return c;
  };
  try {
    for (let i = 0; i < 3; i++) await tunnel(await open('127.0.0.2'));
    for (const _ of [1, 2]) {
      await px.proxy.reload(px.proxy.config);
      const extra = await open('127.0.0.2');
      extra.write(Buffer.concat([hex('05 01 00'), req5(1, '127.0.0.1', echo.port)]));
      assert.equal((await extra.readToEnd(5000)).length, 0, 'a 4th tunnel from 127.0.0.2 is refused at accept, without a byte, after the reload too');
    }
    for (const c of clients.slice(0, 3)) await echoes(c, 'old tunnels still relay');
    // In all: 3 from 127.0.0.2 + 2 from 127.0.0.3 fill maxConnections: 5; a sixth is refused.
    for (let i = 0; i < 2; i++) await tunnel(await open('127.0.0.3'));
    const sixth = await open('127.0.0.4');
    sixth.write(Buffer.concat([hex('05 01 00'), req5(1, '127.0.0.1', echo.port)]));
    assert.equal((await sixth.readToEnd(5000)).length, 0, 'maxConnections counts the old generation too');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
  }
});

test('a reload (SIGHUP) does not reset the DNS budget: lookups the old configuration still waits for count against the new one\'s maxPendingPerClient and maxPending (issue #10 review)', async () => {
  // Before: each configuration's resolver counted only its own lookups, so right after a reload
  // every client had a fresh maxPendingPerClient and the proxy a fresh maxPending.
  const answering = await startDnsServer();
  const front = await startSilentFront(answering.port, (name) => name.endsWith('.flood.test'));
  const silentFor = front.silentFor;
  const px = await startProxy({
    resolver: { servers: [`127.0.0.1:${front.port}`], timeout: 8000, tries: 1, maxPending: 6, maxPendingPerClient: 3 },
    plugins: { resolve: true },
  });
  const clients: RawClient[] = [];
  const resolve5 = (name: string) => Buffer.concat([hex('05 01 00'), req5(0xf0, name, 0, true)]);
  /** `n` RESOLVEs from `localAddress`; the replies that come back (at once: refusals). */
  const flood = async (localAddress: string, prefix: string, n: number): Promise<number[]> => {
    const answers: number[] = [];
    for (let i = 0; i < n; i++) {
      const c = await connectClient(px.port, { localAddress });
      clients.push(c);
      c.write(resolve5(`${prefix}${i}.flood.test`));
      void c.read(4, 30000).then(
        (r) => answers.push(r[3]!),
        () => {},
      );
    }
    return answers;
  };
  try {
    const before = await flood('127.0.0.2', 'a', 3);
    await waitFor(() => silentFor.size === 3, 'three lookups pending at the silent server', 10000);
    await px.proxy.reload(px.proxy.config);
    const after = await flood('127.0.0.2', 'b', 2);
    await waitFor(() => after.length === 2, 'the new lookups from 127.0.0.2 to be refused', 10000);
    assert.deepEqual(after, [0x04, 0x04], "127.0.0.2's lookups in the old configuration count against its share in the new one");
    assert.equal(before.length, 0, 'the old lookups are still pending');
    // In all: 3 old + 3 new from 127.0.0.3 fill maxPending: 6; a lookup from 127.0.0.4 is refused.
    const third = await flood('127.0.0.3', 'c', 3);
    await waitFor(() => silentFor.size === 6, 'six lookups pending', 10000);
    const fourth = await flood('127.0.0.4', 'd', 1);
    await waitFor(() => fourth.length === 1, 'the lookup from 127.0.0.4 to be refused', 10000);
    assert.deepEqual(fourth, [0x04], 'maxPending counts the old configuration\'s lookups too');
    assert.equal(third.length, 0);
    assert.equal(silentFor.size, 6, 'never more than maxPending queries reached the DNS server');
  } finally {
    for (const c of clients) c.destroy();
    await px.close();
    front.close();
    await answering.close();
  }
});
