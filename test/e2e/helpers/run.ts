/**
 * Run real third-party client binaries, bounded in time, with an environment that cannot send
 * them around the proxy (no *_proxy / NO_PROXY variables from the caller's shell).
 */
import { execFile, spawn } from 'node:child_process';

/** What a finished client process left behind. */
export interface ToolResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** `process.env` without proxy variables (curl honours NO_PROXY even for --socks5). */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/_proxy$/i.test(k) && !/^no_proxy$/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/**
 * `execFile` with a timeout (SIGKILL on expiry). Resolves whatever the exit code; the caller
 * asserts on it so a failure shows stderr.
 */
export function execTool(file: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 10_000, killSignal: 'SIGKILL', encoding: 'buffer', env: opts.env ?? cleanEnv(), maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: NodeJS.Signals }) | null;
        if (e && typeof e.code === 'string') return reject(e); // ENOENT and friends: could not run at all
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout: stdout as Buffer,
          stderr: (stderr as Buffer).toString('utf8'),
        });
      },
    );
  });
}

/**
 * Spawn a client, write `input` to its stdin, and (unless `closeStdin`) keep stdin open until the
 * process exits by itself: socat/ncat/nc shut down the tunnel's write side at stdin EOF, which
 * some servers take as the end of the whole exchange (clients.md, "Half-close"). The process is
 * SIGKILLed by PID after `timeoutMs`.
 */
export function runHeld(
  file: string,
  args: readonly string[],
  input: Buffer | string,
  opts: { timeoutMs?: number; closeStdin?: boolean; until?: (stdout: Buffer) => boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? cleanEnv() });
    const out: Buffer[] = [];
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => {
      out.push(d);
      // ncat and nc keep running after the peer's EOF while stdin is open: once the answer is
      // complete, closing stdin is what makes them exit.
      if (opts.until && !child.stdin.writableEnded && opts.until(Buffer.concat(out))) child.stdin.end();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.stdin.on('error', () => {}); // EPIPE when the tool exits first
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 10_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      child.stdin.destroy();
      if (timedOut) {
        reject(new Error(`${file} ${args.join(' ')} did not exit within ${opts.timeoutMs ?? 10_000} ms; stdout: ${JSON.stringify(Buffer.concat(out).toString('latin1'))}; stderr: ${stderr}`));
        return;
      }
      resolve({ code, signal, stdout: Buffer.concat(out), stderr });
    });
    child.stdin.write(input);
    if (opts.closeStdin) child.stdin.end();
  });
}

/** The HTTP/1.0 request the research notes use (`$REQ`); HTTP/1.0 makes the server close after the body. */
export const HTTP10_REQUEST = 'GET /e2e HTTP/1.0\r\nHost: x\r\n\r\n';

/** True once `raw` holds a whole HTTP response with a Content-Length body. */
export function httpComplete(raw: Buffer): boolean {
  const text = raw.toString('latin1');
  const head = text.indexOf('\r\n\r\n');
  if (head < 0) return false;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, head));
  return m !== null && raw.length - (head + 4) >= Number(m[1]);
}

/** Split a raw HTTP response into status line and body. */
export function splitHttp(raw: Buffer): { status: string; body: string } {
  const text = raw.toString('utf8');
  const head = text.indexOf('\r\n\r\n');
  if (head < 0) throw new Error(`not an HTTP response: ${JSON.stringify(text)}`);
  return { status: text.slice(0, text.indexOf('\r\n')), body: text.slice(head + 4) };
}
