/**
 * The `bind` plugin in front of a `socks5` upstream: BIND is forwarded through the upstream
 * dispatch to the upstream's `open()` (never a local listener), both of the upstream's replies
 * reach the client, then the upstream's control connection is relayed. Upstreams: dante-server
 * 1.4.2 (`command: connect bind bindreply`) and a second socksmith with `bind` on; plus
 * `upstream: 'refuse'` (07 / 5B byte for byte), an upstream that does not serve BIND (its 07 passes
 * through), and the second-reply timeout.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Daemon, startDante } from '../../e2e/helpers/daemons.js';
import { toHex } from '../../helpers/hex.js';
import { RawClient, startTcpServer } from '../../helpers/net.js';
import { startProxy, type TestProxy } from '../../helpers/proxy.js';
import { requireTool, which } from '../../helpers/tools.js';
import { startRecordingUpstream } from '../helpers/recording-upstream.js';
import { readReply5, req4, req5, socks5Hello, socks5Upstream, u16, waitFor } from '../helpers/socks.js';

/** A connected socket from `localAddress` to 127.0.0.1:`port`. */
async function peerFrom(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true });
  s.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

/** Wait (bounded) until nothing accepts on 127.0.0.1:`port`. */
async function waitRefused(port: number): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const code = await new Promise<string | undefined>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    });
    if (code === 'ECONNREFUSED') return;
    if (Date.now() > deadline) throw new Error(`port ${port} still accepts`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `05 REP 00 01 a.b.c.d PORT`. */
function reply5(rep: number, host: string, port: number): string {
  return toHex(Buffer.concat([Buffer.from([5, rep, 0, 1, ...host.split('.').map(Number)]), u16(port)]));
}

/** Next chunk from `s` as text. */
const nextData = (s: net.Socket) => new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));

/**
 * SOCKS5 and SOCKS4 BIND through `outer` (whose upstream listens at 127.0.0.1): first reply from
 * the upstream, a peer connects there, second reply names it, data both ways. Returns the first
 * reply's port.
 */
async function bindThrough(outer: TestProxy): Promise<void> {
  const c = await RawClient.connect(outer.port);
  await socks5Hello(c);
  c.write(req5(2, '127.0.0.1', 0));
  const first = await readReply5(c);
  assert.equal(toHex(first.subarray(0, 8)), '05 00 00 01 7f 00 00 01', `first reply ${toHex(first)}`);
  const port = first.readUInt16BE(8);
  const peer = await peerFrom(port);
  assert.equal(toHex(await readReply5(c)), reply5(0, '127.0.0.1', peer.localPort!));
  c.write('up through the chain');
  assert.equal(await nextData(peer), 'up through the chain');
  peer.write('down through the chain');
  assert.equal((await c.read(22)).toString(), 'down through the chain');
  peer.end();
  await c.waitEnd();
  c.destroy();
  peer.destroy();

  const c4 = await RawClient.connect(outer.port);
  c4.write(req4(2, '127.0.0.1', 0));
  const f4 = await c4.read(8);
  const p4 = f4.readUInt16BE(2);
  assert.equal(toHex(f4), toHex(Buffer.concat([Buffer.from([0, 0x5a]), u16(p4), Buffer.from([127, 0, 0, 1])])));
  const peer4 = await peerFrom(p4);
  assert.equal(toHex(await c4.read(8)), toHex(Buffer.concat([Buffer.from([0, 0x5a]), u16(peer4.localPort!), Buffer.from([127, 0, 0, 1])])));
  peer4.write('v4');
  assert.equal((await c4.read(2)).toString(), 'v4');
  c4.destroy();
  peer4.destroy();
}

/** A SOCKS5 BIND gets `05 07 00 01 0*6` and a SOCKS4 BIND `00 5b 0*6`, byte for byte, each then closed. */
async function assertBindUnsupported(port: number): Promise<void> {
  const c = await RawClient.connect(port);
  await socks5Hello(c);
  c.write(req5(2, '127.0.0.1', 0));
  assert.equal(toHex(await c.readToEnd()), '05 07 00 01 00 00 00 00 00 00');
  const c4 = await RawClient.connect(port);
  c4.write(req4(2, '127.0.0.1', 0));
  assert.equal(toHex(await c4.readToEnd()), '00 5b 00 00 00 00 00 00');
}

