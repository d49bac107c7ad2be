import 'reflect-metadata';
/**
 * Real third-party SOCKS clients (curl, socat, ncat, netcat-openbsd, the npm `socks` package)
 * against an in-process socksmith, each fetching from a loopback destination this file starts.
 * Commands and the wire each client produces: /work/shared/research/clients.md. Every client
 * process is bounded by a timeout and killed by PID; the access log line proves which request
 * form (IP, SOCKS4A / ATYP 03 name, ATYP 04) actually reached the proxy.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, test, type TestContext } from 'node:test';
import { SocksClient } from 'socks';
import { startEchoServer, startHttpServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { requireTool } from '../helpers/tools.js';
import { demandUserPass, type SeenCredential } from './helpers/auth.js';
import { HTTP10_REQUEST, execTool, httpComplete, runHeld, splitHttp } from './helpers/run.js';
import { waitForAccessLine } from './helpers/socks.js';

const USER = 'alice';
const PASS = 's3cret';

let http4: TestServer & { requests: string[] };
let http6: TestServer & { requests: string[] };
let echo: TestServer;
let px: TestProxy;
let seen: SeenCredential[];
let tmp: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'socksmith-e2e-clients-'));
  http4 = await startHttpServer();
  http6 = await startHttpServer(undefined, '::1');
  echo = await startEchoServer();
  px = await startProxy();
  // Clients that offer 02 are asked for credentials (only alice/s3cret pass); 00-only clients are not.
  seen = demandUserPass(px, { username: USER, password: PASS });
});
after(async () => {
  await px?.close();
  await Promise.all([http4?.close(), http6?.close(), echo?.close()]);
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** Index of the first log line written during the current test. */
let mark = 0;
beforeEach(() => {
  mark = px.logs.length;
});

/** `stream closed` line, written during this test, of the CONNECT to `destination` (e.g. `localhost:8080`). */
function accessLine(destination: string, version: number) {
  return waitForAccessLine(px, (l) => l.destination === destination && l.version === version && l.command === 'CONNECT', { since: mark });
}

