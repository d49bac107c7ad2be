/**
 * The `bind` plugin with the `direct` upstream, over real loopback sockets: raw SOCKS5 and SOCKS4
 * BIND checked byte for byte (RFC 1928 §4 and §6: `05 00 00 01 ADDR PORT`, twice; the SOCKS4
 * document: `00 5A PORT IP`, twice), the npm `socks` client's BIND for both versions, the peer
 * check (wrong address, `checkPeer: 'none'`, names, 0.0.0.0), the policy plugin's destination
 * check on the peer, the accept timeout, a client that goes away during each wait (the listener
 * closes: its port refuses, the descriptors return), and a default proxy that still answers 07 / 5B.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SocksClient } from 'socks';
import { toHex } from '../../helpers/hex.js';
import { RawClient } from '../../helpers/net.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { startDnsServer, startSilentDnsServer, type TestDnsServer } from '../helpers/dns-server.js';
import { req4, req5, socks5Hello, u16, waitFor } from '../helpers/socks.js';

/** Connect to 127.0.0.1:`port` (from `localAddress`); resolves with the socket or the connect error's code. */
async function dial(port: number, localAddress = '127.0.0.1', host = '127.0.0.1'): Promise<net.Socket | string> {
  const s = net.connect({ port, host, localAddress, allowHalfOpen: true });
  const errored = new Promise<string>((resolve) => s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message)));
  s.on('error', () => {});
  const r = await Promise.race([once(s, 'connect').then(() => s), errored]);
  return r;
}

/** A connected peer socket (asserts the connect worked). */
async function peerFrom(port: number, localAddress = '127.0.0.1', host = '127.0.0.1'): Promise<net.Socket> {
  const s = await dial(port, localAddress, host);
  assert.ok(typeof s !== 'string', `peer connect failed: ${String(s)}`);
  return s;
}

/** Wait until nothing accepts on 127.0.0.1:`port` any more (bounded). */
async function waitRefused(port: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    // From an address no test expects, so that a listener still waiting never takes the probe as its peer.
    const r = await dial(port, host === '::1' ? '::1' : '127.0.0.250', host);
    if (r === 'ECONNREFUSED') return;
    if (typeof r !== 'string') r.destroy();
    if (Date.now() > deadline) throw new Error(`port ${port} still accepts`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** Read everything a socket sends until it closes (bounded). */
function readAll(s: net.Socket, ms = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const t = setTimeout(() => reject(new Error(`no EOF within ${ms} ms`)), ms);
    const done = () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks));
    };
    s.on('data', (d: Buffer) => chunks.push(d));
    s.once('end', done);
    s.once('close', done);
  });
}

/** `05 00 00 01 a.b.c.d PORT` for an IPv4 host. */
function reply5(rep: number, host: string, port: number): string {
  return toHex(Buffer.concat([Buffer.from([5, rep, 0, 1, ...host.split('.').map(Number)]), u16(port)]));
}

/** `00 5A PORT a.b.c.d`. */
function reply4(host: string, port: number): string {
  return toHex(Buffer.concat([Buffer.from([0, 0x5a]), u16(port), Buffer.from(host.split('.').map(Number))]));
}

/** SOCKS5 BIND on `px`; returns the client and the first reply's port (after asserting the reply is 00 from 127.0.0.1). */
async function bind5(px: TestProxy, host: string, port: number, asName = false): Promise<{ c: RawClient; port: number; first: Buffer }> {
  const c = await RawClient.connect(px.port);
  await socks5Hello(c);
  c.write(req5(2, host, port, asName));
  const first = await c.read(10);
  assert.equal(toHex(first.subarray(0, 8)), '05 00 00 01 7f 00 00 01', `first reply ${toHex(first)}`);
  return { c, port: first.readUInt16BE(8), first };
}

