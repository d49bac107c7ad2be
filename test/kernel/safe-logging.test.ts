/**
 * Issue #10, item 5: `log.safeLogging` scrubs every log line, at every level, from the kernel and
 * from every plugin, in one place (the logger's streamWrite hook, src/logger.ts scrubLine).
 *
 * Before the fix only the access line was scrubbed: the WarnPlaintextPorts warning logged
 * `"destination":"…:23"` at warn, and debug lines named destinations, resolved addresses and
 * users. Here one proxy at level debug with safeLogging on is driven down every path that logs a
 * destination, a name, an address or a user (connect success and failure, NXDOMAIN, policy
 * refusals, WarnPlaintextPorts, addresses dropped by ClientDNSRejectInternalAddresses, RESOLVE,
 * RESOLVE_PTR, HTTP CONNECT, auth failures, invalid .onion, names that do not normalise), from a
 * client bound to 127.0.0.9, and no line may contain any of them.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { scrubText } from '../../src/logger.js';
import { startDnsServer, type TestDnsServer } from '../plugins/helpers/dns-server.js';
import { connectClient, req4, req5, sleep, userpass } from '../plugins/helpers/socks.js';
import { basic, tempDir, writeUsers } from '../plugins/auth/helpers.js';

const CLIENT = '127.0.0.9';
/** Strings that must appear in no line: destinations (names and addresses), resolved addresses, the client, user names. */
const SECRETS = ['echo.test', 'nx.test', 'internal.test', 'xn--bcher-kva.test', 'bücher.test', 'single-label-secret', 'aaaaaaaaaaaaaaaa.onion', '127.0.0.1', '127.0.0.7', '10.9.9.9', CLIENT, 'alice-secret', 'mallory-secret'];

let dns: TestDnsServer;
let echo: TestServer;
let px: TestProxy;
let pxAuth: TestProxy;
let dir: string;

before(async () => {
  dns = await startDnsServer();
  echo = await startEchoServer();
  dns.setA('echo.test', ['127.0.0.1']);
  dns.setA('internal.test', ['10.9.9.9']);
  dns.setA('xn--bcher-kva.test', ['127.0.0.1']);
  dns.setPTR('127.0.0.1', ['localhost.ptr.test']);
  dir = await tempDir();
  const usersFile = await writeUsers(dir, [{ user: 'alice-secret', pass: 'pw' }]);
  const common = { log: { level: 'debug' as const, safeLogging: true }, resolver: { servers: [dns.address] } };
  px = await startProxy({
    ...common,
    plugins: {
      resolve: { mode: 'local' },
      'resolve-ptr': { mode: 'local' },
      'http-detect': { mode: 'tunnel' },
      policy: {
        destinations: ['reject 127.0.0.7:*'],
        WarnPlaintextPorts: [echo.port, 23],
        ClientDNSRejectInternalAddresses: true,
        TestSocks: true,
      },
    },
  });
  pxAuth = await startProxy({ ...common, plugins: { auth: { usersFile, socks4: 'userid' }, 'http-detect': { mode: 'tunnel' } } });
});
after(async () => {
  await px.close();
  await pxAuth.close();
  await echo.close();
  await dns.close();
  await fs.rm(dir, { recursive: true, force: true });
});

/** One exchange from 127.0.0.9: write `bytes`, optionally send data through, read to EOF. */
async function exchange(port: number, bytes: Buffer, data?: string): Promise<Buffer> {
  const c = await connectClient(port, { localAddress: CLIENT });
  try {
    c.write(bytes);
    if (data !== undefined) {
      await sleep(20);
      c.write(data);
      await sleep(20);
      c.end();
    }
    return await c.readToEnd(5000);
  } finally {
    c.destroy();
  }
}

const hello = Buffer.from([5, 1, 0]);
const v5 = (cmd: number, host: string, port: number) => Buffer.concat([hello, req5(cmd, host, port, true)]);

