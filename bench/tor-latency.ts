/**
 * Benchmark: time to first byte through socksmith in front of real Tor, against Tor itself.
 *
 * Brings up the private Tor network of the Tor tests (test/tor/fixture.ts: 3 authorities, exit,
 * middle, clients, all on loopback inside a private network namespace), spawns the real CLI
 * (`node dist/src/cli/main.js`) in front of client c0's SocksPort with each config below, and
 * times, per request, from the client's connect() to the first byte of the HTTP response of the
 * loopback destination (through the exit; circuits are built before timing starts and reused).
 *
 * Every target rides the same Tor circuit: both socksmith instances get the same isolation secret,
 * so they send Tor the same derived credentials, and the direct client sends Tor those too (read
 * from Tor's STREAM event), step by step. Circuits on this tiny network differ by tens of ms (a
 * relay's Nagle meeting the next relay's delayed ACK), which would otherwise swamp the
 * comparison; `tor, no credentials` (its own circuit) shows that spread.
 *
 * Clients (each a raw SOCKS5 client in this process, TCP_NODELAY):
 * - `curl`: waits for each reply; sends `GET` after the CONNECT reply (curl --socks5-hostname).
 * - `optimistic`: greeting, then the request with `GET` right behind it (Tor Browser, hyper-util).
 *
 * Targets: `tor` (c0's SocksPort straight), and socksmith with the README's "In front of Tor"
 * config (`readme`: extended-errors on, the README's `pipelining` value) and with `pipelining`
 * the other way. Every round visits each (target, client) once in a shuffled order, so load on the
 * shared machine hits all of them alike. Output: one JSON line per repetition and a summary with
 * median, p90 and the ratio of medians to Tor's.
 *
 * Run: `npm run bench:tor` (options: `-- --rounds 150 --reps 3`; `--tor c1` for the client with
 * `ConfluxEnabled 0`; `--dest onion` for the onion service instead of the exit). Needs tor, tor-gencert and root
 * for `unshare -n` (the script re-runs itself inside a fresh network namespace).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TorControl } from '../test/tor/control.js';
import { startTorNetwork, torUnavailable, type TorNetwork } from '../test/tor/fixture.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '150' },
    reps: { type: 'string', default: '3' },
    'readme-pipelining': { type: 'string' },
    tor: { type: 'string', default: 'c0' },
    dest: { type: 'string', default: 'exit' },
  },
});
const ROUNDS = Math.min(2000, Math.max(10, Number(values.rounds)));
const REPS = Math.min(20, Math.max(1, Number(values.reps)));
const CLIENT = values.tor === 'c1' ? 'c1' : 'c0';
const DEST = values.dest === 'onion' ? 'onion' : 'exit';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');

if (process.env.SOCKSMITH_TEST_NETNS !== '1') {
  // Re-run inside a private network namespace with only loopback, as the test runner does.
  const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, SOCKSMITH_TEST_NETNS: '1' },
  });
  if (r.status === null || r.error) console.error('bench:tor needs a private network namespace (unshare -n and ip from iproute2, as root)');
  process.exit(r.status ?? 1);
}

/** The README's "In front of Tor" `pipelining` value, read from README.md (or --readme-pipelining). */
function readmePipelining(): boolean {
  if (values['readme-pipelining'] !== undefined) return values['readme-pipelining'] === 'true';
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### In front of Tor'));
  const m = /upstream: \{[^}]*\}/.exec(section);
  if (!m) throw new Error('README: no upstream line in "In front of Tor"');
  return /pipelining: true/.test(m[0]);
}

interface Cli {
  child: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

async function startSocksmith(dir: string, name: string, torPort: number, pipelining: boolean | undefined): Promise<Cli> {
  const file = path.join(dir, `${name}.json`);
  const upstream: Record<string, unknown> = { type: 'socks5', host: '127.0.0.1', port: torPort };
  if (pipelining !== undefined) upstream.pipelining = pipelining;
  // The README's config; one fixed isolation secret so that both instances derive the same upstream
  // credentials and every target rides the same Tor circuit.
  const plugins = { 'extended-errors': true, isolation: { secret: 'bench-tor-latency-one-circuit' } };
  fs.writeFileSync(file, JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], upstream, plugins, log: { level: 'warn' } }));
  const child = spawn(process.execPath, [CLI, '-c', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`socksmith (${name}) did not listen within 20 s`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`socksmith (${name}) exited ${code}`)));
  });
  return {
    child,
    port,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}

type ClientKind = 'curl' | 'optimistic';

