/**
 * Constructing and applying plugins, then starting and closing them (Caddy's module lifecycle).
 * @packageDocumentation
 */
import type { DependencyContainer } from 'tsyringe';
import { constructWithOptions } from '../di/container.js';
import { SocksmithError, errorMessage } from '../errors.js';
import type { Kernel } from './kernel.js';
import type { SocksmithPlugin } from './plugin.js';
import type { LoadedPlugin } from './plugin-loader.js';

/** A constructed, applied plugin. */
export interface AppliedPlugin {
  readonly name: string;
  readonly instance: SocksmithPlugin;
}

/** Construct each plugin through DI and call `apply(kernel)`, in order. */
export function applyPlugins(container: DependencyContainer, kernel: Kernel, plugins: readonly LoadedPlugin[]): AppliedPlugin[] {
  const out: AppliedPlugin[] = [];
  for (const p of plugins) {
    const instance = constructWithOptions(container, p.Class, p.options);
    instance.apply(kernel);
    out.push({ name: p.name, instance });
  }
  return out;
}

/** Run every `start()`, each bounded by `timeoutMs`; the error names the plugin. */
export async function startPlugins(plugins: readonly AppliedPlugin[], timeoutMs: number): Promise<void> {
  for (const p of plugins) {
    if (!p.instance.start) continue;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve(p.instance.start()),
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
