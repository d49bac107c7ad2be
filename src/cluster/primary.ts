/**
 * The cluster primary (`workers` > 1): forks the workers, prints the `listening on` lines once,
 * forwards SIGTERM/SIGINT (drain) and SIGHUP (reload), re-forks a worker that dies, and serves
 * the aggregated metrics. It accepts no SOCKS connection itself.
 *
 * Scheduling is `cluster.SCHED_NONE`: the primary creates each listening socket once and hands
 * it to every worker, and the workers `accept()` on it themselves, so the kernel picks the
 * worker for each connection. With node's default round-robin (`SCHED_RR`) the primary would
 * accept every connection and pass it to a worker over IPC — one more process hop and a
 * primary busy in proportion to the connection rate, which is what the workers are there to
 * spread. Node 20 has no `SO_REUSEPORT` option for net servers; SCHED_NONE is the shared-socket
 * equivalent (one queue, not one per worker). Linux wakes the workers waiting on the socket and
 * the first to call accept() wins, so the spread is uneven but follows which worker is free.
 *
 * Workers bind one after the other: a unix-socket listener removes a stale socket file before
 * it binds, and two workers doing that at once could remove the socket another one had just
 * created. Reloads go to the workers one after the other too; the first is the canary.
 * @packageDocumentation
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { CliArgs } from '../cli/args.js';
import { ExitCode } from '../cli/exit-codes.js';
import type { ResolvedConfig } from '../config/types.js';
import { errorMessage } from '../errors.js';
import { createLogger, type Logger } from '../logger.js';
import { ClusterMetrics } from '../metrics/cluster.js';
import { type MetricsServer, startMetricsServer } from '../metrics/server.js';
import { formatHostPort } from '../protocol/address.js';
import { SocksmithProxy } from '../proxy.js';
import { type LoadedConfig, isConfigError, isPlainData, loadCliConfig } from './config.js';
import { type PrimaryMessage, type ShippedConfig, type WorkerMessage, isSocksmithMessage } from './messages.js';

/** A worker that died unexpectedly this many times within {@link CRASH_WINDOW_MS} makes the primary give up (exit 70). */
export const MAX_CRASHES = 5;
/** The window in which {@link MAX_CRASHES} crashes make the primary give up. */
export const CRASH_WINDOW_MS = 60_000;
/** Longest a worker may take to build its proxy and bind its listeners. */
const START_TIMEOUT_MS = 60_000;
/** Longest the workers may take to answer a metrics request. */
const METRICS_TIMEOUT_MS = 5_000;
/** After `timeouts.drain`, how long the primary waits for its workers before it kills them. */
const DRAIN_GRACE_MS = 10_000;

/** Options for {@link runPrimary}. */
export interface PrimaryOptions {
  /** The parsed command line (a reload re-reads the config it names, with its overrides). */
  readonly args: CliArgs;
  /** The config the CLI loaded and validated (plugins included), with `workers` > 1. */
  readonly loaded: LoadedConfig;
  /** Name of the upstream (for the `socksmith started` line). */
  readonly upstream: string;
}

/** One forked worker, as the primary tracks it. */
interface WorkerState {
  readonly worker: Worker;
  readonly pid: number;
  phase: 'starting' | 'ready' | 'listening' | 'exited';
  addresses: readonly string[];
  /** Config generation it runs (bumped by every successful reload). */
  generation: number;
  /** It said a signal of its own made it stop: its exit is not a crash. */
  stoppedBySignal: boolean;
  /** Replies it owes, by request id. */
  readonly pending: Map<number, (m: WorkerMessage | undefined) => void>;
  /** Resolves when its listen turn ends (listening, failed or exited). */
  listenDone?: () => void;
}

/** The config to send to workers: the raw object when it is plain data, else undefined (they load the file). */
function ship(loaded: LoadedConfig): ShippedConfig | undefined {
  return isPlainData(loaded.raw) ? { raw: loaded.raw, source: { file: loaded.source.file, dir: loaded.source.dir } } : undefined;
}

/**
 * Build everything a worker would build (plugins loaded, options validated, upstream module
 * loaded), bind nothing, and return the upstream's name. Throws the same ConfigError a worker
 * would: the primary reports config errors once, before forking.
 */
export async function probeConfig(config: ResolvedConfig): Promise<string> {
  const probe = await SocksmithProxy.create({ ...config, metrics: undefined }, { logger: createLogger('silent') });
  const name = probe.kernel.upstream.name;
  await probe.close(0);
  return name;
}

