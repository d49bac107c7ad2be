/**
 * Spawn the real CLI (`node dist/src/cli/main.js`) and wait for its `listening on` lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests run from dist/test/..., sources are two levels up from dist). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The compiled CLI entry. */
export const CLI = path.join(ROOT, 'dist/src/cli/main.js');

/** A running CLI process. */
export interface CliProcess {
  readonly child: ChildProcess;
  /** `host:port` strings from the listening lines. */
  readonly listening: string[];
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** SIGTERM and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Run the CLI to completion (for --help, --check, bad configs). */
export function runCli(
  args: string[],
  opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`CLI did not exit within ${opts.timeoutMs ?? 20000} ms; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 20000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Start the CLI and wait until it printed `count` listening lines. */
export function startCli(args: string[], opts: { cwd?: string; count?: number; timeoutMs?: number } = {}): Promise<CliProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const listening: string[] = [];
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const want = opts.count ?? 1;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`CLI did not listen within ${opts.timeoutMs ?? 20000} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 20000);
    const proc: CliProcess = {
      child,
      listening,
      stdout: () => stdout,
      stderr: () => stderr,
      exited,
      async stop(signal: NodeJS.Signals = 'SIGTERM') {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        return exited;
      },
    };
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      for (const m of stdout.matchAll(/^socksmith listening on (\S+)$/gm)) if (!listening.includes(m[1]!)) listening.push(m[1]!);
      if (listening.length >= want) {
        clearTimeout(timer);
        resolve(proc);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    void exited.then((code) => {
      if (listening.length < want) {
        clearTimeout(timer);
        reject(new Error(`CLI exited with ${code} before listening; stderr: ${stderr}`));
      }
    });
  });
}

/** Port of a `host:port` / `[v6]:port` string. */
export function portOf(hostPort: string): number {
  return Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
}

/** Live child processes of `pid` (a cluster primary's workers), from /proc, in ascending order. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out.sort((a, b) => a - b);
}
