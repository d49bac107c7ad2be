/**
 * `isolation` plugin: Tor's stream isolation (tor-socks.md a.3, a.10). Keys are observed where
 * they matter: the username/password pairs a recording socks5 upstream receives, and the
 * resolver cache partitions (a DNS server whose answer changes between queries).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hex, toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { startRecordingUpstream, type RecordingUpstream, type UpstreamSession } from './helpers/recording-upstream.js';
import { connectClient, readReply5, req4, req5, socks5Upstream, userpass } from './helpers/socks.js';

let echo: TestServer;
let echo2: TestServer;
let up: RecordingUpstream;
before(async () => {
  echo = await startEchoServer();
  echo2 = await startEchoServer();
  up = await startRecordingUpstream();
});
after(async () => {
  await up.close();
  await echo.close();
  await echo2.close();
});

/** How a test stream authenticates. */
type Auth =
  | { kind: 'none' } // 05 01 00
  | { kind: 'userpass'; user: string; pass: string; greeting?: string } // 05 01 02 (or a given greeting) + RFC 1929
  | { kind: 'lenient'; user: string; pass: string } // 05 01 00, then RFC 1929 anyway
  | { kind: 'socks4'; userId: string };

/** Open a CONNECT stream through the proxy to `host:port`, prove the tunnel echoes, return the upstream session it made. */
async function stream(px: { port: number }, auth: Auth, opts: { host?: string; port?: number; localAddress?: string; asName?: boolean; listenerPort?: number } = {}): Promise<UpstreamSession> {
  const host = opts.host ?? 'localhost';
  const port = opts.port ?? echo.port;
  const before = up.sessions.length;
  const c = await connectClient(opts.listenerPort ?? px.port, { localAddress: opts.localAddress });
  if (auth.kind === 'socks4') {
    c.write(req4(1, host, port, auth.userId));
    assert.equal(toHex((await c.read(8)).subarray(0, 2)), '00 5a');
  } else {
    if (auth.kind === 'userpass') {
      c.write(hex(auth.greeting ?? '05 01 02'));
      assert.equal(toHex(await c.read(2)), '05 02');
      c.write(userpass(auth.user, auth.pass));
      assert.equal(toHex(await c.read(2)), '01 00');
    } else {
      c.write(hex('05 01 00'));
      assert.equal(toHex(await c.read(2)), '05 00');
      if (auth.kind === 'lenient') {
        c.write(userpass(auth.user, auth.pass));
        assert.equal(toHex(await c.read(2)), '01 00', 'RFC 1929 accepted after 00 was chosen');
      }
    }
    c.write(req5(1, host, port, opts.asName));
    const reply = await readReply5(c);
    assert.equal(reply[1], 0, `CONNECT succeeded: ${toHex(reply)}`);
  }
  c.write('isolation-probe');
  assert.equal((await c.read(15)).toString(), 'isolation-probe', 'the tunnel works');
  c.destroy();
  await up.waitSessions(before + 1);
  assert.equal(up.sessions.length, before + 1, 'exactly one upstream connection per stream');
  return up.sessions[before]!;
}

/** The credentials an upstream session got, as comparable text (`none` when none). */
function credsOf(s: UpstreamSession): string {
  return s.credentials ? `${s.credentials.username.toString('hex')}/${s.credentials.password.toString('hex')}` : 'none';
}

const SECRETS = ['alice', 'bob', 'carol', 'pw-one', 'pw-two', '127.0.0.1', '127.0.0.2'];

/** The upstream never sees the client's credentials or address, in any byte it received. */
function assertNothingRevealed(sessions: UpstreamSession[]): void {
  for (const s of sessions) {
    for (const secret of SECRETS) assert.ok(!s.raw.includes(secret), `upstream session ${s.id} saw ${JSON.stringify(secret)}: ${s.raw.toString('latin1')}`);
    if (s.credentials) {
      const fields = Buffer.concat([s.credentials.username, s.credentials.password]);
      assert.ok(!fields.includes(hex('7f000001')) && !fields.includes(hex('7f000002')), 'derived credentials do not embed the client IP bytes');
    }
  }
}

