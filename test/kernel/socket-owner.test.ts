/**
 * One owner per socket (src/kernel/socket-owner.ts): the permanent 'error' listener routes to the
 * current owner, holds an error while a socket is between owners and hands it to the next, and a
 * destination that fails while the kernel holds the upstream (onReply still running) is answered
 * with the failure's reply instead of crashing the process (issue #10, crash 1 at the kernel).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { DISCARD, adopt, isOwned, release } from '../../src/kernel/socket-owner.js';
import type { Reply } from '../../src/kernel/hooks.js';
import { hex } from '../helpers/hex.js';
import { startTcpServer, type TestServer } from '../helpers/net.js';
import type { TestProxy } from '../helpers/proxy.js';
import { runFaultyClient } from '../helpers/faults.js';
import { connect5, startWithPlugins, type Kernel } from './hook-kit.js';

const proxies: TestProxy[] = [];
const servers: TestServer[] = [];
after(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await Promise.all(servers.map((s) => s.close()));
});

/** A client socket connected to a server that resets it at its first byte. */
async function socketThatWillBeReset(): Promise<net.Socket> {
  const server = await startTcpServer((s) => s.once('data', () => s.resetAndDestroy()));
  servers.push(server);
  const s = net.connect({ port: server.port, host: '127.0.0.1' });
  release(s); // its listener from creation, as every socket socksmith creates
  await new Promise((r) => s.once('connect', r));
  return s;
}

test('a released socket holds its error (no crash) and hands it to the next owner, on a later tick', async () => {
  const s = await socketThatWillBeReset();
  assert.equal(isOwned(s), true);
  s.write('x'); // the reset arrives: ECONNRESET or EPIPE, while no one owns the socket
  s.resume();
  await new Promise((r) => s.once('close', r));
  const seen: string[] = [];
  adopt(s, { socketError: (_sock, err) => seen.push((err as NodeJS.ErrnoException).code ?? err.message) });
  assert.deepEqual(seen, [], 'not delivered inside adopt()');
  await new Promise((r) => process.nextTick(r));
  assert.equal(seen.length, 1);
  assert.match(seen[0]!, /^(ECONNRESET|EPIPE)$/);
});

test('an error goes to the owner of the moment; DISCARD swallows it', async () => {
  const s = await socketThatWillBeReset();
  const first: string[] = [];
  adopt(s, { socketError: () => first.push('first') });
  adopt(s, DISCARD);
  s.write('x');
  s.resume();
  await new Promise((r) => s.once('close', r));
  assert.deepEqual(first, []);
  assert.equal(s.listenerCount('error'), 1, 'one permanent listener, whatever the number of owners');
});

test('the destination closes with unread input while onReply runs and the client streams early data: the client gets REP 05, the process lives on', async () => {
  // Accept, then close at once without reading: the early bytes that arrive after are answered
  // with RST, and the proxy's writes fail (EPIPE / ECONNRESET) while onReply still runs.
  const dest = await startTcpServer((s) => {
    s.pause();
    s.destroy();
  });
  servers.push(dest);
  const slowReply = {
    apply(k: Kernel) {
      k.hooks.onReply.tapPromise('slow-reply', async (r: Reply) => {
        await new Promise((res) => setTimeout(res, 150));
        return r;
      });
    },
  };
  const px = await startWithPlugins([slowReply], { plugins: { 'optimistic-data': true } });
  proxies.push(px);
  for (let i = 0; i < 5; i++) {
    const out = await runFaultyClient(px.port, Buffer.concat([hex('05 01 00'), connect5(dest.port)]), { kind: 'stream', max: 1024 * 1024 }, { prefix: 2 });
    assert.ok(out.replied, `a reply: ${out.received.toString('hex')}`);
    assert.deepEqual(out.received.subarray(0, 4), hex('05 00 05 05'), `REP 05 (the destination went away), not 00: ${out.received.subarray(0, 12).toString('hex')}`);
  }
});
