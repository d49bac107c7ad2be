/**
 * A cluster worker (`workers` > 1): one {@link SocksmithProxy} on the primary's listening
 * sockets, driven over IPC.
 *
 * The primary sends the start message (isolation secret, validated config), the worker builds
 * its proxy and says `ready`, binds when the primary says `listen` (one worker after the other,
 * see primary.ts), and then serves until the primary asks it to drain. Signals that reach the
 * worker itself (a terminal's Ctrl-C goes to the whole process group; systemd's default
 * KillMode signals every process of the unit) drain it just like the single-process CLI: the
 * first one gracefully, a second one at once. SIGHUP is left to the primary, which validates
 * the new config once and reloads the workers one by one.
 *
 * The worker writes nothing on stdout: the primary prints the `listening on` lines once for all.
 * @packageDocumentation
 */
import cluster from 'node:cluster';
import type { CliArgs } from '../cli/args.js';
import { ExitCode } from '../cli/exit-codes.js';
import { resolveConfig } from '../config/normalize.js';
import type { ResolvedConfig } from '../config/types.js';
import { ProcessSecretStore } from '../di/secrets.js';
import { SocksmithError, errorMessage } from '../errors.js';
import { createLogger, type Logger } from '../logger.js';
import { workerMetricsJson } from '../metrics/cluster.js';
import { Metrics } from '../metrics/metrics.js';
import { SocksmithProxy } from '../proxy.js';
import { isConfigError, listenerLabel, loadCliConfig } from './config.js';
import { type PrimaryMessage, type ShippedConfig, type StartMessage, type WorkerMessage, isSocksmithMessage } from './messages.js';

/** Send a message to the primary; a closed channel (the primary is gone) is ignored. */
function send(message: WorkerMessage): void {
  if (!process.connected || !process.send) return;
  try {
    process.send(message, undefined, {}, () => {});
  } catch {
    // The channel closed between the check and the send: node:cluster exits the worker anyway.
  }
}

/** The config a worker runs: its metrics listener is the primary's, never its own. */
function workerConfig(config: ResolvedConfig): ResolvedConfig {
  return config.metrics === undefined ? config : Object.freeze({ ...config, metrics: undefined });
}

async function resolveShipped(shipped: ShippedConfig | undefined, args: CliArgs): Promise<ResolvedConfig> {
  if (shipped) return resolveConfig(shipped.raw, shipped.source);
  return (await loadCliConfig(args)).config;
}

/** The exit code and one-line message the single-process CLI would give for a start failure. */
function failure(err: unknown): { code: number; message: string } {
  if (isConfigError(err)) return { code: ExitCode.CONFIG, message: `config error: ${errorMessage(err)}` };
  const code = (err as SocksmithError)?.code === 'SOCKSMITH_ERR_LISTEN' ? ExitCode.UNAVAILABLE : ExitCode.SOFTWARE;
  return { code, message: errorMessage(err) };
}

/**
 * Run this process as a cluster worker. Resolves once the worker is serving (or has exited);
 * the process then lives until the primary tells it to stop, or it loses the primary.
 */
