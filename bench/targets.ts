/**
 * The proxies `npm run bench` compares, started pinned to one core on a loopback port and
 * stopped by PID. Same approach as test/e2e/helpers/daemons.ts (microsocks and danted with a
 * generated loopback-only, no-auth config).
 * @packageDocumentation
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** What the bench knows how to start. */
export type TargetName =
  | 'socksmith-default'
  | 'socksmith-default-warn'
  | 'socksmith-on'
  | 'socksmith-off'
  | 'socksmith-info'
  | 'microsocks'
  | 'dante'
  | 'none'
  | 'socksv5'
  | 'node-floor';

/** All targets, in table order: socksmith at its defaults first (the main column). */
export const ALL_TARGETS: readonly TargetName[] = ['socksmith-default', 'socksmith-on', 'socksmith-off', 'microsocks', 'dante', 'none', 'socksv5', 'node-floor', 'socksmith-default-warn', 'socksmith-info'];

/** Targets that only run when named in --targets. */
export const OPTIONAL_TARGETS: readonly TargetName[] = ['socksmith-info'];

/**
 * Targets that, by default, run only in the handshake phase: `socksmith-default-warn` is there
 * for the log-cost ratio (handshakes at info ÷ at warn), which only the handshake rate shows.
 */
export const HANDSHAKE_ONLY_TARGETS: readonly TargetName[] = ['socksmith-default-warn'];

/** The socksmith targets (run from the snapshot of dist/). */
export const SOCKSMITH_TARGETS: readonly TargetName[] = ['socksmith-default', 'socksmith-default-warn', 'socksmith-on', 'socksmith-off', 'socksmith-info'];

/** Column titles. */
export const TARGET_TITLE: Record<TargetName, string> = {
  'socksmith-default': 'socksmith (defaults)',
  'socksmith-default-warn': 'socksmith (defaults, log warn)',
  'socksmith-on': 'socksmith tuned (6 plugins on)',
  'socksmith-off': 'socksmith tuned (plugins off)',
  microsocks: 'microsocks',
  dante: 'dante-server',
  none: 'no proxy',
  socksv5: 'Node socksv5',
  'socksmith-info': 'socksmith tuned (on, log info)',
  'node-floor': 'Node floor',
};

/** A running proxy. */
export interface RunningProxy {
  readonly name: TargetName;
  readonly port: number;
  readonly pid: number;
  /** stderr/stdout tail, for failure messages. */
  output(): string;
  /** socksmith-default targets: what the access-log drain read; resolves once the proxy has exited. */
  logDrained?(): Promise<LogDrained | undefined>;
  /** SIGTERM by PID (SIGKILL after 3 s), then SIGKILL any descendant still alive. Idempotent. */
  stop(): Promise<void>;
}

/** Where the peers' binaries are (after installation). */
export interface PeerBinaries {
  readonly microsocks: string | undefined;
  readonly danted: string | undefined;
  /** Folder holding node_modules/socksv5 (installed by the bench, not a project dependency). */
  readonly socksv5Dir: string | undefined;
}

/** Options shared by every start. */
export interface StartOptions {
  /** Core to pin to (`taskset -c`), or undefined for no pinning. */
  readonly core: number | undefined;
  /** File descriptor limit to set (`ulimit -n`) before exec. */
  readonly nofile: number;
  /** Repository root (for dist/bench/socksv5-server.js). */
  readonly root: string;
  /** Folder whose dist/src/cli/main.js is the socksmith under test (a snapshot taken at the start). */
  readonly socksmithDir: string;
  readonly peers: PeerBinaries;
  /** Extra node flags for socksmith (e.g. --cpu-prof). */
  readonly nodeFlags?: readonly string[];
  /** Extra socksmith command-line arguments (e.g. `--workers 2`, bench/workers.ts). */
  readonly socksmithArgs?: readonly string[];
  /** Core for the process that drains socksmith-default's access log (the load core). */
  readonly drainCore?: number;
  /**
   * The `udp` phase: `socksmith-default` runs the defaults plus the udp-associate plugin (a JSON
   * config equal to proxy.config.ts with `'udp-associate': true`); `dante` allows UDP ASSOCIATE.
   */
  readonly udp?: boolean;
}