const fdCount = () => fs.readdirSync('/proc/self/fd').length;
const fdList = () =>
  fs.readdirSync('/proc/self/fd').map((fd) => {
    try {
      return `${fd}->${fs.readlinkSync(`/proc/self/fd/${fd}`)}`;
    } catch {
      return fd;
    }
  });

/** Wait (bounded) until this process has at most `n` descriptors. */
async function fdsBackTo(n: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (fdCount() > n) {
    if (Date.now() > deadline) throw new Error(`descriptors: ${fdCount()} > ${n}: ${fdList().join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('bind off (the default)', () => {
  test('a default proxy answers SOCKS5 BIND with 07 and SOCKS4 BIND with 5B, byte for byte, and closes', async () => {
    // No plugins key at all: the built-in defaults (bind is off).
    const px = await startProxy({});
    try {
      const c = await RawClient.connect(px.port);
      await socks5Hello(c);
      c.write(req5(2, '127.0.0.1', 0));
      assert.equal(toHex(await c.readToEnd()), '05 07 00 01 00 00 00 00 00 00');
      const c4 = await RawClient.connect(px.port);
      c4.write(req4(2, '127.0.0.1', 0));
      assert.equal(toHex(await c4.readToEnd()), '00 5b 00 00 00 00 00 00');
      const off = await startProxy({ plugins: { bind: false } });
      try {
        const d = await RawClient.connect(off.port);
        await socks5Hello(d);
        d.write(req5(2, '0.0.0.0', 0));
        assert.equal(toHex(await d.readToEnd()), '05 07 00 01 00 00 00 00 00 00');
      } finally {
        await off.close();
      }
    } finally {
      await px.close();
    }
  });
});

describe('bind on, direct upstream', () => {
  let px: TestProxy;
  before(async () => {
    px = await startProxy({ plugins: { bind: true } });
  });
  after(() => px.close());

  test('SOCKS5: first reply names the listener (the address the client reached), second the peer; data both ways; EOF passes', async () => {
    const { c, port } = await bind5(px, '127.0.0.1', 0);
    assert.notEqual(port, 0);
    assert.notEqual(port, px.port);
    const peer = await peerFrom(port);
    assert.equal(toHex(await c.read(10)), reply5(0, '127.0.0.1', peer.localPort!));
    c.write('from client');
    const got = await new Promise<Buffer>((r) => peer.once('data', r));
    assert.equal(got.toString(), 'from client');
    peer.write('from peer');
    assert.equal((await c.read(9)).toString(), 'from peer');
    peer.end();
    await c.waitEnd();
    c.end();
    await waitFor(() => px.logs.some((l) => l.msg === 'stream closed' && l.command === 'BIND'), 'access line');
    const line = px.logs.find((l) => l.msg === 'stream closed' && l.command === 'BIND')!;
    assert.equal(line.destination, '127.0.0.1:0', 'the access line names the request');
    assert.equal(line.reply, 'SUCCEEDED');
    // Exactly one connection: the listener closed when the peer arrived.
    await waitRefused(port);
  });

  test('SOCKS4: 00 5A PORT IP twice (the listener, then the peer), data both ways', async () => {
    const c = await RawClient.connect(px.port);
    c.write(req4(2, '127.0.0.1', 21));
    const first = await c.read(8);
    const port = first.readUInt16BE(2);
    assert.equal(toHex(first), reply4('127.0.0.1', port));
    assert.notEqual(port, 0);
    const peer = await peerFrom(port);
    assert.equal(toHex(await c.read(8)), reply4('127.0.0.1', peer.localPort!));
    peer.write('hello v4');
    assert.equal((await c.read(8)).toString(), 'hello v4');
    c.write('back');
    assert.equal((await new Promise<Buffer>((r) => peer.once('data', r))).toString(), 'back');
    c.end();
    peer.end();
    await c.waitEnd();
    peer.destroy();
  });

  test("npm socks client, SOCKS5 and SOCKS4: 'bound' then 'established' with the peer's address, then data", async () => {
    for (const type of [5, 4] as const) {
      const client = new SocksClient({ proxy: { host: '127.0.0.1', port: px.port, type }, command: 'bind', destination: { host: '0.0.0.0', port: 0 }, timeout: 5000 });
      type Event = { socket: net.Socket; remoteHost?: { host: string; port: number } };
      const bound = new Promise<Event>((resolve) => client.once('bound', resolve));
      const established = new Promise<Event>((resolve) => client.once('established', resolve));
      const failed = new Promise<never>((_, reject) => client.once('error', reject));
      client.connect();
      const where = (await Promise.race([bound, failed])).remoteHost!;
      assert.equal(where.host, '127.0.0.1', `SOCKS${type}`);
      const peer = await peerFrom(where.port);
      const info = await Promise.race([established, failed]);
      assert.deepEqual(info.remoteHost, { host: '127.0.0.1', port: peer.localPort }, `SOCKS${type}`);
      peer.write(`v${type}`);
      assert.equal((await new Promise<Buffer>((r) => info.socket.once('data', r))).toString(), `v${type}`);
      info.socket.destroy();
      peer.destroy();
    }
  });

  test('a connection from another address is closed and the listener keeps waiting for the expected peer', async () => {
    const { c, port } = await bind5(px, '127.0.0.2', 4000);
    const stranger = await peerFrom(port, '127.0.0.3');
    assert.equal((await readAll(stranger)).length, 0, 'the stranger is closed without a byte');
    assert.equal(c.pending.length, 0, 'no second reply for a stranger');
    const peer = await peerFrom(port, '127.0.0.2');
    assert.equal(toHex(await c.read(10)), reply5(0, '127.0.0.2', peer.localPort!));
    peer.write('x');
    assert.equal((await c.read(1)).toString(), 'x');
    assert.ok(px.logs.some((l) => l.msg === 'bind: connection from an unexpected address closed; still waiting' && l.peer === `127.0.0.3:${stranger.localPort}`));
    c.destroy();
    peer.destroy();
  });

  test('hostile requests: SOCKS4 BIND with 0.0.0.0 admits any peer; port 0 is fine; a name admits what it resolves to; .onion gets 04', async () => {
    // SOCKS4, DSTIP 0.0.0.0 (what clients send when they do not know the peer).
    const c4 = await RawClient.connect(px.port);
    c4.write(req4(2, '0.0.0.0', 0));
    const first = await c4.read(8);
    const peer4 = await peerFrom(first.readUInt16BE(2), '127.0.0.9');
    assert.equal(toHex(await c4.read(8)), reply4('127.0.0.9', peer4.localPort!));
    c4.destroy();
    peer4.destroy();
    // SOCKS5 with an IPv6 DST (::1) reached over IPv4: the peer must be ::1, an IPv4 peer is a stranger.
    const { c: c6, port: p6 } = await bind5(px, '::1', 0);
    const stranger = await peerFrom(p6, '127.0.0.1');
    assert.equal((await readAll(stranger)).length, 0);
    c6.destroy();
    // .onion: never resolved; host unreachable.
    const o = await RawClient.connect(px.port);
    await socks5Hello(o);
    o.write(req5(2, 'expyuzz4wqqyqhjn76bmxbj4ymgpw5ecsecjnexlycj2r2ehwqkmgasyd.onion', 0, true));
    assert.equal(toHex(await o.readToEnd()), '05 04 00 01 00 00 00 00 00 00');
  });

  test('the proxy reached over ::1: the listener is on ::1 and the first reply is ATYP 04', async () => {
    const px6 = await startProxy({ listen: [{ host: '::1', port: 0 }], plugins: { bind: true } });
    try {
      const c = await RawClient.connect(px6.port, '::1');
      await socks5Hello(c);
      c.write(req5(2, '::1', 0));
      const first = await c.read(22);
      assert.equal(toHex(first.subarray(0, 20)), '05 00 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01');
      const peer = await peerFrom(first.readUInt16BE(20), '::1', '::1');
      const second = await c.read(22);
      assert.equal(toHex(second), toHex(Buffer.concat([first.subarray(0, 20), u16(peer.localPort!)])));
      // SOCKS4 over IPv6: its reply cannot carry the address: 5B.
      const c4 = await RawClient.connect(px6.port, '::1');
      c4.write(req4(2, '0.0.0.0', 0));
      assert.equal(toHex(await c4.readToEnd()), '00 5b 00 00 00 00 00 00');
      c.destroy();
      peer.destroy();
    } finally {
      await px6.close();
    }
  });
});

describe('bind: names, policy, timeouts, clients that go away', () => {
  let dns: TestDnsServer;
  before(async () => {
    dns = await startDnsServer();
  });
  after(() => dns.close());

  test('a name in the request: the peer must come from an address it resolves to (looked up on the loopback DNS server)', async () => {
    dns.setA('peer.test', ['127.0.0.5']);
    const px = await startProxy({ resolver: { servers: [dns.address] }, plugins: { bind: true } });
    try {
      const { c, port } = await bind5(px, 'peer.test', 0, true);
      assert.equal(dns.queriesFor('peer.test', 'A').length, 1);
      const stranger = await peerFrom(port, '127.0.0.6');
      assert.equal((await readAll(stranger)).length, 0);
      const peer = await peerFrom(port, '127.0.0.5');
      assert.equal(toHex(await c.read(10)), reply5(0, '127.0.0.5', peer.localPort!));
      c.destroy();
      peer.destroy();
      // A name that does not resolve: 04, nothing listens.
      const n = await RawClient.connect(px.port);
      await socks5Hello(n);
      n.write(req5(2, 'nowhere.test', 0, true));
      assert.equal(toHex(await n.readToEnd()), '05 04 00 01 00 00 00 00 00 00');
    } finally {
      await px.close();
    }
  });

  test("checkPeer: 'none' takes the first connection from anywhere; the policy plugin refuses a peer it would refuse as a destination (02, peer closed)", async () => {
    const px = await startProxy({ plugins: { bind: { checkPeer: 'none' }, policy: { destinations: ['reject 127.0.0.7:*', 'accept *:*'] } } });
    try {
      const { c, port } = await bind5(px, '127.0.0.2', 0);
      const peer = await peerFrom(port, '127.0.0.4');
      assert.equal(toHex(await c.read(10)), reply5(0, '127.0.0.4', peer.localPort!));
      c.destroy();
      peer.destroy();

      const { c: d, port: p2 } = await bind5(px, '0.0.0.0', 0);
      const refused = await peerFrom(p2, '127.0.0.7');
      const [toPeer, toClient] = await Promise.all([readAll(refused), d.readToEnd()]);
      assert.equal(toPeer.length, 0, 'the refused peer gets nothing');
      assert.equal(toHex(toClient), '05 02 00 01 00 00 00 00 00 00');
      d.destroy();
      refused.destroy();
      await waitRefused(p2);
      await waitFor(() => px.logs.some((l) => l.msg === 'stream closed' && l.command === 'BIND' && l.reply === 'NOT_ALLOWED'), 'access line');
      const line = px.logs.find((l) => l.msg === 'stream closed' && l.reply === 'NOT_ALLOWED')!;
      assert.match(String(line.refused), /^bind: destinations: reject 127\.0\.0\.7:\*$/);
    } finally {
      await px.close();
    }
  });

  test('acceptTimeout: no peer in time → second reply 06 (SOCKS4: 5B), the connection closes and the port refuses', async () => {
    const px = await startProxy({ plugins: { bind: { acceptTimeout: 150 } } });
    try {
      const { c, port } = await bind5(px, '127.0.0.1', 0);
      assert.equal(toHex(await c.readToEnd()), '05 06 00 01 00 00 00 00 00 00');
      await waitRefused(port);
      const c4 = await RawClient.connect(px.port);
      c4.write(req4(2, '127.0.0.1', 0));
      const first = await c4.read(8);
      assert.equal(toHex(await c4.readToEnd()), '00 5b 00 00 00 00 00 00');
      await waitRefused(first.readUInt16BE(2));
    } finally {
      await px.close();
    }
  });

  test('the client resets its control connection while the listener waits: the port refuses and the descriptors return', async () => {
    const px = await startProxy({ plugins: { bind: true } });
    try {
      // Warm up (the first connection allocates lazily), then count.
      const w = await bind5(px, '127.0.0.2', 0);
      w.c.socket.resetAndDestroy();
      await waitRefused(w.port);
      const base = fdCount();
      for (let i = 0; i < 5; i++) {
        const { c, port } = await bind5(px, '127.0.0.2', 0);
        c.socket.resetAndDestroy();
        await waitRefused(port);
      }
      await fdsBackTo(base);
      // A stranger first, then the client goes: still closed.
      const { c, port } = await bind5(px, '127.0.0.2', 0);
      const stranger = await peerFrom(port, '127.0.0.3');
      await readAll(stranger);
      stranger.destroy();
      c.socket.resetAndDestroy();
      await waitRefused(port);
      await fdsBackTo(base);
    } finally {
      await px.close();
    }
  });

  test('a client that only half-closes (EOF) while the listener waits keeps its BIND until acceptTimeout (it may still want the peer); then 06 and the port refuses', async () => {
    const px = await startProxy({ plugins: { bind: { acceptTimeout: 300 } } });
    try {
      const { c, port } = await bind5(px, '127.0.0.2', 0);
      c.end();
      assert.equal(toHex(await c.readToEnd()), '05 06 00 01 00 00 00 00 00 00');
      await waitRefused(port);
      // Half-closed after sending data: the peer arriving in time still gets the data and the EOF.
      const px2 = await startProxy({ plugins: { bind: true } });
      try {
        const b = await bind5(px2, '127.0.0.2', 0);
        b.c.write('upload');
        b.c.end();
        const peer = await peerFrom(b.port, '127.0.0.2');
        assert.equal(toHex(await b.c.read(10)), reply5(0, '127.0.0.2', peer.localPort!));
        assert.equal((await readAll(peer)).toString(), 'upload');
        peer.end();
        await b.c.waitEnd();
      } finally {
        await px2.close();
      }
    } finally {
      await px.close();
    }
  });

  test('the client closes while its name is being looked up (before the first reply): nothing is left listening', async () => {
    const silent = await startSilentDnsServer();
    const px = await startProxy({ resolver: { servers: [`127.0.0.1:${silent.port}`] }, plugins: { bind: true } });
    try {
      const c = await RawClient.connect(px.port);
      await socks5Hello(c);
      c.write(req5(2, 'slow.test', 0, true));
      await waitFor(() => silent.asked.includes('slow.test'), 'the lookup');
      c.socket.resetAndDestroy();
      await waitFor(() => px.logs.some((l) => l.msg === 'stream closed' && l.command === 'BIND'), 'access line');
      assert.ok(!px.logs.some((l) => l.msg === 'bind: listening'), 'never listened');
    } finally {
      await px.close();
      silent.close();
    }
  });
});

describe('bind: options', () => {
  test("address: listen on the configured address (127.0.0.8), reply with it; a bad address is a config error", async () => {
    const px = await startProxy({ plugins: { bind: { address: '127.0.0.8' } } });
    try {
      const c = await RawClient.connect(px.port);
      await socks5Hello(c);
      c.write(req5(2, '0.0.0.0', 0));
      const first = await c.read(10);
      const port = first.readUInt16BE(8);
      assert.equal(toHex(first), reply5(0, '127.0.0.8', port));
      assert.equal(await dial(port, '127.0.0.1', '127.0.0.1'), 'ECONNREFUSED', 'not on 127.0.0.1');
      const peer = await peerFrom(port, '127.0.0.1', '127.0.0.8');
      assert.equal(toHex(await c.read(10)), reply5(0, '127.0.0.1', peer.localPort!));
      c.destroy();
      peer.destroy();
    } finally {
      await px.close();
    }
    await assert.rejects(startProxy({ plugins: { bind: { address: 'localhost' } } }), /plugins\.bind\.address: "localhost" is not an IP address/);
    await assert.rejects(startProxy({ plugins: { bind: { acceptTimeout: 0 } } }), /acceptTimeout/);
    // A misspelled name is still caught; an entry with a key like `module` is a custom plugin with a typo, not a misspelled built-in.
    await assert.rejects(startProxy({ plugins: { bnid: {} } as never }), /plugins\.bnid: unknown plugin \(did you mean "bind"\?\)/);
    await assert.rejects(startProxy({ plugins: { mine: { modul: './x.mjs' } } as never }), /plugins\.mine\.modul: unknown key \(did you mean "module"\?/);
  });

  test('a wildcard address (0.0.0.0) listens everywhere and replies with the address the client reached', async () => {
    const px = await startProxy({ plugins: { bind: { address: '0.0.0.0' } } });
    try {
      const { c, port } = await bind5(px, '0.0.0.0', 0);
      const peer = await peerFrom(port, '127.0.0.1', '127.0.0.10');
      assert.equal(toHex(await c.read(10)), reply5(0, '127.0.0.1', peer.localPort!));
      c.destroy();
      peer.destroy();
    } finally {
      await px.close();
    }
  });

  test('a client on a unix-socket listener: 01 without an address option (no IP address to listen on); with address 127.0.0.1 it works', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-bind-unix-'));
    const sock = path.join(dir, 's');
    const unixClient = async (): Promise<RawClient> => {
      const s = net.connect({ path: sock, allowHalfOpen: true });
      await once(s, 'connect');
      return new (RawClient as unknown as new (s: net.Socket) => RawClient)(s);
    };
    try {
      const px = await startProxy({ listen: [{ path: sock }], plugins: { bind: true } });
      try {
        const c = await unixClient();
        await socks5Hello(c);
        c.write(req5(2, '0.0.0.0', 0));
        assert.equal(toHex(await c.readToEnd()), '05 01 00 01 00 00 00 00 00 00');
        c.destroy();
      } finally {
        await px.close();
      }
      const px2 = await startProxy({ listen: [{ path: sock }], plugins: { bind: { address: '127.0.0.1' } } });
      try {
        const c = await unixClient();
        await socks5Hello(c);
        c.write(req5(2, '0.0.0.0', 0));
        const first = await c.read(10);
        assert.equal(toHex(first), reply5(0, '127.0.0.1', first.readUInt16BE(8)));
        const peer = await peerFrom(first.readUInt16BE(8));
        assert.equal(toHex(await c.read(10)), reply5(0, '127.0.0.1', peer.localPort!));
        c.destroy();
        peer.destroy();
      } finally {
        await px2.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('limits: the BIND control connection counts as the client\'s connection (maxConnectionsPerClient 1 refuses a second one); the peer does not count', async () => {
    const px = await startProxy({ limits: { maxConnectionsPerClient: 1 }, plugins: { bind: true } });
    try {
      const { c, port } = await bind5(px, '127.0.0.1', 0);
      const second = await RawClient.connect(px.port);
      second.write(req5(1, '127.0.0.1', 9));
      assert.equal((await second.readToEnd()).length, 0, 'a second connection from 127.0.0.1 is closed without a byte');
      second.destroy();
      const peer = await peerFrom(port);
      assert.equal(toHex(await c.read(10)), reply5(0, '127.0.0.1', peer.localPort!));
      peer.write('still works');
      assert.equal((await c.read(11)).toString(), 'still works');
      c.destroy();
      peer.destroy();
    } finally {
      await px.close();
    }
  });
});