export async function runWorker(args: CliArgs): Promise<void> {
  const id = cluster.worker?.id ?? 0;
  let proxy: SocksmithProxy | undefined;
  let metrics: Metrics | undefined;
  let logger: Logger | undefined;
  let stopping: Promise<void> | undefined;
  let listenGranted: (() => void) | undefined;
  let started: ((m: StartMessage) => void) | undefined;
  const startMessage = new Promise<StartMessage>((r) => (started = r));
  const listenMessage = new Promise<void>((r) => (listenGranted = r));

  const exit = (code: number) => {
    logger?.flush?.();
    setImmediate(() => process.exit(code));
  };

  /** Stop accepting; open tunnels get timeouts.drain; then exit 0. Idempotent. */
  const drain = (reason: string): void => {
    if (stopping) return;
    if (!proxy) {
      stopping = Promise.resolve();
      exit(ExitCode.OK);
      return;
    }
    const p = proxy;
    logger?.info({ reason, drainMs: p.config.timeouts.drain, open: p.connectionCount }, 'shutting down'); // every generation's
    stopping = p.close().then(
      () => {
        metrics?.close();
        logger?.info('stopped');
        exit(ExitCode.OK);
      },
      (err: unknown) => {
        logger?.error({ err: errorMessage(err) }, 'error during shutdown');
        exit(ExitCode.SOFTWARE);
      },
    );
  };

  /** Close every connection at once (a second signal). */
  const closeNow = (reason: string): void => {
    if (!stopping) drain(reason);
    if (proxy) {
      logger?.warn({ reason }, 'closing all connections now');
      void proxy.close(0);
    }
  };

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) send({ type: 'socksmith:stopping', signal });
    if (signals > 1 || stopping) {
      // A second signal, or a signal after the primary already asked for a drain (Ctrl-C after
      // the primary's SIGTERM): the operator wants it over.
      if (signals > 1) closeNow(signal);
      return;
    }
    drain(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Reloads are the primary's: it validates once and reloads the workers in turn. A SIGHUP sent
  // to the whole group (a closed terminal) must not kill the worker.
  process.on('SIGHUP', () => logger?.debug('SIGHUP ignored in a worker; send it to the primary'));

  let reloading = Promise.resolve();
  process.on('message', (m: unknown) => {
    if (!isSocksmithMessage(m)) return;
    const msg = m as PrimaryMessage;
    switch (msg.type) {
      case 'socksmith:start':
        started?.(msg);
        started = undefined;
        break;
      case 'socksmith:listen':
        listenGranted?.();
        listenGranted = undefined;
        break;
      case 'socksmith:drain':
        drain('primary');
        break;
      case 'socksmith:close-now':
        if (msg.quiet && logger) logger.level = 'silent';
        closeNow('primary');
        break;
      case 'socksmith:reload':
        reloading = reloading.then(async () => {
          if (!proxy || stopping) return send({ type: 'socksmith:reloaded', id: msg.id, error: 'the worker is stopping' });
          try {
            const next = await resolveShipped(msg.config, args);
            const bound = await proxy.reload(workerConfig(next));
            if (logger) logger.level = next.log.level;
            logger?.info({ listeners: bound.map(listenerLabel), plugins: next.plugins.map((p) => p.name) }, 'configuration reloaded');
            send({ type: 'socksmith:reloaded', id: msg.id, addresses: bound.map(listenerLabel) });
          } catch (err) {
            logger?.error({ err: errorMessage(err) }, 'reload failed; keeping the running configuration');
            send({ type: 'socksmith:reloaded', id: msg.id, error: errorMessage(err) });
          }
        });
        break;
      case 'socksmith:metrics':
        void workerMetricsJson(metrics).then(
          (json) => send({ type: 'socksmith:metrics', id: msg.id, metrics: json }),
          () => send({ type: 'socksmith:metrics', id: msg.id, metrics: [] }),
        );
        break;
    }
  });

  send({ type: 'socksmith:hello' });
  const start = await startMessage;
  ProcessSecretStore.seed(Buffer.from(start.secret, 'hex'));
  try {
    const config = await resolveShipped(start.config, args);
    logger = createLogger(config.log.level).child({ worker: id });
    if (stopping) return;
    proxy = await SocksmithProxy.create(workerConfig(config), { logger });
    const p = proxy;
    // The metrics of this worker's own listeners; the primary serves the aggregate.
    if (start.metrics) metrics = new Metrics({ listeners: () => p.addresses });
    send({ type: 'socksmith:ready' });
    await listenMessage;
    if (stopping) return;
    const bound = await proxy.listen();
    if (stopping) return;
    send({ type: 'socksmith:listening', addresses: bound.map(listenerLabel) });
    logger.debug({ listeners: bound.map(listenerLabel) }, 'worker listening');
  } catch (err) {
    if (stopping) return;
    const f = failure(err);
    send({ type: 'socksmith:failed', ...f });
    stopping = Promise.resolve();
    exit(f.code);
  }
}