/** The config of `socksmith-default` in the `udp` phase: proxy.config.ts's settings plus udp-associate. */
export function socksmithUdpConfig(): object {
  return {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstream: { type: 'direct' },
    plugins: { isolation: true, resolve: true, 'resolve-ptr': true, 'http-detect': true, 'optimistic-data': true, 'extended-errors': false, 'udp-associate': true },
  };
}

/**
 * The access-log drains (`wc`) still running, for bench/run.ts to kill by PID on the way out: a
 * drain whose socksmith never opened the FIFO would otherwise wait on it forever.
 */
export const DRAINS = new Set<ChildProcess>();

/** What the drain of a socksmith-default target read from its stderr (the access log). */
export interface LogDrained {
  readonly lines: number;
  readonly bytes: number;
}

/** The six built-in plugins. extended-errors is off by default; "on" turns it on too. */
const PLUGINS = ['isolation', 'resolve', 'resolve-ptr', 'http-detect', 'optimistic-data', 'extended-errors'] as const;

/**
 * The config the tuned socksmith targets run with (`socksmith-on`, `-off`, `-info`); the
 * `socksmith-default` targets run the repository's proxy.config.ts instead (what `npx socksmith`
 * in the repository uses), with only the listen address changed by `--listen`.
 */
export function socksmithConfig(pluginsOn: boolean, level: 'warn' | 'info' = 'warn'): object {
  return {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstream: { type: 'direct' },
    plugins: Object.fromEntries(PLUGINS.map((p) => [p, pluginsOn])),
    // warn: the access log line per stream (info) is not free; see docs/performance.md.
    log: { level },
    // The idle test opens ~10k tunnels from one address; the defaults (10000, 1024 per client)
    // would refuse some of them.
    limits: { maxConnections: 20_000, maxConnectionsPerClient: 0 },
    timeouts: { drain: 1000 },
  };
}

/**
 * Spawn `file args` pinned to `core` with `ulimit -n` raised. `taskset` and `sh` exec into the
 * program, so the child's PID is the program's PID.
 */
