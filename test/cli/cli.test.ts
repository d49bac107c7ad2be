/**
 * The real CLI, spawned (`node dist/src/cli/main.js`): flags, exit codes (sysexits: 64 usage,
 * 78 config), one-line config errors on stderr, `listening on` lines on stdout, and graceful
 * SIGTERM (drain open tunnels, then exit 0). Loopback only; configs in temp folders with every
 * built-in plugin off.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI, ROOT, portOf, runCli, startCli, type CliProcess } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';

const OFF = { isolation: false, resolve: false, 'resolve-ptr': false, 'http-detect': false, 'optimistic-data': false };
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-cli-'));
const running: CliProcess[] = [];
let echo: TestServer;
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await echo.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Write a config file into the temp folder; returns its absolute path. */
function writeConfig(name: string, config: unknown): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return file;
}

const GOOD = writeConfig('good.json', { plugins: OFF, log: { level: 'info' } });

/** Non-empty lines of a stream's text. */
const lines = (s: string) => s.split('\n').filter((l) => l.length > 0);

/** SOCKS5 no-auth CONNECT to the echo server through `port` on `host`; returns the open tunnel. */
async function tunnel(port: number, host = '127.0.0.1'): Promise<RawClient> {
  const c = await RawClient.connect(port, host);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(echo.port);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05 00 00 01'));
  return c;
}

/** Plain TCP connect: 'connected' or the error code. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

async function start(args: string[], opts: { cwd?: string; count?: number } = {}): Promise<CliProcess> {
  const p = await startCli(args, { timeoutMs: 15000, ...opts });
  running.push(p);
  return p;
}

describe('flags', { concurrency: true }, () => {
  test('--help prints the usage and exits 0', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: socksmith \[options\]\n/);
    assert.match(r.stdout, /--listen HOST:PORT/);
    assert.match(r.stdout, /--config FILE/);
    assert.equal(r.stderr, '');
    // The docs it points to: the folder that holds them, on the last line.
    assert.ok(r.stdout.endsWith(`Docs: README.md, docs/ and plugins/*/README.md in the package:\n  ${ROOT}\n`), r.stdout);
    for (const line of r.stdout.split('\n').slice(0, -2)) assert.ok(line.length <= 90, `help line of ${line.length} characters: ${line}`);
  });

  test('--version prints the package.json version and exits 0', async () => {
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${VERSION}\n`);
    assert.equal(r.stderr, '');
  });

  test('an unknown flag exits 64 and names it', async () => {
    const r = await runCli(['--bogus']);
    assert.equal(r.code, 64);
    assert.match(lines(r.stderr)[0]!, /^socksmith: Unknown option '--bogus'/);
    assert.equal(r.stdout, '');
  });

  test('a malformed --listen exits 64 and names the flag', async () => {
    const r = await runCli(['--config', GOOD, '--listen', 'localhost']);
    assert.equal(r.code, 64);
    assert.equal(lines(r.stderr)[0], 'socksmith: --listen: must be HOST:PORT or [IPv6]:PORT, got "localhost"');
  });
});

describe('configuration errors', { concurrency: true }, () => {
  test('--config with an unknown key: exactly one line on stderr naming the key, exit 78', async () => {
    const bad = writeConfig('bad.json', { plugins: OFF, listn: [{ host: '127.0.0.1', port: 0 }] });
    const r = await runCli(['--config', bad]);
    assert.equal(r.code, 78);
    assert.equal(r.stderr, 'socksmith: config error: listn: unknown key (did you mean "listen"? allowed: listen, allowOpenProxy, resolver, upstream, plugins, timeouts, limits, metrics, log, workers)\n');
    assert.equal(r.stdout, '');
  });

  test('a missing config file exits 78 with one line', async () => {
    const missing = path.join(dir, 'missing.json');
    const r = await runCli(['--config', missing]);
    assert.equal(r.code, 78);
    assert.equal(r.stderr, `socksmith: config error: config file not found: ${missing}\n`);
  });

  test('--check on a good config exits 0 without listening (a relative --config is resolved against the cwd)', async () => {
    const r = await runCli(['--config', 'good.json', '--check'], { cwd: dir });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `socksmith: configuration ok (${GOOD})\n`);
    assert.equal(r.stderr, '');
  });

  test('--check loads custom plugins: a missing dependency exits 78 with one line naming both', async () => {
    fs.writeFileSync(path.join(dir, 'needs-b.mjs'), "export default class A { static meta = { name: 'a', dependsOn: ['b'] }; apply() {} }\n");
    const cfg = writeConfig('deps.json', { plugins: { ...OFF, a: { module: './needs-b.mjs' } } });
    const r = await runCli(['--config', cfg, '--check']);
    assert.equal(r.code, 78);
    assert.equal(r.stderr, 'socksmith: config error: plugins.a: plugin "a" depends on plugin "b", which is not enabled\n');
  });

});

