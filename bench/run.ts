/**
 * `npm run bench`: socksmith against the SOCKS servers a user would pick instead, side by side.
 *
 * Proxies under test: socksmith at its defaults (the repository's proxy.config.ts, only the listen
 * address changed; the main column) and at warn for the log cost; socksmith tuned (log warn,
 * limits raised) with all six plugins on and with all off; microsocks and dante-server (Debian
 * packages, installed here when missing), Node's socksv5, the Node floor, and no proxy at all.
 * Each proxy is pinned to core 0; the load (bench/loadgen.c and the destination bench/sink.c,
 * both compiled here with gcc -O2) to core 1. CPU of both sides comes from /proc, so a
 * saturated load side shows. Everything is on loopback; every loop is bounded in count and time.
 *
 * Figures: bulk throughput (one stream down, one up, eight parallel streams down), handshake
 * rate (SOCKS5 no-auth CONNECT + 16-byte request + 64-byte response + close, 64 in flight) with
 * time to first byte, PSS per idle tunnel, and UDP datagrams per second through one SOCKS5 UDP
 * ASSOCIATE (socksmith with the udp-associate plugin beside dante-server; bench/udp-load.ts). Repetitions are interleaved across targets (the
 * order rotates every repetition); the report gives medians and min–max, and every socksmith
 * figure as a ratio to each peer. Method and results: docs/performance.md.
 *
 * Usage: npm run bench [-- --quick] [--reps N] [--targets a,b] [--phases a,b] [--bulk-mib N]
 *        [--duration S] [--tunnels N] [--budget S] [--json FILE] [--markdown FILE] [--runs N]
 *        [--udp-count N] [--no-install] [--profile]
 * @packageDocumentation
 */
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type CpuProfile, formatSummary, summarize } from './cpuprofile.js';
import { coreMeter, cpuMeter, loadAverage, memoryOf, processTree } from './proc.js';
import { ALL_TARGETS, DRAINS, HANDSHAKE_ONLY_TARGETS, type LogDrained, OPTIONAL_TARGETS, type PeerBinaries, type RunningProxy, type StartOptions, TARGET_TITLE, type TargetName, spawnPinned, startTarget } from './targets.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILD = path.join(ROOT, 'bench', '.build');
const MIB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Settings

/** The measurements, in the order they run within a repetition. */
export type Phase = 'bulk-down' | 'bulk-up' | 'bulk-down-8' | 'handshake' | 'idle' | 'udp';
const ALL_PHASES: readonly Phase[] = ['bulk-down', 'bulk-up', 'bulk-down-8', 'handshake', 'idle', 'udp'];

/** The `udp` phase: its targets (socksmith at its defaults plus udp-associate; dante-server) and datagram sizes. */
export const UDP_TARGETS: readonly TargetName[] = ['socksmith-default', 'dante'];
export const UDP_SIZES: readonly number[] = [64, 512];
/** Datagrams in flight in the `udp` phase (each echo releases the next). */
const UDP_WINDOW = 64;

export interface Settings {
  readonly quick: boolean;
  readonly reps: number;
  /** Targets of the bulk and handshake phases. */
  readonly targets: readonly TargetName[];
  /** Targets of the idle phase (by default also Node's socksv5, the memory target's reference). */
  readonly idleTargets: readonly TargetName[];
  readonly phases: readonly Phase[];
  /** Bytes of the single-stream transfers. */
  readonly bulkBytes: number;
  readonly parStreams: number;
  /** Bytes per stream of the parallel transfer (total = bulkBytes). */
  readonly parBytes: number;
  readonly duration: number;
  readonly concurrency: number;
  readonly tunnels: number;
  /** Repetitions of the idle test (it varies little and costs a fresh proxy each time). */
  readonly idleReps: number;
  readonly settleMs: number;
  readonly budgetMs: number;
  readonly json: string | undefined;
  /** Also write the report (markdown, as docs/performance.md pastes it) to this file. */
  readonly markdown: string | undefined;
  /**
   * Separate runs: each starts every proxy afresh (new processes, new warm-up) and does `reps`
   * interleaved repetitions; the summary gives each run's median and the range over runs.
   */
  readonly runs: number;
  readonly install: boolean;
  readonly profile: boolean;
  /** Datagrams per size and target in the `udp` phase. */
  readonly udpCount: number;
  /**
   * Handshakes per second of the paced handshake run (0: none). In the handshake phase,
   * `socksmith-default` and `node-floor` also run at this fixed offered rate, below both their
   * capacities, so each is measured under the same load; see {@link PACED_TARGETS}.
   */
  readonly pacedRate: number;
}

/**
 * Targets that also run the paced handshake load: CPU per handshake compared at one offered rate.
 * At saturation a slower proxy leaves the load core idle more often, and on a VM waking an idle
 * core costs the writer an interrupt: part of the gap between two proxies' CPU per handshake
 * there is the machine's, not the proxy's (docs/performance.md).
 */
export const PACED_TARGETS: readonly TargetName[] = ['socksmith-default', 'node-floor'];

function clampInt(v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Math.floor(Number(v));
  if (!Number.isFinite(n)) throw new Error(`not a number: ${v}`);
  return Math.min(max, Math.max(min, n));
}

export function parseSettings(argv: readonly string[]): Settings {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      reps: { type: 'string' },
      targets: { type: 'string' },
      phases: { type: 'string' },
      'bulk-mib': { type: 'string' },
      duration: { type: 'string' },
      concurrency: { type: 'string' },
      tunnels: { type: 'string' },
      'idle-reps': { type: 'string' },
      budget: { type: 'string' },
      json: { type: 'string' },
      markdown: { type: 'string' },
      runs: { type: 'string' },
      'udp-count': { type: 'string' },
      'no-install': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'paced-rate': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      [
        'usage: npm run bench [-- OPTIONS]',
        '  --quick          smoke run (~2 min): 256 MiB transfers, 2 s handshakes, 1000 idle tunnels once, 3 reps',
        '  --reps N         repetitions per figure (default 5; quick 3)',
        `  --targets LIST   comma list of ${ALL_TARGETS.join(',')}`,
        '                   (default: all but socksmith-info. socksmith-default is the main column:',
        '                   the repository\'s proxy.config.ts, only the listen address changed;',
        '                   socksmith-default-warn is the same at --log-level warn, handshake phase',
        '                   only, for the log cost; socksmith-on/-off are the tuned runs (log warn,',
        '                   limits raised); node-floor is the least a node:net SOCKS5 server does)',
        `  --phases LIST    comma list of ${ALL_PHASES.join(',')}`,
        '  --bulk-mib N     bytes of a bulk transfer in MiB (default 2048; quick 256)',
        '  --duration S     seconds of each handshake run (default 10; quick 2)',
        '  --concurrency C  handshakes in flight (default 64)',
        '  --tunnels N      idle tunnels (default 9900, capped by the fd limit; quick 1000)',
        '  --idle-reps N    repetitions of the idle test, the first N (default 3; quick 1)',
        '  --budget S       stop starting repetitions after S seconds (default 1500; quick 240)',
        '  --json FILE      also write the raw results here',
        '  --markdown FILE  also write the report (markdown tables, command, commit, date, runs,',
        '                   ranges) here, for docs/performance.md to paste',
        '  --runs N         separate runs (fresh proxies and warm-up each), default 1; the summary',
        '                   gives each run\'s median and the range over runs (issue 15: "three runs")',
        '  --udp-count N    datagrams per size (64 and 512 bytes) and target in the udp phase',
        '                   (default 50000; quick 10000), 64 in flight, through one association',
        '  --no-install     do not apt-get install missing peers (they are skipped)',
        '  --paced-rate R   in the handshake phase, socksmith (defaults) and the Node floor also run at',
        '                   R handshakes/s offered (default 3000; 0: not), CPU per handshake compared',
        '                   under the same load',
        '  --profile        instead: profile socksmith (--cpu-prof) in the handshake and bulk phases',
        '',
      ].join('\n'),
    );
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const list = <T extends string>(v: string | undefined, all: readonly T[], what: string): T[] => {
    if (v === undefined) return [...all];
    const out = v.split(',').map((s) => s.trim()).filter(Boolean);
    for (const x of out) if (!(all as readonly string[]).includes(x)) throw new Error(`unknown ${what} ${JSON.stringify(x)}; one of ${all.join(', ')}`);
    return out as T[];
  };
  const bulkMib = clampInt(values['bulk-mib'], quick ? 256 : 2048, 1, 16384);
  const parStreams = 8;
  return {
    quick,
    reps: clampInt(values.reps, quick ? 3 : 5, 1, 50),
    targets: values.targets === undefined ? ALL_TARGETS.filter((t) => !OPTIONAL_TARGETS.includes(t)) : list(values.targets, ALL_TARGETS, 'target'),
    idleTargets: (values.targets === undefined ? ALL_TARGETS.filter((t) => !OPTIONAL_TARGETS.includes(t) && !HANDSHAKE_ONLY_TARGETS.includes(t)) : list(values.targets, ALL_TARGETS, 'target').filter((t) => !HANDSHAKE_ONLY_TARGETS.includes(t))).filter(
      (t) => t !== 'none',
    ),
    phases: list(values.phases, ALL_PHASES, 'phase'),
    bulkBytes: bulkMib * MIB,
    parStreams,
    parBytes: Math.floor((bulkMib * MIB) / parStreams),
    duration: clampInt(values.duration, quick ? 2 : 10, 1, 120),
    concurrency: clampInt(values.concurrency, 64, 1, 4096),
    tunnels: clampInt(values.tunnels, quick ? 1000 : 9900, 10, 9900),
    idleReps: clampInt(values['idle-reps'], quick ? 1 : 3, 1, 50),
    settleMs: quick ? 500 : 3000,
    budgetMs: clampInt(values.budget, quick ? 240 : 1500, 30, 3600) * 1000,
    json: values.json,
    markdown: values.markdown,
    runs: clampInt(values.runs, 1, 1, 10),
    install: !(values['no-install'] ?? false),
    profile: values.profile ?? false,
    udpCount: clampInt(values['udp-count'], quick ? 10_000 : 50_000, 100, 1_000_000),
    pacedRate: clampInt(values['paced-rate'], 3000, 0, 100_000),
  };
}

