/**
 * The plugin API for commands (`api.commands`, StreamControl) and front ends (`api.frontEnds`,
 * ClientSession), over real loopback sockets. A test plugin owning SOCKS5 command 0x02 and
 * replying twice is the shape issue 13's BIND builds on. Reply vectors: RFC 1928 §6
 * `05 REP 00 01 ADDR PORT`; SOCKS4 `00 5B 0000 00000000`.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { FrontEnd, ClientSession, Reply, StreamControl, StreamRequest } from '../../src/index.js';
import { Command, Rep } from '../../src/protocol/constants.js';
import { encodeSocks5Reply } from '../../src/protocol/codec.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import type { TestProxy } from '../helpers/proxy.js';
import { logsAt, port16, startWithPlugins, waitFor, type Kernel } from './hook-kit.js';

let echo: TestServer & { connections: number };
const proxies: TestProxy[] = [];
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await echo.close();
});

async function start(...plugins: Array<{ apply(k: Kernel): void }>): Promise<TestProxy> {
  const px = await startWithPlugins(plugins);
  proxies.push(px);
  return px;
}

/** `05 CMD 00 01 127.0.0.1 PORT`. */
function request5(cmd: number, port: number): Buffer {
  return Buffer.concat([Buffer.from([0x05, cmd, 0x00, 0x01, 127, 0, 0, 1]), port16(port)]);
}

async function socks5(px: TestProxy, request: Buffer): Promise<RawClient> {
  const c = await RawClient.connect(px.port);
  c.write(hex('05 01 00'));
  assert.deepEqual(await c.read(2), hex('05 00'));
  c.write(request);
  return c;
}