describe('curl 7.88', () => {
  // `-q` first: no ~/.curlrc; cleanEnv(): no ALL_PROXY / NO_PROXY from the environment.
  const curl = (args: string[]) => execTool('curl', ['-q', '-sS', '--max-time', '8', ...args], { timeoutMs: 10_000 });

  test('--socks4: curl resolves localhost itself and sends a SOCKS4 IP request', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const r = await curl(['--socks4', `127.0.0.1:${px.port}`, `http://localhost:${http4.port}/curl-socks4`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /curl-socks4');
    const line = await accessLine(`127.0.0.1:${http4.port}`, 4);
    assert.equal(line.reply, 'SUCCEEDED');
  });

  test('--socks4a: the name localhost reaches the proxy (SOCKS4A, IP 0.0.0.1)', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const r = await curl(['--socks4a', `127.0.0.1:${px.port}`, `http://localhost:${http4.port}/curl-socks4a`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /curl-socks4a');
    await accessLine(`localhost:${http4.port}`, 4);
  });

  test('--socks5: local resolution, ATYP 01 (curl offers 00 01, socksmith picks 00)', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const before = seen.length;
    const r = await curl(['--socks5', `127.0.0.1:${px.port}`, `http://localhost:${http4.port}/curl-socks5`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /curl-socks5');
    await accessLine(`127.0.0.1:${http4.port}`, 5);
    assert.equal(seen.length, before, 'no credentials exchanged without 02 on offer');
  });

  test('--socks5-hostname: the name goes to the proxy as ATYP 03', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const r = await curl(['--socks5-hostname', `127.0.0.1:${px.port}`, `http://localhost:${http4.port}/curl-socks5h`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /curl-socks5h');
    await accessLine(`localhost:${http4.port}`, 5);
  });

  test('-x socks5h://alice:s3cret@…: RFC 1929 credentials reach the proxy byte for byte', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const before = seen.length;
    const r = await curl(['-x', `socks5h://${USER}:${PASS}@127.0.0.1:${px.port}`, `http://localhost:${http4.port}/curl-userpass`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /curl-userpass');
    assert.deepEqual(seen.slice(before), [{ source: 'rfc1929', username: USER, password: PASS }]);
    await accessLine(`localhost:${http4.port}`, 5);
  });

  test('-x socks5h:// with a wrong password: the proxy refuses, curl fails, the destination sees nothing', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const requests = http4.requests.length;
    const r = await curl(['-x', `socks5h://${USER}:wrong@127.0.0.1:${px.port}`, `http://localhost:${http4.port}/curl-badpass`]);
    assert.notEqual(r.code, 0, 'curl must fail');
    assert.match(r.stderr, /authentication|SOCKS|proxy/i);
    assert.equal(r.stdout.length, 0);
    assert.equal(http4.requests.length, requests);
  });

  test('--socks5 to http://[::1]:PORT/: an IPv6 literal travels as ATYP 04', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const r = await curl(['--socks5', `127.0.0.1:${px.port}`, `http://[::1]:${http6.port}/curl-v6`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /curl-v6');
    await accessLine(`[::1]:${http6.port}`, 5);
  });
});

describe('socat 1.7.4 (stdin held open: see clients.md "Half-close")', () => {
  test('SOCKS4A: name localhost, default USERID "anonymous"', async (t) => {
    if (!requireTool(t, 'socat')) return;
    const before = seen.length;
    const r = await runHeld('socat', ['-', `SOCKS4A:127.0.0.1:localhost:${http4.port},socksport=${px.port}`], HTTP10_REQUEST);
    assert.equal(r.code, 0, r.stderr);
    const { status, body } = splitHttp(r.stdout);
    assert.equal(status, 'HTTP/1.1 200 OK');
    assert.equal(body, 'hello from /e2e');
    assert.deepEqual(seen.slice(before), [{ source: 'socks4-userid', username: 'anonymous', password: undefined }]);
    await accessLine(`localhost:${http4.port}`, 4);
  });

  test('SOCKS4: socat resolves localhost and sends an IP', async (t) => {
    if (!requireTool(t, 'socat')) return;
    const r = await runHeld('socat', ['-', `SOCKS4:127.0.0.1:localhost:${http4.port},socksport=${px.port}`], HTTP10_REQUEST);
    assert.equal(r.code, 0, r.stderr);
    const { status, body } = splitHttp(r.stdout);
    assert.equal(status, 'HTTP/1.1 200 OK');
    assert.equal(body, 'hello from /e2e');
    await accessLine(`127.0.0.1:${http4.port}`, 4);
  });
});

describe('ncat 7.93', () => {
  // ncat stays up after the peer's EOF while stdin is open: stdin is closed once the reply is whole.
  const ncat = (args: string[]) => runHeld('ncat', ['--proxy', `127.0.0.1:${px.port}`, ...args], HTTP10_REQUEST, { until: httpComplete });
  const assertHttp = (out: Buffer) => {
    const { status, body } = splitHttp(out);
    assert.equal(status, 'HTTP/1.1 200 OK');
    assert.equal(body, 'hello from /e2e');
  };

  test('--proxy-type socks5 (remote DNS, the default): ATYP 03 localhost', async (t) => {
    if (!requireTool(t, 'ncat')) return;
    const r = await ncat(['--proxy-type', 'socks5', 'localhost', String(http4.port)]);
    assert.equal(r.code, 0, r.stderr);
    assertHttp(r.stdout);
    await accessLine(`localhost:${http4.port}`, 5);
  });

  test('--proxy-type socks5 --proxy-dns local: ATYP 01', async (t) => {
    if (!requireTool(t, 'ncat')) return;
    const r = await ncat(['--proxy-type', 'socks5', '--proxy-dns', 'local', 'localhost', String(http4.port)]);
    assert.equal(r.code, 0, r.stderr);
    assertHttp(r.stdout);
    await accessLine(`127.0.0.1:${http4.port}`, 5);
  });

  test('--proxy-type socks5 --proxy-auth alice:s3cret: RFC 1929', async (t) => {
    if (!requireTool(t, 'ncat')) return;
    const before = seen.length;
    const r = await ncat(['--proxy-type', 'socks5', '--proxy-auth', `${USER}:${PASS}`, 'localhost', String(http4.port)]);
    assert.equal(r.code, 0, r.stderr);
    assertHttp(r.stdout);
    assert.deepEqual(seen.slice(before), [{ source: 'rfc1929', username: USER, password: PASS }]);
  });

  test('--proxy-type socks4 --proxy-dns local: SOCKS4 IP request', async (t) => {
    if (!requireTool(t, 'ncat')) return;
    const r = await ncat(['--proxy-type', 'socks4', '--proxy-dns', 'local', 'localhost', String(http4.port)]);
    assert.equal(r.code, 0, r.stderr);
    assertHttp(r.stdout);
    await accessLine(`127.0.0.1:${http4.port}`, 4);
  });

  test('--proxy-type socks4 with a name (remote DNS): SOCKS4A', async (t) => {
    if (!requireTool(t, 'ncat')) return;
    const r = await ncat(['--proxy-type', 'socks4', '--proxy-dns', 'remote', 'localhost', String(http4.port)]);
    assert.equal(r.code, 0, r.stderr);
    assertHttp(r.stdout);
    await accessLine(`localhost:${http4.port}`, 4);
  });
});

describe('netcat-openbsd 1.219', () => {
  test('nc -X 5 with a name: ATYP 03', async (t) => {
    if (!requireTool(t, 'nc', 'netcat-openbsd')) return;
    const r = await runHeld('nc', ['-X', '5', '-x', `127.0.0.1:${px.port}`, 'localhost', String(http4.port)], HTTP10_REQUEST, { until: httpComplete });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(splitHttp(r.stdout).body, 'hello from /e2e');
    await accessLine(`localhost:${http4.port}`, 5);
  });

  test('nc -X 4: SOCKS4 IP request', async (t) => {
    if (!requireTool(t, 'nc', 'netcat-openbsd')) return;
    const r = await runHeld('nc', ['-X', '4', '-x', `127.0.0.1:${px.port}`, '127.0.0.1', String(http4.port)], HTTP10_REQUEST, { until: httpComplete });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(splitHttp(r.stdout).body, 'hello from /e2e');
  });
});

describe('proxychains4 4.16 (LD_PRELOAD around curl)', () => {
  async function proxychains(t: TestContext, proxyLine: string, url: string) {
    const conf = path.join(tmp, `pc-${Math.random().toString(36).slice(2)}.conf`);
    await fs.writeFile(conf, ['strict_chain', 'quiet_mode', 'tcp_read_time_out 5000', 'tcp_connect_time_out 5000', '[ProxyList]', proxyLine, ''].join('\n'));
    const curlPath = requireTool(t, 'curl');
    if (!curlPath) return undefined;
    return execTool('proxychains4', ['-q', '-f', conf, curlPath, '-q', '-sS', '--max-time', '8', url], { timeoutMs: 10_000 });
  }

  test('socks5 with user/password in the ProxyList: RFC 1929, ATYP 01', async (t) => {
    if (!requireTool(t, 'proxychains4')) return;
    const before = seen.length;
    const r = await proxychains(t, `socks5 127.0.0.1 ${px.port} ${USER} ${PASS}`, `http://localhost:${http4.port}/proxychains5`);
    if (!r) return;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /proxychains5');
    assert.deepEqual(seen.slice(before), [{ source: 'rfc1929', username: USER, password: PASS }]);
    await accessLine(`127.0.0.1:${http4.port}`, 5);
  });

  test('socks4: SOCKS4 IP request', async (t) => {
    if (!requireTool(t, 'proxychains4')) return;
    const r = await proxychains(t, `socks4 127.0.0.1 ${px.port}`, `http://127.0.0.1:${http4.port}/proxychains4`);
    if (!r) return;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from /proxychains4');
  });
});

describe('PySocks 1.7.1 (Debian /usr/bin/python3)', () => {
  // argv: kind local|remote proxyPort host port [user pass]
  const SCRIPT = [
    'import socks, sys',
    'kind, dns, pport, host, port = sys.argv[1:6]',
    'user, pw = (sys.argv[6], sys.argv[7]) if len(sys.argv) > 7 else (None, None)',
    's = socks.socksocket()',
    "s.set_proxy(socks.SOCKS4 if kind == 'socks4' else socks.SOCKS5, '127.0.0.1', int(pport), rdns=(dns == 'remote'), username=user, password=pw)",
    's.settimeout(5)',
    's.connect((host, int(port)))',
    "s.sendall(b'GET /pysocks HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')",
    "out = b''",
    'while True:',
    '    d = s.recv(65536)',
    '    if not d: break',
    '    out += d',
    'sys.stdout.buffer.write(out)',
  ].join('\n');
  const python = '/usr/bin/python3';
  const hasPySocks = async (t: TestContext) => {
    const r = await execTool(python, ['-c', 'import socks']).catch(() => undefined);
    if (r?.code === 0) return true;
    if (process.env.CI) throw new Error('PySocks is not importable by /usr/bin/python3 (Debian package python3-socks); .ci/run must install it');
    t.skip('python3-socks not installed');
    return false;
  };
  const py = (...args: string[]) => execTool(python, ['-c', SCRIPT, ...args], { timeoutMs: 10_000 });

  for (const [kind, dns, destination, version] of [
    ['socks4', 'local', '127.0.0.1', 4],
    ['socks4', 'remote', 'localhost', 4],
    ['socks5', 'local', '127.0.0.1', 5],
    ['socks5', 'remote', 'localhost', 5],
  ] as const) {
    test(`${kind} rdns=${dns === 'remote' ? 'True' : 'False'}: destination ${destination}`, async (t) => {
      if (!(await hasPySocks(t))) return;
      const r = await py(kind, dns, String(px.port), 'localhost', String(http4.port));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(splitHttp(r.stdout).body, 'hello from /pysocks');
      await accessLine(`${destination}:${http4.port}`, version);
    });
  }

  test('socks5 with username/password: RFC 1929', async (t) => {
    if (!(await hasPySocks(t))) return;
    const before = seen.length;
    const r = await py('socks5', 'remote', String(px.port), 'localhost', String(http4.port), USER, PASS);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(splitHttp(r.stdout).body, 'hello from /pysocks');
    assert.deepEqual(seen.slice(before), [{ source: 'rfc1929', username: USER, password: PASS }]);
  });
});

describe('npm socks 2.8 (SocksClient.createConnection)', () => {
  /** Open a tunnel to the echo server, send a distinct payload, read it back. */
  async function echoThrough(proxy: { type: 4 | 5; userId?: string; password?: string }, host: string, payload: string): Promise<void> {
    const { socket } = await SocksClient.createConnection({
      proxy: { host: '127.0.0.1', port: px.port, ...proxy },
      command: 'connect',
      destination: { host, port: echo.port },
      timeout: 5000,
    });
    try {
      const got = await new Promise<string>((resolve, reject) => {
        let acc = '';
        const timer = setTimeout(() => reject(new Error(`echo timeout, got ${JSON.stringify(acc)}`)), 5000);
        socket.on('data', (d: Buffer) => {
          acc += d.toString();
          if (acc.length >= payload.length) {
            clearTimeout(timer);
            resolve(acc);
          }
        });
        socket.on('error', reject);
        socket.write(payload);
      });
      assert.equal(got, payload);
    } finally {
      socket.destroy();
    }
  }

  test('type 4 with an IP: SOCKS4', async () => {
    await echoThrough({ type: 4 }, '127.0.0.1', 'npm socks4 ip');
    await accessLine(`127.0.0.1:${echo.port}`, 4);
  });

  test('type 4 with a name: SOCKS4A, userId as USERID', async () => {
    const before = seen.length;
    await echoThrough({ type: 4, userId: USER }, 'localhost', 'npm socks4a name');
    assert.deepEqual(seen.slice(before), [{ source: 'socks4-userid', username: USER, password: undefined }]);
    await accessLine(`localhost:${echo.port}`, 4);
  });

  test('type 5 with an IP and with a name: ATYP 01 / 03', async () => {
    await echoThrough({ type: 5 }, '127.0.0.1', 'npm socks5 ip');
    await echoThrough({ type: 5 }, 'localhost', 'npm socks5 name');
    await accessLine(`127.0.0.1:${echo.port}`, 5);
    await accessLine(`localhost:${echo.port}`, 5);
  });

  test('type 5 with userId/password: RFC 1929', async () => {
    const before = seen.length;
    await echoThrough({ type: 5, userId: USER, password: PASS }, 'localhost', 'npm socks5 userpass');
    assert.deepEqual(seen.slice(before), [{ source: 'rfc1929', username: USER, password: PASS }]);
  });

  test('type 5 with a wrong password: the client gets an authentication error', async () => {
    await assert.rejects(
      SocksClient.createConnection({
        proxy: { host: '127.0.0.1', port: px.port, type: 5, userId: USER, password: 'nope' },
        command: 'connect',
        destination: { host: 'localhost', port: echo.port },
        timeout: 5000,
      }),
      /authentication/i,
    );
  });
});
