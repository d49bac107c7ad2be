/**
 * `http-detect` plugin: HTTP on the SOCKS port (tor-socks.md a.7), page mode and tunnel mode.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, startHttpServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { requireTool } from '../helpers/tools.js';
import { startRecordingUpstream } from './helpers/recording-upstream.js';
import { run, sleep, socks5Upstream, waitFor } from './helpers/socks.js';

/** Split an HTTP response into status line, headers and body; check the framing exactly. */
function parseResponse(raw: Buffer): { status: string; headers: Map<string, string>; body: Buffer; headLength: number } {
  const end = raw.indexOf('\r\n\r\n');
  assert.ok(end > 0, `a complete head: ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    assert.ok(i > 0, `header line ${JSON.stringify(l)}`);
    headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
  }
  return { status: lines[0]!, headers, body: raw.subarray(end + 4), headLength: end + 4 };
}

/** Assert a complete page response: status, text/html, Content-Length == body bytes, nothing after the body. */
function assertPage(raw: Buffer, status = 501): Buffer {
  const r = parseResponse(raw);
  assert.match(r.status, new RegExp(`^HTTP/1\\.0 ${status} `), r.status);
  assert.match(r.headers.get('content-type') ?? '', /^text\/html/);
  const len = Number(r.headers.get('content-length'));
  assert.ok(Number.isInteger(len) && len > 0, 'Content-Length present');
  assert.equal(r.body.length, len, 'body length equals Content-Length: no missing and no stray bytes (no trailing NUL)');
  assert.equal(raw.length, r.headLength + len, 'total bytes = head + Content-Length');
  const html = r.body.toString('utf8');
  assert.match(html, /<html[\s>]/i);
  assert.match(html, /<\/html>\s*$/i);
  assert.match(html, /SOCKS/);
  assert.ok(!html.includes('\u0000'), 'no NUL byte in the page');
  return r.body;
}

describe('http-detect on (page mode)', () => {
  let px: TestProxy;
  before(async () => {
    px = await startProxy({ plugins: { 'http-detect': true } });
  });
  after(async () => px.close());

  test("one byte 'G' alone gets the whole 501 page at once, then close", async () => {
    const c = await RawClient.connect(px.port);
    c.write('G');
    // Nothing more is sent: the page must come on that one byte.
    const raw = await c.readToEnd(3000);
    c.destroy();
    assertPage(raw);
  });

  for (const ch of ['G', 'H', 'P', 'C']) {
    test(`first byte '${ch}' (one byte only) gets the 501 page`, async () => {
      const c = await RawClient.connect(px.port);
      c.write(ch);
      assertPage(await c.readToEnd(3000));
      c.destroy();
    });
  }

  test('a raw "GET / HTTP/1.1" request gets the page, then close; extra request bytes do not leak into the reply', async () => {
    const c = await RawClient.connect(px.port);
    c.write('GET / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: test\r\n\r\n');
    const raw = await c.readToEnd(3000);
    c.destroy();
    assertPage(raw);
    assert.ok(!raw.includes('example.test'), 'the request is not echoed');
  });

  test('the page is the same bytes for every trigger', async () => {
    const pages: Buffer[] = [];
    for (const input of ['G', 'POST / HTTP/1.0\r\n\r\n', 'CONNECT x:443 HTTP/1.1\r\n\r\n']) {
      const c = await RawClient.connect(px.port);
      c.write(input);
      pages.push(await c.readToEnd(3000));
      c.destroy();
    }
    assert.deepEqual(pages[1], pages[0]);
    assert.deepEqual(pages[2], pages[0]);
  });

  test('curl using the SOCKS port as an HTTP proxy (GET http://example.test/) gets the 501 page', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    const r = await run(curl, ['-s', '-i', '--max-time', '5', '--proxy', `http://127.0.0.1:${px.port}`, 'http://example.test/']);
    assert.equal(r.code, 0, r.stderr);
    assertPage(Buffer.from(r.stdout, 'utf8'));
  });

  test('other first bytes are not HTTP: a SOCKS5 greeting still works, an unknown byte closes silently', async () => {
    const c = await RawClient.connect(px.port);
    c.write(Buffer.from([5, 1, 0]));
    assert.equal(toHex(await c.read(2)), '05 00');
    c.destroy();
    const d = await RawClient.connect(px.port);
    d.write('X');
    assert.equal((await d.readToEnd(3000)).length, 0);
    d.destroy();
  });
});

describe('http-detect off', () => {
  test('G/H/P/C and a whole GET close with no reply at all', async () => {
    const px = await startProxy({ plugins: { 'http-detect': false } });
    try {
      for (const input of ['G', 'H', 'P', 'C', 'GET / HTTP/1.1\r\nHost: example.test\r\n\r\n']) {
        const c = await RawClient.connect(px.port);
        c.write(input);
        const got = await c.readToEnd(3000);
        c.destroy();
        assert.equal(got.length, 0, `${JSON.stringify(input)}: no bytes back, got ${toHex(got)}`);
      }
    } finally {
      await px.close();
    }
  });

  test('curl as HTTP proxy client gets no HTTP response', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    const px = await startProxy({ plugins: { 'http-detect': false } });
    try {
      const r = await run(curl, ['-s', '-i', '--max-time', '5', '--proxy', `http://127.0.0.1:${px.port}`, 'http://example.test/']);
      assert.notEqual(r.code, 0, 'curl fails (empty reply)');
      assert.equal(r.stdout, '');
    } finally {
      await px.close();
    }
  });
});

