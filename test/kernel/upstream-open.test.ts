/**
 * `Upstream.open()` (issue 13): a two-phase command (BIND, UDP ASSOCIATE) forwarded to the
 * upstream through the dispatch chain, and the session it resolves with. Against a real
 * dante-server (BIND with both replies, data both ways) and against scripted SOCKS5 servers for
 * the failure paths (a failure REP, EOF and a reset between the replies, an abort, a flood).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { UpstreamError } from '../../src/errors.js';
import { UpstreamDispatch } from '../../src/kernel/dispatch.js';
import { ConnectionContext } from '../../src/kernel/context.js';
import { createLogger } from '../../src/logger.js';
import type { SocksAddress } from '../../src/protocol/address.js';
import { Command, Rep } from '../../src/protocol/constants.js';
import { UpstreamAuth } from '../../src/upstream/credentials.js';
import { Socks5Upstream } from '../../src/upstream/socks5.js';
import { type UpstreamSession, isSession, isStream } from '../../src/upstream/types.js';
import { type Daemon, startDante } from '../e2e/helpers/daemons.js';
import { toHex } from '../helpers/hex.js';
import { startTcpServer, type TestServer } from '../helpers/net.js';
import { requireTool, which } from '../helpers/tools.js';

function conn(): ConnectionContext {
  return new ConnectionContext({
    id: 1,
    listener: { index: 0, host: '127.0.0.1', port: 1080 },
    clientAddress: '127.0.0.1',
    clientPort: 50000,
    clientFamily: 'IPv4',
    acceptedAt: 0,
    log: createLogger('silent'),
    signal: new AbortController().signal,
  });
}

const ANY4: SocksAddress = { kind: 'ipv4', host: '127.0.0.1', port: 0 };

function opts(command: number, signal = AbortSignal.timeout(10_000)) {
  return { command, signal, early: undefined, held: undefined };
}

/** Read exactly `n` bytes from `s` (bounded by the test's timeout). */
async function readN(s: net.Socket, n: number): Promise<Buffer> {
  let buf = Buffer.alloc(0);
  while (buf.length < n) {
    const chunk = s.read() as Buffer | null;
    if (chunk) {
      buf = Buffer.concat([buf, chunk]);
      continue;
    }
    const [what] = await Promise.race([once(s, 'readable').then(() => ['r']), once(s, 'close').then(() => ['c'])]);
    if (what === 'c' && s.readableLength === 0) throw new Error(`closed after ${buf.length} of ${n} bytes`);
  }
  if (buf.length > n) s.unshift(buf.subarray(n));
  return buf.subarray(0, n);
}

/**
 * A scripted SOCKS5 server: answers the greeting (no auth, or 02 when credentials come), records
 * the RFC 1929 message and the request, then runs `after(socket, request)`.
 */
async function scriptedServer(afterRequest: (s: net.Socket, request: Buffer) => void): Promise<TestServer & { credentials: string[]; requests: string[] }> {
  const credentials: string[] = [];
  const requests: string[] = [];
  const server = await startTcpServer((s) => {
    s.on('error', () => s.destroy());
    void (async () => {
      const head = await readN(s, 2);
      const methods = await readN(s, head[1]!);
      if (methods.includes(0x02)) {
        s.write(Buffer.from([0x05, 0x02]));
        const ulen = (await readN(s, 2))[1]!;
        const user = await readN(s, ulen);
        const plen = (await readN(s, 1))[0]!;
        const pass = await readN(s, plen);
        credentials.push(`${user.toString()}:${pass.toString()}`);
        s.write(Buffer.from([0x01, 0x00]));
      } else s.write(Buffer.from([0x05, 0x00]));
      const req = await readN(s, 10); // the tests send IPv4 destinations
      requests.push(toHex(req));
      afterRequest(s, req);
    })().catch(() => s.destroy());
  });
  return Object.assign(server, { credentials, requests });
}

const reply = (rep: number, port: number) => Buffer.from([0x05, rep, 0x00, 0x01, 127, 0, 0, 1, port >> 8, port & 0xff]);

