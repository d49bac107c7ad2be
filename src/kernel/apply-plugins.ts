/**
 * Constructing and applying plugins, then starting and closing them (Caddy's module lifecycle).
 * @packageDocumentation
 */
import type { DependencyContainer } from 'tsyringe';
import { constructWithOptions } from '../di/container.js';
import { PluginError, SocksmithError, errorMessage } from '../errors.js';
import type { Kernel } from './kernel.js';
import type { SocksmithPlugin } from './plugin.js';
import type { LoadedPlugin } from './plugin-loader.js';

/** A constructed, applied plugin. */
export interface AppliedPlugin {
  readonly name: string;
  readonly instance: SocksmithPlugin;
  /** The module file of a custom plugin (for error messages). */
  readonly file?: string;
  /** A second copy of socksmith/tsyringe seen from the plugin's folder (for error messages). */
  readonly note?: string;
}

/**
 * Construct each plugin through DI and call `apply(kernel)`, in order. A throw in either is a
 * {@link PluginError} naming the plugin, its file and the phase.
 */
export function applyPlugins(container: DependencyContainer, kernel: Kernel, plugins: readonly LoadedPlugin[]): AppliedPlugin[] {
  const out: AppliedPlugin[] = [];
  for (const p of plugins) {
    let instance: SocksmithPlugin;
    try {
      // tsyringe does not know a class whose decorators ran against a second copy of it: the
      // fallback `new Class(options)` would leave every other parameter undefined.
      instance = constructWithOptions(container, p.Class, p.options, () => {
        if (p.note && p.Class.length > 1) throw new Error(`tsyringe has no type information for its ${p.Class.length} constructor parameters`);
      });
    } catch (err) {
      throw passConfigError(err) ?? new PluginError(p.name, 'constructor', p.file, err, p.note);
    }
    try {
      instance.apply(kernel);
    } catch (err) {
      throw passConfigError(err) ?? new PluginError(p.name, 'apply()', p.file, err, p.note);
    }
    out.push({ name: p.name, instance, ...(p.file ? { file: p.file } : {}), ...(p.note ? { note: p.note } : {}) });
  }
  return out;
}

/**
 * Run every `start()`, each bounded by `timeoutMs`. A throw or rejection is a
 * {@link PluginError} naming the plugin, its file and `start()`; a timeout is
 * `SOCKSMITH_ERR_PLUGIN_START_TIMEOUT`, naming the plugin.
 */
export async function startPlugins(plugins: readonly AppliedPlugin[], timeoutMs: number): Promise<void> {
  for (const p of plugins) {
    if (!p.instance.start) continue;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => p.instance.start!())().catch((err: unknown) => {
          throw passConfigError(err) ?? new PluginError(p.name, 'start()', p.file, err, p.note);
        }),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new SocksmithError('SOCKSMITH_ERR_PLUGIN_START_TIMEOUT', `plugin "${p.name}" did not start within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}

/** A config error (it names its `plugins.<name>…` key already, exit 78) passes unchanged. */
function passConfigError(err: unknown): unknown {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('SOCKSMITH_ERR_CONFIG_') || code === 'SOCKSMITH_ERR_PLUGIN_DEPENDENCY') ? err : undefined;
}

/** Run every `close()` (in reverse order), logging failures instead of throwing. */
export async function closePlugins(plugins: readonly AppliedPlugin[], log: (msg: string) => void): Promise<void> {
  for (const p of [...plugins].reverse()) {
    try {
      await p.instance.close?.();
    } catch (err) {
      log(`plugin "${p.name}" failed to close: ${errorMessage(err)}`);
    }
  }
}