describe('bind forwarded to dante-server', () => {
  let dante: Daemon | undefined;
  before(async () => {
    const bin = which('danted');
    if (bin) dante = await startDante(bin, { commands: 'connect bind bindreply' });
  });
  after(() => dante?.stop());

  test('socksmith (bind on, socks5 upstream) → danted: both replies from danted, data both ways, SOCKS5 and SOCKS4 clients; nothing listens locally', async (t) => {
    if (!requireTool(t, 'danted', 'dante-server')) return;
    const outer = await startProxy({ upstream: socks5Upstream(dante!.port), plugins: { bind: true } });
    try {
      await bindThrough(outer);
      assert.ok(!outer.logs.some((l) => l.msg === 'bind: listening'), 'the outer socksmith never listens');
    } finally {
      await outer.close();
    }
  });
  test("the client resets during the wait for danted's second reply: the control connection to danted closes and danted's listener with it", async (t) => {
    if (!requireTool(t, 'danted', 'dante-server')) return;
    const outer = await startProxy({ upstream: socks5Upstream(dante!.port), plugins: { bind: true } });
    try {
      const c = await RawClient.connect(outer.port);
      await socks5Hello(c);
      c.write(req5(2, '127.0.0.1', 0));
      const first = await readReply5(c);
      const port = first.readUInt16BE(8);
      c.socket.resetAndDestroy();
      // danted closes its BIND listener when its client (socksmith) closes the control connection.
      await waitRefused(port);
      await waitFor(() => outer.logs.some((l) => l.msg === 'stream closed' && l.command === 'BIND'), 'access line');
    } finally {
      await outer.close();
    }
  });

});

describe('bind forwarded to a second socksmith', () => {
  let inner: TestProxy;
  before(async () => {
    inner = await startProxy({ plugins: { bind: true } });
  });
  after(() => inner.close());

  test('socksmith → socksmith (bind on both): the inner one listens, its replies reach the client, data both ways', async () => {
    const outer = await startProxy({ upstream: socks5Upstream(inner.port), plugins: { bind: true } });
    try {
      const before = inner.logs.filter((l) => l.msg === 'bind: listening').length;
      await bindThrough(outer);
      assert.equal(inner.logs.filter((l) => l.msg === 'bind: listening').length, before + 2, 'the inner socksmith listened twice');
      assert.ok(!outer.logs.some((l) => l.msg === 'bind: listening'), 'the outer one never');
    } finally {
      await outer.close();
    }
  });

  test("upstream: 'refuse' answers 07 / 5B byte for byte and sends nothing upstream", async () => {
    const up = await startProxy({ plugins: { bind: true } });
    const outer = await startProxy({ upstream: socks5Upstream(up.port), plugins: { bind: { upstream: 'refuse' } } });
    try {
      await assertBindUnsupported(outer.port);
      assert.deepEqual(up.logs.filter((l) => l.conn !== undefined), [], 'the upstream saw no connection');
      assert.ok(!outer.logs.some((l) => l.msg === 'bind: listening'));
    } finally {
      await outer.close();
      await up.close();
    }
  });

  test("an upstream that does not serve BIND: its 07 reaches the client (SOCKS4: 5B)", async () => {
    const plain = await startProxy({});
    const outer = await startProxy({ upstream: socks5Upstream(plain.port), plugins: { bind: true } });
    try {
      await assertBindUnsupported(outer.port);
    } finally {
      await outer.close();
      await plain.close();
    }
  });

  test("the inner one's checks pass through: a wrong peer is closed there, the policy's 02 comes back as the second reply", async () => {
    const strict = await startProxy({ plugins: { bind: { checkPeer: 'none' }, policy: { destinations: ['reject 127.0.0.7:*', 'accept *:*'] } } });
    const outer = await startProxy({ upstream: socks5Upstream(strict.port), plugins: { bind: true } });
    try {
      const c = await RawClient.connect(outer.port);
      await socks5Hello(c);
      c.write(req5(2, '0.0.0.0', 0));
      const first = await readReply5(c);
      const refused = await peerFrom(first.readUInt16BE(8), '127.0.0.7');
      assert.equal(toHex(await c.readToEnd()), '05 02 00 01 00 00 00 00 00 00');
      refused.destroy();
    } finally {
      await outer.close();
      await strict.close();
    }
  });

  test('acceptTimeout bounds the wait for the upstream\'s second reply: 06, and the upstream control connection is closed', async () => {
    const outer = await startProxy({ upstream: socks5Upstream(inner.port), plugins: { bind: { acceptTimeout: 200 } } });
    try {
      const closedBefore = inner.logs.filter((l) => l.msg === 'stream closed' && l.command === 'BIND').length;
      const c = await RawClient.connect(outer.port);
      await socks5Hello(c);
      c.write(req5(2, '127.0.0.1', 0));
      const first = await readReply5(c);
      assert.equal(first[1], 0);
      assert.equal(toHex(await c.readToEnd()), '05 06 00 01 00 00 00 00 00 00');
      c.destroy();
      // The outer side closed its control connection to the inner socksmith; the inner one's
      // listener stays until its own acceptTimeout (it sees only an EOF; see README "Limits"),
      // so a peer can still connect there, but nothing reaches the client.
      await waitFor(() => outer.logs.some((l) => l.msg === 'stream closed' && l.command === 'BIND' && l.reply === 'TTL_EXPIRED'), 'outer access line');
      assert.equal(inner.logs.filter((l) => l.msg === 'stream closed' && l.command === 'BIND').length, closedBefore);
    } finally {
      await outer.close();
    }
  });
});

