import 'reflect-metadata';
/**
 * The `socks5` upstream against real SOCKS5 servers: a second socksmith, microsocks 1.0.3 and
 * dante-server 1.4.2 (spawned on loopback, killed by PID), plus a recording SOCKS5 server that
 * logs the exact bytes socksmith sends upstream: names stay names (ATYP 03, no local DNS),
 * configured credentials travel as RFC 1929, and the upstream's REP reaches the client unchanged.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import { SocksClient } from 'socks';
import { hex, toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, startHttpServer, startTcpServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { requireTool } from '../helpers/tools.js';
import { startDante, startMicrosocks, type Daemon } from './helpers/daemons.js';
import { HTTP10_REQUEST, execTool, runHeld, splitHttp } from './helpers/run.js';
import { port16, socks5Tunnel, startDnsSpy, startRecordingSocks5, waitForAccessLine, type RecordingSocks5 } from './helpers/socks.js';

let http4: TestServer & { requests: string[] };
let http6: TestServer & { requests: string[] };
let echo: TestServer;
before(async () => {
  http4 = await startHttpServer();
  http6 = await startHttpServer(undefined, '::1');
  echo = await startEchoServer();
});
after(async () => {
  await Promise.all([http4?.close(), http6?.close(), echo?.close()]);
});

const curl = (args: string[]) => execTool('curl', ['-q', '-sS', '--max-time', '8', ...args], { timeoutMs: 10_000 });

/** A socksmith chained to 127.0.0.1:`port`, closed when the test ends. */
async function chainedProxy(t: TestContext, port: number, extra: { username?: string; password?: string } = {}, config: Parameters<typeof startProxy>[0] = {}): Promise<TestProxy> {
  // Built apart from the literal: ConfigInput types `upstream` by its `type` only (checked per type at runtime).
  const upstream = { type: 'socks5' as const, host: '127.0.0.1', port, ...extra };
  const px = await startProxy({ ...config, upstream });
  t.after(() => px.proxy.close(0)); // no drain: the test is over, its tunnels may go
  return px;
}

/** Raw SOCKS5 CONNECT through `px`; returns everything the proxy sent after `05 00` until it closed. */
async function rawConnectReply(px: TestProxy, request: Buffer): Promise<Buffer> {
  const c = await RawClient.connect(px.port);
  try {
    c.write(hex('05 01 00'));
    assert.deepEqual(await c.read(2), hex('05 00'));
    c.write(request);
    return await c.readToEnd(5000);
  } finally {
    c.destroy();
  }
}