async function withProxy(config: ConfigInput, fn: (px: TestProxy) => Promise<void>): Promise<void> {
  const px = await startProxy(config);
  try {
    await fn(px);
  } finally {
    await px.close();
  }
}

const upstreamCfg = () => socks5Upstream(up.port);

describe('method choice', () => {
  async function choose(px: TestProxy, greeting: string): Promise<string> {
    const c = await RawClient.connect(px.port);
    c.write(hex(greeting));
    const r = toHex(await c.read(2));
    c.destroy();
    return r;
  }

  test('on (defaults): a client offering 02 is told 02, even when it also offers 00; 00 alone gets 00', async () => {
    await withProxy({ plugins: { isolation: true } }, async (px) => {
      assert.equal(await choose(px, '05 02 00 02'), '05 02');
      assert.equal(await choose(px, '05 02 02 00'), '05 02');
      assert.equal(await choose(px, '05 01 02'), '05 02');
      assert.equal(await choose(px, '05 03 00 01 02'), '05 02', "curl's [00 01 02]");
      assert.equal(await choose(px, '05 01 00'), '05 00');
      assert.equal(await choose(px, '05 02 00 01'), '05 00');
    });
  });

  test('PreferSOCKSNoAuth: 00 wins when both are offered; 02 alone still gets 02', async () => {
    await withProxy({ plugins: { isolation: { PreferSOCKSNoAuth: true } } }, async (px) => {
      assert.equal(await choose(px, '05 02 00 02'), '05 00');
      assert.equal(await choose(px, '05 01 02'), '05 02');
    });
  });

  test('IsolateSOCKSAuth off implies PreferSOCKSNoAuth', async () => {
    await withProxy({ plugins: { isolation: { IsolateSOCKSAuth: false } } }, async (px) => {
      assert.equal(await choose(px, '05 02 00 02'), '05 00');
      assert.equal(await choose(px, '05 01 02'), '05 02');
    });
  });

  test('off: the kernel default (00 when offered)', async () => {
    await withProxy({ plugins: { isolation: false } }, async (px) => {
      assert.equal(await choose(px, '05 02 00 02'), '05 00');
      assert.equal(await choose(px, '05 01 02'), '05 02');
    });
  });
});

describe('lenient RFC 1929 (plugin on and off)', () => {
  for (const on of [true, false]) {
    test(`${on ? 'on' : 'off'}: accepted after 00 was chosen, empty fields accepted, any credentials get 01 00; the stream works`, async () => {
      await withProxy({ upstream: upstreamCfg(), plugins: { isolation: on } }, async (px) => {
        await stream(px, { kind: 'lenient', user: 'alice', pass: 'pw-one' });
        await stream(px, { kind: 'lenient', user: '', pass: '' });
        await stream(px, { kind: 'userpass', user: '', pass: '' });
        await stream(px, { kind: 'userpass', user: 'x'.repeat(255), pass: 'y'.repeat(255) });
      });
    });
  }
});