/** Connect a real socket to the echo server (the stream a BIND-like command relays with). */
async function echoSocket(): Promise<net.Socket> {
  const s = net.connect(echo.port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

const FIRST: Reply = { rep: Rep.SUCCEEDED, bound: { kind: 'ipv4', host: '127.0.0.1', port: 1111 } };
const SECOND: Reply = { rep: Rep.SUCCEEDED, bound: { kind: 'ipv4', host: '127.0.0.2', port: 2222 } };

/** Owns SOCKS5 command 0x02: two replies (as BIND sends), then a relay to the echo server. */
class TwoReplies {
  static readonly meta = { name: 'two-replies' };
  seen: StreamControl | undefined;
  local: { address: string; port: number } | undefined;
  apply(k: Kernel): void {
    k.commands.register(0x02, 'two-replies', async (s) => {
      this.seen = s;
      this.local = s.local;
      assert.equal(await s.reply(FIRST), true);
      const up = await echoSocket();
      assert.equal(await s.reply(SECOND), true);
      s.relay({ stream: up, bound: undefined });
    });
  }
}

describe('api.commands: a plugin owns a command', () => {
  test('SOCKS5 command 0x02 gets two replies, then a working relay; onReply sees both; the access line comes at the end', async () => {
    const plugin = new TwoReplies();
    const replies: number[] = [];
    const px = await start(plugin, {
      apply(k: Kernel) {
        k.hooks.onReply.tap('count', (r: Reply) => {
          replies.push(r.rep);
          return r;
        });
      },
    });
    const c = await socks5(px, request5(0x02, 9));
    assert.deepEqual(await c.read(10), encodeSocks5Reply(Rep.SUCCEEDED, FIRST.bound!));
    assert.deepEqual(await c.read(10), encodeSocks5Reply(Rep.SUCCEEDED, SECOND.bound!));
    c.write('ping');
    assert.equal((await c.read(4)).toString(), 'ping');
    assert.deepEqual(replies, [0, 0]);
    assert.equal(plugin.seen!.request.command, 0x02);
    assert.equal(plugin.local!.address, '127.0.0.1');
    assert.equal(plugin.local!.port, px.port);
    c.end();
    await c.waitEnd();
    await waitFor(() => logsAt(px.logs, 'info').some((l) => l.msg === 'stream closed'), 3000, 'access line');
  });

  test('without a registered owner 0x02 still gets 07, byte for byte; SOCKS4 is not offered a SOCKS5-only command', async () => {
    const px = await start(new TwoReplies());
    // SOCKS4 request with command 02 (default versions: [5]): the kernel's default, 5B.
    const c4 = await RawClient.connect(px.port);
    c4.write(Buffer.concat([hex('04 02'), port16(9), hex('7f 00 00 01 00')]));
    assert.deepEqual(await c4.read(8), hex('00 5b 00 00 00 00 00 00'));
    const plain = await start();
    const c = await socks5(plain, request5(0x02, 9));
    assert.deepEqual(await c.read(10), hex('05 07 00 01 00 00 00 00 00 00'));
    await c.waitEnd();
  });

  test('a second owner of a command is a startup error naming both plugins; CONNECT cannot be registered', async () => {
    const px = await start(new TwoReplies());
    const k = px.proxy.kernel;
    // After listen() the registry is sealed.
    assert.throws(() => k.commands.register(0x03, 'late', () => {}), { code: 'SOCKSMITH_ERR_PLUGIN_LATE' });
    const { CommandRegistry } = await import('../../src/kernel/commands.js');
    const r = new CommandRegistry();
    r.register(0x02, 'first', () => {});
    assert.throws(() => r.register(0x02, 'second', () => {}), /plugin "second": command 0x02 is already registered by plugin "first"/);
    assert.throws(() => r.register(Command.CONNECT, 'x', () => {}), /CONNECT \(0x01\) is the kernel's/);
  });

  test('a handler that throws before replying gets its rep (else 01) and a warn naming the plugin; fail() ends with a reply', async () => {
    const px = await start({
      apply(k: Kernel) {
        k.commands.register(0x02, 'thrower', () => {
          throw new Error('boom');
        });
        k.commands.register(0x03, 'failer', (s) => s.fail({ rep: Rep.NOT_ALLOWED }));
      },
    });
    const c = await socks5(px, request5(0x02, 9));
    assert.deepEqual(await c.read(10), hex('05 01 00 01 00 00 00 00 00 00'));
    await c.waitEnd();
    const warn = logsAt(px.logs, 'warn').find((l) => l.plugin === 'thrower');
    assert.equal(warn?.hook, 'command');
    const d = await socks5(px, request5(0x03, 9));
    assert.deepEqual(await d.read(10), hex('05 02 00 01 00 00 00 00 00 00'));
    await d.waitEnd();
  });

  test('hold(): the connection stays without a relay, client bytes are discarded; the client closing aborts conn.signal', async () => {
    let aborted = false;
    const px = await start({
      apply(k: Kernel) {
        k.commands.register(0x03, 'holder', async (s) => {
          s.conn.signal.addEventListener('abort', () => (aborted = true));
          await s.reply({ rep: Rep.SUCCEEDED });
          s.hold();
        });
      },
    });
    const c = await socks5(px, request5(0x03, 9));
    assert.deepEqual(await c.read(10), hex('05 00 00 01 00 00 00 00 00 00'));
    c.write('ignored');
    c.end();
    await c.waitEnd();
    await waitFor(() => aborted, 3000, 'conn.signal aborted');
  });
});

describe('api.commands: hold() then relay()', () => {
  test('a command that holds, then relays: the relay works (bytes sent while held are discarded); the process stays up', async () => {
    let relayed: Promise<void> | undefined;
    const px = await start({
      apply(k: Kernel) {
        k.commands.register(0x02, 'hold-then-relay', async (s) => {
          await s.reply(FIRST);
          s.hold();
          relayed = (async () => {
            await new Promise((r) => setTimeout(r, 200));
            const up = await echoSocket();
            await s.reply(SECOND);
            s.relay({ stream: up, bound: undefined });
          })();
          await relayed;
        });
      },
    });
    const c = await socks5(px, request5(0x02, 9));
    assert.deepEqual(await c.read(10), encodeSocks5Reply(Rep.SUCCEEDED, FIRST.bound!));
    c.write('dropped while held');
    assert.deepEqual(await c.read(10), encodeSocks5Reply(Rep.SUCCEEDED, SECOND.bound!));
    c.write('ping');
    assert.equal((await c.read(4)).toString(), 'ping');
    c.end();
    await c.waitEnd();
    await waitFor(() => logsAt(px.logs, 'info').some((l) => l.msg === 'stream closed'), 3000, 'access line');
  });
});

/** A front end for a made-up protocol: `!` then a port byte pair; needs three bytes to decide. */
class BangFrontEnd implements FrontEnd {
  readonly name = 'bang';
  asked = 0;
  match(buf: Buffer, off: number): boolean | undefined {
    this.asked++;
    if (buf[off] !== 0x21) return false;
    return buf.length - off < 3 ? undefined : true;
  }
  async serve(client: ClientSession): Promise<void> {
    const b = client.buffered;
    const request: StreamRequest = { version: 5, command: Command.CONNECT, destination: { kind: 'ipv4', host: '127.0.0.1', port: b.readUInt16BE(1) } };
    await client.openStream(request, (r) => Buffer.from([r.rep === Rep.SUCCEEDED ? 0x2b : 0x2d]), b.subarray(3));
  }
}

describe('api.frontEnds: a plugin adds a front end', () => {
  test('a front end that needs more bytes waits for them, then runs its stream through the pipeline (bytes after the request relayed)', async () => {
    const fe = new BangFrontEnd();
    const px = await start({
      apply(k: Kernel) {
        k.frontEnds.add(fe);
      },
    });
    const c = await RawClient.connect(px.port);
    c.write('!');
    await waitFor(() => fe.asked >= 1, 3000, 'asked once');
    c.write(Buffer.concat([port16(echo.port), Buffer.from('early')]));
    assert.equal((await c.read(1))[0], 0x2b);
    assert.equal((await c.read(5)).toString(), 'early');
    c.end();
    await c.waitEnd();
  });

  test('SOCKS stays the catch-all: 04 and unknown bytes pass the front end by; 05 never reaches it', async () => {
    const fe = new BangFrontEnd();
    const px = await start({
      apply(k: Kernel) {
        k.frontEnds.add(fe);
      },
    });
    const c4 = await RawClient.connect(px.port);
    c4.write(Buffer.concat([hex('04 01'), port16(echo.port), hex('7f 00 00 01 00')]));
    assert.deepEqual(await c4.read(8), hex('00 5a 00 00 00 00 00 00'));
    c4.end();
    const u = await RawClient.connect(px.port);
    u.write(hex('17 03 01'));
    assert.deepEqual(await u.readToEnd(3000), Buffer.alloc(0));
    const asked = fe.asked;
    const c5 = await socks5(px, request5(0x01, echo.port));
    assert.equal((await c5.read(10))[1], 0x00);
    c5.end();
    assert.equal(fe.asked, asked, 'a 05 connection is not offered to plugin front ends');
  });
});
