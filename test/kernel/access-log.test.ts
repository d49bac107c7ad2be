/**
 * What an operator sees at `info` (issue 14): the access line carries the authenticated user,
 * the upstream, the refusal reason and rule, and the connect failure; a client refused at accept
 * gets its own line. At `debug`: HTTP clients served the 501 page and clients that drop during
 * the handshake, counted in `socksmith_handshakes_unfinished_total`. The bytes of a tunnel that
 * is still open reach `socksmith_bytes_total` at the next scrape. Real sockets, loopback only.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { hashPassword } from '../../plugins/auth/users-file.js';
import { SocksmithProxy } from '../../src/proxy.js';
import { createLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { startMetricsServer } from '../../src/metrics/server.js';
import { hex, toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { ALL_OFF, startProxy, type TestProxy } from '../helpers/proxy.js';
import { scrape, waitFor } from '../metrics/helpers.js';
import { startDnsServer, type TestDnsServer } from '../plugins/helpers/dns-server.js';

let tmp: string;
let echo: TestServer;
let dns: TestDnsServer;
before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-access-'));
  echo = await startEchoServer();
  dns = await startDnsServer();
  dns.setNxdomain('nx.test');
});
after(async () => {
  await echo.close();
  await dns.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const port = (n: number) => n.toString(16).padStart(4, '0');
const name5 = (host: string) => `03 ${Buffer.from([host.length]).toString('hex')} ${Buffer.from(host).toString('hex')}`;
const ECHO = () => `01 7f000001 ${port(echo.port)}`;

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

/** The log lines with message `msg`, once `count` of them arrived. */
async function linesOf(p: TestProxy, msg: string, count = 1): Promise<Array<Record<string, unknown>>> {
  await waitFor(() => p.logs.filter((l) => l.msg === msg).length >= count, `${count} "${msg}" line(s)`);
  return p.logs.filter((l) => l.msg === msg);
}

test('access line at info: the user auth accepted, the upstream, the reply; no child logger fields beyond conn', async () => {
  const users = path.join(tmp, 'users.txt');
  fs.writeFileSync(users, `alice:${await hashPassword('s3cret')}\n`);
  const p = await startProxy({ log: { level: 'info' }, plugins: { auth: { usersFile: users } } });
  try {
    const c = await RawClient.connect(p.port);
    c.write(Buffer.concat([hex('05 01 02'), hex('01 05'), Buffer.from('alice'), hex('06'), Buffer.from('s3cret')]));
    assert.equal(toHex(await c.read(2)), '05 02');
    assert.equal(toHex(await c.read(2)), '01 00');
    c.write(hex(`05 01 00 ${ECHO()}`));
    assert.equal(toHex((await c.read(10)).subarray(0, 2)), '05 00');
    c.write('hi');
    assert.equal((await c.read(2)).toString(), 'hi');
    c.end();
    const [line] = await linesOf(p, 'stream closed');
    assert.equal(line!.level, 'info');
    assert.equal(line!.user, 'alice');
    assert.equal(line!.upstream, 'direct');
    assert.equal(line!.reply, 'SUCCEEDED');
    assert.equal(line!.destination, `127.0.0.1:${echo.port}`);
    assert.equal(line!.bytesUp, 2);
    assert.equal(typeof line!.conn, 'number');
    assert.equal('refused' in line! || 'failure' in line!, false);
  } finally {
    await p.close();
  }
});

test('access line at info: the policy refusal with its rule, and the connect failure (ECONNREFUSED, NXDOMAIN)', async () => {
  const dead = await closedPort();
  const p = await startProxy({
    log: { level: 'info' },
    resolver: { servers: [dns.address] },
    plugins: { policy: { destinations: [`reject 127.0.0.1:${echo.port}`, 'accept *:*'] } },
  });
  try {
    for (const request of [`05 01 00 ${ECHO()}`, `05 01 00 01 7f000001 ${port(dead)}`, `05 01 00 ${name5('nx.test')} 0050`]) {
      const c = await RawClient.connect(p.port);
      c.write(hex('05 01 00'));
      assert.equal(toHex(await c.read(2)), '05 00');
      c.write(hex(request));
      await c.read(10);
      await c.waitEnd();
      c.end();
    }
    const lines = await linesOf(p, 'stream closed', 3);
    const byDest = (d: string) => lines.find((l) => l.destination === d)!;
    const refused = byDest(`127.0.0.1:${echo.port}`);
    assert.equal(refused.reply, 'NOT_ALLOWED');
    assert.equal(refused.refused, `policy: destinations: reject 127.0.0.1:${echo.port}`);
    const econn = byDest(`127.0.0.1:${dead}`);
    assert.equal(econn.reply, 'CONNECTION_REFUSED');
    assert.match(String(econn.failure), /ECONNREFUSED/);
    assert.equal(econn.upstream, 'direct');
    const nx = byDest('nx.test:80');
    assert.equal(nx.reply, 'HOST_UNREACHABLE');
    assert.match(String(nx.failure), /nx\.test/);
  } finally {
    await p.close();
  }
});

