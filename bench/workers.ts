/**
 * `npm run bench:workers`: how socksmith scales from one process to two (`workers: 2`).
 *
 * The same socksmith (by default at its defaults: bench/targets.ts's `socksmith-default`; with
 * `--target socksmith-on` the tuned one, six plugins on, log at warn) is started twice, with
 * `--workers 1` (one process, no cluster) and `--workers 2` (a node:cluster
 * primary and two workers on the shared socket), and both are measured with the C load
 * generator and sink of `npm run bench` (bench/loadgen.c, bench/sink.c, built and driven by
 * bench/run.ts's helpers): handshakes per second (SOCKS5 no-auth CONNECT + 16-byte request +
 * 64-byte response + close, 64 in flight) and bulk throughput over 8 parallel streams. The two
 * are interleaved (the order alternates every repetition), 3 repetitions by default; the table
 * gives medians, min–max and the 2-worker/1-worker ratio.
 *
 * Pinning: bench/run.ts pins the load generator and the sink to core 1. socksmith is NOT
 * pinned here, in either run: with one worker the kernel keeps it mostly on core 0 (core 1 is
 * busy with the load), with two the workers may use both cores, so the second worker only gets
 * what the load generator leaves of core 1. On a 2-core machine the ratio is therefore a lower
 * bound of what a second core gives a proxy that has it to itself; the CPU columns show who used
 * what. On a machine with more cores than 2 the same run is closer to the real scaling.
 *
 * The table also gives the proxy's CPU per handshake (its whole process tree, from /proc) with
 * one worker and two: on a 2-core machine, where the load generator shares the cores, the
 * handshake rate cannot show what a second core gives, but the CPU per handshake should stay
 * flat; a rise is what the cluster costs (the primary, the shared socket's wakeups).
 *
 * Usage: npm run bench:workers [-- --reps N] [--duration S] [--bulk-mib N] [--target socksmith-default|socksmith-on]
 * @packageDocumentation
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadAverage } from './proc.js';
import {
  type Sample,
  type Settings,
  buildC,
  effectiveNofile,
  fmt,
  gitState,
  launch,
  Loadgen,
  log,
  measureLoad,
  parseSettings,
  shutdown,
  snapshotDist,
  startSink,
  stat,
} from './run.js';
import type { RunningProxy, StartOptions } from './targets.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const WORKERS = [1, 2] as const;
type Workers = (typeof WORKERS)[number];
const PHASES = ['handshake', 'bulk-down-8'] as const;
type MeasuredPhase = (typeof PHASES)[number];

interface Row {
  readonly workers: Workers;
  readonly sample: Sample;
}

/** The socksmith targets bench:workers can start (bench/targets.ts). */
const WORKER_TARGETS = ['socksmith-default', 'socksmith-on'] as const;
type WorkerTarget = (typeof WORKER_TARGETS)[number];

function options(argv: readonly string[]): { reps: number; duration: number; bulkMib: number; target: WorkerTarget } {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: { reps: { type: 'string' }, duration: { type: 'string' }, 'bulk-mib': { type: 'string' }, target: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write('usage: npm run bench:workers [-- --reps N (3)] [--duration S (10)] [--bulk-mib N (2048)] [--target socksmith-default|socksmith-on (socksmith-default)]\n');
    process.exit(0);
  }
  const target = (values.target ?? 'socksmith-default') as WorkerTarget;
  if (!WORKER_TARGETS.includes(target)) throw new Error(`--target: one of ${WORKER_TARGETS.join(', ')}`);
  const int = (v: string | undefined, def: number, min: number, max: number) => (v === undefined ? def : Math.min(max, Math.max(min, Math.floor(Number(v)) || def)));
  return { reps: int(values.reps, 3, 1, 20), duration: int(values.duration, 10, 1, 60), bulkMib: int(values['bulk-mib'], 2048, 16, 8192), target };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const t0 = Date.now();
  const opt = options(process.argv.slice(2));
  // bench/run.ts's own settings, for its measureLoad(): 8 parallel streams, 64 handshakes in flight.
  const settings: Settings = parseSettings([
    '--no-install',
    '--targets', opt.target,
    '--phases', PHASES.join(','),
    '--reps', String(opt.reps),
    '--duration', String(opt.duration),
    '--bulk-mib', String(opt.bulkMib),
  ]);
  const loadBefore = loadAverage();
  const bins = buildC();
  const nofile = effectiveNofile();
  const base: StartOptions = { core: undefined, drainCore: 1, nofile, root: ROOT, socksmithDir: snapshotDist(), peers: { microsocks: undefined, danted: undefined, socksv5Dir: undefined } };
  const state = gitState();
  const sink = await startSink(bins.sink, 3600, nofile);
  const lg = new Loadgen(bins.loadgen, sink.port, nofile);

  const proxies = new Map<Workers, RunningProxy>();
  for (const w of WORKERS) {
    const p = await launch(opt.target, { ...base, socksmithArgs: ['--workers', String(w)] });
    if (!p) throw new Error('socksmith did not start');
    proxies.set(w, p);
    log(`started socksmith --workers ${w} (pid ${p.pid}, port ${p.port})`);
  }
  // Warm-up, not recorded (V8's optimizing compiler, lazy allocations, both workers).
  for (const w of WORKERS) {
    await lg.run('handshake', proxies.get(w), ['--duration', '2', '--concurrency', String(settings.concurrency), '--timeout', '10'], 20_000).catch(() => undefined);
    await lg.run('bulk-down', proxies.get(w), ['--streams', '8', '--bytes', String(32 * 1024 * 1024), '--timeout', '30'], 40_000).catch(() => undefined);
  }

  const rows: Row[] = [];
  for (let rep = 1; rep <= settings.reps; rep++) {
    const order = rep % 2 === 1 ? [...WORKERS] : [...WORKERS].reverse();
    for (const phase of PHASES) {
      for (const w of order) {
        const sample = await measureLoad(phase, opt.target, rep, proxies.get(w), lg, sink, settings, base);
        rows.push({ workers: w, sample });
        log(`rep ${rep} ${phase.padEnd(11)} workers ${w}: ${sample.ok ? fmt(sample.value, 0) : `FAILED: ${sample.error}`} (proxy CPU ${fmt((sample.proxyUser ?? NaN) + (sample.proxySys ?? NaN), 0)} %, load CPU ${fmt(sample.loadCpu ?? NaN, 0)} %)`);
        await sleep(200);
      }
    }
  }
  for (const p of proxies.values()) {
    await p.logDrained?.();
    await shutdown(p);
  }
  sink.child.stdin?.end();

  const loadAfter = loadAverage();
  process.stdout.write(`\n${report(rows, settings, { loadBefore, loadAfter, state, seconds: (Date.now() - t0) / 1000, target: opt.target })}\n`);
}