export function spawnPinned(core: number | undefined, nofile: number, file: string, args: readonly string[], stdio: ('pipe' | 'ignore')[], stderrTo?: string): ChildProcess {
  // stderrTo: a path (a FIFO) the program's stderr is redirected to; sh opens it before exec.
  if (stderrTo !== undefined && /['\n]/.test(stderrTo)) throw new Error(`unusable path ${stderrTo}`);
  const script = `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"${stderrTo === undefined ? '' : ` 2>'${stderrTo}'`}`;
  const argv = ['-c', script, 'sh', file, ...args];
  if (core === undefined) return spawn('sh', argv, { stdio });
  return spawn('taskset', ['-c', String(core), 'sh', ...argv], { stdio });
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000; i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect({ port, host: '127.0.0.1' });
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function descendants(pid: number): number[] {
  // Children of `pid` (recursively), from /proc; used to make sure forked helpers go too.
  const byParent = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const t = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(t.slice(t.lastIndexOf(')') + 2).split(' ')[1]);
      const l = byParent.get(ppid);
      if (l) l.push(Number(name));
      else byParent.set(ppid, [Number(name)]);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const q = [...(byParent.get(pid) ?? [])];
  while (q.length > 0 && out.length < 100_000) {
    const p = q.shift()!;
    out.push(p);
    q.push(...(byParent.get(p) ?? []));
  }
  return out;
}

function wrap(name: TargetName, child: ChildProcess, port: number, cleanup: () => void): RunningProxy {
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-8192);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r();
    else child.once('exit', () => r());
  });
  let stopping: Promise<void> | undefined;
  const pid = child.pid ?? -1;
  return {
    name,
    port,
    pid,
    output: () => out,
    stop() {
      stopping ??= (async () => {
        const kids = pid > 0 ? descendants(pid) : [];
        if (pid > 0 && child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(pid, 'SIGTERM');
          } catch {
            /* gone */
          }
          const t = setTimeout(() => {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              /* gone */
            }
          }, 3000);
          await exited;
          clearTimeout(t);
        }
        // Children that outlived their parent (they were ours: started by the proxy we started).
        for (const k of kids) {
          if (!isAlive(k)) continue;
          try {
            process.kill(k, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        cleanup();
      })();
      return stopping;
    },
  };
}

/**
 * Start socksmith from the snapshot of dist/ and read its `listening on` line.
 *
 * `socksmith-default` / `socksmith-default-warn`: the repository's proxy.config.ts (copied into
 * the snapshot, so its `import 'socksmith'` resolves to the snapshot) with only the listen address
 * changed (`--listen 127.0.0.1:0`): default plugins, default limits, access log at info (or
 * `--log-level warn`). stderr, where the access log goes, is a FIFO read by `wc -lc` pinned to
 * the load core: a pipe that a reader drains, as under systemd (journald) or a container runtime,
 * not /dev/null (whose writes cost less than a pipe's). The reader only counts, so it never falls
 * behind; what a slow log store would add is not measured.
 *
 * The tuned targets: a generated JSON config (bench's {@link socksmithConfig}).
 */
async function startSocksmith(name: 'socksmith-default' | 'socksmith-default-warn' | 'socksmith-on' | 'socksmith-off' | 'socksmith-info', o: StartOptions): Promise<RunningProxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-bench-'));
  const isDefault = name === 'socksmith-default' || name === 'socksmith-default-warn';
  let configArgs: string[];
  let fifo: string | undefined;
  let drained: Promise<LogDrained | undefined> = Promise.resolve(undefined);
  let drain: ChildProcess | undefined;
  if (isDefault) {
    const conf = path.join(o.socksmithDir, 'proxy.config.ts');
    if (!fs.existsSync(conf)) fs.copyFileSync(path.join(o.root, 'proxy.config.ts'), conf);
    configArgs = ['--config', conf, ...(name === 'socksmith-default-warn' ? ['--log-level', 'warn'] : [])];
    if (o.udp) {
      const udpConf = path.join(dir, 'socksmith-udp.json');
      fs.writeFileSync(udpConf, JSON.stringify(socksmithUdpConfig(), null, 2));
      configArgs = ['--config', udpConf];
    }
    fifo = path.join(dir, 'stderr.fifo');
    execFileSync('mkfifo', [fifo]);
    const script = `exec wc -lc < '${fifo}'`;
    drain = o.drainCore === undefined ? spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'ignore'] }) : spawn('taskset', ['-c', String(o.drainCore), 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    const d = drain;
    DRAINS.add(d);
    d.once('exit', () => DRAINS.delete(d));
    drained = new Promise((resolve) => {
      let out = '';
      d.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      d.once('error', () => resolve(undefined));
      d.once('exit', () => {
        const m = /(\d+)\s+(\d+)/.exec(out);
        resolve(m ? { lines: Number(m[1]), bytes: Number(m[2]) } : undefined);
      });
    });
  } else {
    const conf = path.join(dir, 'socksmith.json');
    fs.writeFileSync(conf, JSON.stringify(socksmithConfig(name !== 'socksmith-off', name === 'socksmith-info' ? 'info' : 'warn'), null, 2));
    configArgs = ['--config', conf];
  }
  const main = path.join(o.socksmithDir, 'dist', 'src', 'cli', 'main.js');
  // socksmith-info (tuned, log info): the access log goes to /dev/null, as it always did here.
  const child = spawnPinned(
    o.core,
    o.nofile,
    process.execPath,
    [...(o.nodeFlags ?? []), main, ...configArgs, '--listen', '127.0.0.1:0', ...(o.socksmithArgs ?? [])],
    ['ignore', 'pipe', name === 'socksmith-info' || isDefault ? 'ignore' : 'pipe'],
    fifo,
  );
  let port = 0;
  const proxyP = wrap(name, child, 0, () => {
    // The drain ends by itself at EOF (the proxy and its workers exited); bounded all the same.
    const t = setTimeout(() => {
      if (drain?.pid !== undefined && drain.exitCode === null) {
        try {
          process.kill(drain.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }, 5000);
    void drained.finally(() => {
      clearTimeout(t);
      fs.rmSync(dir, { recursive: true, force: true });
    });
  });
  proxyP.logDrained = async () => {
    await proxyP.stop();
    return drained;
  };
  try {
    port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`socksmith did not print its listening line in 20 s: ${proxyP.output()}`)), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = /socksmith listening on 127\.0\.0\.1:(\d+)/.exec(buf);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`socksmith exited (${code ?? sig}) before listening: ${proxyP.output()}`));
      });
    });
  } catch (err) {
    await proxyP.stop();
    throw err;
  }
  return { ...proxyP, port };
}

