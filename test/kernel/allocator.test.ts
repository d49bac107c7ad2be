/**
 * The relay must not fault its buffers in afresh for every chunk: with glibc's initial malloc
 * thresholds each GC handed the read buffers back to the kernel and a download took ~200 minor
 * page faults per MB (docs/performance.md, "Bulk"). `primeAllocator()` raises the thresholds
 * once per process. This counts the proxy process's minor faults (/proc/PID/stat) over a
 * 96 MiB download through the real CLI: a count, not a timing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { startCli, portOf } from '../helpers/cli.js';

const MiB = 1024 * 1024;

/** Minor page faults of a process so far (field 10 of /proc/PID/stat). */
function minorFaults(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[7]); // fields after "(comm) ": state=0 … minflt=7
}

/** A server that sends `bytes` to each connection, then ends. */
async function startSender(bytes: number): Promise<net.Server> {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const server = net.createServer((s) => {
    let left = bytes;
    s.on('error', () => {});
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** SOCKS5 CONNECT to 127.0.0.1:port through the proxy, read everything; returns the byte count. */
async function download(proxyPort: number, port: number): Promise<number> {
  const s = net.connect({ host: '127.0.0.1', port: proxyPort });
  await once(s, 'connect');
  const req = Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, port >> 8, port & 0xff]);
  s.write(req);
  let header = 2 + 10;
  let total = 0;
  s.on('data', (c: Buffer) => {
    const skip = Math.min(header, c.length);
    header -= skip;
    total += c.length - skip;
  });
  const timer = setTimeout(() => s.destroy(new Error('download did not finish in 60 s')), 60_000);
  try {
    await once(s, 'end');
  } finally {
    clearTimeout(timer);
    s.destroy();
  }
  return total;
}

test('a download through the proxy does not fault its buffers in per chunk (glibc thresholds primed)', { skip: process.platform !== 'linux' ? 'Linux /proc and glibc only' : false }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-alloc-'));
  const conf = path.join(dir, 'socksmith.json');
  fs.writeFileSync(conf, JSON.stringify({ upstream: { type: 'direct' }, log: { level: 'warn' } }));
  const warm = await startSender(32 * MiB);
  const big = await startSender(96 * MiB);
  const cli = await startCli(['--config', conf, '--listen', '127.0.0.1:0']);
  try {
    const proxyPort = portOf(cli.listening[0]!);
    const pid = cli.child.pid!;
    // Warm-up: the heap grows once to its working size (every page is touched once, ~250 faults
    // per MiB whatever the thresholds); measured from then on.
    assert.equal(await download(proxyPort, (warm.address() as net.AddressInfo).port), 32 * MiB);
    const before = minorFaults(pid);
    assert.equal(await download(proxyPort, (big.address() as net.AddressInfo).port), 96 * MiB);
    const perMiB = (minorFaults(pid) - before) / 96;
    // Unprimed: ~200 per MB (one per 4 KiB page relayed); primed: 0–2.
    assert.ok(perMiB < 20, `${perMiB.toFixed(1)} minor page faults per MiB relayed (expected < 20)`);
  } finally {
    await cli.stop();
    warm.close();
    big.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the relay asks for a scavenge every RELAY_SCAVENGE_BYTES relayed, and not before', async () => {
  const { primeAllocator, noteRelayed, RELAY_SCAVENGE_BYTES } = await import('../../src/kernel/allocator.js');
  const { PerformanceObserver, constants } = await import('node:perf_hooks');
  primeAllocator();
  const minor: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor.push(e.startTime);
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    // Settle: let any pending observer entries arrive, then count from zero.
    await new Promise((r) => setTimeout(r, 50));
    minor.length = 0;
    noteRelayed(RELAY_SCAVENGE_BYTES - 1);
    await new Promise((r) => setTimeout(r, 50));
    const before = minor.length;
    noteRelayed(1); // reaches the threshold: one scavenge now
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(minor.length - before, 1, `scavenges at the threshold: ${minor.length - before}`);
    assert.equal(before, 0, 'no scavenge requested below the threshold');
  } finally {
    obs.disconnect();
  }
});