describe('Upstream.open: a forwarded BIND through a real dante-server', () => {
  let dante: Daemon | undefined;
  before(async () => {
    const bin = which('danted');
    if (bin) dante = await startDante(bin, { commands: 'connect bind bindreply' });
  });
  after(async () => dante?.stop());

  test('both replies come through the dispatch; the peer connects to the bound port; the detached stream carries data both ways', async (t) => {
    if (!requireTool(t, 'danted', 'dante-server') || !dante) return;
    const upstream = Socks5Upstream.create({ host: '127.0.0.1', port: dante.port });
    const seen: number[] = [];
    const dispatch = new UpstreamDispatch(upstream, [
      (next) => (d, c, o) => {
        seen.push(o.command);
        return next(d, c, o);
      },
    ]);
    assert.equal(dispatch.canOpen, true);
    const result = await dispatch.run(ANY4, conn(), opts(Command.BIND));
    assert.deepEqual(seen, [Command.BIND], 'the interceptor saw the BIND');
    assert.ok(isSession(result) && !isStream(result));
    const session = result as UpstreamSession;
    assert.equal(session.bound.host, '127.0.0.1');
    assert.ok(session.bound.port > 0, 'dante listens on a port of its own');

    const peer = net.connect({ host: '127.0.0.1', port: session.bound.port });
    peer.on('error', () => {});
    await once(peer, 'connect');
    const second = await session.nextReply(AbortSignal.timeout(10_000));
    assert.equal(second.rep, Rep.SUCCEEDED);
    assert.equal(second.bound.host, '127.0.0.1');
    assert.equal(second.bound.port, peer.localPort, 'the second reply names the peer');

    const { stream } = session.detach();
    assert.throws(() => session.detach(), /closed/);
    peer.write('from the peer');
    stream.write('from the client');
    const atClient = await readN(stream as net.Socket, 13);
    const atPeer = await readN(peer, 15);
    assert.equal(atClient.toString(), 'from the peer');
    assert.equal(atPeer.toString(), 'from the client');
    stream.destroy();
    peer.destroy();
  });
});