// ---------------------------------------------------------------------------------------------
// Machine preparation: peers, compiler, binaries

const NOFILE = 20_000;
const PROXY_CORE = 0;
const LOAD_CORE = 1;

export function log(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

function which(name: string, extra: readonly string[] = []): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), ...extra]) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** `apt-get install -y PKGS`, with one `apt-get update` and a retry when the first try fails. */
function aptInstall(pkgs: readonly string[]): boolean {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { env, stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 }).status === 0;
  if (install()) return true;
  log('apt-get install failed; running apt-get update and trying again');
  spawnSync('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 });
  return install();
}

function ensureTools(s: Settings): PeerBinaries {
  const sbin = ['/usr/sbin', '/usr/local/sbin', '/sbin'];
  const wanted: string[] = [];
  if (!which('gcc')) wanted.push('gcc', 'libc6-dev');
  const needMicrosocks = s.targets.includes('microsocks') && !which('microsocks');
  const needDante = s.targets.includes('dante') && !which('danted', sbin);
  if (needMicrosocks) wanted.push('microsocks');
  if (needDante) wanted.push('dante-server');
  if (wanted.length > 0) {
    if (s.install && isRoot()) {
      log(`installing ${wanted.join(' ')} (apt-get)`);
      aptInstall(wanted);
      // The package may start a system danted on :1080; the bench runs its own.
      if (needDante) spawnSync('systemctl', ['disable', '--now', 'danted'], { stdio: 'ignore', timeout: 30_000 });
    } else {
      log(`missing: ${wanted.join(' ')} (${s.install ? 'not root, cannot apt-get install' : '--no-install'})`);
    }
  }
  if (!which('gcc')) throw new Error('gcc is needed to build bench/loadgen.c and bench/sink.c (apt-get install gcc libc6-dev)');
  // Node's socksv5 (the memory target's reference) goes into bench/.build/peers, not into the
  // project's dependencies.
  const sv5 = path.join(BUILD, 'peers');
  const wantSv5 = [...s.targets, ...(s.phases.includes('idle') ? s.idleTargets : [])].includes('socksv5');
  if (wantSv5 && !fs.existsSync(path.join(sv5, 'node_modules', 'socksv5', 'package.json')) && s.install) {
    log('installing socksv5@0.0.6 into bench/.build/peers (npm)');
    fs.mkdirSync(sv5, { recursive: true });
    spawnSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', sv5, 'socksv5@0.0.6'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 180_000 });
  }
  const peers = {
    microsocks: which('microsocks'),
    danted: which('danted', sbin),
    socksv5Dir: fs.existsSync(path.join(sv5, 'node_modules', 'socksv5', 'package.json')) ? sv5 : undefined,
  };
  if (wantSv5 && !peers.socksv5Dir) log('socksv5 is not installed: its column stays empty');
  if (s.targets.includes('microsocks') && !peers.microsocks) log('microsocks is not installed: its column stays empty');
  if (s.targets.includes('dante') && !peers.danted) log('danted is not installed: its column stays empty');
  return peers;
}

/** Compile bench/*.c into bench/.build when the binary is missing or older than its source. */
export function buildC(): { loadgen: string; sink: string } {
  fs.mkdirSync(BUILD, { recursive: true });
  const out: Record<string, string> = {};
  for (const name of ['loadgen', 'sink']) {
    const src = path.join(ROOT, 'bench', `${name}.c`);
    const bin = path.join(BUILD, name);
    const stale = !fs.existsSync(bin) || fs.statSync(bin).mtimeMs < fs.statSync(src).mtimeMs;
    if (stale) {
      log(`gcc -O2 ${path.relative(ROOT, src)}`);
      execFileSync('gcc', ['-O2', '-Wall', '-o', bin, src], { stdio: 'inherit', timeout: 120_000 });
    }
    out[name] = bin;
  }
  return { loadgen: out.loadgen!, sink: out.sink! };
}

/** The fd limit a child gets after our `ulimit -n` (the hard limit caps it). */
export function effectiveNofile(): number {
  const r = spawnSync('sh', ['-c', `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ulimit -n`], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  return Number.isFinite(n) && n > 0 ? Math.min(n, NOFILE) : 1024;
}

/**
 * Copy dist/src and dist/plugins into bench/.build/snapshot, so that every socksmith the run
 * starts (the idle test starts one per repetition) runs the same code, even if a `tsc`
 * elsewhere rewrites dist/ meanwhile. Packages still resolve from the repository's node_modules
 * (the snapshot is inside the repository).
 */
export function snapshotDist(): string {
  const dir = path.join(BUILD, 'snapshot');
  fs.rmSync(dir, { recursive: true, force: true });
  for (const sub of ['src', 'plugins']) fs.cpSync(path.join(ROOT, 'dist', sub), path.join(dir, 'dist', sub), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  return dir;
}

/** The commit socksmith was built from, and whether src/ or plugins/ differed from it. */
export function gitState(): string {
  const head = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (head.status !== 0) return 'not a git checkout';
  const dirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'plugins'], { encoding: 'utf8' }).stdout.trim();
  return `${head.stdout.trim()}${dirty ? ` with uncommitted changes in ${dirty.split('\n').length} file(s) of src/ or plugins/` : ''} (dist/ as compiled at the start, run from a snapshot)`;
}