describe('socksmith → socksmith', () => {
  let inner: TestProxy;
  before(async () => {
    inner = await startProxy();
  });
  after(() => inner?.close());

  test('curl --socks5-hostname through two socksmiths: the name reaches the second one as ATYP 03', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const outer = await chainedProxy(t, inner.port);
    const mark = inner.logs.length;
    const r = await curl(['--socks5-hostname', `127.0.0.1:${outer.port}`, `http://localhost:${http4.port}/chain-ss`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /chain-ss');
    const line = await waitForAccessLine(inner, (l) => l.destination === `localhost:${http4.port}`, { since: mark });
    assert.equal(line.version, 5);
    assert.equal(line.reply, 'SUCCEEDED');
  });

  test('16 MiB each way at once through the chain, SHA-256 checked', { timeout: 30_000 }, async (t) => {
    const outer = await chainedProxy(t, inner.port);
    const data = randomBytes(16 * 1024 * 1024);
    const want = createHash('sha256').update(data).digest('hex');
    // The destination streams `data` down while it hashes what comes up; after the client's EOF
    // it appends the upload digest.
    const dest = await startTcpServer((sock) => {
      const h = createHash('sha256');
      sock.on('data', (d: Buffer) => h.update(d));
      sock.on('end', () => sock.end(`|${h.digest('hex')}`));
      sock.write(data);
    });
    t.after(() => dest.close());
    const s = await socks5Tunnel(outer.port, 'localhost', dest.port);
    t.after(() => s.destroy());
    const down = new Promise<Buffer>((resolve, reject) => {
      const parts: Buffer[] = [];
      s.on('data', (d: Buffer) => parts.push(d));
      s.once('end', () => resolve(Buffer.concat(parts)));
      s.once('error', reject);
      s.resume(); // socks5Tunnel hands the socket over paused
    });
    s.end(data);
    const got = await down;
    assert.equal(got.length, data.length + 65);
    assert.equal(createHash('sha256').update(got.subarray(0, data.length)).digest('hex'), want, 'download intact');
    assert.equal(got.subarray(data.length).toString(), `|${want}`, 'upload intact');
  });

  test('greeting, request, data and EOF in one write through the chain: reply, answer, EOF', async (t) => {
    const outer = await chainedProxy(t, inner.port);
    const dest = await startTcpServer((sock) => {
      let n = 0;
      sock.on('data', (d: Buffer) => (n += d.length));
      sock.on('end', () => sock.end(`got ${n}`));
    });
    t.after(() => dest.close());
    const c = await RawClient.connect(outer.port);
    t.after(() => c.destroy());
    c.socket.end(Buffer.concat([hex('05 01 00'), hex('05 01 00 03 09'), Buffer.from('localhost'), port16(dest.port), Buffer.from('eager bytes')]));
    const all = await c.readToEnd();
    assert.equal(toHex(all.subarray(0, 4)), toHex(hex('05 00 05 00')), toHex(all));
    assert.equal(all.subarray(12).toString(), 'got 11');
  });

  test('SOCKS4 client in, SOCKS5 out: npm socks type 4 echoes through the chain', async (t) => {
    const outer = await chainedProxy(t, inner.port);
    const mark = inner.logs.length;
    const { socket } = await SocksClient.createConnection({
      proxy: { host: '127.0.0.1', port: outer.port, type: 4 },
      command: 'connect',
      destination: { host: '127.0.0.1', port: echo.port },
      timeout: 5000,
    });
    t.after(() => socket.destroy());
    const payload = 'chain v4 in, v5 out';
    const got = new Promise<string>((resolve) => {
      let acc = '';
      socket.on('data', (d: Buffer) => {
        acc += d.toString();
        if (acc.length >= payload.length) resolve(acc);
      });
    });
    socket.write(payload);
    assert.equal(await got, payload);
    socket.destroy();
    await waitForAccessLine(inner, (l) => l.destination === `127.0.0.1:${echo.port}` && l.version === 5, { since: mark });
  });
});

describe('socksmith → microsocks 1.0.3', () => {
  let ms: Daemon | undefined;
  let msAuth: Daemon | undefined;
  after(async () => {
    await ms?.stop();
    await msAuth?.stop();
  });

  test('curl --socks5-hostname: body through socksmith and microsocks', async (t) => {
    const bin = requireTool(t, 'microsocks');
    if (!bin || !requireTool(t, 'curl')) return;
    ms ??= await startMicrosocks(bin);
    const px = await chainedProxy(t, ms.port);
    const r = await curl(['--socks5-hostname', `127.0.0.1:${px.port}`, `http://localhost:${http4.port}/chain-ms`]);
    assert.equal(r.code, 0, `${r.stderr}\nmicrosocks: ${ms.output()}`);
    assert.equal(r.stdout.toString(), 'hello from /chain-ms');
  });

  test('curl --socks4a: a SOCKS4A name goes on to microsocks as a SOCKS5 name', async (t) => {
    const bin = requireTool(t, 'microsocks');
    if (!bin || !requireTool(t, 'curl')) return;
    ms ??= await startMicrosocks(bin);
    const px = await chainedProxy(t, ms.port);
    const r = await curl(['--socks4a', `127.0.0.1:${px.port}`, `http://localhost:${http4.port}/chain-ms-4a`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /chain-ms-4a');
  });

  test('upstream username/password from config open microsocks -u/-P; wrong ones give REP 01', async (t) => {
    const bin = requireTool(t, 'microsocks');
    if (!bin || !requireTool(t, 'curl')) return;
    msAuth ??= await startMicrosocks(bin, { username: 'alice', password: 's3cret' });
    const good = await chainedProxy(t, msAuth.port, { username: 'alice', password: 's3cret' });
    const r = await curl(['--socks5-hostname', `127.0.0.1:${good.port}`, `http://localhost:${http4.port}/chain-ms-auth`]);
    assert.equal(r.code, 0, `${r.stderr}\nmicrosocks: ${msAuth.output()}`);
    assert.equal(r.stdout.toString(), 'hello from /chain-ms-auth');

    const bad = await chainedProxy(t, msAuth.port, { username: 'alice', password: 'wrong' });
    const reply = await rawConnectReply(bad, Buffer.concat([hex('05 01 00 01 7f000001'), port16(http4.port)]));
    assert.equal(toHex(reply), toHex(hex('05 01 00 01 00000000 0000')), 'rejected upstream credentials: general failure');
  });
});

describe('socksmith → dante-server 1.4.2', () => {
  let dante: Daemon | undefined;
  after(() => dante?.stop());

  test('curl --socks5-hostname and socat SOCKS4A through socksmith and danted', async (t) => {
    const bin = requireTool(t, 'danted', 'dante-server');
    if (!bin || !requireTool(t, 'curl') || !requireTool(t, 'socat')) return;
    dante = await startDante(bin);
    const px = await chainedProxy(t, dante.port);
    const r = await curl(['--socks5-hostname', `127.0.0.1:${px.port}`, `http://localhost:${http4.port}/chain-dante`]);
    assert.equal(r.code, 0, `${r.stderr}\ndanted: ${dante.output()}`);
    assert.equal(r.stdout.toString(), 'hello from /chain-dante');

    const s = await runHeld('socat', ['-', `SOCKS4A:127.0.0.1:localhost:${http4.port},socksport=${px.port}`], HTTP10_REQUEST);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(splitHttp(s.stdout).body, 'hello from /e2e');
  });

  test('half-close through danted: the destination answers after EOF and the client gets it all', async (t) => {
    const bin = requireTool(t, 'danted', 'dante-server');
    if (!bin) return;
    dante ??= await startDante(bin);
    const px = await chainedProxy(t, dante.port);
    const c = await RawClient.connect(px.port);
    t.after(() => c.destroy());
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), port16(echo.port)]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual((await c.read(4)).subarray(0, 2), hex('05 00'));
    await c.read(6);
    const payload = Buffer.alloc(200_000, 'dante');
    c.write(payload);
    c.end();
    const back = await c.readToEnd(8000);
    assert.equal(back.length, payload.length);
    assert.ok(back.equals(payload));
  });
});

describe('socksmith → recording SOCKS5 server (the bytes sent upstream)', () => {
  let rec: RecordingSocks5 | undefined;
  after(() => rec?.close());
  async function recorder(opts: Parameters<typeof startRecordingSocks5>[0] = {}): Promise<RecordingSocks5> {
    const r = await startRecordingSocks5(opts);
    const prev = rec;
    rec = r;
    await prev?.close();
    return r;
  }

  test('a name is sent as ATYP 03 and never resolved locally (a DNS spy sees no query)', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const spy = await startDnsSpy();
    t.after(() => spy.close());
    const up = await recorder();
    // The name resolves nowhere: the recorder routes every request to 127.0.0.1.
    const px = await chainedProxy(t, up.port, {}, { resolver: { servers: [spy.address], timeout: 200, tries: 1 } });
    const r = await curl(['--socks5-hostname', `127.0.0.1:${px.port}`, `http://socksmith-dest.test:${http4.port}/named`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /named');
    assert.equal(up.sessions.length, 1);
    assert.equal(toHex(up.sessions[0]!.greeting), toHex(hex('05 01 00')), 'no credentials configured: only 00 offered');
    const name = Buffer.from('socksmith-dest.test');
    assert.equal(toHex(up.sessions[0]!.request), toHex(Buffer.concat([hex('05 01 00 03'), Buffer.from([name.length]), name, port16(http4.port)])));
    assert.equal(spy.queries.length, 0, 'no DNS query left socksmith');
  });

  test('a SOCKS4A name from socat is also passed on as ATYP 03', async (t) => {
    if (!requireTool(t, 'socat')) return;
    const spy = await startDnsSpy();
    t.after(() => spy.close());
    const up = await recorder();
    const px = await chainedProxy(t, up.port, {}, { resolver: { servers: [spy.address], timeout: 200, tries: 1 } });
    const s = await runHeld('socat', ['-', `SOCKS4A:127.0.0.1:socksmith-dest.test:${http4.port},socksport=${px.port}`], HTTP10_REQUEST);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(splitHttp(s.stdout).body, 'hello from /e2e');
    const name = Buffer.from('socksmith-dest.test');
    assert.equal(toHex(up.sessions[0]!.request), toHex(Buffer.concat([hex('05 01 00 03'), Buffer.from([name.length]), name, port16(http4.port)])));
    assert.equal(spy.queries.length, 0);
  });

  test('IPv4 and IPv6 literals go on as ATYP 01 / 04, unchanged', async (t) => {
    const up = await recorder({
      route: (req) => (req[3] === 0x04 ? { host: '::1', port: req.readUInt16BE(20) } : { host: '127.0.0.1', port: req.readUInt16BE(8) }),
    });
    const px = await chainedProxy(t, up.port);
    for (const [req, body] of [
      [Buffer.concat([hex('05 01 00 01 7f000001'), port16(http4.port)]), 'v4'],
      [Buffer.concat([hex('05 01 00 04 00000000000000000000000000000001'), port16(http6.port)]), 'v6'],
    ] as const) {
      const c = await RawClient.connect(px.port);
      t.after(() => c.destroy());
      c.write(hex('05 01 00'));
      assert.deepEqual(await c.read(2), hex('05 00'));
      c.write(req);
      const reply = await c.read(10);
      assert.deepEqual(reply.subarray(0, 4), hex('05 00 00 01'), body);
      c.write(`GET /${body} HTTP/1.0\r\n\r\n`);
      assert.equal(splitHttp(await c.readToEnd()).body, `hello from /${body}`);
    }
    assert.equal(toHex(up.sessions[0]!.request), toHex(Buffer.concat([hex('05 01 00 01 7f000001'), port16(http4.port)])));
    assert.equal(toHex(up.sessions[1]!.request), toHex(Buffer.concat([hex('05 01 00 04 00000000000000000000000000000001'), port16(http6.port)])));
  });

  test('configured username/password reach the upstream as RFC 1929 `01 05 alice 06 s3cret`', async (t) => {
    const up = await recorder({ method: 0x02 });
    const px = await chainedProxy(t, up.port, { username: 'alice', password: 's3cret' });
    const c = await RawClient.connect(px.port);
    t.after(() => c.destroy());
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 03 09'), Buffer.from('localhost'), port16(echo.port)]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
    c.write('through an authenticated upstream');
    assert.equal((await c.read(33)).toString(), 'through an authenticated upstream');
    assert.equal(toHex(up.sessions[0]!.greeting), toHex(hex('05 02 00 02')), 'credentials configured: 00 and 02 offered');
    assert.equal(toHex(up.sessions[0]!.auth!), toHex(hex('01 05 616c696365 06 733363726574')));
  });

  test('upstream chooses 02 but no credentials are configured: REP 01, nothing sent after the greeting', async (t) => {
    const up = await recorder({ method: 0x02 });
    const px = await chainedProxy(t, up.port);
    const reply = await rawConnectReply(px, Buffer.concat([hex('05 01 00 01 7f000001'), port16(echo.port)]));
    assert.equal(toHex(reply), toHex(hex('05 01 00 01 00000000 0000')));
    assert.equal(up.sessions.length, 0, 'the upstream never got credentials or a request');
  });

  for (const [rep, what] of [
    [0x05, 'connection refused'],
    [0x04, 'host unreachable'],
    [0x02, 'not allowed by ruleset'],
    [0x06, 'TTL expired'],
  ] as const) {
    test(`upstream REP ${rep.toString(16).padStart(2, '0')} (${what}) reaches a SOCKS5 client byte for byte`, async (t) => {
      const upReply = Buffer.from([0x05, rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
      const up = await recorder({ reply: () => upReply });
      const px = await chainedProxy(t, up.port);
      const reply = await rawConnectReply(px, Buffer.concat([hex('05 01 00 03 09'), Buffer.from('localhost'), port16(http4.port)]));
      assert.equal(toHex(reply), toHex(upReply));
    });
  }

  test('upstream REP 05 reaches a SOCKS4 client as 5B', async (t) => {
    const up = await recorder({ reply: () => hex('05 05 00 01 00000000 0000') });
    const px = await chainedProxy(t, up.port);
    const c = await RawClient.connect(px.port);
    t.after(() => c.destroy());
    c.write(Buffer.concat([hex('04 01'), port16(http4.port), hex('7f000001 00')]));
    assert.equal(toHex(await c.readToEnd()), toHex(hex('00 5b 0000 00000000')));
  });

  test('server-first bytes arriving in the same segment as the upstream\'s success reply reach the client', async (t) => {
    const banner = 'SSH-2.0-banner-from-destination\r\n';
    const dest = await startTcpServer((sock) => {
      sock.on('data', (d: Buffer) => sock.write(d));
      sock.write(banner);
    });
    t.after(() => dest.close());
    const up = await recorder({ coalesce: banner.length });
    const px = await chainedProxy(t, up.port);
    const c = await RawClient.connect(px.port);
    t.after(() => c.destroy());
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), port16(dest.port)]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual((await c.read(10)).subarray(0, 2), hex('05 00'));
    assert.equal((await c.read(banner.length)).toString(), banner, 'the banner behind the reply is not lost');
    c.write('and then echo');
    assert.equal((await c.read(13)).toString(), 'and then echo');
  });

  test('an upstream success reply with a name as BND.ADDR (ATYP 03) is passed on whole and the tunnel works', async (t) => {
    const bnd = Buffer.concat([hex('05 00 00 03 0b'), Buffer.from('upstream.lo'), hex('1234')]);
    const up = await recorder({ successReply: bnd });
    const px = await chainedProxy(t, up.port);
    const c = await RawClient.connect(px.port);
    t.after(() => c.destroy());
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), port16(echo.port)]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.equal(toHex(await c.read(bnd.length)), toHex(bnd));
    c.write('after a domain BND');
    assert.equal((await c.read(18)).toString(), 'after a domain BND');
  });

  test('greeting, request and data pipelined in one write reach the destination in order through the chain', async (t) => {
    const up = await recorder();
    const px = await chainedProxy(t, up.port);
    const c = await RawClient.connect(px.port);
    t.after(() => c.destroy());
    const early = Buffer.alloc(300_000, 'early ');
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 03 09'), Buffer.from('localhost'), port16(echo.port), early]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual((await c.read(10)).subarray(0, 2), hex('05 00'));
    assert.ok((await c.read(early.length)).equals(early), 'early data echoed whole and in order');
    assert.equal(toHex(up.sessions[0]!.request), toHex(Buffer.concat([hex('05 01 00 03 09'), Buffer.from('localhost'), port16(echo.port)])));
  });

  test('an upstream that accepts TCP but never answers: REP 06 (TTL expired) after timeouts.connect', async (t) => {
    const silent = await startTcpServer((sock) => sock.on('data', () => {}));
    t.after(() => silent.close());
    const px = await chainedProxy(t, silent.port, {}, { timeouts: { connect: 300 } });
    const t0 = Date.now();
    const reply = await rawConnectReply(px, Buffer.concat([hex('05 01 00 01 7f000001'), port16(echo.port)]));
    assert.equal(toHex(reply), toHex(hex('05 06 00 01 00000000 0000')));
    assert.ok(Date.now() - t0 < 3000, `answered after ${Date.now() - t0} ms`);
  });

  test('an upstream that answers the greeting with a non-SOCKS5 version: REP 01', async (t) => {
    const bogus = await startTcpServer((sock) => sock.once('data', () => sock.write(hex('04 00'))));
    t.after(() => bogus.close());
    const px = await chainedProxy(t, bogus.port, {}, { timeouts: { connect: 2000 } });
    const reply = await rawConnectReply(px, Buffer.concat([hex('05 01 00 01 7f000001'), port16(echo.port)]));
    assert.equal(toHex(reply), toHex(hex('05 01 00 01 00000000 0000')));
  });

  test('upstream closes during its handshake: REP 01; upstream port closed: REP 01', async (t) => {
    const up = await recorder({ reply: () => Buffer.alloc(0) });
    const px = await chainedProxy(t, up.port);
    const req = Buffer.concat([hex('05 01 00 01 7f000001'), port16(http4.port)]);
    assert.equal(toHex(await rawConnectReply(px, req)), toHex(hex('05 01 00 01 00000000 0000')));
    const port = up.port;
    await up.close();
    rec = undefined;
    const dead = await chainedProxy(t, port);
    assert.equal(toHex(await rawConnectReply(dead, req)), toHex(hex('05 01 00 01 00000000 0000')));
  });
});