/**
 * Run the CLI as a node:cluster primary with `config.workers` workers. Resolves once they all
 * listen (the `listening on` lines are printed); the process then exits by itself: 0 after a
 * graceful stop, 70 if the workers keep crashing, or the workers' start failure code (78, 69,
 * 70) if they cannot start.
 */
export async function runPrimary(options: PrimaryOptions): Promise<void> {
  const { args } = options;
  let config = options.loaded.config;
  let shipped = ship(options.loaded);
  const count = config.workers;
  const logger: Logger = createLogger(config.log.level, undefined, { safeLogging: config.log.safeLogging });
  // One isolation secret for every worker, for the primary's whole life (re-forked workers and
  // reloads included). Sent over the IPC channel only; never logged, never in the environment.
  const secret = randomBytes(32).toString('hex');
  let generation = 0;

  // Before the first fork: schedulingPolicy is read when the primary is set up.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // 'advanced' (structured clone): a raw config may hold values JSON would change (undefined).
  cluster.setupPrimary({ serialization: 'advanced' });

  const states = new Map<number, WorkerState>();
  const printed = new Set<string>();
  const crashes: number[] = [];
  let started = false;
  let stopping = false;
  /** The start failed and its one line is printed: stop quietly. */
  let failedStart = false;
  let signals = 0;
  let exitCode: number = ExitCode.OK;
  let nextRequest = 1;
  let metricsServer: MetricsServer | undefined;
  let refork: NodeJS.Timeout | undefined;
  let resolveStarted!: () => void;
  const startedP = new Promise<void>((r) => (resolveStarted = r));

  // Operations that must not interleave: a worker's listen turn, a reload.
  let serial: Promise<unknown> = Promise.resolve();
  const inTurn = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = serial.then(fn, fn);
    serial = p.catch(() => undefined);
    return p;
  };

  const listening = () => [...states.values()].filter((s) => s.phase === 'listening');

  const send = (s: WorkerState, message: PrimaryMessage): boolean => {
    if (s.phase === 'exited' || !s.worker.isConnected()) return false;
    try {
      s.worker.send(message, undefined, () => {});
      return true;
    } catch {
      return false;
    }
  };

  /** Send a request and wait for the reply with the same id (undefined if the worker exits or times out). */
  const request = (s: WorkerState, make: (id: number) => PrimaryMessage, timeoutMs: number): Promise<WorkerMessage | undefined> => {
    const id = nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        s.pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      s.pending.set(id, (m) => {
        clearTimeout(timer);
        s.pending.delete(id);
        resolve(m);
      });
      if (!send(s, make(id))) s.pending.get(id)?.(undefined);
    });
  };

  const printNew = (addresses: readonly string[]) => {
    for (const a of addresses) {
      if (printed.has(a)) continue;
      printed.add(a);
      process.stdout.write(`socksmith listening on ${a}\n`);
    }
  };

  const finish = () => {
    clearTimeout(refork);
    void (metricsServer?.close() ?? Promise.resolve()).then(() => {
      if (!failedStart) logger.info({ exitCode }, 'stopped');
      logger.flush?.();
      setImmediate(() => process.exit(exitCode));
    });
  };

  const maybeFinish = () => {
    if (stopping && [...states.values()].every((s) => s.phase === 'exited')) finish();
  };

  /** Stop every worker: a graceful drain (`now` false) or at once. */
  const stopAll = (now: boolean) => {
    for (const s of states.values()) send(s, now ? { type: 'socksmith:close-now', quiet: failedStart } : { type: 'socksmith:drain' });
  };

  /** Begin the shutdown: drain every worker, exit when all are gone (bounded). */
  const shutdown = (code: number, now = false) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    clearTimeout(refork);
    stopAll(now);
    const kill = setTimeout(
      () => {
        for (const s of states.values()) {
          if (s.phase === 'exited') continue;
          logger.error({ worker: s.worker.id, workerPid: s.pid }, 'worker did not stop in time; killing it');
          s.worker.process.kill('SIGKILL');
        }
      },
      (now ? 0 : config.timeouts.drain) + DRAIN_GRACE_MS,
    );
    kill.unref();
    maybeFinish();
  };

  /** A start failure before the proxy ever served: one line on stderr, like the single process. */
  const failStart = (code: number, message: string) => {
    if (stopping) return;
    failedStart = true;
    process.stderr.write(`socksmith: ${message}\n`);
    shutdown(code, true);
  };

  const fork = (): WorkerState => {
    const worker = cluster.fork();
    const state: WorkerState = {
      worker,
      pid: worker.process.pid ?? 0,
      phase: 'starting',
      addresses: [],
      generation,
      stoppedBySignal: false,
      pending: new Map(),
    };
    states.set(worker.id, state);
    const startTimer = setTimeout(() => {
      if (state.phase === 'listening' || state.phase === 'exited' || stopping) return;
      logger.error({ worker: worker.id, workerPid: state.pid }, `worker did not start within ${START_TIMEOUT_MS / 1000} s; killing it`);
      worker.process.kill('SIGKILL');
    }, START_TIMEOUT_MS);
    startTimer.unref();

    worker.on('message', (m: unknown) => {
      if (!isSocksmithMessage(m)) return;
      const msg = m as WorkerMessage;
      switch (msg.type) {
        case 'socksmith:hello':
          send(state, { type: 'socksmith:start', secret, config: shipped, metrics: config.metrics !== undefined });
          break;
        case 'socksmith:ready':
          state.phase = 'ready';
          void inTurn(() => listenTurn(state));
          break;
        case 'socksmith:listening':
          state.phase = 'listening';
          state.addresses = msg.addresses;
          state.listenDone?.();
          break;
        case 'socksmith:failed':
          state.listenDone?.();
          if (!started) failStart(msg.code, msg.message);
          else logger.error({ worker: worker.id, workerPid: state.pid, err: msg.message }, 'worker could not start');
          break;
        case 'socksmith:stopping':
          state.stoppedBySignal = true;
          break;
        case 'socksmith:reloaded':
        case 'socksmith:metrics':
          state.pending.get(msg.id)?.(msg);
          break;
      }
    });
    // A send to a worker that just died must not take the primary down.
    worker.on('error', (err) => logger.debug({ worker: worker.id, err: errorMessage(err) }, 'worker IPC error'));
    worker.on('exit', (code, signal) => {
      clearTimeout(startTimer);
      const wasListening = state.phase === 'listening';
      state.phase = 'exited';
      state.listenDone?.();
      for (const reply of [...state.pending.values()]) reply(undefined);
      states.delete(worker.id);
      onExit(state, code, signal, wasListening);
    });
    return state;
  };

  /** The worker's turn to bind (one worker at a time); then bring it to the current config. */
  const listenTurn = async (s: WorkerState): Promise<void> => {
    if (stopping || s.phase === 'exited') return;
    const done = new Promise<void>((r) => (s.listenDone = r));
    if (!send(s, { type: 'socksmith:listen' })) return;
    await done;
    s.listenDone = undefined;
    if (s.phase !== 'listening' || stopping) return;
    if (s.generation !== generation) {
      // Forked before a reload finished: give it the configuration the others run now.
      const r = await request(s, (id) => ({ type: 'socksmith:reload', id, config: shipped }), config.timeouts.pluginStart + 30_000);
      if (r?.type === 'socksmith:reloaded' && r.addresses) {
        s.addresses = r.addresses;
        s.generation = generation;
      }
    }
    onListening(s);
  };

  const onListening = (s: WorkerState) => {
    if (started) {
      logger.info({ worker: s.worker.id, workerPid: s.pid }, 'worker listening');
      printNew(s.addresses);
      return;
    }
    if (listening().length < count) return;
    void (async () => {
      const all = listening();
      const first = all[0]!.addresses;
      if (all.some((w) => w.addresses.join(' ') !== first.join(' '))) {
        logger.warn({ addresses: all.map((w) => ({ workerPid: w.pid, addresses: w.addresses })) }, 'workers report different listeners');
      }
      if (config.metrics && !stopping) {
        try {
          metricsServer = await startMetricsServer({
            host: config.metrics.host,
            port: config.metrics.port,
            metrics: clusterMetrics,
            ready: () => started && !stopping && listening().length > 0,
            stopping: () => stopping,
            logger,
          });
        } catch (err) {
          failStart(ExitCode.UNAVAILABLE, errorMessage(err));
          return;
        }
      }
      if (stopping) return;
      started = true;
      printNew(first);
      const m = metricsServer?.address;
      if (m) process.stdout.write(`socksmith metrics on ${formatHostPort(m.host, m.port)}\n`);
      logger.info(
        { listeners: first, upstream: options.upstream, plugins: config.plugins.map((p) => p.name), config: config.source.file, workers: all.map((w) => w.pid) },
        'socksmith started',
      );
      resolveStarted();
    })();
  };

  const onExit = (s: WorkerState, code: number | null, signal: string | null, wasListening: boolean) => {
    if (stopping) {
      if (code !== 0 && !failedStart) {
        logger.error({ worker: s.worker.id, workerPid: s.pid, code, signal }, 'worker did not stop cleanly');
        if (exitCode === ExitCode.OK) exitCode = ExitCode.SOFTWARE;
      }
      maybeFinish();
      return;
    }
    if (!started) {
      // A signal that reached the workers before the primary (Ctrl-C goes to the whole group).
      if (s.stoppedBySignal && code === 0) return shutdown(ExitCode.OK);
      failStart(typeof code === 'number' && code > 0 ? code : ExitCode.SOFTWARE, `worker ${s.pid} exited during startup (${signal ?? `code ${code}`})`);
      return;
    }
    if (s.stoppedBySignal && code === 0) {
      logger.info({ worker: s.worker.id, workerPid: s.pid }, 'worker stopped by a signal of its own; starting a new one');
      fork();
      return;
    }
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length >= MAX_CRASHES) {
      logger.fatal({ worker: s.worker.id, workerPid: s.pid, code, signal, crashes: crashes.length, windowMs: CRASH_WINDOW_MS }, 'workers keep dying; giving up');
      shutdown(ExitCode.SOFTWARE);
      return;
    }
    const delay = Math.min(1000, 100 * (crashes.length - 1));
    logger.error({ worker: s.worker.id, workerPid: s.pid, code, signal, wasListening, restartInMs: delay }, 'worker died unexpectedly; starting a new one');
    clusterMetrics.workerRestarted();
    refork = setTimeout(() => {
      if (!stopping) fork();
    }, delay);
  };

  const clusterMetrics = new ClusterMetrics({
    workers: () => listening().length,
    collect: async () => {
      const answers = await Promise.all(listening().map(async (s) => ({ s, r: await request(s, (id) => ({ type: 'socksmith:metrics', id }), METRICS_TIMEOUT_MS) })));
      // A worker that exited meanwhile took its counts with it; one that is alive but silent fails the scrape.
      const silent = answers.filter((a) => a.r === undefined && a.s.phase !== 'exited');
      if (silent.length > 0) throw new Error(`${silent.length} worker(s) did not answer within ${METRICS_TIMEOUT_MS} ms`);
      return answers.flatMap((a) => (a.r?.type === 'socksmith:metrics' ? [a.r.metrics] : []));
    },
  });

  const onStopSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal, closing all connections now');
      stopAll(true);
      return;
    }
    logger.info({ signal, drainMs: config.timeouts.drain, workers: states.size }, 'shutting down');
    shutdown(ExitCode.OK);
  };
  process.on('SIGTERM', onStopSignal);
  process.on('SIGINT', onStopSignal);

  // SIGHUP: validate once here; then reload the workers one after the other. An invalid config
  // is rejected before any worker sees it.
  process.on('SIGHUP', () => {
    void inTurn(async () => {
      if (stopping) return;
      let next: LoadedConfig;
      try {
        next = await loadCliConfig(args);
        await probeConfig(next.config);
      } catch (err) {
        logger.error({ err: errorMessage(err), configError: isConfigError(err) }, 'reload failed; keeping the running configuration');
        return;
      }
      if (next.config.workers !== count) {
        logger.warn({ running: count, configured: next.config.workers }, 'workers changed in the config: restart socksmith to apply it (this reload applies everything else)');
      }
      const nextShipped = ship(next);
      let done = 0;
      const addresses = new Set<string>();
      for (const s of listening()) {
        const r = await request(s, (id) => ({ type: 'socksmith:reload', id, config: nextShipped }), next.config.timeouts.pluginStart + 30_000);
        if (s.phase === 'exited') continue;
        if (r?.type !== 'socksmith:reloaded' || r.error !== undefined || !r.addresses) {
          const err = r?.type === 'socksmith:reloaded' ? r.error : 'no answer';
          logger.error({ worker: s.worker.id, workerPid: s.pid, err, reloaded: done }, done === 0 ? 'reload failed; keeping the running configuration' : 'reload failed on a worker; workers now run different configurations');
          if (done === 0) return;
          continue;
        }
        s.addresses = r.addresses;
        for (const a of r.addresses) addresses.add(a);
        if (done === 0) {
          // The first worker took it: this is the configuration from now on (re-forked workers included).
          config = next.config;
          shipped = nextShipped;
          generation++;
          logger.level = config.log.level;
        }
        s.generation = generation;
        done++;
      }
      if (done === 0) return;
      printNew([...addresses]);
      logger.info({ listeners: [...addresses], plugins: config.plugins.map((p) => p.name), config: config.source.file, workers: done }, 'configuration reloaded');
    });
  });

  logger.debug({ workers: count, scheduling: 'none' }, 'starting workers');
  for (let i = 0; i < count; i++) fork();
  // Never resolves when the start fails: the process exits with the failure's code instead.
  await startedP;
}