describe('running', () => {
  test('--listen 127.0.0.1:0 --listen [::1]:0 prints two listening lines with real ports; both accept SOCKS5', async () => {
    const p = await start(['--config', GOOD, '--listen', '127.0.0.1:0', '--listen', '[::1]:0'], { count: 2 });
    assert.equal(p.listening.length, 2);
    assert.match(p.listening[0]!, /^127\.0\.0\.1:\d+$/);
    assert.match(p.listening[1]!, /^\[::1\]:\d+$/);
    const v4 = portOf(p.listening[0]!);
    const v6 = portOf(p.listening[1]!);
    assert.ok(v4 > 0 && v6 > 0, 'real ports, not 0');
    assert.deepEqual(
      lines(p.stdout()).filter((l) => l.startsWith('socksmith listening on')),
      [`socksmith listening on 127.0.0.1:${v4}`, `socksmith listening on [::1]:${v6}`],
    );
    for (const [port, host] of [
      [v4, '127.0.0.1'],
      [v6, '::1'],
    ] as const) {
      const c = await tunnel(port, host);
      c.write(`via ${host}`);
      assert.equal((await c.read(4 + host.length)).toString(), `via ${host}`);
      c.destroy();
    }
    const t0 = Date.now();
    assert.equal(await p.stop('SIGTERM'), 0);
    assert.ok(Date.now() - t0 < 3000, 'SIGTERM with no open tunnel exits promptly');
  });

  test('finds proxy.config.ts in the working directory; SIGTERM with no open tunnels exits 0 promptly', async () => {
    const cwd = fs.mkdtempSync(path.join(dir, 'search-'));
    fs.writeFileSync(
      path.join(cwd, 'proxy.config.ts'),
      `const port: number = 0;\nexport default { listen: [{ host: '127.0.0.1', port }], plugins: ${JSON.stringify(OFF)} };\n`,
    );
    const p = await start([], { cwd });
    assert.match(p.listening[0]!, /^127\.0\.0\.1:\d+$/);
    const c = await tunnel(portOf(p.listening[0]!));
    c.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    assert.equal(await p.exited, 0);
    assert.ok(Date.now() - t0 < 2000, `exited after ${Date.now() - t0} ms`);
  });

  // A supervisor (systemd, a test harness) may send SIGTERM as soon as it reads the listening
  // line. If the handlers are installed only after that line, the default action kills the process
  // (exit by signal, no drain). A preload module records the listener count at the moment the
  // line is written, which makes the race deterministic to observe.
  test('SIGTERM/SIGINT handlers are installed before the listening line is printed', async () => {
    const preload = path.join(dir, 'observe-signals.mjs');
    fs.writeFileSync(
      preload,
      `const write = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => {
  if (String(chunk).startsWith('socksmith listening on')) process.stderr.write('signal-listeners ' + process.listenerCount('SIGTERM') + ' ' + process.listenerCount('SIGINT') + '\\n');
  return write(chunk, ...rest);
};
`,
    );
    const child = spawn(process.execPath, ['--import', pathToFileURL(preload).href, CLI, '--config', GOOD, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const deadline = Date.now() + 15000;
      while (!/listening on/.test(stdout) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
      assert.match(stdout, /socksmith listening on 127\.0\.0\.1:\d+/);
      const m = /^signal-listeners (\d+) (\d+)$/m.exec(stderr);
      assert.ok(m, `preload output missing; stderr: ${stderr}`);
      assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0, `when "listening on" was printed: ${m[1]} SIGTERM and ${m[2]} SIGINT listeners`);
    } finally {
      await new Promise((r) => setTimeout(r, 100));
      child.kill('SIGTERM');
      await exited;
    }
  });

  test('SIGTERM while a tunnel is open: no new connections, the tunnel keeps relaying until it closes, then exit 0', async () => {
    const p = await start(['--config', GOOD, '--listen', '127.0.0.1:0']);
    const port = portOf(p.listening[0]!);
    const c = await tunnel(port);
    c.write('before');
    assert.equal((await c.read(6)).toString(), 'before');

    let exitCode: number | null | undefined;
    void p.exited.then((code) => (exitCode = code));
    p.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(exitCode, undefined, 'still running while the tunnel is open');
    assert.equal(await tryConnect(port), 'ECONNREFUSED', 'the listener is closed');
    c.write('during drain');
    assert.equal((await c.read(12)).toString(), 'during drain', 'the tunnel still relays');

    const t0 = Date.now();
    c.end();
    await c.waitEnd(3000);
    assert.equal(await p.exited, 0);
    assert.ok(Date.now() - t0 < 3000, 'exits soon after the last tunnel closed, well before timeouts.drain');
  });
});