async function startMicrosocks(bin: string, o: StartOptions): Promise<RunningProxy> {
  const port = await freePort();
  // microsocks 1.0.3 prints one line per connection and has no flag to stop it; its stdout goes
  // to /dev/null (cheap writes, as a service manager with logging off would do).
  const child = spawnPinned(o.core, o.nofile, bin, ['-i', '127.0.0.1', '-p', String(port)], ['ignore', 'ignore', 'pipe']);
  const p = wrap('microsocks', child, port, () => {});
  try {
    await waitForPort(port, child, 5000);
  } catch (err) {
    await p.stop();
    throw new Error(`microsocks did not start: ${(err as Error).message}; ${p.output()}`);
  }
  return p;
}

async function startDante(bin: string, o: StartOptions): Promise<RunningProxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-bench-dante-'));
  const conf = path.join(dir, 'danted.conf');
  const port = await freePort();
  fs.writeFileSync(
    conf,
    [
      'logoutput: stderr',
      `internal: 127.0.0.1 port = ${port}`,
      'external: 127.0.0.1',
      'socksmethod: none',
      'clientmethod: none',
      'user.privileged: root',
      'user.unprivileged: nobody',
      // No per-connection logging (no `log:` in the rules), like socksmith at warn.
      'client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }',
      // The udp phase: UDP ASSOCIATE and the replies to it as well.
      `socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: ${o.udp ? 'connect udpassociate udpreply' : 'connect'} }`,
      '',
    ].join('\n'),
  );
  const child = spawnPinned(o.core, o.nofile, bin, ['-f', conf, '-N', '1', '-p', path.join(dir, 'danted.pid')], ['ignore', 'pipe', 'pipe']);
  const p = wrap('dante', child, port, () => fs.rmSync(dir, { recursive: true, force: true }));
  try {
    await waitForPort(port, child, 10_000);
  } catch (err) {
    await p.stop();
    throw new Error(`danted did not start: ${(err as Error).message}; ${p.output()}`);
  }
  return p;
}

/** Start the `socksv5` package's server (bench/socksv5-server.ts); reads its listening line. */
function startSocksv5(dir: string, o: StartOptions): Promise<RunningProxy> {
  return startNodeScript('socksv5', 'socksv5-server.js', [dir], o);
}

/**
 * Start one of the bench's own Node servers (`dist/bench/FILE`), which print `NAME listening on
 * PORT`; reads that line.
 */
async function startNodeScript(name: 'socksv5' | 'node-floor', file: string, args: readonly string[], o: StartOptions): Promise<RunningProxy> {
  const script = path.join(o.root, 'dist', 'bench', file);
  const child = spawnPinned(o.core, o.nofile, process.execPath, [...(o.nodeFlags ?? []), '--no-deprecation', script, ...args], ['ignore', 'pipe', 'pipe']);
  const p = wrap(name, child, 0, () => {});
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`no listening line in 10 s: ${p.output()}`)), 10_000);
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = new RegExp(`${name} listening on (\\d+)`).exec(buf);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`exited (${code ?? sig}): ${p.output()}`));
      });
    });
    return { ...p, port };
  } catch (err) {
    await p.stop();
    throw new Error(`${name} did not start: ${(err as Error).message}`);
  }
}

/** Start `name` (undefined for `none`). Retries a port race twice. */
export async function startTarget(name: TargetName, o: StartOptions): Promise<RunningProxy | undefined> {
  if (name === 'none') return undefined;
  let last: unknown;
  for (let i = 0; i < 3; i++) {
    try {
      if (name === 'socksmith-default' || name === 'socksmith-default-warn' || name === 'socksmith-on' || name === 'socksmith-off' || name === 'socksmith-info') return await startSocksmith(name, o);
      if (name === 'node-floor') return await startNodeScript('node-floor', 'node-floor-server.js', [], o);
      if (name === 'socksv5') {
        if (!o.peers.socksv5Dir) throw new Error('socksv5 is not installed');
        return await startSocksv5(o.peers.socksv5Dir, o);
      }
      if (name === 'microsocks') {
        if (!o.peers.microsocks) throw new Error('microsocks is not installed');
        return await startMicrosocks(o.peers.microsocks, o);
      }
      if (!o.peers.danted) throw new Error('danted is not installed');
      return await startDante(o.peers.danted, o);
    } catch (err) {
      last = err;
      if (/not installed/.test((err as Error).message)) break;
    }
  }
  throw last;
}