describe('Upstream.open: failure paths (scripted SOCKS5 servers)', () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  test('the direct upstream has no open(): a forwarded BIND or UDP ASSOCIATE gets 07', async () => {
    const dispatch = new UpstreamDispatch({ name: 'direct', connect: () => Promise.reject(new Error('not used')) });
    assert.equal(dispatch.canOpen, false);
    for (const command of [Command.BIND, Command.UDP_ASSOCIATE]) {
      await assert.rejects(dispatch.run(ANY4, conn(), opts(command)), (err: unknown) => err instanceof UpstreamError && err.rep === Rep.COMMAND_NOT_SUPPORTED);
    }
  });

  test('the request goes out with the command byte and the stream\'s upstream credentials (isolation); a failure first reply rejects with its REP', async () => {
    const server = await scriptedServer((s) => s.end(reply(Rep.NOT_ALLOWED, 0)));
    servers.push(server);
    const upstream = Socks5Upstream.create({ host: '127.0.0.1', port: server.port });
    const c = conn();
    c.set(UpstreamAuth, { username: 'iso-1', password: 'p' });
    await assert.rejects(upstream.open(Command.UDP_ASSOCIATE, { kind: 'ipv4', host: '127.0.0.1', port: 4242 }, c, { signal: AbortSignal.timeout(10_000) }), (err: unknown) => err instanceof UpstreamError && err.rep === Rep.NOT_ALLOWED);
    assert.deepEqual(server.credentials, ['iso-1:p']);
    assert.deepEqual(server.requests, ['05 03 00 01 7f 00 00 01 10 92']);
  });

  test('EOF before the second reply: nextReply rejects with 01 and ended settles', async () => {
    const server = await scriptedServer((s) => {
      s.write(reply(0, 5555));
      setTimeout(() => s.end(), 50);
    });
    servers.push(server);
    const session = await Socks5Upstream.create({ host: '127.0.0.1', port: server.port }).open(Command.BIND, ANY4, conn(), { signal: AbortSignal.timeout(10_000) });
    assert.equal(session.bound.port, 5555);
    await assert.rejects(session.nextReply(AbortSignal.timeout(10_000)), (err: unknown) => err instanceof UpstreamError && err.rep === Rep.GENERAL_FAILURE);
    await session.ended;
    assert.ok(session.stream.destroyed);
  });

  test('second reply, the peer\'s data and EOF all arrive before nextReply(): the reply is read alone; data and EOF reach whoever relays the detached stream', async () => {
    const server = await scriptedServer((s) => {
      s.write(reply(0, 5560));
      setTimeout(() => s.end(Buffer.concat([reply(0, 40000), Buffer.from('banner then close')])), 30);
    });
    servers.push(server);
    const session = await Socks5Upstream.create({ host: '127.0.0.1', port: server.port }).open(Command.BIND, ANY4, conn(), { signal: AbortSignal.timeout(10_000) });
    await new Promise((r) => setTimeout(r, 300)); // everything has arrived by now
    const second = await session.nextReply(AbortSignal.timeout(10_000));
    assert.equal(second.bound.port, 40000);
    const { stream } = session.detach();
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    await once(stream, 'end');
    assert.equal(Buffer.concat(chunks).toString(), 'banner then close');
    stream.destroy();
  });

  test('a reset between the replies: nextReply rejects with 01, no unhandled error', async () => {
    const server = await scriptedServer((s) => {
      s.write(reply(0, 5556));
      setTimeout(() => s.resetAndDestroy(), 50);
    });
    servers.push(server);
    const session = await Socks5Upstream.create({ host: '127.0.0.1', port: server.port }).open(Command.BIND, ANY4, conn(), { signal: AbortSignal.timeout(10_000) });
    await session.ended; // the reset arrives while no reply is awaited: ended settles by itself
    await assert.rejects(session.nextReply(AbortSignal.timeout(10_000)), (err: unknown) => err instanceof UpstreamError && err.rep === Rep.GENERAL_FAILURE);
  });

  test('a failure second reply rejects with its REP', async () => {
    const server = await scriptedServer((s) => {
      s.write(reply(0, 5557));
      setTimeout(() => s.write(reply(Rep.TTL_EXPIRED, 0)), 50);
    });
    servers.push(server);
    const session = await Socks5Upstream.create({ host: '127.0.0.1', port: server.port }).open(Command.BIND, ANY4, conn(), { signal: AbortSignal.timeout(10_000) });
    await assert.rejects(session.nextReply(AbortSignal.timeout(10_000)), (err: unknown) => err instanceof UpstreamError && err.rep === Rep.TTL_EXPIRED);
    await session.ended;
  });

  test('an abort while waiting for the second reply closes the session', async () => {
    const server = await scriptedServer((s) => s.write(reply(0, 5558)));
    servers.push(server);
    const session = await Socks5Upstream.create({ host: '127.0.0.1', port: server.port }).open(Command.BIND, ANY4, conn(), { signal: AbortSignal.timeout(10_000) });
    const ac = new AbortController();
    const pending = session.nextReply(ac.signal);
    ac.abort(new UpstreamError(Rep.TTL_EXPIRED, 'test timeout'));
    await assert.rejects(pending, (err: unknown) => err instanceof UpstreamError && err.rep === Rep.TTL_EXPIRED);
    await session.ended;
    assert.ok(session.stream.destroyed);
  });

  test('an upstream that floods the control connection is cut off, not buffered', async () => {
    const server = await scriptedServer((s) => {
      s.write(reply(0, 5559));
      // A UDP ASSOCIATE control connection carries nothing after the reply: 1 MiB of junk.
      s.write(Buffer.alloc(1 << 20, 0x41));
    });
    servers.push(server);
    const session = await Socks5Upstream.create({ host: '127.0.0.1', port: server.port }).open(Command.UDP_ASSOCIATE, ANY4, conn(), { signal: AbortSignal.timeout(10_000) });
    await session.ended;
    assert.ok(session.stream.destroyed);
    session.close(); // idempotent
  });
});
