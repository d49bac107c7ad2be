/**
 * Prometheus metrics and /healthz (issue #6): a real proxy on loopback, real SOCKS traffic, and
 * scrapes of the metrics listener over node:http. The Metrics and its server are built here
 * against the proxy (the same wiring SocksmithProxy does when `metrics` is configured), so these
 * tests do not depend on that wiring.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import { createLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { startMetricsServer, type MetricsServer } from '../../src/metrics/server.js';
import { hex, toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { startDnsServer, type TestDnsServer } from '../plugins/helpers/dns-server.js';
import { Scrape, httpRequest, scrape, waitFor } from './helpers.js';

const silent = createLogger('silent');
let tmp: string;
let echo: TestServer & { connections: number };
let dns: TestDnsServer;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-metrics-'));
  echo = await startEchoServer();
  dns = await startDnsServer();
  dns.setA('echo.test', ['127.0.0.1']);
  dns.setNxdomain('nx.test');
});
after(async () => {
  await echo.close();
  await dns.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A plugin `x` whose onRequest throws for destination `boom.test` and passes everything else on. */
function throwingPlugin(): string {
  const file = path.join(tmp, 'x.mjs');
  fs.writeFileSync(
    file,
    `export default class X {
  static meta = { name: 'x' };
  apply(kernel) {
    kernel.hooks.onRequest.tapPromise('x', async (conn, request) => {
      if (request.destination.host === 'boom.test') throw new Error('boom');
      return undefined;
    });
  }
}
`,
  );
  return file;
}

/** Metrics for `p` (its listeners only) served on 127.0.0.1:0. */
async function instrument(p: TestProxy, ready: () => boolean = () => true): Promise<{ metrics: Metrics; server: MetricsServer; close(): Promise<void> }> {
  const metrics = new Metrics({ listeners: () => p.proxy.addresses });
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready, logger: silent });
  return {
    metrics,
    server,
    close: async () => {
      metrics.close();
      await server.close();
    },
  };
}

/** Domain-name ATYP (RFC 1928 §5 X'03'): length byte, then the name. */
function name5(host: string): string {
  return `03 ${Buffer.from([host.length]).toString('hex')} ${Buffer.from(host).toString('hex')}`;
}
function port(n: number): string {
  return n.toString(16).padStart(4, '0');
}

/** SOCKS5 greeting (no auth) and a request; returns the client after the 10-byte IPv4 reply. */
async function socks5(proxyPort: number, request: string): Promise<{ client: RawClient; reply: Buffer }> {
  const client = await RawClient.connect(proxyPort);
  client.write(hex('05 01 00')); // RFC 1928 §3: VER NMETHODS METHODS
  assert.equal(toHex(await client.read(2)), '05 00');
  client.write(hex(request));
  return { client, reply: await client.read(10) };
}