function packageVersion(pkg: string): string {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

// ---------------------------------------------------------------------------------------------
// Processes we started (stopped by PID on the way out, whatever happens)

const started = new Set<ChildProcess>();
const proxies = new Set<RunningProxy>();

function killAllSync(): void {
  for (const p of proxies) {
    for (const pid of processTree(p.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  for (const c of [...started, ...DRAINS]) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllSync();
    process.exit(130);
  });
}

export async function launch(name: TargetName, o: StartOptions): Promise<RunningProxy | undefined> {
  const p = await startTarget(name, o);
  if (p) proxies.add(p);
  return p;
}

export async function shutdown(p: RunningProxy | undefined): Promise<void> {
  if (!p) return;
  await p.stop();
  proxies.delete(p);
}

// ---------------------------------------------------------------------------------------------
// The destination and the load generator

export interface Sink {
  readonly pid: number;
  readonly port: number;
  readonly child: ChildProcess;
}

const DEST_ADDRS = 8;
const SRC_ADDRS = 8;

export async function startSink(bin: string, maxSeconds: number, nofile: number): Promise<Sink> {
  const child = spawnPinned(LOAD_CORE, nofile, bin, ['--addrs', String(DEST_ADDRS), '--max-seconds', String(maxSeconds)], ['pipe', 'pipe', 'pipe']);
  started.add(child);
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('sink did not start in 5 s')), 5000);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /sink listening on (\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sink exited (${code})`));
    });
  });
  return { pid: child.pid!, port, child };
}

export interface LoadgenResult {
  readonly ok: boolean;
  readonly timeout?: boolean;
  readonly errors: number;
  readonly last_error?: string;
  readonly cpu_user_s: number;
  readonly cpu_sys_s: number;
  readonly seconds?: number;
  readonly mbps?: number;
  readonly bytes?: number;
  readonly rate?: number;
  readonly completed?: number;
  readonly ttfb_us?: { p50: number; p90: number; p99: number; max: number };
  readonly open?: number;
  readonly dropped?: number;
  readonly open_seconds?: number;
}

export class Loadgen {
  constructor(
    private readonly bin: string,
    private readonly sinkPort: number,
    private readonly nofile: number,
  ) {}

  args(mode: string, proxy: RunningProxy | undefined, extra: readonly string[]): string[] {
    return [
      mode,
      ...(proxy ? ['--proxy', `127.0.0.1:${proxy.port}`] : []),
      '--dest-port', String(this.sinkPort),
      '--dest-addrs', String(DEST_ADDRS),
      '--src-addrs', String(SRC_ADDRS),
      ...extra,
    ];
  }

  /** Run to completion; kill by PID after `timeoutMs`. Returns the last JSON line. */
  async run(mode: string, proxy: RunningProxy | undefined, extra: readonly string[], timeoutMs: number): Promise<LoadgenResult> {
    const r = await runForJsonLine(LOAD_CORE, this.nofile, this.bin, this.args(mode, proxy, extra), timeoutMs);
    if (!r.line) throw new Error(`loadgen ${mode} printed no result (exit ${r.exit}); stderr: ${r.err.trim()}`);
    return JSON.parse(r.line) as LoadgenResult;
  }

  /**
   * Open `tunnels` idle tunnels, call `measure` while they are held, then release them. Resolves
   * with the ready line, the final line and what `measure` returned.
   */
  async idle<T>(proxy: RunningProxy, tunnels: number, holdS: number, measure: () => Promise<T>): Promise<{ ready: LoadgenResult; done: LoadgenResult; measured: T }> {
    const child = spawnPinned(LOAD_CORE, this.nofile, this.bin, this.args('idle', proxy, ['--tunnels', String(tunnels), '--concurrency', '128', '--hold', String(holdS), '--timeout', String(holdS + 60)]), ['pipe', 'pipe', 'pipe']);
    started.add(child);
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const killTimer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }, (holdS + 90) * 1000);
    try {
      const ready = await new Promise<LoadgenResult>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const line = out.split('\n').find((l) => l.includes('"event":"ready"'));
          if (line) resolve(JSON.parse(line) as LoadgenResult);
        });
        void exited.then(() => reject(new Error(`loadgen idle exited before ready; stderr: ${err.trim()}; stdout: ${out.trim()}`)));
      });
      const measured = await measure();
      child.stdin!.end('release\n');
      await exited;
      const last = out.trim().split('\n').filter((l) => l.startsWith('{"mode"')).pop();
      if (!last) throw new Error(`loadgen idle printed no result; stderr: ${err.trim()}`);
      return { ready, done: JSON.parse(last) as LoadgenResult, measured };
    } finally {
      clearTimeout(killTimer);
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        await exited;
      }
      started.delete(child);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Measurements

export interface Sample {
  readonly phase: Phase;
  readonly target: TargetName;
  readonly rep: number;
  /** Which of the `--runs` separate runs (1-based; 1 when there is one). */
  readonly run?: number;
  readonly ok: boolean;
  readonly error?: string;
  /** The figure: MB/s, handshakes/s, or KiB per idle tunnel. */
  readonly value: number;
  readonly ttfbP50Ms?: number;
  readonly ttfbP99Ms?: number;
  /** CPU of the proxy tree, % of one core (user, system). */
  readonly proxyUser?: number;
  readonly proxySys?: number;
  /** Proxy CPU per unit of work: seconds per GB moved (bulk) or µs per handshake. */
  readonly proxyCpuPerUnit?: number;
  /** Minor page faults of the proxy tree: per MB moved (bulk) or per handshake. */
  readonly proxyFaultsPerUnit?: number;
  /** CPU of loadgen + sink, % of one core. */
  readonly loadCpu?: number;
  /** What other processes took from the proxy's core and the load core (% of the core; softirq excluded). */
  readonly otherProxyCore?: number;
  readonly otherLoadCore?: number;
  readonly extra?: Record<string, number>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function measureLoad(phase: Exclude<Phase, 'idle'>, target: TargetName, rep: number, proxy: RunningProxy | undefined, lg: Loadgen, sink: Sink, s: Settings, o: StartOptions): Promise<Sample> {
  let mode: string;
  let extra: string[];
  let timeoutS: number;
  if (phase === 'handshake') {
    mode = 'handshake';
    extra = ['--duration', String(s.duration), '--concurrency', String(s.concurrency), '--timeout', String(s.duration + 10)];
    timeoutS = s.duration + 20;
  } else {
    const streams = phase === 'bulk-down-8' ? s.parStreams : 1;
    const bytes = phase === 'bulk-down-8' ? s.parBytes : s.bulkBytes;
    // Bound: even at 40 MB/s the transfer ends in time; a slower one is reported as a timeout.
    timeoutS = Math.max(30, Math.ceil((streams * bytes) / 40e6));
    mode = phase === 'bulk-up' ? 'bulk-up' : 'bulk-down';
    extra = ['--streams', String(streams), '--bytes', String(bytes), '--timeout', String(timeoutS)];
    timeoutS += 10;
  }
  const pm = proxy ? cpuMeter(proxy.pid) : undefined;
  const sm = cpuMeter(sink.pid);
  const cm = coreMeter();
  const t0 = performance.now();
  let r: LoadgenResult;
  try {
    r = await lg.run(mode, proxy, extra, timeoutS * 1000);
  } catch (err) {
    return { phase, target, rep, ok: false, error: (err as Error).message, value: NaN };
  }
  const wall = (performance.now() - t0) / 1000;
  const pc = pm?.stop();
  const sc = sm.stop();
  const cores = cm.stop();
  const lgSeconds = r.seconds && r.seconds > 0 ? r.seconds : wall;
  const loadCpu = (100 * (r.cpu_user_s + r.cpu_sys_s)) / lgSeconds + (100 * (sc.user + sc.sys)) / wall;
  const base = {
    phase,
    target,
    rep,
    ok: r.ok && !r.timeout,
    ...(r.ok && !r.timeout ? {} : { error: r.timeout ? 'timeout' : `${r.errors} errors; last: ${r.last_error ?? ''}` }),
    ...(pc ? { proxyUser: (100 * pc.user) / wall, proxySys: (100 * pc.sys) / wall } : {}),
    ...(pc && phase === 'handshake' && (r.completed ?? 0) > 0 ? { proxyCpuPerUnit: (1e6 * (pc.user + pc.sys)) / r.completed! } : {}),
    ...(pc && phase !== 'handshake' && r.bytes ? { proxyCpuPerUnit: (pc.user + pc.sys) / (r.bytes / 1e9) } : {}),
    ...(pc && phase === 'handshake' && (r.completed ?? 0) > 0 ? { proxyFaultsPerUnit: pc.minflt / r.completed! } : {}),
    ...(pc && phase !== 'handshake' && r.bytes ? { proxyFaultsPerUnit: pc.minflt / (r.bytes / 1e6) } : {}),
    loadCpu,
    ...(o.core !== undefined
      ? {
          otherProxyCore: Math.max(0, (cores.get(PROXY_CORE)?.work ?? NaN) - (pc ? (100 * (pc.user + pc.sys)) / wall : 0)),
          otherLoadCore: Math.max(0, (cores.get(LOAD_CORE)?.work ?? NaN) - loadCpu),
        }
      : {}),
  };
  if (phase === 'handshake') {
    const paced = PACED_TARGETS.includes(target) && s.pacedRate > 0 && proxy ? await measurePaced(proxy, lg, s) : {};
    return {
      ...base,
      ok: base.ok && (r.completed ?? 0) > 0,
      ...(r.errors > 0 ? { error: `${r.errors} errors; last: ${r.last_error ?? ''}` } : {}),
      value: r.rate ?? NaN,
      ttfbP50Ms: (r.ttfb_us?.p50 ?? NaN) / 1000,
      ttfbP99Ms: (r.ttfb_us?.p99 ?? NaN) / 1000,
      extra: { errors: r.errors, completed: r.completed ?? 0, ...paced },
    };
  }
  return { ...base, value: r.mbps ?? NaN };
}

/**
 * The paced handshake run: `s.pacedRate` handshakes/s offered for `s.duration` seconds (at most
 * `s.concurrency` in flight). Returns the proxy's CPU per handshake (`pacedCpu`, µs) and the rate
 * reached (`pacedRate`); `pacedCpu` is NaN when the proxy did not keep up (under 95 % of the rate:
 * then it ran saturated and the figure would not be the paced one).
 */
async function measurePaced(proxy: RunningProxy, lg: Loadgen, s: Settings): Promise<{ pacedCpu: number; pacedRate: number }> {
  const pm = cpuMeter(proxy.pid);
  let r: LoadgenResult;
  try {
    r = await lg.run('handshake', proxy, ['--duration', String(s.duration), '--concurrency', String(s.concurrency), '--rate', String(s.pacedRate), '--timeout', String(s.duration + 10)], (s.duration + 20) * 1000);
  } catch {
    pm.stop();
    return { pacedCpu: NaN, pacedRate: NaN };
  }
  const pc = pm.stop();
  const done = r.completed ?? 0;
  const rate = r.rate ?? NaN;
  const kept = r.ok && !r.timeout && r.errors === 0 && rate >= 0.95 * s.pacedRate;
  return { pacedCpu: kept && done > 0 ? (1e6 * (pc.user + pc.sys)) / done : NaN, pacedRate: rate };
}

async function measureIdle(target: TargetName, rep: number, o: StartOptions, lg: Loadgen, s: Settings): Promise<Sample> {
  let proxy: RunningProxy | undefined;
  try {
    proxy = await launch(target, o);
    if (!proxy) throw new Error('no proxy');
    // Warm up the code paths (one second of handshakes at low concurrency), then let it settle.
    await lg.run('handshake', proxy, ['--duration', '1', '--concurrency', '16', '--timeout', '10'], 20_000);
    await sleep(s.settleMs);
    const before = memoryOf(processTree(proxy.pid));
    const p = proxy;
    const { ready, done, measured } = await lg.idle(proxy, s.tunnels, 120, async () => {
      await sleep(s.settleMs);
      const tree = processTree(p.pid);
      return { ...memoryOf(tree), procs: tree.length };
    });
    const open = ready.open ?? 0;
    const ok = open === s.tunnels && (done.dropped ?? 0) === 0 && ready.errors === 0;
    return {
      phase: 'idle',
      target,
      rep,
      ok,
      ...(ok ? {} : { error: `open ${open}/${s.tunnels}, dropped ${done.dropped ?? 0}, errors ${ready.errors}; last: ${ready.last_error ?? ''}` }),
      value: open > 0 ? (measured.pss - before.pss) / open / 1024 : NaN,
      extra: {
        rssPerTunnelKiB: open > 0 ? (measured.rss - before.rss) / open / 1024 : NaN,
        pssBeforeMiB: before.pss / MIB,
        pssAfterMiB: measured.pss / MIB,
        processes: measured.procs,
        openSeconds: ready.seconds ?? NaN,
        open,
      },
    };
  } catch (err) {
    return { phase: 'idle', target, rep, ok: false, error: (err as Error).message, value: NaN };
  } finally {
    await shutdown(proxy);
  }
}

/**
 * Run a pinned child to its end (SIGKILL by PID after `timeoutMs`) and return the last line of its
 * stdout that starts with `{` (the load tools print one JSON result line), its stderr and how it
 * exited.
 */
async function runForJsonLine(core: number | undefined, nofile: number, file: string, args: readonly string[], timeoutMs: number): Promise<{ line: string | undefined; err: string; exit: number | string | null }> {
  const child = spawnPinned(core, nofile, file, args, ['ignore', 'pipe', 'pipe']);
  started.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => {
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, timeoutMs);
  await new Promise<void>((r) => child.once('exit', () => r()));
  clearTimeout(timer);
  started.delete(child);
  return { line: out.trim().split('\n').filter((l) => l.startsWith('{')).pop(), err, exit: child.exitCode ?? child.signalCode };
}

/**
 * One `udp` sample: `size`-byte datagrams through one UDP ASSOCIATE of the running `proxy`
 * (bench/udp-load.ts, pinned to the load core, with its own echo server), `udpCount` of them,
 * UDP_WINDOW in flight. The figure is echoes per second; loss is counted, not retried.
 */
async function measureUdp(target: TargetName, rep: number, size: number, proxy: RunningProxy, s: Settings, o: StartOptions): Promise<Sample> {
  const script = path.join(ROOT, 'dist', 'bench', 'udp-load.js');
  const timeoutS = 30 + Math.ceil(s.udpCount / 2000);
  const pm = cpuMeter(proxy.pid);
  const t0 = performance.now();
  const { line, err } = await runForJsonLine(
    o.core === undefined ? undefined : LOAD_CORE,
    o.nofile,
    process.execPath,
    [script, '--proxy', `127.0.0.1:${proxy.port}`, '--count', String(s.udpCount), '--size', String(size), '--window', String(UDP_WINDOW), '--timeout', String(timeoutS)],
    (timeoutS + 10) * 1000,
  );
  const wall = (performance.now() - t0) / 1000;
  const pc = pm.stop();
  if (!line) return { phase: 'udp', target, rep, ok: false, error: `udp-load printed no result; stderr: ${err.trim().slice(-300)}`, value: NaN, extra: { size } };
  const r = JSON.parse(line) as { ok: boolean; error?: string; sent?: number; received?: number; lost?: number; seconds?: number; rate?: number; cpu_user_s: number; cpu_sys_s: number };
  return {
    phase: 'udp',
    target,
    rep,
    ok: r.ok,
    ...(r.ok ? {} : { error: r.error ?? 'failed' }),
    value: r.rate ?? NaN,
    proxyUser: (100 * pc.user) / wall,
    proxySys: (100 * pc.sys) / wall,
    ...(r.received ? { proxyCpuPerUnit: (1e6 * (pc.user + pc.sys)) / r.received } : {}),
    // Over the process's whole life (its CPU includes start-up), so per wall second of it.
    loadCpu: (100 * (r.cpu_user_s + r.cpu_sys_s)) / wall,
    extra: { size, sent: r.sent ?? 0, received: r.received ?? 0, lost: r.lost ?? 0 },
  };
}

// ---------------------------------------------------------------------------------------------
// Report

export interface Stat {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
  readonly failed: number;
}

export function stat(xs: readonly number[], failed: number): Stat | undefined {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return failed > 0 ? { median: NaN, min: NaN, max: NaN, n: 0, failed } : undefined;
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, n: v.length, failed };
}

interface Figure {
  readonly key: string;
  readonly title: string;
  readonly unit: string;
  readonly higherIsBetter: boolean;
  readonly phase: Phase;
  readonly pick: (s: Sample) => number | undefined;
  readonly digits: number;
  /** Shown in the figures table, left out of the ratios (a diagnostic, not a goal). */
  readonly diagnostic?: boolean;
  /** Which samples of the phase the figure is about (default: all; the udp figures: one size). */
  readonly applies?: (s: Sample) => boolean;
}

const FIGURES: readonly Figure[] = [
  { key: 'bulk-down', title: 'bulk, 1 stream down', unit: 'MB/s', higherIsBetter: true, phase: 'bulk-down', pick: (s) => s.value, digits: 0 },
  { key: 'bulk-up', title: 'bulk, 1 stream up', unit: 'MB/s', higherIsBetter: true, phase: 'bulk-up', pick: (s) => s.value, digits: 0 },
  { key: 'bulk-down-8', title: 'bulk, 8 streams down', unit: 'MB/s', higherIsBetter: true, phase: 'bulk-down-8', pick: (s) => s.value, digits: 0 },
  { key: 'handshake', title: 'handshakes', unit: '/s', higherIsBetter: true, phase: 'handshake', pick: (s) => s.value, digits: 0 },
  { key: 'ttfb-p50', title: 'time to first byte p50', unit: 'ms', higherIsBetter: false, phase: 'handshake', pick: (s) => s.ttfbP50Ms, digits: 2 },
  { key: 'ttfb-p99', title: 'time to first byte p99', unit: 'ms', higherIsBetter: false, phase: 'handshake', pick: (s) => s.ttfbP99Ms, digits: 2 },
  { key: 'idle', title: 'PSS per idle tunnel', unit: 'KiB', higherIsBetter: false, phase: 'idle', pick: (s) => s.value, digits: 1 },
  { key: 'cpu-bulk-down', title: 'proxy CPU per GB, 1 stream down', unit: 'core-s', higherIsBetter: false, phase: 'bulk-down', pick: (s) => s.proxyCpuPerUnit, digits: 2 },
  { key: 'cpu-bulk-up', title: 'proxy CPU per GB, 1 stream up', unit: 'core-s', higherIsBetter: false, phase: 'bulk-up', pick: (s) => s.proxyCpuPerUnit, digits: 2 },
  { key: 'cpu-bulk-down-8', title: 'proxy CPU per GB, 8 streams down', unit: 'core-s', higherIsBetter: false, phase: 'bulk-down-8', pick: (s) => s.proxyCpuPerUnit, digits: 2 },
  { key: 'cpu-handshake', title: 'proxy CPU per handshake', unit: 'µs', higherIsBetter: false, phase: 'handshake', pick: (s) => s.proxyCpuPerUnit, digits: 0 },
  { key: 'udp-64', title: 'UDP datagrams, 64 B, one association', unit: '/s', higherIsBetter: true, phase: 'udp', pick: (s) => s.value, digits: 0, applies: (s) => s.extra?.size === 64 },
  { key: 'udp-512', title: 'UDP datagrams, 512 B, one association', unit: '/s', higherIsBetter: true, phase: 'udp', pick: (s) => s.value, digits: 0, applies: (s) => s.extra?.size === 512 },
  { key: 'cpu-faults-down', title: 'proxy minor page faults per MB, 1 stream down', unit: 'faults', higherIsBetter: false, phase: 'bulk-down', pick: (s) => s.proxyFaultsPerUnit, digits: 1, diagnostic: true },
];

export function fmt(n: number, digits: number): string {
  if (!Number.isFinite(n)) return '—';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function statOf(samples: readonly Sample[], f: Figure, t: TargetName): Stat | undefined {
  const mine = samples.filter((s) => s.phase === f.phase && s.target === t && (f.applies?.(s) ?? true));
  if (mine.length === 0) return undefined;
  return stat(
    mine.filter((s) => s.ok).map((s) => f.pick(s) ?? NaN),
    mine.filter((s) => !s.ok).length,
  );
}

function cpuStat(samples: readonly Sample[], phase: Phase, t: TargetName): { proxy: number; user: number; load: number } | undefined {
  const mine = samples.filter((s) => s.phase === phase && s.target === t && s.ok);
  if (mine.length === 0) return undefined;
  const med = (xs: number[]) => stat(xs, 0)?.median ?? NaN;
  return {
    proxy: med(mine.map((s) => (s.proxyUser ?? NaN) + (s.proxySys ?? NaN))),
    user: med(mine.map((s) => s.proxyUser ?? NaN)),
    load: med(mine.map((s) => s.loadCpu ?? NaN)),
  };
}

/** Node's socksv5 server, KiB per idle tunnel, as given in issue 4 (used when it was not measured). */
const SOCKSV5_KIB = 11.3;

/**
 * The report, in markdown: run facts (`meta`: command, commit, date, runs, machine), the figures
 * (medians and min–max), CPU, ratios, the issue-15 summary and the older targets. Pure: what
 * `--markdown FILE` writes and docs/performance.md pastes.
 */
export function report(samples: readonly Sample[], s: Settings, meta: Record<string, string>): string {
  const targets = ALL_TARGETS.filter((t) => samples.some((x) => x.target === t));
  const L: string[] = [];
  L.push(`### Results (${meta.when})`, '');
  for (const [k, v] of Object.entries(meta)) if (k !== 'when') L.push(`- ${k}: ${v}`);
  L.push('');
  L.push(`| figure | ${targets.map((t) => TARGET_TITLE[t]).join(' | ')} |`);
  L.push(`|---|${targets.map(() => '---').join('|')}|`);
  for (const f of FIGURES) {
    if (!s.phases.includes(f.phase)) continue;
    const cells = targets.map((t) => {
      if ((f.phase === 'idle' || f.key.startsWith('cpu-')) && t === 'none') return 'n/a';
      const st = statOf(samples, f, t);
      if (!st) return '';
      if (st.n === 0) return `failed ×${st.failed}`;
      const range = st.n > 1 ? ` (${fmt(st.min, f.digits)}–${fmt(st.max, f.digits)})` : '';
      return `${fmt(st.median, f.digits)}${range}${st.failed ? ` [${st.failed} failed]` : ''}`;
    });
    L.push(`| ${f.title}, ${f.unit} | ${cells.join(' | ')} |`);
  }
  L.push('');
  L.push(...udpNote(samples, s, targets));
  if (samples.some((x) => x.phase !== 'idle')) {
    L.push('CPU, median % of one core: proxy (of which user) / load side (loadgen + sink). A load side near 100 % (⚠) means the generator, not the proxy, set the figure.');
    L.push('');
    L.push(`| phase | ${targets.map((t) => TARGET_TITLE[t]).join(' | ')} |`);
    L.push(`|---|${targets.map(() => '---').join('|')}|`);
  }
  for (const ph of s.phases) {
    if (ph === 'idle' || !samples.some((x) => x.phase === ph)) continue;
    const cells = targets.map((t) => {
      const c = cpuStat(samples, ph, t);
      if (!c) return '';
      const proxy = t === 'none' ? '—' : `${fmt(c.proxy, 0)} (${fmt(c.user, 0)})`;
      return `${proxy} / ${fmt(c.load, 0)}${c.load >= 90 ? ' ⚠' : ''}`;
    });
    L.push(`| ${ph} | ${cells.join(' | ')} |`);
  }
  const others = samples.filter((x) => x.otherProxyCore !== undefined && x.ok);
  if (others.length > 0) {
    const m0 = stat(others.map((x) => x.otherProxyCore!), 0)!;
    const m1 = stat(others.map((x) => x.otherLoadCore!), 0)!;
    L.push('');
    L.push(
      `Other processes on the machine took a median ${fmt(m0.median, 0)} % (max ${fmt(m0.max, 0)} %) of the proxy's core and ${fmt(m1.median, 0)} % (max ${fmt(m1.max, 0)} %) of the load core during the runs (from /proc/stat, softirq excluded).` +
        (m0.median > 10 || m1.median > 10 ? ' **The machine was busy: absolute figures are lower than on a quiet machine; the interleaved ratios are less affected.**' : ''),
    );
  }
  // Ratios
  const mine = targets.filter((t) => t === 'socksmith-default' || t === 'socksmith-on' || t === 'socksmith-off');
  const shortName: Partial<Record<TargetName, string>> = { 'socksmith-default': 'defaults', 'socksmith-on': 'tuned on', 'socksmith-off': 'tuned off' };
  const peers = targets.filter((t) => !t.startsWith('socksmith'));
  if (mine.length > 0 && peers.length > 0) {
    L.push('');
    L.push('Ratios of medians, socksmith ÷ peer (throughput and handshakes: higher is better; time and memory: lower is better).');
    L.push('');
    const cols = mine.flatMap((m) => peers.map((p) => [m, p] as const));
    L.push(`| figure | ${cols.map(([m, p]) => `${shortName[m]} ÷ ${TARGET_TITLE[p]}`).join(' | ')} |`);
    L.push(`|---|${cols.map(() => '---').join('|')}|`);
    for (const f of FIGURES) {
      if (!s.phases.includes(f.phase) || f.diagnostic) continue;
      const cells = cols.map(([m, p]) => {
        if ((f.phase === 'idle' || f.key.startsWith('cpu-')) && p === 'none') return 'n/a';
        const a = statOf(samples, f, m);
        const b = statOf(samples, f, p);
        if (!a || !b || !Number.isFinite(a.median) || !Number.isFinite(b.median) || b.median === 0) return '—';
        return `${(a.median / b.median).toFixed(2)}×`;
      });
      L.push(`| ${f.title} | ${cells.join(' | ')} |`);
    }
  }
  // Targets of issue 4
  const med = (key: string, t: TargetName) => {
    const f = FIGURES.find((x) => x.key === key)!;
    if (!s.phases.includes(f.phase) || !targets.includes(t)) return NaN;
    return statOf(samples, f, t)?.median ?? NaN;
  };
  // The main socksmith column: the defaults when measured, else the tuned run.
  const main: TargetName = targets.includes('socksmith-default') ? 'socksmith-default' : 'socksmith-on';
  L.push(...issue15(samples, s, targets));
  const goals: [string, number, number, (x: number) => boolean, string][] = [
    ['bulk 1 stream down ≥ 1.2 × dante-server', med('bulk-down', main), med('bulk-down', main) / med('bulk-down', 'dante'), (r) => r >= 1.2, '×'],
    ['handshakes/s ≥ 1.1 × microsocks', med('handshake', main), med('handshake', main) / med('handshake', 'microsocks'), (r) => r >= 1.1, '×'],
    ['TTFB p99 ≤ microsocks', med('ttfb-p99', main), med('ttfb-p99', main) / med('ttfb-p99', 'microsocks'), (r) => r <= 1, '×'],
    Number.isFinite(med('idle', 'socksv5'))
      ? ['PSS per idle tunnel ≤ 0.9 × Node socksv5 (measured here)', med('idle', main), med('idle', main) / med('idle', 'socksv5'), (r) => r <= 0.9, '×']
      : [`PSS per idle tunnel ≤ 0.9 × Node socksv5 (${SOCKSV5_KIB} KiB, the issue's figure)`, med('idle', main), med('idle', main) / SOCKSV5_KIB, (r) => r <= 0.9, '×'],
    ['plugins on vs off (tuned): ≤ 10 % fewer handshakes/s', med('handshake', 'socksmith-on'), med('handshake', 'socksmith-on') / med('handshake', 'socksmith-off'), (r) => r >= 0.9, '× of off'],
  ];
  L.push('');
  L.push(`Targets of issue 4, for ${TARGET_TITLE[main]}:`);
  L.push('');
  L.push(`| target | ${TARGET_TITLE[main]} | ratio | met |`);
  L.push('|---|---|---|---|');
  for (const [name, v, r, ok, unit] of goals) {
    L.push(`| ${name} | ${fmt(v, v < 100 ? 2 : 0)} | ${Number.isFinite(r) ? `${r.toFixed(2)}${unit}` : '—'} | ${Number.isFinite(r) ? (ok(r) ? 'yes' : '**no**') : '—'} |`);
  }
  // The ceiling: where the least a Node server can do stands against the same targets.
  if (targets.includes('node-floor')) {
    const ceil: [string, number, number, string][] = [
      ['bulk 1 stream down ÷ dante-server', med('bulk-down', 'node-floor') / med('bulk-down', 'dante'), med('bulk-down', main) / med('bulk-down', 'node-floor'), '≥ 1.2'],
      ['handshakes/s ÷ microsocks', med('handshake', 'node-floor') / med('handshake', 'microsocks'), med('handshake', main) / med('handshake', 'node-floor'), '≥ 1.1'],
      ['TTFB p99 ÷ microsocks', med('ttfb-p99', 'node-floor') / med('ttfb-p99', 'microsocks'), med('ttfb-p99', main) / med('ttfb-p99', 'node-floor'), '≤ 1'],
      ['PSS per idle tunnel ÷ Node socksv5', med('idle', 'node-floor') / med('idle', 'socksv5'), med('idle', main) / med('idle', 'node-floor'), '≤ 0.9'],
    ];
    const r = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '—');
    L.push('');
    L.push(`The Node ceiling: the same ratios for "Node floor" (bench/node-floor-server.ts, the least a node:net SOCKS5 server does), and ${TARGET_TITLE[main]} against it:`);
    L.push('');
    L.push(`| figure | target | Node floor | ${TARGET_TITLE[main]} ÷ Node floor |`);
    L.push('|---|---|---|---|');
    for (const [name, floor, vs, goal] of ceil) L.push(`| ${name} | ${goal} | ${r(floor)} | ${r(vs)} |`);
  }
  const failures = samples.filter((x) => !x.ok || x.error);
  if (failures.length > 0) {
    L.push('', 'Failed runs, and runs with errors (a failed run is left out of the figures):');
    for (const f of failures) L.push(`- ${f.phase} ${f.target} rep ${f.rep}${f.ok ? ' (kept)' : ' (failed)'}: ${f.error ?? 'failed'}`);
  }
  return L.join('\n');
}

/** Per-repetition ratios a ÷ b of `pick` in `phase` (same run and repetition, both ok): interleaved, so each pair saw the same machine. */
export function pairedRatios(samples: readonly Sample[], phase: Phase, a: TargetName, b: TargetName, pick: (x: Sample) => number | undefined = (x) => x.value): { run: number; rep: number; ratio: number }[] {
  const out: { run: number; rep: number; ratio: number }[] = [];
  for (const x of samples) {
    if (x.phase !== phase || x.target !== a || !x.ok) continue;
    const y = samples.find((z) => z.phase === phase && z.target === b && z.ok && z.rep === x.rep && (z.run ?? 1) === (x.run ?? 1));
    const va = pick(x);
    const vb = y ? pick(y) : undefined;
    if (va === undefined || vb === undefined || !Number.isFinite(va) || !Number.isFinite(vb) || vb === 0) continue;
    out.push({ run: x.run ?? 1, rep: x.rep, ratio: va / vb });
  }
  return out;
}

function ratioCell(rs: readonly { ratio: number }[]): string {
  const st = stat(
    rs.map((r) => r.ratio),
    0,
  );
  if (!st) return '—';
  return `${st.median.toFixed(2)}×${st.n > 1 ? ` (${st.min.toFixed(2)}–${st.max.toFixed(2)}, n=${st.n})` : ' (n=1)'}`;
}

/**
 * The figures issue 15 asks for, from one run: the log cost, CPU per handshake against the Node
 * floor, bulk against dante-server (with each separate run's median when `--runs` > 1), and the
 * idle tunnels held at the defaults. Ratios are medians of per-repetition ratios (min–max).
 */
export function issue15(samples: readonly Sample[], s: Settings, targets: readonly TargetName[]): string[] {
  const L: string[] = ['', 'Issue 15: socksmith as users run it. Ratios are medians of per-repetition ratios (each pair measured in the same repetition), min–max and count in parentheses.', ''];
  L.push('| figure | value |');
  L.push('|---|---|');
  const has = (t: TargetName) => targets.includes(t);
  const cell = (phase: Phase, t: TargetName, pick: (x: Sample) => number | undefined, digits: number) => {
    const st = stat(
      samples.filter((x) => x.phase === phase && x.target === t && x.ok).map((x) => pick(x) ?? NaN),
      samples.filter((x) => x.phase === phase && x.target === t && !x.ok).length,
    );
    if (!st || st.n === 0) return '—';
    return `${fmt(st.median, digits)}${st.n > 1 ? ` (${fmt(st.min, digits)}–${fmt(st.max, digits)})` : ''}`;
  };
  const cpu = (x: Sample) => (x.phase === 'handshake' ? x.proxyCpuPerUnit : undefined);
  let rows = 0;
  if (s.phases.includes('handshake') && has('socksmith-default') && has('socksmith-default-warn')) {
    L.push(`| log cost: handshakes/s at info ÷ at warn (defaults; goal ≥ 0.95×) | ${ratioCell(pairedRatios(samples, 'handshake', 'socksmith-default', 'socksmith-default-warn'))} |`);
    L.push(`| log cost: CPU per handshake at info ÷ at warn (defaults) | ${ratioCell(pairedRatios(samples, 'handshake', 'socksmith-default', 'socksmith-default-warn', cpu))} |`);
    rows++;
  }
  if (s.phases.includes('handshake')) {
    for (const t of ['socksmith-default', 'socksmith-on', 'node-floor'] as const) {
      if (has(t)) {
        L.push(`| proxy CPU per handshake, ${TARGET_TITLE[t]}, µs | ${cell('handshake', t, cpu, 0)} |`);
        rows++;
      }
    }
    if (has('node-floor')) {
      for (const t of ['socksmith-default', 'socksmith-on'] as const) {
        if (has(t)) L.push(`| CPU per handshake, ${TARGET_TITLE[t]} ÷ Node floor${t === 'socksmith-default' ? ' (goal ≤ 1.15×)' : ''} | ${ratioCell(pairedRatios(samples, 'handshake', t, 'node-floor', cpu))} |`);
      }
    }
    if (s.pacedRate > 0 && has('socksmith-default') && has('node-floor')) {
      // The same two at one offered rate (measurePaced): the load core idles alike for both.
      const paced = (x: Sample) => (x.phase === 'handshake' ? x.extra?.pacedCpu : undefined);
      for (const t of PACED_TARGETS) L.push(`| proxy CPU per handshake at ${fmt(s.pacedRate, 0)}/s offered, ${TARGET_TITLE[t]}, µs | ${cell('handshake', t, paced, 0)} |`);
      L.push(`| CPU per handshake at ${fmt(s.pacedRate, 0)}/s offered, ${TARGET_TITLE['socksmith-default']} ÷ Node floor | ${ratioCell(pairedRatios(samples, 'handshake', 'socksmith-default', 'node-floor', paced))} |`);
      rows++;
    }
  }
  if (s.phases.includes('bulk-down') && has('dante')) {
    for (const t of ['socksmith-default', 'socksmith-on'] as const) {
      if (!has(t)) continue;
      const rs = pairedRatios(samples, 'bulk-down', t, 'dante');
      L.push(`| bulk, 1 stream down, ${TARGET_TITLE[t]} ÷ dante-server (goal ≥ 1.2×) | ${ratioCell(rs)} |`);
      rows++;
      if (s.runs > 1) {
        const perRun = [...new Set(rs.map((r) => r.run))].sort((a, b) => a - b).map((run) => stat(rs.filter((r) => r.run === run).map((r) => r.ratio), 0)!.median);
        const st = stat(perRun, 0);
        L.push(`| … each separate run's median (${perRun.length} runs) | ${perRun.map((r) => `${r.toFixed(2)}×`).join(', ')}${st ? `; range ${st.min.toFixed(2)}–${st.max.toFixed(2)}×` : ''} |`);
      }
    }
  }
  if (s.phases.includes('idle') && has('socksmith-default')) {
    const idle = samples.filter((x) => x.phase === 'idle' && x.target === 'socksmith-default');
    const held = idle.map((x) => (x.extra?.open !== undefined ? `${fmt(x.extra.open, 0)}` : x.error ? `failed: ${x.error}` : '—'));
    const why = idle.filter((x) => !x.ok && x.error).map((x) => x.error!);
    L.push(`| idle tunnels held at the defaults (of ${fmt(s.tunnels, 0)} asked) | ${held.join(', ') || '—'}${why.length > 0 ? `; not all held: ${why.join('; ')}` : ''} |`);
    L.push(`| PSS per idle tunnel, ${TARGET_TITLE['socksmith-default']}, KiB | ${cell('idle', 'socksmith-default', (x) => x.value, 1)} |`);
    rows++;
  }
  return rows > 0 ? L : [];
}

/**
 * How the UDP figures were taken, and what was lost: one association per target and size,
 * `udpCount` datagrams, UDP_WINDOW in flight, echoed by a UDP server on loopback.
 */
export function udpNote(samples: readonly Sample[], s: Settings, targets: readonly TargetName[]): string[] {
  const udp = samples.filter((x) => x.phase === 'udp');
  if (udp.length === 0) return [];
  const loss = targets
    .filter((t) => udp.some((x) => x.target === t))
    .map((t) => {
      const mine = udp.filter((x) => x.target === t && x.extra);
      const sent = mine.reduce((a, x) => a + (x.extra!.sent ?? 0), 0);
      const lost = mine.reduce((a, x) => a + (x.extra!.lost ?? 0), 0);
      return `${TARGET_TITLE[t]}${t === 'socksmith-default' ? ' + udp-associate' : ''} ${fmt(lost, 0)} of ${fmt(sent, 0)}`;
    });
  return [
    `UDP: through one SOCKS5 UDP ASSOCIATE per target and size, ${fmt(s.udpCount, 0)} datagrams of 64 and 512 bytes (plus the 10-byte header) to a UDP echo server on loopback, ${UDP_WINDOW} in flight (bench/udp-load.ts, on the load core); the figure is echoes per second. socksmith runs its defaults plus \`'udp-associate': true\`; dante-server allows \`udpassociate udpreply\`. Datagrams lost (not retried): ${loss.join('; ')}.`,
    '',
  ];
}

// ---------------------------------------------------------------------------------------------
// Profile mode

async function runProfile(s: Settings, o: StartOptions, lg: Loadgen): Promise<void> {
  const runs: { target: 'socksmith-default' | 'socksmith-default-warn' | 'socksmith-on' | 'socksmith-off' | 'node-floor'; phase: 'handshake' | 'bulk-down' }[] = [
    // socksmith as users run it (access log at info to a drained pipe), the same at warn (the
    // log's cost), then tuned.
    { target: 'socksmith-default', phase: 'handshake' },
    { target: 'socksmith-default-warn', phase: 'handshake' },
    { target: 'socksmith-on', phase: 'handshake' },
    { target: 'socksmith-off', phase: 'handshake' },
    { target: 'socksmith-on', phase: 'bulk-down' },
    // The Node ceiling, for comparison.
    { target: 'node-floor', phase: 'handshake' },
  ];
  const wanted = runs.filter((r) => s.phases.includes(r.phase) && s.targets.includes(r.target));
  const dir = path.join(BUILD, `profile-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const r of wanted) {
    const sub = path.join(dir, `${r.target}-${r.phase}`);
    fs.mkdirSync(sub);
    const proxy = await launch(r.target, { ...o, nodeFlags: ['--cpu-prof', '--cpu-prof-dir', sub] });
    if (!proxy) continue;
    await lg.run('handshake', proxy, ['--duration', '3', '--concurrency', String(s.concurrency), '--timeout', '10'], 20_000);
    await lg.run('bulk-down', proxy, ['--streams', '1', '--bytes', String(256 * MIB), '--timeout', '30'], 40_000);
    const meter = cpuMeter(proxy.pid);
    // The profile's timestamps are CLOCK_MONOTONIC microseconds, like process.hrtime.
    const from = Number(process.hrtime.bigint() / 1000n);
    const t0 = performance.now();
    const res =
      r.phase === 'handshake'
        ? await lg.run('handshake', proxy, ['--duration', String(s.duration), '--concurrency', String(s.concurrency), '--timeout', String(s.duration + 10)], (s.duration + 20) * 1000)
        : await lg.run('bulk-down', proxy, ['--streams', '1', '--bytes', String(s.bulkBytes), '--timeout', '120'], 130_000);
    const to = Number(process.hrtime.bigint() / 1000n);
    const wall = (performance.now() - t0) / 1000;
    const cpu = meter.stop();
    await shutdown(proxy);
    const file = fs.readdirSync(sub).find((f) => f.endsWith('.cpuprofile'));
    const figure = r.phase === 'handshake' ? `${fmt(res.rate ?? NaN, 0)} handshakes/s` : `${fmt(res.mbps ?? NaN, 0)} MB/s`;
    const faults = r.phase === 'handshake' ? `${fmt(cpu.minflt / Math.max(1, res.completed ?? 0), 2)} minor page faults per handshake` : `${fmt(cpu.minflt / (s.bulkBytes / 1e6), 1)} minor page faults per MB`;
    process.stdout.write(`\n## ${r.target}, ${r.phase}: ${figure}; proxy CPU ${fmt((100 * (cpu.user + cpu.sys)) / wall, 0)} % of a core (user ${fmt((100 * cpu.user) / wall, 0)} %, system ${fmt((100 * cpu.sys) / wall, 0)} %); ${faults}\n`);
    if (!file) {
      process.stdout.write(`no .cpuprofile was written in ${sub}\n`);
      continue;
    }
    const profile = JSON.parse(fs.readFileSync(path.join(sub, file), 'utf8')) as CpuProfile;
    process.stdout.write(`${formatSummary(summarize(profile, { top: 25, from, to }), path.relative(ROOT, path.join(sub, file)))}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// Main

function rotate<T>(xs: readonly T[], k: number): T[] {
  const n = xs.length;
  return xs.map((_, i) => xs[(i + k) % n]!);
}

async function main(): Promise<void> {
  const s = parseSettings(process.argv.slice(2));
  const t0 = Date.now();
  const loadBefore = loadAverage();
  const peers = ensureTools(s);
  const bins = buildC();
  const nofile = effectiveNofile();
  const cores = os.cpus().length;
  const pin = cores >= 2;
  if (!pin) log(`only ${cores} core: no pinning, figures are not per core`);
  const maxTunnels = Math.floor((nofile - 200) / 2);
  const tunnels = Math.min(s.tunnels, maxTunnels);
  if (tunnels < s.tunnels) log(`fd limit ${nofile}: idle test capped at ${tunnels} tunnels`);
  const settings: Settings = { ...s, tunnels };
  if (!fs.existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))) throw new Error('dist/src/cli/main.js is missing: run tsc first (npm run bench does)');
  const socksmithState = gitState();
  const o: StartOptions = { core: pin ? PROXY_CORE : undefined, drainCore: pin ? LOAD_CORE : undefined, nofile, root: ROOT, socksmithDir: snapshotDist(), peers };

  const sink = await startSink(bins.sink, Math.ceil(s.budgetMs / 1000) + 1800, nofile);
  const lg = new Loadgen(bins.loadgen, sink.port, nofile);

  if (s.profile) {
    await runProfile(settings, o, lg);
    return;
  }

  const available = (t: TargetName) => (t === 'microsocks' ? !!peers.microsocks : t === 'dante' ? !!peers.danted : t === 'socksv5' ? !!peers.socksv5Dir : true);
  const targets = settings.targets.filter(available);
  const idleTargets = settings.idleTargets.filter(available);
  const loadPhases = settings.phases.filter((p): p is Exclude<Phase, 'idle' | 'udp'> => p !== 'idle' && p !== 'udp');
  const udpTargets = settings.phases.includes('udp') ? UDP_TARGETS.filter((t) => targets.includes(t)) : [];
  const samples: Sample[] = [];
  const accessLog: { run: number; target: TargetName; drained: LogDrained }[] = [];
  let repsDone = 0;
  let idleDone = 0;
  for (let run = 1; run <= settings.runs; run++) {
    const runT0 = Date.now();
    let runReps = 0;
    const running = new Map<TargetName, RunningProxy | undefined>();
    const udpRunning = new Map<TargetName, RunningProxy | undefined>();
    if (loadPhases.length > 0) {
      for (const t of targets) {
        running.set(t, await launch(t, o));
        log(`${settings.runs > 1 ? `run ${run}: ` : ''}started ${t}${running.get(t) ? ` (pid ${running.get(t)!.pid}, port ${running.get(t)!.port})` : ''}`);
      }
      // Warm-up, not recorded: V8's optimizing compiler (it runs on the proxy's core too), the
      // proxies' lazy allocations.
      for (const t of targets) {
        await lg.run('handshake', running.get(t), ['--duration', settings.quick ? '1' : '3', '--concurrency', String(settings.concurrency), '--timeout', '10'], 20_000).catch(() => undefined);
        if (!HANDSHAKE_ONLY_TARGETS.includes(t)) await lg.run('bulk-down', running.get(t), ['--streams', '1', '--bytes', String((settings.quick ? 64 : 256) * MIB), '--timeout', '30'], 40_000).catch(() => undefined);
      }
    }
    for (let rep = 1; rep <= settings.reps; rep++) {
      // The budget is per run: each of the --runs separate runs gets it.
      const elapsed = Date.now() - runT0;
      if (runReps > 0 && elapsed + elapsed / runReps > settings.budgetMs) {
        log(`time budget (${settings.budgetMs / 1000} s) reached after ${runReps} repetitions`);
        break;
      }
      const order = rotate(targets, rep - 1);
      for (const ph of loadPhases) {
        for (const t of order) {
          if (ph !== 'handshake' && HANDSHAKE_ONLY_TARGETS.includes(t)) continue;
          const sample = { ...(await measureLoad(ph, t, rep, running.get(t), lg, sink, settings, o)), run };
          samples.push(sample);
          log(`${settings.runs > 1 ? `run ${run} ` : ''}rep ${rep} ${ph.padEnd(11)} ${t.padEnd(22)} ${sample.ok ? fmt(sample.value, 0) : `FAILED: ${sample.error}`}${sample.ttfbP99Ms !== undefined ? ` (ttfb p50 ${fmt(sample.ttfbP50Ms!, 2)} p99 ${fmt(sample.ttfbP99Ms, 2)} ms)` : ''}`);
          await sleep(200);
        }
      }
      // The idle test once per repetition of the first run only (it varies little).
      if (run === 1 && settings.phases.includes('idle') && rep <= settings.idleReps) {
        for (const t of rotate(idleTargets, rep - 1)) {
          const sample = { ...(await measureIdle(t, rep, o, lg, settings)), run };
          samples.push(sample);
          log(`rep ${rep} idle        ${t.padEnd(22)} ${sample.ok ? `${fmt(sample.value, 1)} KiB/tunnel` : `FAILED: ${sample.error}`}`);
        }
        idleDone++;
      }
      // UDP: its own proxies (socksmith with udp-associate on, dante with UDP allowed), started once per run.
      if (udpTargets.length > 0) {
        for (const t of rotate(udpTargets, rep - 1)) {
          if (!udpRunning.has(t)) {
            const p = await launch(t, { ...o, udp: true }).catch((err: Error) => {
              log(`udp: ${t} did not start: ${err.message}`);
              return undefined;
            });
            udpRunning.set(t, p);
            // Warm-up, not recorded.
            if (p) await measureUdp(t, 0, 64, p, { ...settings, udpCount: Math.min(settings.udpCount, 5000) }, o);
          }
          const p = udpRunning.get(t);
          for (const size of UDP_SIZES) {
            const sample: Sample = p ? { ...(await measureUdp(t, rep, size, p, settings, o)), run } : { phase: 'udp', target: t, rep, run, ok: false, error: 'did not start', value: NaN, extra: { size } };
            samples.push(sample);
            log(`${settings.runs > 1 ? `run ${run} ` : ''}rep ${rep} udp ${String(size).padStart(3)} B  ${t.padEnd(22)} ${sample.ok ? `${fmt(sample.value, 0)} datagrams/s, lost ${fmt(sample.extra?.lost ?? 0, 0)}` : `FAILED: ${sample.error}`}`);
            await sleep(200);
          }
        }
      }
      runReps++;
      repsDone++;
    }
    for (const p of udpRunning.values()) await shutdown(p);
    udpRunning.clear();
    for (const [t, p] of running) {
      const drained = p?.logDrained ? await p.logDrained() : undefined;
      if (drained) accessLog.push({ run, target: t, drained });
      await shutdown(p);
    }
  }
  sink.child.stdin?.end();

  const loadAfter = loadAverage();
  const meta: Record<string, string> = {
    when: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: `${cores} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.release()}; proxy pinned to core ${PROXY_CORE}, loadgen + sink to core ${LOAD_CORE}${pin ? '' : ' (NOT pinned: one core)'}`,
    'load average (1/5/15 min)': `${loadBefore.join(' / ')} before, ${loadAfter.join(' / ')} after`,
    versions: `node ${process.version}, microsocks ${packageVersion('microsocks')}, dante-server ${packageVersion('dante-server')}`,
    socksmith: socksmithState,
    runs: `${settings.runs > 1 ? `${settings.runs} separate runs (fresh proxies and warm-up each), ` : ''}${repsDone} repetitions in all (idle test: ${idleDone}, in the first run), interleaved (target order rotates each repetition); bulk ${settings.bulkBytes / MIB} MiB (8 streams × ${settings.parBytes / MIB} MiB); handshakes ${settings.duration} s, ${settings.concurrency} in flight; idle ${settings.tunnels} tunnels;${settings.phases.includes('udp') ? ` udp ${settings.udpCount} datagrams per size;` : ''} ${((Date.now() - t0) / 1000).toFixed(0)} s in all`,
  };
  if (accessLog.length > 0) {
    meta['access log'] = accessLog.map((a) => `${a.target}${settings.runs > 1 ? ` (run ${a.run})` : ''}: ${fmt(a.drained.lines, 0)} lines, ${fmt(a.drained.bytes / MIB, 1)} MiB read from its stderr pipe`).join('; ');
  }
  const text = report(samples, settings, meta);
  if (settings.markdown) fs.writeFileSync(settings.markdown, `${text}\n`);
  process.stdout.write(`\n${text}\n`);
  const raw = JSON.stringify({ meta, settings, samples }, null, 2);
  fs.writeFileSync(path.join(BUILD, `results-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), raw);
  if (settings.json) fs.writeFileSync(settings.json, raw);
}

// Only as the entry point: bench/workers.ts imports the helpers above.
if (path.resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) main().then(
  () => {
    killAllSync();
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`);
    killAllSync();
    process.exit(1);
  },
);