describe("http-detect mode 'tunnel'", () => {
  let px: TestProxy;
  let echo: TestServer & { connections: number };
  let web: TestServer & { requests: string[] };
  before(async () => {
    echo = await startEchoServer();
    web = await startHttpServer();
    px = await startProxy({ plugins: { 'http-detect': { mode: 'tunnel' } } });
  });
  after(async () => {
    await px.close();
    await echo.close();
    await web.close();
  });

  test('CONNECT host:port HTTP/1.1 gets exactly "HTTP/1.0 200 OK\\r\\n\\r\\n" and a working tunnel', async () => {
    const c = await RawClient.connect(px.port);
    c.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`);
    assert.equal((await c.read(19)).toString('latin1'), 'HTTP/1.0 200 OK\r\n\r\n');
    c.write('through the tunnel');
    assert.equal((await c.read(18)).toString(), 'through the tunnel');
    await sleep(20);
    assert.equal(c.pending.length, 0, 'nothing else was sent');
    c.end();
    await c.waitEnd();
  });

  test('bytes sent right behind the CONNECT head are tunnelled, not lost', async () => {
    const c = await RawClient.connect(px.port);
    c.write(`CONNECT localhost:${echo.port} HTTP/1.1\r\n\r\nearly-bytes`);
    assert.equal((await c.read(19)).toString('latin1'), 'HTTP/1.0 200 OK\r\n\r\n');
    assert.equal((await c.read(11)).toString(), 'early-bytes');
    c.destroy();
  });

  test('curl --proxytunnel --proxy http://127.0.0.1:PORT http://localhost:DEST/ works (and -p)', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    for (const flag of ['--proxytunnel', '-p']) {
      const r = await run(curl, ['-s', '--max-time', '5', flag, '--proxy', `http://127.0.0.1:${px.port}`, `http://localhost:${web.port}/via${flag}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `hello from /via${flag}`);
    }
  });

  test('a client that ends (FIN) in the middle of its head is closed at once, not held until timeouts.handshake (its descriptor freed)', async () => {
    // Before: the half-open socket waited for the rest of the head until the handshake timeout
    // (30 s by default), one file descriptor per such client (found by adversarial testing, issue #10).
    const slow = await startProxy({ timeouts: { handshake: 120_000 }, plugins: { 'http-detect': { mode: 'tunnel' } } });
    const seen = echo.connections;
    try {
      const head = `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`;
      for (const cut of [1, 8, 20, head.length - 1]) {
        const c = await RawClient.connect(slow.port);
        c.write(head.slice(0, cut));
        await waitFor(() => slow.proxy.kernel.connectionCount === 1, 'the proxy to accept it');
        c.end();
        assert.equal((await c.readToEnd(10_000)).length, 0, `cut at ${cut}: closed without a byte`);
        await waitFor(() => slow.proxy.kernel.connectionCount === 0, `cut at ${cut}: the connection to be gone`, 10_000);
        c.destroy();
      }
      assert.equal(echo.connections, seen, 'no destination contacted');
    } finally {
      await slow.close();
    }
  });

  test('other methods get 405 with a complete page (Content-Length exact), then close', async () => {
    const c = await RawClient.connect(px.port);
    c.write('GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n');
    const raw = await c.readToEnd(3000);
    c.destroy();
    assertPage(raw, 405);
    assert.match(parseResponse(raw).status, /^HTTP\/1\.0 405 Method Not Allowed$/);
  });

  test('a failed CONNECT gets an HTTP error status, not 200', async () => {
    const closed = await startEchoServer();
    const port = closed.port;
    await closed.close();
    const c = await RawClient.connect(px.port);
    c.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`);
    const raw = await c.readToEnd(5000);
    c.destroy();
    const r = parseResponse(raw);
    assert.match(r.status, /^HTTP\/1\.0 5\d\d /);
    assert.equal(r.body.length, Number(r.headers.get('content-length')));
  });
});

describe("http-detect tunnel + isolation with a socks5 upstream", () => {
  test('Proxy-Authorization / X-Tor-Stream-Isolation give distinct upstream credentials; equal headers give equal ones', async () => {
    const echo = await startEchoServer();
    const up = await startRecordingUpstream();
    const px = await startProxy({
      upstream: socks5Upstream(up.port),
      plugins: { 'http-detect': { mode: 'tunnel' }, isolation: true },
    });
    try {
      const connect = async (headers: string) => {
        const c = await RawClient.connect(px.port);
        c.write(`CONNECT localhost:${echo.port} HTTP/1.1\r\n${headers}\r\n`);
        assert.equal((await c.read(19)).toString('latin1'), 'HTTP/1.0 200 OK\r\n\r\n');
        c.write('x');
        assert.equal((await c.read(1)).toString(), 'x');
        c.destroy();
      };
      await connect('Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n');
      await connect('Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n');
      await connect('Proxy-Authorization: Basic Ym9iOmh1bnRlcjI=\r\n');
      await connect('X-Tor-Stream-Isolation: tab-1\r\n');
      await connect('X-Tor-Stream-Isolation: tab-2\r\n');
      await connect('');
      await up.waitSessions(6);
      const creds = up.sessions.map((s) => s.credentials && `${s.credentials.username.toString('hex')}/${s.credentials.password.toString('hex')}`);
      assert.ok(creds.every((c) => c !== undefined), 'every stream presented credentials to the upstream');
      assert.equal(creds[0], creds[1], 'same Proxy-Authorization → same upstream credentials');
      assert.equal(new Set([creds[0], creds[2], creds[3], creds[4], creds[5]]).size, 5, `distinct headers → distinct credentials: ${creds.join(' ')}`);
      for (const s of up.sessions) {
        assert.ok(!s.raw.includes('YWxpY2U6czNjcmV0') && !s.raw.includes('tab-1') && !s.raw.includes('127.0.0.1'), 'the upstream never sees the header values or the client address');
      }
    } finally {
      await px.close();
      await up.close();
      await echo.close();
    }
  });
});