/** Wait for the proxy's EOF after a final reply, then end our half (the sockets are half-open). */
async function hangUp(client: RawClient): Promise<void> {
  await client.waitEnd();
  client.end();
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

test('a known sequence of connections gives exact counters, gauges, histogram counts and byte totals', async () => {
  const p = await startProxy({
    resolver: { servers: [dns.address] },
    limits: { maxConnections: 2 },
    plugins: { x: { module: throwingPlugin() } },
  });
  const m = await instrument(p);
  try {
    const before = await scrape(m.server.address.port);
    assert.equal(before.get('socksmith_connections_accepted_total'), 0);
    assert.equal(before.get('socksmith_bytes_total', { direction: 'up' }), 0, 'fixed series are exposed at zero');
    assert.equal(before.get('socksmith_dns_lookups_total', { type: 'forward', result: 'hit' }), 0);

    // Two SOCKS5 CONNECTs by name: the first asks DNS (miss), the second is answered from the cache (hit).
    const c1 = await socks5(p.port, `05 01 00 ${name5('echo.test')} ${port(echo.port)}`);
    assert.equal(toHex(c1.reply.subarray(0, 2)), '05 00');
    const c2 = await socks5(p.port, `05 01 00 ${name5('echo.test')} ${port(echo.port)}`);
    assert.equal(toHex(c2.reply.subarray(0, 2)), '05 00');
    c1.client.write('hello');
    assert.equal((await c1.client.read(5)).toString(), 'hello');
    c2.client.write('world!!');
    assert.equal((await c2.client.read(7)).toString(), 'world!!');

    const open = await scrape(m.server.address.port);
    assert.equal(open.get('socksmith_active_connections'), 2);
    assert.equal(open.get('socksmith_active_tunnels'), 2);
    assert.equal(open.get('socksmith_connect_duration_seconds_count'), 2);
    assert.deepEqual(open.all('socksmith_connections_total'), {}, 'connections are counted when they close');

    // A third connection is over limits.maxConnections (2): closed at accept, without a byte.
    const c3 = await RawClient.connect(p.port);
    await c3.waitEnd();
    assert.equal(c3.pending.length, 0);
    c3.destroy();

    c1.client.end();
    c2.client.end();
    await c1.client.waitEnd();
    await c2.client.waitEnd();
    await waitFor(() => p.proxy.kernel.connectionCount === 0, 'both tunnels to close');

    // SOCKS4 CONNECT to a closed port: 5B on the wire, recorded as its SOCKS5 equivalent (05).
    const s4 = await RawClient.connect(p.port);
    s4.write(hex(`04 01 ${port(await closedPort())} 7f000001 00`)); // SOCKS4: VN CD DSTPORT DSTIP USERID NUL
    assert.equal(toHex((await s4.readToEnd()).subarray(0, 2)), '00 5b');
    s4.end();

    // SOCKS5 BIND: 07 command not supported (RFC 1928 §6).
    const bind = await socks5(p.port, '05 02 00 01 7f000001 0050');
    assert.equal(toHex(bind.reply), '05 07 00 01 00 00 00 00 00 00');
    await hangUp(bind.client);

    // Plugin x throws in onRequest: 01 general failure, and the error is attributed to x.
    const boom = await socks5(p.port, `05 01 00 ${name5('boom.test')} 0050`);
    assert.equal(toHex(boom.reply.subarray(0, 2)), '05 01');
    await hangUp(boom.client);

    // A name that does not resolve: DNS failure, 04 host unreachable.
    const nx = await socks5(p.port, `05 01 00 ${name5('nx.test')} 0050`);
    assert.equal(toHex(nx.reply.subarray(0, 2)), '05 04');
    await hangUp(nx.client);

    // A client that connects and leaves without a byte: no version, no command, no reply.
    const empty = await RawClient.connect(p.port);
    empty.end();
    await empty.waitEnd();
    await waitFor(() => p.proxy.kernel.connectionCount === 0, 'every connection to close');

    const res = await httpRequest(m.server.address.port, '/metrics');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    const s = await scrape(m.server.address.port);
    assert.deepEqual(s.all('socksmith_connections_total'), {
      'socksmith_connections_total{command="CONNECT",reply="SUCCEEDED",version="5"}': 2,
      'socksmith_connections_total{command="CONNECT",reply="CONNECTION_REFUSED",version="4"}': 1,
      'socksmith_connections_total{command="BIND",reply="COMMAND_NOT_SUPPORTED",version="5"}': 1,
      'socksmith_connections_total{command="CONNECT",reply="GENERAL_FAILURE",version="5"}': 1,
      'socksmith_connections_total{command="CONNECT",reply="HOST_UNREACHABLE",version="5"}': 1,
      'socksmith_connections_total{command="none",reply="none",version="none"}': 1,
    });
    assert.equal(s.get('socksmith_connections_accepted_total'), 7);
    assert.deepEqual(s.all('socksmith_connections_refused_total'), {
      'socksmith_connections_refused_total{reason="limits.maxConnections"}': 1,
      'socksmith_connections_refused_total{reason="limits.maxConnectionsPerClient"}': 0,
      'socksmith_connections_refused_total{reason="onAccept"}': 0,
    });
    assert.equal(s.get('socksmith_active_connections'), 0);
    assert.equal(s.get('socksmith_active_tunnels'), 0);
    assert.equal(s.get('socksmith_handshake_duration_seconds_count'), 6, 'one per request (not the empty connection)');
    assert.equal(s.get('socksmith_handshake_duration_seconds_bucket', { le: '+Inf' }), 6);
    assert.equal(s.get('socksmith_connect_duration_seconds_count'), 2, 'successful upstream connects only');
    assert.ok(s.get('socksmith_connect_duration_seconds_sum')! > 0);
    assert.equal(s.get('socksmith_bytes_total', { direction: 'up' }), 12, "'hello' + 'world!!'");
    assert.equal(s.get('socksmith_bytes_total', { direction: 'down' }), 12, 'the same bytes echoed');
    assert.deepEqual(s.all('socksmith_dns_lookups_total'), {
      'socksmith_dns_lookups_total{result="hit",type="forward"}': 1,
      'socksmith_dns_lookups_total{result="miss",type="forward"}': 1,
      'socksmith_dns_lookups_total{result="failure",type="forward"}': 1,
      'socksmith_dns_lookups_total{result="hit",type="reverse"}': 0,
      'socksmith_dns_lookups_total{result="miss",type="reverse"}': 0,
      'socksmith_dns_lookups_total{result="failure",type="reverse"}': 0,
    });
    assert.deepEqual(s.all('socksmith_plugin_errors_total'), { 'socksmith_plugin_errors_total{hook="onRequest",plugin="x"}': 1 });
    assert.equal(dns.queriesFor('echo.test', 'A').length, 1, 'the hit really came from the cache');
  } finally {
    await m.close();
    await p.close();
  }
});

test('process metrics are exposed with the socksmith_ prefix, and nothing goes to the global registry', async () => {
  const p = await startProxy();
  const m = await instrument(p);
  const m2 = new Metrics(); // a second instance shares the process metrics without a name clash
  try {
    const s = await scrape(m.server.address.port);
    assert.ok(s.get('socksmith_process_cpu_user_seconds_total')! >= 0);
    assert.ok(s.get('socksmith_nodejs_heap_size_used_bytes')! > 0);
    assert.match(s.text, /^# TYPE socksmith_nodejs_eventloop_lag_seconds gauge$/m);
    assert.match(await m2.scrape(), /^socksmith_process_resident_memory_bytes \d+/m);
    for (const name of s.series.keys()) assert.ok(name.startsWith('socksmith_'), `${name} is prefixed`);
    assert.equal(globalRegistry.getMetricsAsArray().length, 0, "prom-client's global registry stays empty");
  } finally {
    m2.close();
    await m.close();
    await p.close();
  }
});

test('/healthz: 503 starting until ready, then 200 ok; 503 stopping once stopping; 404 and 405 elsewhere', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  let ready = false;
  let stopping = false;
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => ready, stopping: () => stopping, logger: silent });
  const { port: mport } = server.address;
  try {
    let r = await httpRequest(mport, '/healthz');
    assert.deepEqual([r.status, r.body], [503, 'starting\n']);
    ready = true;
    r = await httpRequest(mport, '/healthz');
    assert.deepEqual([r.status, r.body], [200, 'ok\n']);
    assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
    r = await httpRequest(mport, '/healthz?verbose=1');
    assert.equal(r.status, 200, 'a query string does not change the route');
    r = await httpRequest(mport, '/healthz', 'HEAD');
    assert.deepEqual([r.status, r.body], [200, '']);
    stopping = true;
    r = await httpRequest(mport, '/healthz');
    assert.deepEqual([r.status, r.body], [503, 'stopping\n']);
    for (const p of ['/', '/metrics/', '/favicon.ico', '/health']) {
      r = await httpRequest(mport, p);
      assert.deepEqual([r.status, r.body], [404, 'not found\n'], p);
    }
    r = await httpRequest(mport, '/metrics', 'POST');
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET, HEAD');
    r = await httpRequest(mport, '/metrics');
    assert.equal(r.status, 200, '/metrics is served while stopping (watch the drain)');
    assert.match(r.body, /^socksmith_active_connections 0$/m);
  } finally {
    metrics.close();
    await server.close();
  }
  await server.close(); // idempotent
  await assert.rejects(httpRequest(mport, '/healthz', 'GET', 1000), /ECONNREFUSED/);
});

