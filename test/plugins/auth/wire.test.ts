/**
 * `auth` on the wire, over loopback sockets: the exact bytes of RFC 1928 method selection, the
 * RFC 1929 answer, the SOCKS4 refusal, HTTP CONNECT with Basic credentials, isolation per user
 * (seen by a recording socks5 upstream), and log lines that never carry a password.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { ConfigInput } from '../../../src/config/schema.js';
import { hex, toHex } from '../../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../../helpers/net.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.js';
import { readReply5, req4, req5, socks5Upstream, userpass } from '../helpers/socks.js';
import { allLogs, basic, tempDir, writeUsers } from './helpers.js';

const ALICE = { user: 'alice', pass: 's3cret-alice' };
const BOB = { user: 'bob', pass: 'hunter2-bob', socks4: true };
const PASSWORDS = [ALICE.pass, BOB.pass, 'wrong-password-xyz'];

let dir: string;
let usersFile: string;
let echo: TestServer & { connections: number };
before(async () => {
  dir = await tempDir();
  usersFile = await writeUsers(dir, [ALICE, BOB]);
  echo = await startEchoServer();
});
after(async () => {
  await echo.close();
  await fs.rm(dir, { recursive: true, force: true });
});

async function withProxy(config: ConfigInput, fn: (px: TestProxy) => Promise<void>): Promise<void> {
  const px = await startProxy(config);
  try {
    await fn(px);
    // No password, and no Basic header carrying one, ever reaches a log line.
    const logs = allLogs(px.logs);
    for (const secret of PASSWORDS) {
      assert.ok(!logs.includes(secret), `a log line contains the password ${secret}`);
      assert.ok(!logs.includes(Buffer.from(`alice:${secret}`).toString('base64')), 'a log line contains a Basic header');
      assert.ok(!logs.includes(Buffer.from(`bob:${secret}`).toString('base64')), 'a log line contains a Basic header');
    }
  } finally {
    await px.close();
  }
}

const authOnly = (extra: object = {}): ConfigInput => ({ plugins: { auth: { usersFile, ...extra } } as ConfigInput['plugins'] });

/** Greeting `05 01 02` + RFC 1929, returning the two-byte answer. */
async function login(c: RawClient, user: string, pass: string): Promise<string> {
  c.write(hex('05 01 02'));
  assert.equal(toHex(await c.read(2)), '05 02');
  c.write(userpass(user, pass));
  return toHex(await c.read(2));
}

/** Everything the proxy sent until it closed; then let go of our side too (no lingering). */
async function endOf(c: RawClient): Promise<Buffer> {
  try {
    return await c.readToEnd();
  } finally {
    c.destroy();
  }
}

/** The tunnel echoes `probe`. */
async function assertEchoes(c: RawClient, probe: string): Promise<void> {
  c.write(probe);
  assert.equal((await c.read(probe.length)).toString(), probe);
}

