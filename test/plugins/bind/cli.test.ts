/**
 * The `bind` plugin in the real CLI (`node dist/src/cli/main.js --config FILE`): a BIND with the npm
 * `socks` client, data both ways, and the process's descriptors (/proc/PID/fd) back at their
 * baseline after a finished BIND and after clients that reset during the wait for the peer.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SocksClient } from 'socks';
import { portOf, startCli } from '../../helpers/cli.js';
import { fdCount, fdList, settleFds } from '../../helpers/faults.js';
import { toHex } from '../../helpers/hex.js';
import { RawClient } from '../../helpers/net.js';
import { ALL_OFF } from '../../helpers/proxy.js';
import { req5, socks5Hello } from '../helpers/socks.js';

type Event = { socket: net.Socket; remoteHost?: { host: string; port: number } };

test('CLI with bind on: npm socks BIND works end to end; descriptors return after it and after clients reset mid-wait', { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-bind-cli-'));
  const cfg = path.join(dir, 'c.json');
  fs.writeFileSync(cfg, JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: { ...ALL_OFF, bind: true }, log: { level: 'warn' } }));
  const cli = await startCli(['--config', cfg]);
  const pid = cli.child.pid!;
  const port = portOf(cli.listening[0]!);
  try {
    const once5 = async () => {
      const client = new SocksClient({ proxy: { host: '127.0.0.1', port, type: 5 }, command: 'bind', destination: { host: '0.0.0.0', port: 0 }, timeout: 5000 });
      const bound = new Promise<Event>((resolve) => client.once('bound', resolve));
      const established = new Promise<Event>((resolve) => client.once('established', resolve));
      const failed = new Promise<never>((_, reject) => client.once('error', reject));
      client.connect();
      const where = (await Promise.race([bound, failed])).remoteHost!;
      assert.equal(where.host, '127.0.0.1');
      const peer = net.connect({ host: '127.0.0.1', port: where.port });
      peer.on('error', () => {});
      const info = await Promise.race([established, failed]);
      assert.equal(info.remoteHost!.port, peer.localPort);
      peer.write('ping');
      assert.equal((await new Promise<Buffer>((r) => info.socket.once('data', r))).toString(), 'ping');
      info.socket.write('pong');
      assert.equal((await new Promise<Buffer>((r) => peer.once('data', r))).toString(), 'pong');
      info.socket.destroy();
      peer.destroy();
    };
    await once5(); // warm-up: lazily created state is not a leak
    const base = fdCount(pid);
    await once5();
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.connect(port);
      await socks5Hello(c);
      c.write(req5(2, '127.0.0.2', 0));
      const first = await c.read(10);
      assert.equal(toHex(first.subarray(0, 4)), '05 00 00 01');
      c.socket.resetAndDestroy();
    }
    const n = await settleFds(pid, base);
    assert.ok(n <= base, `descriptors ${n} > baseline ${base}: ${fdList(pid).join(', ')}`);
  } finally {
    await cli.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
