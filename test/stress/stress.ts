/**
 * Hostile-load stress run (`npm run stress`, also run by CI): garbage floods, disconnects at every
 * handshake stage, slowloris (connections sending one byte at a time, or stalling mid-greeting),
 * half-open clients, and plugins that throw — while honest clients keep connecting. Passes when
 * the process stays up, every honest request is served, every hostile connection is eventually
 * closed, and heap use returns near its baseline. Every loop is bounded in count and time; all
 * traffic is on loopback.
 *
 * Run with `node --expose-gc` (the npm script does) so heap figures are after a full GC.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { Writable } from 'node:stream';
import type { pino } from 'pino';
import { createLogger } from '../../src/logger.js';
import { SocksmithProxy } from '../../src/proxy.js';
import { Stage } from '../../src/kernel/stages.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '20' }, slowloris: { type: 'string', default: '2000' } } });
const SECONDS = Math.min(300, Math.max(5, Number(values.seconds)));
const SLOWLORIS = Math.min(8000, Math.max(10, Number(values.slowloris)));
const gc = (globalThis as { gc?: () => void }).gc;

let warnLines = 0;
const sink = new Writable({
  write(chunk: Buffer, _e, cb) {
    warnLines += chunk.toString().split('\n').filter((l) => l.includes('"level":"warn"')).length;
    cb();
  },
});
const logger = createLogger('warn', sink as unknown as pino.DestinationStream);

function heapMiB(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const echoPort = (echo.address() as net.AddressInfo).port;

  const proxy = await SocksmithProxy.create(
    {
      listen: [{ host: '127.0.0.1', port: 0 }],
      timeouts: { handshake: 2000 },
      limits: { maxConnectionsPerClient: 0, maxConnections: 20000 },
      plugins: { 'extended-errors': true },
      log: { level: 'warn' },
    },
    { logger },
  );
  // Loopback only: random garbage can form a valid request to a random address or name. This
  // guard answers every non-loopback destination with REP 02 before anything is resolved or
  // connected, so the stress run never sends a packet off this machine.
  proxy.kernel.hooks.onRequest.tapPromise({ name: 'loopback-only', stage: Stage.ACCESS - 1 }, async (_conn, req) =>
    req.destination.host === '127.0.0.1' ? undefined : { rep: 0x02 },
  );
  // A plugin that throws for one destination port: costs that connection, never the process.
  proxy.kernel.hooks.onRequest.tapPromise({ name: 'chaos', stage: Stage.POLICY }, async (_conn, req) => {
    if (req.destination.port === 9 && req.destination.host === '127.0.0.1') throw new Error('chaos plugin failure');
    return undefined;
  });
  const [l] = await proxy.listen();
  const port = l!.port;
  const portBytes = Buffer.from([echoPort >> 8, echoPort & 0xff]);
  const handshake = Buffer.concat([Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), portBytes]);

  await sleep(200);
  const baseline = heapMiB();
  const deadline = Date.now() + SECONDS * 1000;
  const stats = { honestOk: 0, honestFail: 0, garbage: 0, cut: 0, slowloris: 0, halfOpen: 0, chaos: 0 };
  const sockets = new Set<net.Socket>();
  const open = (): net.Socket => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    s.on('error', () => {});
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    return s;
  };

  // Honest clients: CONNECT + echo, one every 20 ms, each must succeed.
  const honest = (async () => {
    while (Date.now() < deadline) {
      const s = open();
      const payload = Buffer.from(`honest-${stats.honestOk + stats.honestFail}`);
      try {
        await once(s, 'connect');
        s.write(Buffer.concat([handshake, payload]));
        let got = Buffer.alloc(0);
        const need = 2 + 10 + payload.length;
        const t = setTimeout(() => s.destroy(), 5000);
        for await (const c of s) {
          got = Buffer.concat([got, c as Buffer]);
          if (got.length >= need) break;
        }
        clearTimeout(t);
        if (got.length >= need && got[1] === 0 && got[3] === 0 && got.subarray(12, need).equals(payload)) stats.honestOk++;
        else stats.honestFail++;
      } catch {
        stats.honestFail++;
      }
      s.destroy();
      await sleep(20);
    }
  })();

  // Garbage floods: random bytes, 64 KiB per connection, 4 at a time.
  const garbage = (async () => {
    while (Date.now() < deadline) {
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          const s = open();
          s.on('end', () => s.end());
          s.resume(); // read (and drop) whatever the proxy answers, so its close is seen
          await once(s, 'connect').catch(() => {});
          const junk = Buffer.alloc(65536);
          for (let i = 0; i < junk.length; i++) junk[i] = (Math.random() * 256) | 0;
          junk[0] = [0x04, 0x05, 0x01, 0x13][stats.garbage % 4]!;
          s.write(junk);
          await Promise.race([once(s, 'close'), sleep(3000)]);
          s.destroy();
          stats.garbage++;
        }),
      );
    }
  })();

  // Disconnects at every handshake stage (every prefix of a pipelined handshake + data).
  const cuts = (async () => {
    const full = Buffer.concat([Buffer.from([5, 2, 0, 2]), Buffer.from([1, 1, 0x61, 1, 0x62]), handshake.subarray(3), Buffer.from('data')]);
    let i = 0;
    while (Date.now() < deadline) {
      const s = open();
      await once(s, 'connect').catch(() => {});
      s.write(full.subarray(0, i % (full.length + 1)));
      await sleep(2);
      if (i % 2) s.resetAndDestroy();
      else s.destroy();
      stats.cut++;
      i++;
      await sleep(3);
    }
  })();

  // A plugin that throws: every request to port 9 costs only its own connection.
  const chaos = (async () => {
    while (Date.now() < deadline) {
      const s = open();
      await once(s, 'connect').catch(() => {});
      s.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 9]));
      const got: Buffer[] = [];
      for await (const c of s) got.push(c as Buffer);
      const all = Buffer.concat(got);
      assert.equal(all.toString('hex'), '0500' + '05010001000000000000', 'a throwing plugin gives 05 01 and a close');
      stats.chaos++;
      await sleep(50);
    }
  })();

  // Slowloris: many connections that dribble one byte per second of a greeting that never
  // completes, and some that stall after a partial greeting; plus half-open clients.
  const slowloris = (async () => {
    const batch: net.Socket[] = [];
    for (let i = 0; i < SLOWLORIS && Date.now() < deadline; i++) {
      const s = open();
      batch.push(s);
      s.on('connect', () => s.write(Buffer.from([5, 255])));
      if (i % 50 === 0) await sleep(5);
    }
    stats.slowloris = batch.length;
    for (let k = 0; k < 3 && Date.now() < deadline; k++) {
      await sleep(1000);
      for (const s of batch) if (!s.destroyed) s.write(Buffer.from([k]));
    }
    for (let i = 0; i < 200; i++) {
      const s = open();
      s.on('connect', () => s.end(Buffer.from([5, 1])));
      stats.halfOpen++;
    }
  })();

  await Promise.all([honest, garbage, cuts, chaos, slowloris]);
  // Let the handshake timeout (2 s) close every stalled connection.
  for (let i = 0; i < 100 && proxy.kernel.connectionCount > 0; i++) await sleep(100);
  const left = proxy.kernel.connectionCount;
  for (const s of sockets) s.destroy();
  await sleep(300);
  const after = heapMiB();
  console.log(
    `stress: ${SECONDS} s; honest ${stats.honestOk} ok / ${stats.honestFail} failed; garbage ${stats.garbage}; cut ${stats.cut}; slowloris ${stats.slowloris}; half-open ${stats.halfOpen}; throwing-plugin ${stats.chaos}`,
  );
  console.log(`stress: heap ${baseline.toFixed(1)} MiB before, ${after.toFixed(1)} MiB after${gc ? ' (after GC)' : ' (no --expose-gc: figures include garbage)'}; connections left open by the proxy: ${left}; warn lines: ${warnLines}`);
  assert.equal(stats.honestFail, 0, 'every honest client was served');
  assert.ok(stats.honestOk > SECONDS * 10, 'honest clients kept being served throughout');
  assert.equal(left, 0, 'every hostile connection was closed');
  if (gc) assert.ok(after < baseline + 16, `heap returned near its baseline (${baseline.toFixed(1)} → ${after.toFixed(1)} MiB)`);
  await proxy.close(0);
  echo.close();
  console.log('stress: ok');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    console.log('stress: FAILED');
    process.exit(1);
  },
);