describe('SOCKS5', () => {
  test('right password → 01 00, then CONNECT works', async () => {
    await withProxy(authOnly(), async (px) => {
      const c = await RawClient.connect(px.port);
      assert.equal(await login(c, ALICE.user, ALICE.pass), '01 00');
      c.write(req5(1, '127.0.0.1', echo.port));
      const reply = await readReply5(c);
      assert.equal(reply[1], 0, `CONNECT succeeded: ${toHex(reply)}`);
      await assertEchoes(c, 'hello through auth');
      c.destroy();
    });
  });

  test('greeting, credentials and request in one write (pipelined) work too', async () => {
    await withProxy(authOnly(), async (px) => {
      const c = await RawClient.connect(px.port);
      c.write(Buffer.concat([hex('05 01 02'), userpass(BOB.user, BOB.pass), req5(1, '127.0.0.1', echo.port)]));
      assert.equal(toHex(await c.read(4)), '05 02 01 00');
      assert.equal((await readReply5(c))[1], 0);
      await assertEchoes(c, 'pipelined');
      c.destroy();
    });
  });

  test('wrong password → exactly 01 01, then the proxy closes', async () => {
    await withProxy(authOnly(), async (px) => {
      const c = await RawClient.connect(px.port);
      c.write(hex('05 01 02'));
      assert.equal(toHex(await c.read(2)), '05 02');
      c.write(userpass(ALICE.user, 'wrong-password-xyz'));
      assert.equal(toHex(await endOf(c)), '01 01', 'nothing but 01 01, then EOF');
      const line = px.logs.find((l) => l.msg === 'auth: wrong username or password');
      assert.equal(line?.user, 'alice', 'the username is logged on failure');
      assert.equal(line?.level, 'info');
    });
  });

  test("another user's password is wrong too", async () => {
    await withProxy(authOnly(), async (px) => {
      const c = await RawClient.connect(px.port);
      c.write(Buffer.concat([hex('05 01 02'), userpass(ALICE.user, BOB.pass)]));
      assert.equal(toHex(await endOf(c)), '05 02 01 01');
    });
  });

  test('unknown user → 01 01 and close; empty username and password → 01 01', async () => {
    await withProxy(authOnly(), async (px) => {
      const c = await RawClient.connect(px.port);
      c.write(hex('05 01 02'));
      assert.equal(toHex(await c.read(2)), '05 02');
      c.write(userpass('mallory', ALICE.pass));
      assert.equal(toHex(await endOf(c)), '01 01');
      const e = await RawClient.connect(px.port);
      e.write(Buffer.concat([hex('05 01 02'), hex('01 00 00')]));
      assert.equal(toHex(await endOf(e)), '05 02 01 01');
    });
  });

  test('a client offering only 00 gets 05 ff and is closed', async () => {
    await withProxy(authOnly(), async (px) => {
      const c = await RawClient.connect(px.port);
      c.write(hex('05 01 00'));
      assert.equal(toHex(await endOf(c)), '05 ff');
      const g = await RawClient.connect(px.port);
      g.write(hex('05 02 00 01')); // 00 and GSSAPI
      assert.equal(toHex(await endOf(g)), '05 ff');
    });
  });

  test('a client offering 00 and 02 is told 02 (even with isolation preferring 00)', async () => {
    await withProxy({ plugins: { auth: { usersFile }, isolation: { PreferSOCKSNoAuth: true } } }, async (px) => {
      for (const greeting of ['05 02 00 02', '05 03 00 01 02']) {
        const c = await RawClient.connect(px.port);
        c.write(hex(greeting));
        assert.equal(toHex(await c.read(2)), '05 02', greeting);
        c.destroy();
      }
    });
  });
});

describe('SOCKS4', () => {
  test("default socks4: 'reject' → 00 5b 0000 00000000 and close, even for a flagged user", async () => {
    await withProxy(authOnly(), async (px) => {
      for (const userId of ['bob', 'alice', '']) {
        const c = await RawClient.connect(px.port);
        c.write(req4(1, '127.0.0.1', echo.port, userId));
        assert.equal(toHex(await endOf(c)), toHex(hex('00 5b 0000 00000000')), `USERID ${JSON.stringify(userId)}`);
      }
      const c = await RawClient.connect(px.port);
      c.write(req4(1, 'localhost', echo.port, 'bob')); // SOCKS4a
      assert.equal(toHex(await endOf(c)), toHex(hex('00 5b 0000 00000000')));
    });
  });

  test("socks4: 'userid' → a user flagged socks4 gets 5A and a tunnel; others 5B", async () => {
    await withProxy(authOnly({ socks4: 'userid' }), async (px) => {
      const ok = await RawClient.connect(px.port);
      ok.write(req4(1, '127.0.0.1', echo.port, 'bob'));
      assert.equal(toHex((await ok.read(8)).subarray(0, 2)), '00 5a');
      await assertEchoes(ok, 'socks4 bob');
      ok.destroy();
      const ok4a = await RawClient.connect(px.port);
      ok4a.write(req4(1, 'localhost', echo.port, 'bob'));
      assert.equal(toHex((await ok4a.read(8)).subarray(0, 2)), '00 5a');
      ok4a.destroy();
      for (const userId of ['alice', 'mallory', '', 'bob:hunter2-bob']) {
        const c = await RawClient.connect(px.port);
        c.write(req4(1, '127.0.0.1', echo.port, userId));
        assert.equal(toHex(await endOf(c)), toHex(hex('00 5b 0000 00000000')), `USERID ${JSON.stringify(userId)}`);
      }
    });
  });

  test("socks4: 'userid' does not let a flagged user skip the password on SOCKS5", async () => {
    await withProxy(authOnly({ socks4: 'userid' }), async (px) => {
      const c = await RawClient.connect(px.port);
      c.write(Buffer.concat([hex('05 01 02'), userpass(BOB.user, '')]));
      assert.equal(toHex(await endOf(c)), '05 02 01 01');
    });
  });
});