describe('bind forwarded: the first wait', () => {
  test('an upstream that never answers: timeouts.connect bounds the first wait (06); a client that resets meanwhile closes the upstream connection', async () => {
    const sockets: net.Socket[] = [];
    const closed: boolean[] = [];
    const silent = await startTcpServer((sock) => {
      const i = sockets.push(sock) - 1;
      closed[i] = false;
      sock.resume(); // read (and drop) the greeting, so that the EOF is seen
      sock.on('end', () => (closed[i] = true));
      sock.on('close', () => (closed[i] = true));
    });
    const outer = await startProxy({ upstream: socks5Upstream(silent.port), timeouts: { connect: 300 }, plugins: { bind: true } });
    try {
      const c = await RawClient.connect(outer.port);
      await socks5Hello(c);
      c.write(req5(2, '127.0.0.1', 0));
      assert.equal(toHex(await c.readToEnd()), '05 06 00 01 00 00 00 00 00 00');
      c.destroy();
      await waitFor(() => closed[0] === true, 'the upstream connection closed after the timeout');

      const d = await RawClient.connect(outer.port);
      await socks5Hello(d);
      d.write(req5(2, '127.0.0.1', 0));
      await waitFor(() => sockets.length === 2, 'second upstream connection');
      d.socket.resetAndDestroy();
      await waitFor(() => closed[1] === true, 'the upstream connection closed with the client');
    } finally {
      await outer.close();
      await silent.close();
    }
  });
});

describe('bind forwarded: what goes upstream and what comes back, byte for byte', () => {
  test('the BIND request reaches the upstream as sent (a name stays ATYP 03, no local DNS), with the isolation plugin\'s credentials; both replies (ATYP 04, then ATYP 03) reach the client unchanged', async () => {
    const first = Buffer.concat([Buffer.from([5, 0, 0, 4]), Buffer.alloc(15), Buffer.from([1]), u16(4660)]);
    const name = Buffer.from('peer.example');
    const second = Buffer.concat([Buffer.from([5, 0, 0, 3, name.length]), name, u16(20)]);
    const up = await startRecordingUpstream({ answer: (req) => (req.command === 2 ? { rep: 0, raw: Buffer.concat([first, second]) } : undefined) });
    const outer = await startProxy({ upstream: socks5Upstream(up.port), plugins: { bind: true, isolation: true } });
    try {
      const c = await RawClient.connect(outer.port);
      await socks5Hello(c);
      c.write(req5(2, 'ftp.example', 21, true));
      assert.equal(toHex(await readReply5(c)), toHex(first));
      assert.equal(toHex(await readReply5(c)), toHex(second));
      await c.waitEnd(); // the upstream ended its control connection: the relay passes the EOF on
      c.destroy();
      await up.waitSessions(1);
      const s = up.sessions[0]!;
      assert.equal(toHex(s.request!.raw), toHex(req5(2, 'ftp.example', 21, true)));
      assert.ok(s.credentials !== undefined, 'the isolation plugin\'s per-stream credentials went upstream');
      assert.ok(!outer.logs.some((l) => l.msg === 'bind: listening'));
    } finally {
      await outer.close();
      await up.close();
    }
  });

  test('a failure REP from the upstream, first or second reply, reaches the client unchanged', async () => {
    const ok = Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0x12, 0x34]);
    let n = 0;
    const up = await startRecordingUpstream({
      answer: (req) => (req.command !== 2 ? undefined : ++n === 1 ? { rep: 5 } : { rep: 0, raw: Buffer.concat([ok, Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0])]) }),
    });
    const outer = await startProxy({ upstream: socks5Upstream(up.port), plugins: { bind: true } });
    try {
      const c = await RawClient.connect(outer.port);
      await socks5Hello(c);
      c.write(req5(2, '127.0.0.1', 0));
      assert.equal(toHex(await c.readToEnd()), '05 05 00 01 00 00 00 00 00 00');
      const d = await RawClient.connect(outer.port);
      await socks5Hello(d);
      d.write(req5(2, '127.0.0.1', 0));
      assert.equal(toHex(await d.readToEnd()), toHex(Buffer.concat([ok, Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0])])));
    } finally {
      await outer.close();
      await up.close();
    }
  });
});
