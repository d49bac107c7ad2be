/**
 * `auth` with real clients: curl (SOCKS5 with `socks5h://user:pass@`, and HTTP CONNECT with
 * `--proxytunnel` through http-detect tunnel mode) and the npm `socks` client (userId/password).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { SocksClient } from 'socks';
import { startEchoServer, startHttpServer, type TestServer } from '../../helpers/net.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { requireTool } from '../../helpers/tools.js';
import { run } from '../helpers/socks.js';
import { allLogs, tempDir, writeUsers } from './helpers.js';

const PASS = 's3cret';
let dir: string;
let web: TestServer & { requests: string[] };
let echo: TestServer;
let px: TestProxy;
before(async () => {
  dir = await tempDir();
  const usersFile = await writeUsers(dir, [{ user: 'alice', pass: PASS }]);
  web = await startHttpServer();
  echo = await startEchoServer();
  px = await startProxy({ plugins: { auth: { usersFile }, 'http-detect': { mode: 'tunnel' } } });
});
after(async () => {
  await px.close();
  await web.close();
  await echo.close();
  await fs.rm(dir, { recursive: true, force: true });
  assert.ok(!allLogs(px.logs).includes(PASS), 'the password never reached a log line');
});

describe('curl', () => {
  const curlArgs = (proxy: string, path: string, extra: string[] = []) => ['-sS', '--max-time', '5', ...extra, '-x', proxy, `http://127.0.0.1:${web.port}${path}`];

  test('socks5h://alice:s3cret@ fetches the page', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    const r = await run(curl, curlArgs(`socks5h://alice:${PASS}@127.0.0.1:${px.port}`, '/curl-ok'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from /curl-ok');
  });

  test('a wrong password fails (curl exits non-zero: 97 CURLE_PROXY on curl ≥ 7.73) and nothing is fetched', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    const before = web.requests.length;
    const r = await run(curl, curlArgs(`socks5h://alice:wrong@127.0.0.1:${px.port}`, '/curl-bad'));
    assert.notEqual(r.code, 0);
    assert.ok([97, 7].includes(r.code!), `curl exit code ${r.code}: ${r.stderr}`);
    assert.equal(web.requests.length, before);
  });

  test('no credentials fail (the proxy answers 05 ff to curl offering only 00)', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    const r = await run(curl, curlArgs(`socks5h://127.0.0.1:${px.port}`, '/curl-none'));
    assert.notEqual(r.code, 0);
  });

  test('HTTP CONNECT: --proxytunnel with http://alice:s3cret@ works, a wrong password gets 407', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    const ok = await run(curl, curlArgs(`http://alice:${PASS}@127.0.0.1:${px.port}`, '/tunnel-ok', ['--proxytunnel']));
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'hello from /tunnel-ok');
    const bad = await run(curl, curlArgs(`http://alice:wrong@127.0.0.1:${px.port}`, '/tunnel-bad', ['--proxytunnel', '-w', '%{http_connect}']));
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout, /407/);
  });
});

describe('npm socks', () => {
  test('userId/password: the right password opens a tunnel, a wrong one is refused', async () => {
    const { socket } = await SocksClient.createConnection({
      proxy: { host: '127.0.0.1', port: px.port, type: 5, userId: 'alice', password: PASS },
      command: 'connect',
      destination: { host: '127.0.0.1', port: echo.port },
      timeout: 5000,
    });
    try {
      const got = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('echo timeout')), 5000);
        socket.once('data', (d: Buffer) => {
          clearTimeout(timer);
          resolve(d.toString());
        });
        socket.write('npm socks');
      });
      assert.equal(got, 'npm socks');
    } finally {
      socket.destroy();
    }
    await assert.rejects(
      SocksClient.createConnection({
        proxy: { host: '127.0.0.1', port: px.port, type: 5, userId: 'alice', password: 'wrong' },
        command: 'connect',
        destination: { host: '127.0.0.1', port: echo.port },
        timeout: 5000,
      }),
      /auth/i,
    );
  });
});