test('a client the policy ACL refuses at accept: one info line with the rule', async () => {
  const p = await startProxy({ log: { level: 'info' }, plugins: { policy: { clients: ['reject 127.0.0.0/8', 'accept *'] } } });
  try {
    const c = await RawClient.connect(p.port);
    await c.waitEnd().catch(() => undefined);
    c.destroy();
    const [line] = await linesOf(p, 'connection refused');
    assert.equal(line!.level, 'info');
    assert.equal(line!.client, '127.0.0.1');
    assert.equal(line!.refused, 'policy: clients: reject 127.0.0.0/8');
  } finally {
    await p.close();
  }
});

test('HTTP client served the 501 page and a client that drops mid-handshake: a debug line each and a metric; nothing at info', async () => {
  for (const level of ['debug', 'info'] as const) {
    const p = await startProxy({ log: { level }, plugins: { 'http-detect': true } });
    const metrics = new Metrics({ listeners: () => p.proxy.addresses, defaultMetrics: false });
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => true, logger: createLogger('silent') });
    try {
      const http = await RawClient.connect(p.port);
      http.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.match((await http.read(12)).toString(), /^HTTP\/1\.[01] 501/);
      await http.waitEnd();
      http.end();
      const drop = await RawClient.connect(p.port);
      drop.write(hex('05 02 00')); // half a greeting, then gone
      drop.end();
      await waitFor(() => p.proxy.kernel.connectionCount === 0, 'both connections closed');
      const s = await scrape(server.address.port);
      assert.equal(s.get('socksmith_handshakes_unfinished_total', { outcome: 'http_page' }), 1);
      assert.equal(s.get('socksmith_handshakes_unfinished_total', { outcome: 'client_closed' }), 1);
      assert.equal(s.get('socksmith_handshakes_unfinished_total', { outcome: 'timeout' }), 0);
      const ended = p.logs.filter((l) => l.msg === 'handshake ended without a request');
      if (level === 'debug') {
        assert.deepEqual(ended.map((l) => l.outcome).sort(), ['client_closed', 'http_page']);
        assert.ok(p.logs.some((l) => l.msg === 'http-detect: HTTP request on the SOCKS port, served the 501 page'));
      } else {
        assert.deepEqual(ended, []);
        assert.deepEqual(p.logs.filter((l) => l.level !== 'info' || l.msg !== 'socksmith started'), [], 'nothing else at info');
      }
    } finally {
      metrics.close();
      await server.close();
      await p.close();
    }
  }
});

test('bytes of an open tunnel reach socksmith_bytes_total at the next scrape, and are not counted twice at close', async () => {
  const p = await startProxy({ log: { level: 'warn' } });
  const metrics = new Metrics({ listeners: () => p.proxy.addresses, defaultMetrics: false });
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => true, logger: createLogger('silent') });
  try {
    const c = await RawClient.connect(p.port);
    c.write(hex(`05 01 00 05 01 00 ${ECHO()}`));
    assert.equal(toHex(await c.read(2)), '05 00');
    assert.equal(toHex((await c.read(10)).subarray(0, 2)), '05 00');
    const chunk = Buffer.alloc(3000, 0x61);
    c.write(chunk);
    assert.equal((await c.read(3000)).length, 3000);
    const open = await scrape(server.address.port);
    assert.equal(open.get('socksmith_bytes_total', { direction: 'up' }), 3000, 'counted while the tunnel is open');
    assert.equal(open.get('socksmith_bytes_total', { direction: 'down' }), 3000);
    assert.equal(open.get('socksmith_active_tunnels'), 1);
    c.write(chunk.subarray(0, 500));
    assert.equal((await c.read(500)).length, 500);
    c.end();
    await c.waitEnd();
    await waitFor(() => p.proxy.kernel.connectionCount === 0, 'the tunnel closed');
    const closed = await scrape(server.address.port);
    assert.equal(closed.get('socksmith_bytes_total', { direction: 'up' }), 3500);
    assert.equal(closed.get('socksmith_bytes_total', { direction: 'down' }), 3500);
    assert.equal(closed.get('socksmith_active_tunnels'), 0);
  } finally {
    metrics.close();
    await server.close();
    await p.close();
  }
});