describe('HTTP CONNECT (http-detect tunnel mode)', () => {
  const tunnelCfg = (extra: object = {}): ConfigInput => ({
    plugins: { auth: { usersFile, ...extra }, 'http-detect': { mode: 'tunnel' } } as ConfigInput['plugins'],
  });

  async function connectHttp(px: TestProxy, headers: string): Promise<RawClient> {
    const c = await RawClient.connect(px.port);
    c.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n${headers}\r\n`);
    return c;
  }

  test('Proxy-Authorization: Basic with the right password → 200 and a tunnel', async () => {
    await withProxy(tunnelCfg(), async (px) => {
      const c = await connectHttp(px, `Proxy-Authorization: ${basic(ALICE.user, ALICE.pass)}\r\n`);
      const ok = 'HTTP/1.0 200 OK\r\n\r\n';
      assert.equal((await c.read(ok.length)).toString(), ok);
      await assertEchoes(c, 'http tunnel');
      c.destroy();
    });
  });

  test('a wrong password, or not Basic → 407 with Proxy-Authenticate', async () => {
    await withProxy(tunnelCfg(), async (px) => {
      for (const h of [basic(ALICE.user, 'wrong-password-xyz'), basic('mallory', ALICE.pass), 'Bearer abc']) {
        const c = await connectHttp(px, `Proxy-Authorization: ${h}\r\n`);
        const res = (await endOf(c)).toString('latin1');
        assert.match(res, /^HTTP\/1\.0 407 /, h);
        assert.match(res, /\r\nProxy-Authenticate: Basic realm="socksmith"\r\n/);
      }
    });
  });

  test('no Proxy-Authorization → 407 with Proxy-Authenticate, nothing contacted', async () => {
    await withProxy(tunnelCfg(), async (px) => {
      const connections = echo.connections;
      const c = await connectHttp(px, '');
      const res = (await endOf(c)).toString('latin1');
      assert.match(res, /^HTTP\/1\.0 407 /);
      assert.match(res, /\r\nProxy-Authenticate: Basic realm="socksmith"\r\n/);
      assert.equal(echo.connections, connections, 'no connection to the destination');
    });
  });

  test('http: false → even the right credentials get 407', async () => {
    await withProxy(tunnelCfg({ http: false }), async (px) => {
      const c = await connectHttp(px, `Proxy-Authorization: ${basic(ALICE.user, ALICE.pass)}\r\n`);
      assert.match((await endOf(c)).toString('latin1'), /^HTTP\/1\.0 407 /);
    });
  });
});

describe('with isolation', () => {
  let up: RecordingUpstream;
  before(async () => {
    up = await startRecordingUpstream();
  });
  after(async () => {
    await up.close();
  });

  test('authenticated users are isolated: the upstream sees different derived credentials per user, equal ones for the same user', async () => {
    await withProxy({ upstream: socks5Upstream(up.port), plugins: { auth: { usersFile }, isolation: true } }, async (px) => {
      const seen: string[] = [];
      for (const u of [ALICE, BOB, ALICE]) {
        const before = up.sessions.length;
        const c = await RawClient.connect(px.port);
        assert.equal(await login(c, u.user, u.pass), '01 00');
        c.write(req5(1, '127.0.0.1', echo.port));
        assert.equal((await readReply5(c))[1], 0);
        await assertEchoes(c, 'isolation probe');
        c.destroy();
        await up.waitSessions(before + 1);
        const s = up.sessions[before]!;
        assert.ok(s.credentials, 'the upstream got derived credentials');
        const raw = s.raw.toString('latin1');
        assert.ok(!raw.includes(u.user) && !raw.includes(u.pass), 'the upstream never sees the client credentials');
        seen.push(`${s.credentials.username.toString('hex')}/${s.credentials.password.toString('hex')}`);
      }
      assert.notEqual(seen[0], seen[1], 'alice and bob are isolated from each other');
      assert.equal(seen[0], seen[2], 'alice twice shares one isolation key');
    });
  });
});