describe('isolation on: per-key upstream credentials', () => {
  test('same credentials → identical pairs; different username or password → different pairs; empty = none; lenient creds count; nothing revealed', async () => {
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: true } }, async (px) => {
      const a1 = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' });
      const a2 = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one', greeting: '05 02 00 02' });
      const b = await stream(px, { kind: 'userpass', user: 'bob', pass: 'pw-one' });
      const c = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-two' });
      const none = await stream(px, { kind: 'none' });
      const empty = await stream(px, { kind: 'userpass', user: '', pass: '' });
      const lenient = await stream(px, { kind: 'lenient', user: 'alice', pass: 'pw-one' });
      const s4none = await stream(px, { kind: 'socks4', userId: '' });
      const s4carol = await stream(px, { kind: 'socks4', userId: 'carol' });
      const s5carol = await stream(px, { kind: 'userpass', user: 'carol', pass: '' });
      const all = [a1, a2, b, c, none, empty, lenient, s4none, s4carol, s5carol];
      for (const s of all) assert.ok(s.credentials, `session ${s.id}: the upstream got a username/password`);
      assert.deepEqual(all.map((s) => s.methods), all.map(() => [0, 2]), 'credentials offered as 00 02');
      assert.equal(credsOf(a1), credsOf(a2), 'same key → identical pair');
      assert.notEqual(credsOf(a1), credsOf(b), 'different username → different pair');
      assert.notEqual(credsOf(a1), credsOf(c), 'different password → different pair');
      assert.notEqual(credsOf(b), credsOf(c));
      assert.equal(credsOf(none), credsOf(empty), 'empty fields = no credentials');
      assert.notEqual(credsOf(none), credsOf(a1));
      assert.equal(credsOf(lenient), credsOf(a1), 'lenient RFC 1929 credentials count for isolation');
      assert.equal(credsOf(s4none), credsOf(none), 'an empty SOCKS4 user id = no credentials');
      assert.notEqual(credsOf(s4carol), credsOf(none), 'a SOCKS4 user id is a credential');
      assert.equal(credsOf(s4carol), credsOf(s5carol), 'SOCKS4 user id = SOCKS5 username with an empty password (Tor)');
      assertNothingRevealed(all);
    });
  });

  test('IsolateClientAddr (default on): clients at 127.0.0.1 and 127.0.0.2 with the same credentials get different pairs; off: the same', async () => {
    const creds: Auth = { kind: 'userpass', user: 'alice', pass: 'pw-one' };
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: true } }, async (px) => {
      const a = await stream(px, creds, { localAddress: '127.0.0.1' });
      const b = await stream(px, creds, { localAddress: '127.0.0.2' });
      const a2 = await stream(px, creds, { localAddress: '127.0.0.1' });
      assert.notEqual(credsOf(a), credsOf(b));
      assert.equal(credsOf(a), credsOf(a2));
      assertNothingRevealed([a, b, a2]);
    });
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: { IsolateClientAddr: false } } }, async (px) => {
      const a = await stream(px, creds, { localAddress: '127.0.0.1' });
      const b = await stream(px, creds, { localAddress: '127.0.0.2' });
      assert.equal(credsOf(a), credsOf(b));
    });
  });

  test('IsolateSOCKSAuth off: different client credentials share a key', async () => {
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: { IsolateSOCKSAuth: false } } }, async (px) => {
      const a = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' });
      const b = await stream(px, { kind: 'userpass', user: 'bob', pass: 'pw-two' });
      const n = await stream(px, { kind: 'none' });
      assert.ok(a.credentials);
      assert.equal(credsOf(a), credsOf(b));
      assert.equal(credsOf(a), credsOf(n));
    });
  });

  test('IsolateDestPort: different destination ports → different pairs (off by default: same)', async () => {
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: true } }, async (px) => {
      const a = await stream(px, { kind: 'none' }, { port: echo.port });
      const b = await stream(px, { kind: 'none' }, { port: echo2.port });
      assert.equal(credsOf(a), credsOf(b), 'default: the port is not part of the key');
    });
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: { IsolateDestPort: true } } }, async (px) => {
      const a = await stream(px, { kind: 'none' }, { port: echo.port });
      const b = await stream(px, { kind: 'none' }, { port: echo2.port });
      const a2 = await stream(px, { kind: 'none' }, { port: echo.port });
      assert.notEqual(credsOf(a), credsOf(b));
      assert.equal(credsOf(a), credsOf(a2));
    });
  });

  test('IsolateDestAddr: different destination addresses → different pairs, compared case-insensitively (off by default: same)', async () => {
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: true } }, async (px) => {
      const a = await stream(px, { kind: 'none' }, { host: 'localhost' });
      const b = await stream(px, { kind: 'none' }, { host: '127.0.0.1' });
      assert.equal(credsOf(a), credsOf(b), 'default: the address is not part of the key');
    });
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: { IsolateDestAddr: true } } }, async (px) => {
      const a = await stream(px, { kind: 'none' }, { host: 'localhost' });
      const b = await stream(px, { kind: 'none' }, { host: '127.0.0.1' });
      const upper = await stream(px, { kind: 'none' }, { host: 'LOCALHOST' });
      assert.notEqual(credsOf(a), credsOf(b));
      assert.equal(credsOf(a), credsOf(upper), 'case-insensitive');
    });
  });

  test('IsolateClientProtocol: SOCKS4 and SOCKS5 without credentials get different pairs (off by default: same)', async () => {
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: true } }, async (px) => {
      const four = await stream(px, { kind: 'socks4', userId: '' });
      const five = await stream(px, { kind: 'none' });
      assert.equal(credsOf(four), credsOf(five));
    });
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: { IsolateClientProtocol: true } } }, async (px) => {
      const four = await stream(px, { kind: 'socks4', userId: '' });
      const fourA = await stream(px, { kind: 'socks4', userId: '' }, { host: 'localhost' });
      const four4 = await stream(px, { kind: 'socks4', userId: '' }, { host: '127.0.0.1' });
      const five = await stream(px, { kind: 'none' });
      assert.notEqual(credsOf(four), credsOf(five));
      assert.equal(credsOf(fourA), credsOf(four4), 'SOCKS4 and SOCKS4a are the same protocol');
    });
  });

  test('SessionGroup: every listener is its own group by default; with SessionGroup set, listeners share keys', async () => {
    const listen = [
      { host: '127.0.0.1', port: 0 },
      { host: '127.0.0.1', port: 0 },
    ];
    await withProxy({ listen, upstream: upstreamCfg(), plugins: { isolation: true } }, async (px) => {
      const second = px.proxy.addresses[1]!.port;
      const a = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' });
      const b = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' }, { listenerPort: second });
      assert.notEqual(credsOf(a), credsOf(b), 'different listeners → different keys');
    });
    await withProxy({ listen, upstream: upstreamCfg(), plugins: { isolation: { SessionGroup: 3 } } }, async (px) => {
      const second = px.proxy.addresses[1]!.port;
      const a = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' });
      const b = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' }, { listenerPort: second });
      assert.equal(credsOf(a), credsOf(b), 'same SessionGroup → same key');
    });
  });

  test('RESOLVE forwarded to the upstream carries the per-key credentials too', async () => {
    const resolver = await startRecordingUpstream({ answer: (req) => (req.command === 0xf0 ? { rep: 0, bound: '10.5.5.5' } : undefined) });
    try {
      await withProxy({ upstream: socks5Upstream(resolver.port), plugins: { isolation: true, resolve: true } }, async (px) => {
        const ask = async (user: string) => {
          const c = await RawClient.connect(px.port);
          c.write(hex('05 01 02'));
          assert.equal(toHex(await c.read(2)), '05 02');
          c.write(userpass(user, 'pw-one'));
          assert.equal(toHex(await c.read(2)), '01 00');
          c.write(req5(0xf0, 'name.test', 0));
          assert.equal(toHex(await c.readToEnd()), '05 00 00 01 0a 05 05 05 00 00');
          c.destroy();
        };
        await ask('alice');
        await ask('bob');
        await ask('alice');
        await resolver.waitSessions(3);
        const pairs = resolver.sessions.map(credsOf);
        assert.equal(resolver.sessions[0]!.request!.command, 0xf0);
        assert.ok(!pairs.includes('none'));
        assert.notEqual(pairs[0], pairs[1]);
        assert.equal(pairs[0], pairs[2]);
        assertNothingRevealed(resolver.sessions);
      });
    } finally {
      await resolver.close();
    }
  });

  test("upstreamCredentials 'auto' with configured upstream credentials: the configured pair is used", async () => {
    await withProxy({ upstream: socks5Upstream(up.port, { username: 'static-user', password: 'static-pass' }), plugins: { isolation: true } }, async (px) => {
      const a = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' });
      const b = await stream(px, { kind: 'userpass', user: 'bob', pass: 'pw-two' });
      assert.equal(a.credentials?.username.toString(), 'static-user');
      assert.equal(a.credentials?.password.toString(), 'static-pass');
      assert.equal(credsOf(a), credsOf(b));
    });
  });
});