test('the metrics listener cannot bind a used port: SOCKSMITH_ERR_LISTEN naming the address', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  const first = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => true, logger: silent });
  try {
    await assert.rejects(startMetricsServer({ host: '127.0.0.1', port: first.address.port, metrics, ready: () => true, logger: silent }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_LISTEN');
      assert.match(err.message, new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${first.address.port} \\(metrics\\): .*EADDRINUSE`));
      return true;
    });
  } finally {
    metrics.close();
    await first.close();
  }
});

test('two proxies in one process: each Metrics counts only its own connections; close() stops counting', async () => {
  const p1 = await startProxy();
  const p2 = await startProxy();
  const m1 = await instrument(p1);
  const m2 = await instrument(p2);
  const everything = new Metrics({ defaultMetrics: false }); // no listener filter: the whole process
  const bindOnce = async (proxyPort: number) => {
    const c = await socks5(proxyPort, '05 02 00 01 7f000001 0050'); // BIND → 07
    assert.equal(toHex(c.reply.subarray(0, 2)), '05 07');
    await hangUp(c.client);
  };
  const settled = () => waitFor(() => p1.proxy.kernel.connectionCount === 0 && p2.proxy.kernel.connectionCount === 0, 'connections to close');
  const bindSeries = 'socksmith_connections_total{command="BIND",reply="COMMAND_NOT_SUPPORTED",version="5"}';
  try {
    await bindOnce(p1.port);
    await bindOnce(p2.port);
    await bindOnce(p2.port);
    await settled();
    const s1 = await scrape(m1.server.address.port);
    const s2 = await scrape(m2.server.address.port);
    assert.equal(s1.get('socksmith_connections_accepted_total'), 1);
    assert.deepEqual(s1.all('socksmith_connections_total'), { [bindSeries]: 1 });
    assert.equal(s1.get('socksmith_handshake_duration_seconds_count'), 1);
    assert.equal(s2.get('socksmith_connections_accepted_total'), 2);
    assert.deepEqual(s2.all('socksmith_connections_total'), { [bindSeries]: 2 });
    assert.equal(s2.get('socksmith_handshake_duration_seconds_count'), 2);
    const all = new Scrape(await everything.scrape());
    assert.equal(all.get('socksmith_connections_accepted_total'), 3);

    m1.metrics.close();
    await bindOnce(p1.port);
    await settled();
    const after1 = await scrape(m1.server.address.port);
    assert.equal(after1.get('socksmith_connections_accepted_total'), 1, 'a closed Metrics no longer counts');
    const all2 = new Scrape(await everything.scrape());
    assert.equal(all2.get('socksmith_connections_accepted_total'), 4);
  } finally {
    everything.close();
    await m1.close();
    await m2.close();
    await p1.close();
    await p2.close();
  }
});

test('a Metrics created while a tunnel is open counts it at close, and its gauges never go below zero', async () => {
  const p = await startProxy();
  try {
    const t = await socks5(p.port, `05 01 00 01 7f000001 ${port(echo.port)}`);
    assert.equal(toHex(t.reply.subarray(0, 2)), '05 00');
    t.client.write('abc');
    assert.equal((await t.client.read(3)).toString(), 'abc');
    const m = await instrument(p);
    try {
      assert.equal((await scrape(m.server.address.port)).get('socksmith_active_connections'), 0, 'opened before these metrics');
      t.client.end();
      await t.client.waitEnd();
      await waitFor(() => p.proxy.kernel.connectionCount === 0, 'the tunnel to close');
      const s = await scrape(m.server.address.port);
      assert.equal(s.get('socksmith_active_connections'), 0);
      assert.equal(s.get('socksmith_active_tunnels'), 0);
      assert.equal(s.get('socksmith_connections_accepted_total'), 0);
      assert.deepEqual(s.all('socksmith_connections_total'), { 'socksmith_connections_total{command="CONNECT",reply="SUCCEEDED",version="5"}': 1 });
      assert.equal(s.get('socksmith_bytes_total', { direction: 'up' }), 3);
      assert.equal(s.get('socksmith_bytes_total', { direction: 'down' }), 3);
    } finally {
      await m.close();
    }
  } finally {
    await p.close();
  }
});
