/**
 * Benchmark: the round trip optimistic data saves.
 *
 * client → socksmith (optimistic-data on / off) → [link with D ms one-way delay] → upstream SOCKS5
 * server (a second socksmith, direct) → destination that answers the first bytes it receives.
 *
 * The client sends greeting + CONNECT + a request in one write (as hyper-util and Tor Browser
 * do) and we time its first response byte. Off: the request waits for the upstream's CONNECT
 * reply (greeting RTT + request RTT + data RTT). On: it follows the upstream request at once
 * (greeting RTT + request/data RTT): one upstream RTT (2·D) less. All loopback; bounded runs.
 *
 * Run: `npm run bench:optimistic` (optionally `-- --delay 25 --runs 20`).
 */
import 'reflect-metadata';
import net from 'node:net';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { Writable } from 'node:stream';
import type { pino } from 'pino';
import { createLogger } from '../src/logger.js';
import { SocksmithProxy } from '../src/proxy.js';
import { encodeSocks5Greeting, encodeSocks5Request } from '../src/protocol/codec.js';

const { values } = parseArgs({ options: { delay: { type: 'string', default: '25' }, runs: { type: 'string', default: '15' } } });
const DELAY = Math.min(500, Math.max(1, Number(values.delay)));
const RUNS = Math.min(200, Math.max(3, Number(values.runs)));

const quiet = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }) as unknown as pino.DestinationStream);
const OFF = { isolation: false, resolve: false, 'resolve-ptr': false, 'http-detect': false, 'optimistic-data': false, 'extended-errors': false };

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** A TCP forwarder that delays every chunk by `ms` in each direction, preserving order. */
function delayLink(targetPort: number, ms: number): net.Server {
  return net.createServer({ allowHalfOpen: true }, (a) => {
    const b = net.connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const forward = (src: net.Socket, dst: net.Socket) => {
      src.on('data', (c) => setTimeout(() => dst.write(c), ms));
      src.on('end', () => setTimeout(() => dst.end(), ms));
      src.on('error', () => dst.destroy());
    };
    forward(a, b);
    forward(b, a);
  });
}

async function timeToFirstByte(proxyPort: number, destPort: number): Promise<number> {
  const s = net.connect({ port: proxyPort, host: '127.0.0.1' });
  await once(s, 'connect');
  const t0 = performance.now();
  s.write(
    Buffer.concat([
      encodeSocks5Greeting([0]),
      encodeSocks5Request(1, { kind: 'ipv4', host: '127.0.0.1', port: destPort }),
      Buffer.from('GET / HTTP/1.0\r\n\r\n'),
    ]),
  );
  let got = Buffer.alloc(0);
  for await (const chunk of s) {
    got = Buffer.concat([got, chunk as Buffer]);
    if (got.length > 12) break; // 2 (method) + 10 (reply) + ≥1 response byte
  }
  const t = performance.now() - t0;
  s.destroy();
  return t;
}

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}

async function main(): Promise<void> {
  const dest = net.createServer((s) => s.once('data', () => s.end('HTTP/1.0 200 OK\r\n\r\nhi')));
  const destPort = await listen(dest);
  const upstream = await SocksmithProxy.create({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: OFF }, { logger: quiet });
  const [up] = await upstream.listen();
  const link = delayLink(up!.port, DELAY);
  const linkPort = await listen(link);
  const make = async (on: boolean) => {
    const p = await SocksmithProxy.create(
      { listen: [{ host: '127.0.0.1', port: 0 }], upstream: { type: 'socks5', host: '127.0.0.1', port: linkPort, pipelining: true }, plugins: { ...OFF, 'optimistic-data': on } },
      { logger: quiet },
    );
    const [l] = await p.listen();
    return { p, port: l!.port };
  };
  const on = await make(true);
  const off = await make(false);
  const tOn: number[] = [];
  const tOff: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    // Interleave so drift affects both equally.
    tOff.push(await timeToFirstByte(off.port, destPort));
    tOn.push(await timeToFirstByte(on.port, destPort));
  }
  const a = stats(tOff);
  const b = stats(tOn);
  const fmt = (x: number) => x.toFixed(1).padStart(7);
  console.log(`optimistic-data: time to first response byte through a socks5 upstream with ${DELAY} ms one-way delay (RTT ${2 * DELAY} ms), ${RUNS} runs each`);
  console.log('                 median     min     max   (ms)');
  console.log(`  off          ${fmt(a.median)} ${fmt(a.min)} ${fmt(a.max)}`);
  console.log(`  on           ${fmt(b.median)} ${fmt(b.min)} ${fmt(b.max)}`);
  console.log(`  saved        ${fmt(a.median - b.median)}  (= ${((a.median - b.median) / (2 * DELAY)).toFixed(2)} upstream RTTs; expected 1.00)`);
  await Promise.all([on.p.close(0), off.p.close(0), upstream.close(0)]);
  link.close();
  dest.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