describe('isolation off', () => {
  test('the upstream gets the configured static credentials whatever the client sent', async () => {
    await withProxy({ upstream: socks5Upstream(up.port, { username: 'static-user', password: 'static-pass' }), plugins: { isolation: false } }, async (px) => {
      const a = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' });
      const b = await stream(px, { kind: 'lenient', user: 'bob', pass: 'pw-two' });
      const n = await stream(px, { kind: 'none' });
      for (const s of [a, b, n]) {
        assert.equal(s.credentials?.username.toString(), 'static-user');
        assert.equal(s.credentials?.password.toString(), 'static-pass');
      }
      assertNothingRevealed([a, b, n]);
    });
  });

  test('without configured credentials the upstream is offered 00 only and gets no credentials', async () => {
    await withProxy({ upstream: upstreamCfg(), plugins: { isolation: false } }, async (px) => {
      const a = await stream(px, { kind: 'userpass', user: 'alice', pass: 'pw-one' });
      const n = await stream(px, { kind: 'none' });
      for (const s of [a, n]) {
        assert.deepEqual(s.methods, [0]);
        assert.equal(s.credentials, undefined);
      }
      assertNothingRevealed([a, n]);
    });
  });
});

describe('resolver cache partitioned by isolation key', () => {
  let dns: TestDnsServer;
  before(async () => {
    dns = await startDnsServer();
    dns.setA('rotate.test', (n) => [`10.9.0.${n}`], 300);
    dns.setA('shared.test', (n) => [`10.9.1.${n}`], 300);
  });
  after(async () => dns.close());

  async function resolveAs(port: number, user: string | undefined, name: string): Promise<string> {
    const c = await RawClient.connect(port);
    if (user) {
      c.write(hex('05 01 02'));
      assert.equal(toHex(await c.read(2)), '05 02');
      c.write(userpass(user, 'pw'));
      assert.equal(toHex(await c.read(2)), '01 00');
    } else {
      c.write(hex('05 01 00'));
      assert.equal(toHex(await c.read(2)), '05 00');
    }
    c.write(req5(0xf0, name, 0));
    const r = await c.readToEnd();
    c.destroy();
    return toHex(r);
  }

  test('group A caches answer 1; group B triggers a new query and gets answer 2; group A again gets the cached answer 1', async () => {
    await withProxy({ resolver: { servers: [dns.address] }, plugins: { isolation: true, resolve: true } }, async (px) => {
      assert.equal(await resolveAs(px.port, 'alice', 'rotate.test'), '05 00 00 01 0a 09 00 01 00 00', 'A: answer 1');
      assert.equal(dns.queriesFor('rotate.test', 'A').length, 1);
      assert.equal(await resolveAs(px.port, 'bob', 'rotate.test'), '05 00 00 01 0a 09 00 02 00 00', 'B: a fresh query, answer 2');
      assert.equal(dns.queriesFor('rotate.test', 'A').length, 2, "B did not see A's cached answer");
      assert.equal(await resolveAs(px.port, 'alice', 'rotate.test'), '05 00 00 01 0a 09 00 01 00 00', 'A again: cached answer 1');
      assert.equal(await resolveAs(px.port, 'bob', 'rotate.test'), '05 00 00 01 0a 09 00 02 00 00', 'B again: cached answer 2');
      assert.equal(await resolveAs(px.port, undefined, 'rotate.test'), '05 00 00 01 0a 09 00 03 00 00', 'no credentials: a third group');
      assert.equal(dns.queriesFor('rotate.test', 'A').length, 3, 'one query per group');
    });
  });

  test('contrast, isolation off: one shared cache (B gets A\'s cached answer, one query)', async () => {
    await withProxy({ resolver: { servers: [dns.address] }, plugins: { isolation: false, resolve: true } }, async (px) => {
      assert.equal(await resolveAs(px.port, 'alice', 'shared.test'), '05 00 00 01 0a 09 01 01 00 00');
      assert.equal(await resolveAs(px.port, 'bob', 'shared.test'), '05 00 00 01 0a 09 01 01 00 00');
      assert.equal(dns.queriesFor('shared.test', 'A').length, 1);
    });
  });
});