test('a handshake closed to make room under limits.maxConnections is counted as shed, not as a client that left', async () => {
  const p = await startProxy({ log: { level: 'warn' }, limits: { maxConnections: 1 } });
  const metrics = new Metrics({ listeners: () => p.proxy.addresses, defaultMetrics: false });
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => true, logger: createLogger('silent') });
  try {
    const idle = await RawClient.connect(p.port); // accepted, sends nothing
    await waitFor(() => p.proxy.kernel.connectionCount === 1, 'the first connection accepted');
    const next = await RawClient.connect(p.port);
    await idle.waitEnd(); // closed to make room
    idle.destroy();
    next.write(hex(`05 01 00 05 01 00 ${ECHO()}`));
    assert.equal(toHex(await next.read(2)), '05 00');
    assert.equal(toHex((await next.read(10)).subarray(0, 2)), '05 00');
    next.destroy();
    await waitFor(() => p.proxy.kernel.connectionCount === 0, 'both closed');
    const s = await scrape(server.address.port);
    assert.equal(s.get('socksmith_handshakes_unfinished_total', { outcome: 'shed' }), 1);
    assert.equal(s.get('socksmith_handshakes_unfinished_total', { outcome: 'client_closed' }), 0);
  } finally {
    metrics.close();
    await server.close();
    await p.close();
  }
});

test('the preformatted access line is the line pino writes: same keys in the same order, same values, escapes included', async () => {
  // A user name with a quote, a backslash and non-ASCII text, through the auth plugin: the fast
  // path (a logger socksmith made) and pino's own serialization (a plain pino logger) must agree.
  const user = 'q"u\\oté';
  const users = path.join(tmp, 'users-escape.txt');
  fs.writeFileSync(users, `${user}:${await hashPassword('pw')}\n`);
  const config = { log: { level: 'info' as const }, plugins: { auth: { usersFile: users } } };
  const fast = await startProxy(config);
  const plainLines: string[] = [];
  const plain = pino({ level: 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, {
    write: (s: string) => void plainLines.push(s),
  });
  const slow = await SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port: 0 }], ...config, plugins: { ...ALL_OFF, ...config.plugins } }, { logger: plain });
  const [slowAddr] = await slow.listen();
  try {
    const lines: string[] = [];
    for (const p of [fast.port, slowAddr!.port]) {
      const c = await RawClient.connect(p);
      const u = Buffer.from(user);
      c.write(Buffer.concat([hex('05 01 02'), hex('01'), Buffer.from([u.length]), u, hex('02'), Buffer.from('pw')]));
      assert.equal(toHex(await c.read(2)), '05 02');
      assert.equal(toHex(await c.read(2)), '01 00');
      c.write(hex(`05 01 00 ${ECHO()}`));
      assert.equal(toHex((await c.read(10)).subarray(0, 2)), '05 00');
      c.end();
      await c.waitEnd().catch(() => undefined);
    }
    const [fastLine] = await linesOf(fast, 'stream closed');
    // The time comes from the monotonic clock and an offset to the wall clock (access-log.ts
    // isoNow): an ISO time with milliseconds, and the wall clock's, not some other clock's.
    const time = (fastLine as { time?: unknown }).time;
    assert.match(String(time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(String(time)) - Date.now()) < 10_000, `time ${String(time)} is the wall clock's`);
    await waitFor(() => plainLines.some((l) => l.includes('"stream closed"')), 'the pino line');
    lines.push(JSON.stringify(fastLine), plainLines.find((l) => l.includes('"stream closed"'))!);
    const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(Object.keys(a!), Object.keys(b!), 'same keys, same order');
    for (const k of ['time', 'conn', 'durationMs']) {
      delete a![k];
      delete b![k];
    }
    assert.deepEqual(a, b);
    assert.equal(a!.user, user);
  } finally {
    await fast.close();
    await slow.close(500);
  }
});
