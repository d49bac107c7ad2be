/**
 * Fault matrix (issue #10), the other configurations: a `socks5` upstream without pipelining
 * (microsocks, a real server), a `socks5` upstream with `pipelining: true` (a second socksmith,
 * which keeps pipelined bytes), and `--workers 2` through the real CLI. Each gets a
 * representative set of cells; what a cell checks: test/e2e/helpers/fault-matrix.ts.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type TestContext, after, before, test } from 'node:test';
import { type FaultyDestinations, IN_NETNS, runFaultyClient, setUpBlackhole, startFaultyDestinations } from '../helpers/faults.js';
import { startEchoServer, type TestServer } from '../helpers/net.js';
import { requireTool } from '../helpers/tools.js';
import { startMicrosocks } from './helpers/daemons.js';
import { type MatrixConfig, type ProxyUnderTest, handshakeFor, representativeCells, runCell, startProxyUnderTest, usableDestinations } from './helpers/fault-matrix.js';

let dir: string;
let dests: FaultyDestinations;
let echo: TestServer;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-matrix-chained-'));
  if (IN_NETNS) setUpBlackhole();
  dests = await startFaultyDestinations();
  echo = await startEchoServer();
});
after(async () => {
  await dests.close();
  await echo.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function warmUp(cfg: MatrixConfig) {
  return async (port: number) => {
    const { bytes, prefix } = handshakeFor(cfg, '127.0.0.1', echo.port);
    const out = await runFaultyClient(port, bytes, { kind: 'half-close' }, { prefix });
    assert.ok(out.replied && out.received[prefix + 1] === 0x00, `warm-up tunnel answered 00: ${out.received.toString('hex')}`);
  };
}

async function runSet(t: TestContext, cfg: MatrixConfig, shift: number): Promise<void> {
  let p: ProxyUnderTest | undefined;
  try {
    p = await startProxyUnderTest(cfg, dir, warmUp(cfg));
    const len = handshakeFor(cfg, '127.0.0.1', 1).bytes.length;
    const usable = usableDestinations();
    for (const [d, f] of representativeCells(shift, len)) if (usable.includes(d)) await runCell(t, p, cfg, dests, d, f);
  } finally {
    await p?.stop();
  }
}

test('fault matrix: socks5 upstream without pipelining (microsocks), a representative set', async (t) => {
  const bin = requireTool(t, 'microsocks');
  if (!bin) return;
  const ms = await startMicrosocks(bin);
  try {
    await runSet(t, { name: 'socks5 upstream (microsocks)', config: { upstream: { type: 'socks5', host: '127.0.0.1', port: ms.port } } }, 0);
  } finally {
    await ms.stop();
  }
});

test('fault matrix: socks5 upstream with pipelining (a second socksmith), a representative set', async (t) => {
  // The upstream socksmith: default config, the same connect timeout.
  const upstream = await startProxyUnderTest({ name: 'upstream socksmith', config: {} }, dir, warmUp({ name: 'upstream', config: {} }));
  try {
    await runSet(
      t,
      {
        name: 'socks5 upstream (socksmith, pipelining)',
        config: { upstream: { type: 'socks5', host: '127.0.0.1', port: upstream.port, pipelining: true } },
        // The upstream's own replies come through unchanged; a blackhole meets the front's timeout.
        expect: { refused: 0x05, unroutable: 0x03, blackholed: 0x06 },
      },
      1,
    );
    assert.equal(upstream.cli.child.exitCode, null, 'the upstream socksmith survived too');
  } finally {
    await upstream.stop();
  }
});

test('fault matrix: --workers 2 through the real CLI, a representative set', async (t) => {
  await runSet(t, { name: 'workers 2', config: {}, args: ['--workers', '2'], expect: { refused: 0x05, unroutable: 0x03, blackholed: 0x06 } }, 2);
});
