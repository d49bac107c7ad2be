#!/usr/bin/env node
/**
 * `socksmith` command: load the config, start the proxy, print one `listening on` line per
 * listener on stdout, drain on SIGTERM/SIGINT, reload on SIGHUP. With `workers` > 1 the same
 * entry point runs the node:cluster primary and, in each forked process, a worker
 * (src/cluster/).
 * @packageDocumentation
 */
import 'reflect-metadata';
import cluster from 'node:cluster';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ResolvedConfig } from '../config/types.js';
import { type SocksmithError, errorMessage } from '../errors.js';
import { createLogger } from '../logger.js';
import { formatHostPort } from '../protocol/address.js';
import { SocksmithProxy } from '../proxy.js';
import { type LoadedConfig, isConfigError, listenerLabel as where, loadCliConfig } from '../cluster/config.js';
import { probeConfig, runPrimary } from '../cluster/primary.js';
import { runWorker } from '../cluster/worker.js';
import { USAGE, parseCliArgs } from './args.js';
import { ExitCode } from './exit-codes.js';

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string };
  return pkg.version;
}

function die(message: string, code: number): never {
  process.stderr.write(`socksmith: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseCliArgs(process.argv.slice(2));
  } catch (err) {
    die(`${errorMessage(err)}\n${USAGE.split('\n')[0]}`, ExitCode.USAGE);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.version) {
    process.stdout.write(`${version()}\n`);
    return;
  }
  // A process forked by the cluster primary (workers > 1): same argv, driven over IPC.
  if (cluster.isWorker) return runWorker(args);
  let loaded: LoadedConfig;
  let config: ResolvedConfig;
  let upstream = '';
  try {
    loaded = await loadCliConfig(args);
    config = loaded.config;
    if (args.check) {
      // Build everything a start would (plugin and upstream modules loaded, options validated,
      // plugins constructed and applied), but bind nothing.
      const probe = await SocksmithProxy.create(config, { logger: createLogger('silent') });
      await probe.close(0);
      process.stdout.write(`socksmith: configuration ok${config.source.file ? ` (${config.source.file})` : ' (defaults)'}\n`);
      return;
    }
    // Workers: validate everything a worker will build (plugins included) once, before forking.
    if (config.workers > 1) upstream = await probeConfig(config);
  } catch (err) {
    if (isConfigError(err)) die(`config error: ${errorMessage(err)}`, ExitCode.CONFIG);
    throw err;
  }
  if (config.workers > 1) return runPrimary({ args, loaded, upstream });

  const logger = createLogger(config.log.level);
  let proxy: SocksmithProxy;
  try {
    proxy = await SocksmithProxy.create(config, { logger });
  } catch (err) {
    if (isConfigError(err)) die(`config error: ${errorMessage(err)}`, ExitCode.CONFIG);
    throw err;
  }
  // Handlers go in before the listeners bind: a supervisor may send SIGTERM the moment it reads
  // the listening line, and that must drain, not kill.
  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal, closing all connections now');
      void proxy.close(0).finally(() => process.exit(ExitCode.OK));
      return;
    }
    logger.info({ signal, drainMs: config.timeouts.drain, open: proxy.kernel.connectionCount }, 'shutting down');
    void proxy.close().then(
      () => {
        logger.info('stopped');
        logger.flush?.();
        setImmediate(() => process.exit(ExitCode.OK));
      },
      (err: unknown) => {
        logger.error({ err: errorMessage(err) }, 'error during shutdown');
        process.exit(ExitCode.SOFTWARE);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  // SIGHUP: re-read and re-validate the config; new connections use it, open tunnels keep the
  // one that accepted them. An invalid config is logged and the running one stays.
  let reloading = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
      try {
        const before = new Set(proxy.addresses.map(where));
        const next = (await loadCliConfig(args)).config;
        if (next.workers !== config.workers) logger.warn({ running: config.workers, configured: next.workers }, 'workers changed in the config: restart socksmith to apply it (this reload applies everything else)');
        const bound = await proxy.reload(next);
        logger.level = next.log.level;
        for (const b of bound) if (!before.has(where(b))) process.stdout.write(`socksmith listening on ${where(b)}\n`);
        logger.info({ listeners: bound.map(where), plugins: next.plugins.map((p) => p.name), config: next.source.file }, 'configuration reloaded');
      } catch (err) {
        logger.error({ err: errorMessage(err) }, 'reload failed; keeping the running configuration');
      }
    });
  });
  try {
    const bound = await proxy.listen();
    for (const b of bound) process.stdout.write(`socksmith listening on ${where(b)}\n`);
    const metrics = proxy.metricsAddress;
    if (metrics) process.stdout.write(`socksmith metrics on ${formatHostPort(metrics.host, metrics.port)}\n`);
    logger.info({ listeners: bound.map(where), upstream: proxy.kernel.upstream.name, plugins: config.plugins.map((p) => p.name), config: config.source.file }, 'socksmith started');
  } catch (err) {
    if (isConfigError(err)) die(`config error: ${errorMessage(err)}`, ExitCode.CONFIG);
    const code = (err as SocksmithError)?.code === 'SOCKSMITH_ERR_LISTEN' ? ExitCode.UNAVAILABLE : ExitCode.SOFTWARE;
    logger.flush?.();
    die(errorMessage(err), code);
  }

}

main().catch((err: unknown) => {
  process.stderr.write(`socksmith: ${errorMessage(err)}\n${(err as Error)?.stack ?? ''}\n`);
  process.exit(ExitCode.SOFTWARE);
});