function report(rows: readonly Row[], s: Settings, meta: { loadBefore: number[]; loadAfter: number[]; state: string; seconds: number; target: WorkerTarget }): string {
  const titles: Record<MeasuredPhase, string> = { handshake: 'handshakes/s', 'bulk-down-8': `bulk, 8 streams down (MB/s)` };
  const of = (w: Workers, phase: MeasuredPhase) => rows.filter((r) => r.workers === w && r.sample.phase === phase).map((r) => r.sample);
  const med = (xs: number[]) => stat(xs, 0)?.median ?? NaN;
  const cell = (samples: Sample[]) => {
    const st = stat(
      samples.filter((x) => x.ok).map((x) => x.value),
      samples.filter((x) => !x.ok).length,
    );
    if (!st || st.n === 0) return { text: 'failed', median: NaN };
    return { text: `${fmt(st.median, 0)} (${fmt(st.min, 0)}–${fmt(st.max, 0)})${st.failed ? `, ${st.failed} failed` : ''}`, median: st.median };
  };
  const cpu = (samples: Sample[]) => `${fmt(med(samples.filter((x) => x.ok).map((x) => (x.proxyUser ?? NaN) + (x.proxySys ?? NaN))), 0)} % / ${fmt(med(samples.filter((x) => x.ok).map((x) => x.loadCpu ?? NaN)), 0)} %`;
  const lines = [
    '| figure | 1 worker | 2 workers | ratio 2/1 | CPU proxy / load, 1 worker | CPU proxy / load, 2 workers |',
    '|---|---|---|---|---|---|',
  ];
  for (const phase of PHASES) {
    const one = cell(of(1, phase));
    const two = cell(of(2, phase));
    lines.push(`| ${titles[phase]} | ${one.text} | ${two.text} | ${fmt(two.median / one.median, 2)}× | ${cpu(of(1, phase))} | ${cpu(of(2, phase))} |`);
  }
  // Proxy CPU per handshake (the whole tree: primary + workers), which should stay flat from one
  // worker to two: on a 2-core machine the load generator takes a core, so the handshake rate
  // cannot show the scaling, but the cost per handshake shows what a second worker adds.
  const perHs = (w: Workers) => {
    const samples = of(w, 'handshake').filter((x) => x.ok);
    const st = stat(samples.map((x) => x.proxyCpuPerUnit ?? NaN), 0);
    return st && st.n > 0 ? { text: `${fmt(st.median, 0)} (${fmt(st.min, 0)}–${fmt(st.max, 0)})`, median: st.median } : { text: '—', median: NaN };
  };
  const c1 = perHs(1);
  const c2 = perHs(2);
  lines.push(`| proxy CPU per handshake (µs, whole process tree) | ${c1.text} | ${c2.text} | ${fmt(c2.median / c1.median, 2)}× | | |`);
  const cpus = os.cpus();
  return [
    `# socksmith: 1 worker vs 2 workers`,
    '',
    lines.join('\n'),
    '',
    `Medians of ${s.reps} interleaved repetitions (min–max in parentheses). CPU is % of one core (median): the proxy's whole process tree (primary + workers) and the load generator + sink.`,
    `${meta.target === 'socksmith-default' ? "socksmith at its defaults (the repository's proxy.config.ts, access log at info drained from a pipe)" : 'socksmith tuned (the six plugins on, log at warn)'}, unpinned; load generator and sink pinned to core 1 (they share the machine's cores with the proxy).`,
    `Handshakes: ${s.duration} s runs, ${s.concurrency} in flight. Bulk: ${s.parStreams} streams × ${fmt(s.parBytes / 2 ** 20, 0)} MiB down.`,
    `Machine: ${cpus.length} cores (${cpus[0]?.model ?? 'unknown CPU'}), ${os.release()}, node ${process.version}; load average ${meta.loadBefore.join(' / ')} before, ${meta.loadAfter.join(' / ')} after; ${meta.seconds.toFixed(0)} s in all.`,
    `socksmith: ${meta.state}.`,
    `Command: npm run bench:workers${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  ].join('\n');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:workers: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
