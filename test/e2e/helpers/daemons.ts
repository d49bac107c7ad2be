/**
 * Real SOCKS servers used as upstreams (microsocks, dante-server), spawned on a free loopback
 * port and killed by PID. Nothing here binds outside 127.0.0.1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { childPids } from '../../helpers/cli.js';
import { freePort } from '../../helpers/net.js';
export { freePort };

/** A spawned server. */
export interface Daemon {
  readonly port: number;
  readonly pid: number;
  /** Output so far (for failure messages). */
  output(): string;
  /** SIGTERM by PID, SIGKILL after 2 s, and remove temp files. Idempotent. */
  stop(): Promise<void>;
}


/** Resolve once 127.0.0.1:port accepts a TCP connection; reject after `timeoutMs` or if `child` exits. */
export async function waitForPort(port: number, child: ChildProcess, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect({ port, host: '127.0.0.1' });
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function spawnDaemon(file: string, args: (port: number) => string[], cleanup: () => Promise<void>, port?: number): Promise<Daemon> {
  const p = port ?? (await freePort());
  const child = spawn(file, args(p), { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.once('error', (err) => (output += `spawn error: ${err.message}\n`));
  let stopping: Promise<void> | undefined;
  const daemon: Daemon = {
    port: p,
    pid: child.pid ?? -1,
    output: () => output,
    stop() {
      stopping ??= (async () => {
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
          // danted forks children that may outlive it (an io-child with a UDP session does):
          // remember them now, by PID, and kill whatever of them is left once the daemon exited.
          const descendants: number[] = [];
          for (let i = 0, todo = [child.pid]; todo.length > 0 && i < 1000; i++) {
            const kids = childPids(todo.shift()!);
            descendants.push(...kids);
            todo.push(...kids);
          }
          try {
            process.kill(child.pid, 'SIGTERM');
          } catch {
            /* already gone */
          }
          const t = setTimeout(() => {
            try {
              process.kill(child.pid!, 'SIGKILL');
            } catch {
              /* already gone */
            }
          }, 2000);
          await exited;
          clearTimeout(t);
          for (const pid of descendants) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              /* exited with its parent */
            }
          }
        }
        await cleanup();
      })();
      return stopping;
    },
  };
  try {
    await waitForPort(p, child);
  } catch (err) {
    await daemon.stop();
    throw new Error(`${file} did not start: ${(err as Error).message}; output: ${output}`);
  }
  return daemon;
}

/** Retry a start a few times: the free port may be taken between freePort() and the bind. */
async function withRetries(start: () => Promise<Daemon>, tries = 3): Promise<Daemon> {
  for (let i = 1; ; i++) {
    try {
      return await start();
    } catch (err) {
      if (i >= tries) throw err;
    }
  }
}

/** `microsocks -i 127.0.0.1 -p PORT [-u USER -P PASS]`. */
export function startMicrosocks(bin: string, auth?: { username: string; password: string }): Promise<Daemon> {
  return withRetries(() =>
    spawnDaemon(bin, (port) => ['-i', '127.0.0.1', '-p', String(port), ...(auth ? ['-u', auth.username, '-P', auth.password] : [])], async () => {}),
  );
}

/** Options of {@link startDante}. */
export interface DanteOptions {
  /** The `command:` list of the socks rule (default `connect`; e.g. `connect bind bindreply udpassociate udpreply`). */
  readonly commands?: string;
}

/**
 * `danted -f CONF -N 1 -p PIDFILE` (foreground: no -D) with a loopback-only, no-auth config in a
 * temp folder. danted's children exit with their mother on SIGTERM.
 */
export function startDante(bin: string, options: DanteOptions = {}): Promise<Daemon> {
  return withRetries(() => startDanteOnce(bin, options));
}

async function startDanteOnce(bin: string, options: DanteOptions): Promise<Daemon> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'socksmith-dante-'));
  const conf = path.join(dir, 'danted.conf');
  const port = await freePort();
  await fs.writeFile(
    conf,
    [
      'logoutput: stderr',
      `internal: 127.0.0.1 port = ${port}`,
      'external: 127.0.0.1',
      'socksmethod: none',
      'clientmethod: none',
      'user.privileged: root',
      'user.unprivileged: nobody',
      'client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }',
      `socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: ${options.commands ?? 'connect'} }`,
      '',
    ].join('\n'),
  );
  return spawnDaemon(bin, () => ['-f', conf, '-N', '1', '-p', path.join(dir, 'danted.pid')], () => fs.rm(dir, { recursive: true, force: true }), port);
}