test('stream keys (ConnectionContext.setLazy, as isolation uses them): computed once on first read, never if unread; writes keep their order', async () => {
  const { ConnectionContext } = await import('../../src/kernel/context.js');
  const { declareKey } = await import('../../src/kernel/stream-keys.js');
  const { UpstreamAuth } = await import('../../src/upstream/credentials.js');
  const { createLogger } = await import('../../src/logger.js');
  const make = () =>
    new ConnectionContext({
      id: 1,
      listener: { index: 0, host: '127.0.0.1', port: 1080 },
      clientAddress: '127.0.0.1',
      clientPort: 50000,
      clientFamily: 'IPv4',
      acceptedAt: 0,
      log: createLogger('silent'),
      signal: new AbortController().signal,
    });
  const Key = declareKey<string>('test.key');
  let calls = 0;
  const computeKey = () => {
    calls++;
    return 'k1';
  };
  const creds = (conn: InstanceType<typeof ConnectionContext>) => ({ username: `u-${conn.get(Key)}`, password: 'p1' });

  const unread = make();
  unread.setLazy(Key, computeKey);
  unread.setLazy(UpstreamAuth, creds);
  assert.equal(calls, 0, 'nothing computed until someone reads it');

  const read = make();
  read.setLazy(Key, computeKey);
  read.setLazy(UpstreamAuth, creds);
  assert.equal(read.get(Key), 'k1');
  assert.deepEqual(read.get(UpstreamAuth), { username: 'u-k1', password: 'p1' });
  assert.equal(read.get(Key), 'k1');
  assert.equal(calls, 1, 'computed once');

  // A later plugin's write wins over the lazy value, as it would have over an eager one.
  const overwritten = make();
  overwritten.setLazy(Key, computeKey);
  overwritten.setLazy(UpstreamAuth, creds);
  overwritten.set(UpstreamAuth, { username: 'mine', password: 'x' });
  assert.deepEqual(overwritten.get(UpstreamAuth), { username: 'mine', password: 'x' });
  assert.equal(overwritten.get(Key), 'k1', 'the key still comes from the lazy computation');

  // Without lazy credentials, UpstreamAuth stays what it was.
  const keyOnly = make();
  keyOnly.set(UpstreamAuth, { username: 'configured', password: 'y' });
  keyOnly.setLazy(Key, () => 'k2');
  assert.equal(keyOnly.get(Key), 'k2');
  assert.deepEqual(keyOnly.get(UpstreamAuth), { username: 'configured', password: 'y' });

  // Defaults, has(), and a stream nobody writes to.
  const WithDefault = declareKey<number>('test.default', { default: 7 });
  const empty = make();
  assert.equal(empty.get(WithDefault), 7);
  assert.equal(empty.get(Key), undefined);
  assert.equal(empty.has(Key), false);
  const before = calls;
  empty.setLazy(Key, computeKey);
  assert.equal(empty.has(Key), true);
  assert.equal(calls, before, 'has() does not compute');

  // Past the 31 keys a bit tracks: the same behaviour (a cell holds the function).
  const many = Array.from({ length: 40 }, (_, i) => declareKey<string>(`test.many${i}`));
  const far = many[39]!;
  assert.ok(far.index >= 31);
  const wide = make();
  let farCalls = 0;
  wide.setLazy(far, () => `far${++farCalls}`);
  assert.equal(wide.has(far), true);
  assert.equal(wide.get(far), 'far1');
  assert.equal(wide.get(far), 'far1');
  assert.equal(farCalls, 1);
  wide.set(far, 'set');
  assert.equal(wide.get(far), 'set');
});