test('safeLogging: no destination, name, address or user in any line, at any level, on any path', async () => {
  // CONNECT: success by name and by literal (access lines, WarnPlaintextPorts warnings).
  await exchange(px.port, v5(1, 'echo.test', echo.port), 'ping');
  await exchange(px.port, v5(1, '127.0.0.1', echo.port), 'ping');
  await exchange(px.port, v5(1, 'bücher.test', echo.port), 'ping');
  // Failures: refused port, NXDOMAIN, a single-label name, plaintext port 23.
  await exchange(px.port, v5(1, '127.0.0.1', 1));
  await exchange(px.port, v5(1, 'nx.test', 80));
  await exchange(px.port, v5(1, 'single-label-secret', 80));
  await exchange(px.port, v5(1, '127.0.0.1', 23));
  // Policy refusals: the destination policy, ClientDNSRejectInternalAddresses (dropped addresses).
  await exchange(px.port, v5(1, '127.0.0.7', 80));
  await exchange(px.port, v5(1, 'internal.test', 80));
  // RESOLVE (success and failure), RESOLVE_PTR, SOCKS4a.
  await exchange(px.port, v5(0xf0, 'echo.test', 0));
  await exchange(px.port, v5(0xf0, 'nx.test', 0));
  await exchange(px.port, Buffer.concat([hello, req5(0xf1, '127.0.0.1', 0)]));
  await exchange(px.port, req4(1, 'nx.test', 80));
  // An invalid .onion, and names that do not normalise.
  await exchange(px.port, v5(1, 'aaaaaaaaaaaaaaaa.onion', 80));
  await exchange(px.port, v5(1, 'nx.test..', 80));
  await exchange(px.port, v5(1, '::1%lo', 80));
  // HTTP CONNECT.
  await exchange(px.port, Buffer.from(`CONNECT echo.test:${echo.port} HTTP/1.1\r\n\r\n`), 'ping');
  await exchange(px.port, Buffer.from('CONNECT nx.test:80 HTTP/1.1\r\n\r\n'));
  // auth: a wrong password, an unknown user, a good login (accepted at debug), SOCKS4 USERID, HTTP Basic.
  await exchange(pxAuth.port, Buffer.concat([Buffer.from([5, 1, 2]), userpass('alice-secret', 'wrong')]));
  await exchange(pxAuth.port, Buffer.concat([Buffer.from([5, 1, 2]), userpass('mallory-secret', 'x')]));
  await exchange(pxAuth.port, Buffer.concat([Buffer.from([5, 1, 2]), userpass('alice-secret', 'pw'), req5(1, 'echo.test', echo.port, true)]), 'ping');
  await exchange(pxAuth.port, req4(1, 'echo.test', echo.port, 'mallory-secret'));
  await exchange(pxAuth.port, Buffer.from(`CONNECT echo.test:${echo.port} HTTP/1.1\r\nProxy-Authorization: ${basic('mallory-secret', 'x')}\r\n\r\n`));
  await sleep(100); // access lines are written at teardown

  const lines = [...px.logs, ...pxAuth.logs];
  const text = lines.map((l) => JSON.stringify(l));
  // The paths above did log: at debug, with every kind of line the issue names.
  for (const msg of ['stream closed', 'upstream connect failed', 'policy: request refused', 'policy: resolved addresses dropped', 'RESOLVE failed', 'auth: wrong username or password', 'auth: accepted']) {
    assert.ok(lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith(msg)), `a "${msg}" line was written`);
  }
  assert.ok(lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('WarnPlaintextPorts:') && l.level === 'warn'), 'WarnPlaintextPorts warned');
  assert.ok(lines.some((l) => l.level === 'debug'), 'debug lines were written');
  for (const secret of SECRETS) {
    const leaks = text.filter((t) => t.includes(secret) || t.includes(JSON.stringify(secret).slice(1, -1)));
    assert.deepEqual(leaks, [], `"${secret}" appears in no line`);
  }
  assert.ok(text.some((t) => t.includes('[scrubbed]')), 'values were replaced, not dropped');
});

test('safeLogging off: the same lines do name destinations (the scrub is what removes them)', async () => {
  const open = await startProxy({ log: { level: 'debug' }, resolver: { servers: [dns.address] }, plugins: { policy: { WarnPlaintextPorts: [echo.port] } } });
  try {
    await exchange(open.port, v5(1, 'echo.test', echo.port), 'ping');
    await sleep(50);
    const warn = open.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('WarnPlaintextPorts:'));
    assert.equal(warn?.destination, `echo.test:${echo.port}`);
  } finally {
    await open.close();
  }
});

test('scrubText: addresses and lower-case names in free text; config keys and messages stay readable', () => {
  assert.equal(scrubText('connect ECONNREFUSED 127.0.0.1:23'), 'connect ECONNREFUSED [scrubbed]:23');
  assert.equal(scrubText('cannot resolve nx.test: queryA ENOTFOUND nx.test'), 'cannot resolve [scrubbed]: queryA ENOTFOUND [scrubbed]');
  assert.equal(scrubText('connect [::1]:80 and ::ffff:7f00:1 and fe80::1%lo'), 'connect [scrubbed]:80 and [scrubbed] and [scrubbed]');
  assert.equal(scrubText('getaddrinfo ENOTFOUND intranet', ['intranet']), 'getaddrinfo ENOTFOUND [scrubbed]');
  assert.equal(scrubText('user bob refused; bobcat', ['bob']), 'user [scrubbed] refused; bobcat');
  assert.equal(scrubText('resolver.maxPending: 300 lookups already pending'), 'resolver.maxPending: 300 lookups already pending');
  assert.equal(scrubText('WarnPlaintextPorts: this port is commonly used for unencrypted protocols'), 'WarnPlaintextPorts: this port is commonly used for unencrypted protocols');
});

test('a logger socksmith did not make is refused with safeLogging on (it could not scrub)', async () => {
  const { pino } = await import('pino');
  const { SocksmithProxy } = await import('../../src/proxy.js');
  await assert.rejects(
    SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port: 0 }], log: { safeLogging: true } }, { logger: pino({ level: 'silent' }) }),
    (err: { code?: string; message?: string }) => err.code === 'SOCKSMITH_ERR_CONFIG_INVALID' && /log\.safeLogging/.test(err.message ?? ''),
  );
});