/** One request; resolves with ms from connect() to the first response byte. */
function ttfb(socksPort: number, host: string, port: number, kind: ClientKind, creds?: { user: string; pass: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port: socksPort, noDelay: true });
    const h = Buffer.from(host);
    const request = Buffer.concat([Buffer.from([5, 1, 0, 3, h.length]), h, Buffer.from([port >> 8, port & 255])]);
    const get = Buffer.from(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
    let buf = Buffer.alloc(0);
    let stage = 0;
    const timer = setTimeout(() => fail(new Error('no response within 20 s')), 20_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    s.on('error', fail);
    s.on('close', () => fail(new Error(`closed at stage ${stage}`)));
    s.on('connect', () => s.write(Buffer.from(creds ? [5, 1, 2] : [5, 1, 0])));
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (stage === 0 && buf.length >= 2 && creds) {
        buf = buf.subarray(2);
        stage = -1;
        const u = Buffer.from(creds.user);
        const p = Buffer.from(creds.pass);
        s.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]));
      }
      if ((stage === 0 || stage === -1) && buf.length >= 2) {
        buf = buf.subarray(2);
        stage = 1;
        s.write(kind === 'optimistic' ? Buffer.concat([request, get]) : request);
      }
      if (stage === 1 && buf.length >= 10) {
        if (buf[1] !== 0) return fail(new Error(`REP ${buf[1]}`));
        buf = buf.subarray(10);
        stage = 2;
        if (kind === 'curl') s.write(get);
      }
      if (stage === 2 && buf.length > 0) {
        const ms = performance.now() - t0;
        clearTimeout(timer);
        s.removeAllListeners('close');
        s.destroy();
        resolve(ms);
      }
    });
  });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]!;
};
const r2 = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const why = torUnavailable();
  if (why) throw new Error(`bench:tor: ${why}`);
  const pipeReadme = readmePipelining();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-bench-tor-'));
  let tor: TorNetwork | undefined;
  const clis: Cli[] = [];
  try {
    tor = await startTorNetwork();
    console.error(`network ready in ${tor.readySeconds.toFixed(1)} s`);
    const torPort = CLIENT === 'c1' ? tor.socksPortNoConflux : tor.socksPort;
    const readme = await startSocksmith(tmp, 'readme', torPort, pipeReadme);
    const other = await startSocksmith(tmp, 'other', torPort, !pipeReadme);
    clis.push(readme, other);
    // socksmith's upstream credentials (from Tor's STREAM event), for the direct client.
    const ctl = await TorControl.connect(CLIENT === 'c1' ? tor.controlPortNoConflux : tor.controlPort, tor.cookie(CLIENT));
    await ctl.command('SETEVENTS STREAM');
    await ttfb(readme.port, 'bench.tornet.test', tor.http.port, 'curl');
    const ev = await ctl.waitStream((e) => e.fields.SOCKS_USERNAME !== undefined, 'socksmith stream with credentials');
    ctl.close();
    const creds = { user: ev.fields.SOCKS_USERNAME!, pass: ev.fields.SOCKS_PASSWORD! };
    const targets: Array<[string, number, { user: string; pass: string }?]> = [
      ['tor', torPort, creds],
      ['tor, no credentials (own circuit)', torPort],
      [`socksmith readme (pipelining ${pipeReadme})`, readme.port],
      [`socksmith pipelining ${!pipeReadme}`, other.port],
    ];
    const kinds: ClientKind[] = ['curl', 'optimistic'];
    const [host, destPort] = DEST === 'onion' ? [tor.onion, 80] : ['bench.tornet.test', tor.http.port];
    console.error(`client ${CLIENT}${CLIENT === 'c1' ? ' (ConfluxEnabled 0)' : ''}, destination ${host}:${destPort}`);
    // Warm up: circuits built, JIT warm.
    for (let i = 0; i < 10; i++) for (const [, p, c] of targets) for (const k of kinds) await ttfb(p, host, destPort, k, c);
    const summary: Record<string, { medians: number[]; p90s: number[]; slow: number[] }> = {};
    for (let rep = 1; rep <= REPS; rep++) {
      const samples: Record<string, number[]> = {};
      for (let round = 0; round < ROUNDS; round++) {
        const order = targets.flatMap(([n, p, c]) => kinds.map((k) => [`${k} → ${n}`, p, k, c] as const));
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(Math.random() * (i + 1));
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        for (const [label, p, k, c] of order) (samples[label] ??= []).push(await ttfb(p, host, destPort, k, c));
      }
      const line: Record<string, unknown> = { rep, rounds: ROUNDS };
      for (const [label, xs] of Object.entries(samples)) {
        // Share of requests that waited for a delayed ACK somewhere (≥ 30 ms; the rest take 5-25 ms).
        const slow = Math.round((100 * xs.filter((x) => x >= 30).length) / xs.length);
        line[label] = { median: r2(pct(xs, 0.5)), p90: r2(pct(xs, 0.9)), slowPct: slow };
        const s = (summary[label] ??= { medians: [], p90s: [], slow: [] });
        s.medians.push(pct(xs, 0.5));
        s.p90s.push(pct(xs, 0.9));
        s.slow.push(slow);
      }
      console.log(JSON.stringify(line));
    }
    console.log(`\nclient ${CLIENT}, destination ${DEST}; TTFB in ms, ${REPS} repetitions x ${ROUNDS} requests per (client, target); median, p90 and the share of requests ≥ 30 ms as min-max over repetitions`);
    for (const k of kinds) {
      const base = summary[`${k} → tor`]!;
      for (const [n] of targets) {
        const s = summary[`${k} → ${n}`]!;
        const ratios = s.medians.map((m, i) => m / base.medians[i]!);
        const range = (xs: number[]) => `${r2(Math.min(...xs))}-${r2(Math.max(...xs))}`;
        console.log(`${k.padEnd(10)} ${n.padEnd(36)} median ${range(s.medians).padEnd(12)} p90 ${range(s.p90s).padEnd(12)} ≥30ms ${range(s.slow).padEnd(6)}% median/tor ${range(ratios)}`);
      }
    }
  } finally {
    for (const c of clis) await c.stop();
    await tor?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
