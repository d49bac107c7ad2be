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
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILTIN_PLUGINS } from '../config/builtins.js';
import type { ResolvedConfig } from '../config/types.js';
import { type SocksmithError, configErrorsOf, errorMessage } from '../errors.js';
import { createLogger, setLogFormat } from '../logger.js';
import { formatHostPort } from '../protocol/address.js';
import { SocksmithProxy } from '../proxy.js';
import { type LoadedConfig, isConfigError, listenerLabel as where, loadCliConfig } from '../cluster/config.js';
import { probeConfig, runPrimary } from '../cluster/primary.js';
import { runWorker } from '../cluster/worker.js';
import { USAGE, parseCliArgs } from './args.js';
import { ExitCode } from './exit-codes.js';

/** socksmith's package folder and version: the nearest package.json named socksmith above this file (dist/src/cli/ or src/cli/). */
function ownPackage(): { dir: string; version: string } | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version: string };
      if (pkg.name === 'socksmith') return { dir, version: pkg.version };
    }
    dir = path.dirname(dir);
  }
  return undefined;
}

function version(): string {
  return ownPackage()?.version ?? 'unknown';
}

/** The usage text, its last line naming the folder the docs are in (node_modules/socksmith when installed). */
function help(): string {
  const dir = ownPackage()?.dir;
  return dir ? USAGE.replace(/in the package\.$/, `in the package:\n  ${dir}`) : USAGE;
}

function die(message: string, code: number): never {
  process.stderr.write(`socksmith: ${message}\n`);
  process.exit(code);
}

/** `--log-level debug` or `trace` on the command line: stacks are printed with errors. */
let showStacks = false;

/**
 * Print a config error (every mistake it stands for, one `config error:` line each, and a parse
 * error's code frame under its line) and exit 78.
 */
function dieConfig(err: unknown): never {
  const out: string[] = [];
  for (const e of configErrorsOf(err)) {
    out.push(`socksmith: config error: ${errorMessage(e)}`);
    const frame = (e as { frame?: unknown }).frame;
    if (typeof frame === 'string' && frame) out.push(...frame.split('\n').map((l) => `  ${l}`));
  }
  if (showStacks) out.push(String((err as Error)?.stack ?? ''));
  process.stderr.write(`${out.join('\n')}\n`);
  process.exit(ExitCode.CONFIG);
}

/** Any other failure: one line (a plugin's names the plugin, its file and the phase), exit 69 or 70. */
function dieRuntime(err: unknown): never {
  const code = (err as SocksmithError)?.code === 'SOCKSMITH_ERR_LISTEN' ? ExitCode.UNAVAILABLE : ExitCode.SOFTWARE;
  // The stack that says where it went wrong: the plugin's own error (the cause), else this one.
  const cause = (err as { cause?: unknown })?.cause;
  const stack = showStacks ? `\n${((cause instanceof Error ? cause : err) as Error)?.stack ?? ''}` : '';
  die(`${errorMessage(err)}${stack}`, code);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'passwd') {
    // The auth plugin owns the users file: load it by its specifier from the one list of built-ins.
    const auth = BUILTIN_PLUGINS.find((b) => b.name === 'auth')!.module;
    const { runPasswd } = (await import(auth)) as { runPasswd: (argv: readonly string[], options: { command: string }) => Promise<number> };
    process.exitCode = await runPasswd(argv.slice(1), { command: 'socksmith passwd' });
    return;
  }
  let args;
  try {
    args = parseCliArgs(argv);
  } catch (err) {
    die(`${errorMessage(err)}\n${USAGE.split('\n')[0]}`, ExitCode.USAGE);
  }
  showStacks = args.logLevel === 'debug' || args.logLevel === 'trace';
  setLogFormat(args.logFormat);
  if (args.help) {
    process.stdout.write(`${help()}\n`);
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
    if (args.check) return await check(config);
    // Workers: validate everything a worker will build (plugins included) once, before forking.
    if (config.workers > 1) upstream = await probeConfig(config);
  } catch (err) {
    if (isConfigError(err)) dieConfig(err);
    throw err;
  }
  if (config.workers > 1) return runPrimary({ args, loaded, upstream });

  const logger = createLogger(config.log.level);
  let proxy: SocksmithProxy;
  try {
    proxy = await SocksmithProxy.create(config, { logger });
  } catch (err) {
    if (isConfigError(err)) dieConfig(err);
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
    // The current configuration's drain (a reload may have changed it; close() uses it), and the
    // connections of every generation (a reload's old ones drain too).
    logger.info({ signal, drainMs: proxy.config.timeouts.drain, open: proxy.connectionCount }, 'shutting down');
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
    if (isConfigError(err)) dieConfig(err);
    logger.flush?.();
    dieRuntime(err);
  }
}

/**
 * `--check`: everything a start checks, without binding (SocksmithProxy.check: the open-proxy
 * guard, every plugin's start()), then close. A listen address taken right now is reported on
 * stderr but does not fail the check: the running socksmith a reload is checked for holds it.
 */
async function check(config: ResolvedConfig): Promise<void> {
  const probe = await SocksmithProxy.create(config, { logger: createLogger('silent') });
  let listeners;
  try {
    listeners = await probe.check();
  } finally {
    await probe.close(0);
  }
  for (const l of listeners) {
    if (l.problem) process.stderr.write(`socksmith: warning: listen.${l.index}: ${l.address} cannot be bound right now (${l.problem}); a start would exit 69 unless this is the running socksmith's own listener\n`);
  }
  process.stdout.write(`socksmith: configuration ok${config.source.file ? ` (${config.source.file})` : ' (defaults)'}\n`);
}

main().catch((err: unknown) => {
  if (isConfigError(err)) dieConfig(err);
  dieRuntime(err);
});
