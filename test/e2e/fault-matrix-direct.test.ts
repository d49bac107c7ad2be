/**
 * Fault matrix (issue #10), direct upstream: the default configuration gets every destination
 * fault × every client fault, and a reset at every byte of the handshake; optimistic data off,
 * auth and policy get a representative set. What a cell checks: test/e2e/helpers/fault-matrix.ts.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type FaultyDestinations, IN_NETNS, requireNetns, runFaultyClient, setUpBlackhole, startFaultyDestinations } from '../helpers/faults.js';
import { startEchoServer, type TestServer } from '../helpers/net.js';
import { usersText } from '../plugins/auth/helpers.js';
import { type MatrixConfig, ROW, handshakeFor, representativeCells, runCell, startProxyUnderTest, usableDestinations } from './helpers/fault-matrix.js';

let dir: string;
let dests: FaultyDestinations;
let echo: TestServer;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-matrix-'));
  if (IN_NETNS) setUpBlackhole();
  dests = await startFaultyDestinations();
  echo = await startEchoServer();
  fs.writeFileSync(path.join(dir, 'users.txt'), await usersText([{ user: 'alice', pass: 's3cret' }]));
});
after(async () => {
  await dests.close();
  await echo.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Direct upstream: a refused connect is 05, no route 03, a blackhole the connect timeout's 06. */
const DIRECT = { refused: 0x05, unroutable: 0x03, blackholed: 0x06 } as const;

const DEFAULT: MatrixConfig = { name: 'default', config: {}, expect: DIRECT };

function warmUp(cfg: MatrixConfig) {
  return async (port: number) => {
    const { bytes, prefix } = handshakeFor(cfg, '127.0.0.1', echo.port);
    const out = await runFaultyClient(port, bytes, { kind: 'half-close' }, { prefix });
    assert.ok(out.replied && out.received[prefix + 1] === 0x00, `warm-up tunnel answered 00: ${out.received.toString('hex')}`);
  };
}

test('the namespace is there for the unroutable and blackholed cells', (t) => {
  requireNetns(t);
});

test('fault matrix: default config, every destination fault × every client fault', async (t) => {
  const p = await startProxyUnderTest(DEFAULT, dir, warmUp(DEFAULT));
  try {
    for (const d of usableDestinations()) for (const f of ROW) await runCell(t, p, DEFAULT, dests, d, f);
  } finally {
    await p.stop();
  }
});

test('fault matrix: default config, a client reset at every byte of the handshake', async (t) => {
  const p = await startProxyUnderTest(DEFAULT, dir, warmUp(DEFAULT));
  try {
    const len = handshakeFor(DEFAULT, '127.0.0.1', 1).bytes.length;
    // The destination differs by byte, so that the reset right after the request meets each one.
    const ds = usableDestinations();
    for (let at = 0; at <= len; at++) await runCell(t, p, DEFAULT, dests, at === len ? 'refused' : ds[at % ds.length]!, { kind: 'handshake-reset', at, waitMs: at % 2 ? 0 : 5 });
  } finally {
    await p.stop();
  }
});

const OTHERS: readonly MatrixConfig[] = [
  { name: 'optimistic-data off', config: { plugins: { 'optimistic-data': false } }, expect: DIRECT },
  {
    name: 'auth',
    config: { plugins: { auth: { usersFile: 'users.txt' } } },
    login: { username: 'alice', password: 's3cret' },
    expect: DIRECT,
  },
  {
    name: 'policy',
    config: { plugins: { policy: { destinations: ['reject 192.0.2.0/24:*', 'accept *:*'] } } },
    expect: { ...DIRECT, unroutable: 0x02 },
  },
];

OTHERS.forEach((cfg, i) => {
  test(`fault matrix: ${cfg.name}, a representative set`, async (t) => {
    const p = await startProxyUnderTest(cfg, dir, warmUp(cfg));
    try {
      const len = handshakeFor(cfg, '127.0.0.1', 1).bytes.length;
      const usable = usableDestinations();
      for (const [d, f] of representativeCells(i + 1, len)) if (usable.includes(d)) await runCell(t, p, cfg, dests, d, f);
    } finally {
      await p.stop();
    }
  });
});
