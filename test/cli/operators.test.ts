/**
 * What a new user trips over (issue 14), through the real CLI with real files: `--check` runs
 * every check a start runs (open-proxy guard, plugin start(), ports taken now); plugin failures
 * name the plugin, its file and the phase on one line; a tsc-compiled CommonJS plugin loads; a
 * second copy of tsyringe is named; every config mistake in one run; parse errors keep their
 * code frame; a `.ts` config where socksmith is not installed says what to do. Loopback only;
 * configs in temp folders outside the repository.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ROOT, runCli } from '../helpers/cli.js';

const OFF = { isolation: false, resolve: false, 'resolve-ptr': false, 'http-detect': false, 'optimistic-data': false };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-ops-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: unknown): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}

const lines = (s: string) => s.split('\n').filter((l) => l.length > 0);

/** A TCP server on a free loopback port (to make that port "in use"). */
async function occupy(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((s) => s.destroy());
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

describe('--check runs every check a start runs, except binding', { concurrency: true }, () => {
  test('a listener on 0.0.0.0 without a client restriction: --check exits 78 with the open-proxy line, as a start does', async () => {
    const cfg = write('open.json', { plugins: OFF, listen: [{ host: '0.0.0.0', port: 0 }] });
    const check = await runCli(['--config', cfg, '--check']);
    const start = await runCli(['--config', cfg]);
    assert.equal(start.code, 78);
    assert.equal(check.code, 78);
    assert.equal(check.stdout, '');
    assert.match(check.stderr, /^socksmith: config error: listen\.0\.host: 0\.0\.0\.0 is not a loopback address, and no plugin restricts who may connect: this would be an open proxy/);
    assert.equal(check.stderr, start.stderr);
  });

  test('a port taken right now: --check says so on stderr and still exits 0 (start exits 69)', async () => {
    const busy = await occupy();
    try {
      const cfg = write('busy.json', { plugins: OFF, listen: [{ host: '127.0.0.1', port: busy.port }] });
      const check = await runCli(['--config', cfg, '--check']);
      assert.equal(check.code, 0);
      assert.equal(check.stdout, `socksmith: configuration ok (${cfg})\n`);
      assert.equal(
        check.stderr,
        `socksmith: warning: listen.0: 127.0.0.1:${busy.port} cannot be bound right now (EADDRINUSE); a start would exit 69 unless this is the running socksmith's own listener\n`,
      );
      const start = await runCli(['--config', cfg]);
      assert.equal(start.code, 69);
    } finally {
      await busy.close();
    }
  });

  test("a plugin whose start() fails: --check exits 70 with one line naming the plugin, its file and start(), no stack", async () => {
    const mod = write('db/denylist.mjs', "export default class D { static meta = { name: 'denylist' }; apply() {} async start() { throw new Error('cannot open database'); } }\n");
    const cfg = write('db/cfg.json', { plugins: { ...OFF, denylist: { module: './denylist.mjs' } } });
    for (const args of [['--check'], []]) {
      const r = await runCli(['--config', cfg, ...args]);
      assert.equal(r.code, 70);
      assert.equal(r.stderr, `socksmith: plugin "denylist" (${mod}) failed in start(): cannot open database\n`);
    }
    const debug = await runCli(['--config', cfg, '--check', '--log-level', 'debug']);
    assert.equal(debug.code, 70);
    assert.equal(lines(debug.stderr)[0], `socksmith: plugin "denylist" (${mod}) failed in start(): cannot open database`);
    assert.match(debug.stderr, /\n\s+at .*denylist\.mjs/, 'the stack with --log-level debug');
  });

  test('a plugin whose apply() throws: one line naming the plugin, its file and apply(), under --check too', async () => {
    const mod = write('tap/bad-tap.mjs', "export default class T { static meta = { name: 'bad-tap' }; apply(kernel) { kernel.hooks.onNothing.tap('bad-tap', () => {}); } }\n");
    const cfg = write('tap/cfg.json', { plugins: { ...OFF, 'bad-tap': { module: './bad-tap.mjs' } } });
    const r = await runCli(['--config', cfg, '--check']);
    assert.equal(r.code, 70);
    assert.equal(r.stderr, `socksmith: plugin "bad-tap" (${mod}) failed in apply(): Cannot read properties of undefined (reading 'tap')\n`);
  });
});

describe('plugin modules as users build them', { concurrency: true }, () => {
  test('a tsc-compiled CommonJS plugin (exports.default in a package without "type") loads and runs', async () => {
    write('cjs/package.json', { name: 'my-plugin', version: '1.0.0', main: 'index.js' });
    // What tsc emits for `export default class Hello …` with module: commonjs.
    write(
      'cjs/index.js',
      `"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
class Hello {
    apply(kernel) { kernel.hooks.onRequest.tap('hello', () => undefined); }
    async start() { throw new Error('hello from start'); }
}
Hello.meta = { name: 'hello' };
exports.default = Hello;
`,
    );
    const cfg = write('cjs/cfg.json', { plugins: { ...OFF, hello: { module: './index.js' } } });
    const r = await runCli(['--config', cfg, '--check']);
    // It was loaded, constructed and applied: start() ran (and says so).
    assert.equal(r.stderr, `socksmith: plugin "hello" (${path.join(dir, 'cjs/index.js')}) failed in start(): hello from start\n`);
    assert.equal(r.code, 70);
  });

  test('a plugin whose folder has its own tsyringe: the failure names the second copy', async () => {
    // The plugin's folder gets its own copy of tsyringe (and tslib, which it needs): its
    // @injectable()/@inject() record the class there, where the proxy's container never looks.
    const nm = path.join(dir, 'dup/node_modules');
    for (const pkg of ['tsyringe', 'tslib']) fs.cpSync(path.join(ROOT, 'node_modules', pkg), path.join(nm, pkg), { recursive: true });
    write('dup/package.json', { name: 'dup-plugin', version: '1.0.0', type: 'module' });
    const mod = write(
      'dup/plugin.mjs',
      // reflect-metadata is already loaded by socksmith (global Reflect.getMetadata).
      `import { inject, injectable } from 'tsyringe';
class Counter {
  static meta = { name: 'counter' };
  constructor(options, logger) { this.logger = logger; }
  apply() { this.logger.info('applied'); }
}
inject(Symbol.for('socksmith.PluginOptions'))(Counter, undefined, 0);
inject(Symbol.for('socksmith.Logger'))(Counter, undefined, 1);
injectable()(Counter);
export default Counter;
`,
    );
    const cfg = write('dup/cfg.json', { plugins: { ...OFF, counter: { module: './plugin.mjs' } } });
    const r = await runCli(['--config', cfg, '--check']);
    assert.equal(r.code, 70);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^socksmith: plugin "counter" \\(${mod.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\) failed in its constructor: tsyringe has no type information for its 2 constructor parameters; the plugin's folder has a second copy of tsyringe at ${fs.realpathSync(path.join(nm, 'tsyringe')).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(this process runs .*\\)`));
  });
});

describe('config errors: all at once, with frames and hints', { concurrency: true }, () => {
  test('five mistakes: five lines in one run, exit 78', async () => {
    const cfg = write('five.json', {
      plugins: { ...OFF, isolaton: true },
      listen: [{ host: '127.0.0.1', prot: 1080 }],
      timeouts: { conect: 5 },
      log: { level: 'verbose' },
      upstream: { type: 'socks5', host: '127.0.0.1' },
    });
    const r = await runCli(['--config', cfg, '--check']);
    assert.equal(r.code, 78);
    assert.deepEqual(lines(r.stderr), [
      'socksmith: config error: listen.0.prot: unknown key (did you mean "port"? allowed: host, port, path, mode, proxyProtocol)',
      'socksmith: config error: timeouts.conect: unknown key (did you mean "connect"? allowed: handshake, connect, idle, drain, pluginStart)',
      'socksmith: config error: log.level: must be one of: "fatal", "error", "warn", "info", "debug", "trace", "silent" (Log level: fatal, error, warn, info, debug, trace, silent. Default info.)',
      'socksmith: config error: upstream.port: required key is missing (Port of the upstream SOCKS5 server (Tor: 9050).)',
      'socksmith: config error: plugins.isolaton: unknown plugin (did you mean "isolation"?); built-ins are isolation, resolve, resolve-ptr, http-detect, optimistic-data, extended-errors, auth, policy, bind, udp-associate, and a custom plugin is { module, options }',
    ]);
  });

  test("two plugins' bad options: both lines in one run", async () => {
    const cfg = write('two-plugins.json', { plugins: { ...OFF, isolation: { IsolateDestPrt: true }, policy: { clients: 3 } } });
    const r = await runCli(['--config', cfg, '--check']);
    assert.equal(r.code, 78);
    const got = lines(r.stderr);
    assert.equal(got.length, 2, r.stderr);
    assert.match(got[0]!, /^socksmith: config error: plugins\.isolation\.IsolateDestPrt: unknown key \(did you mean "IsolateDestPort"\?/);
    assert.match(got[1]!, /^socksmith: config error: plugins\.policy\.clients: /);
  });

  test("a mistake in the file and one in a plugin's options: both lines in one run", async () => {
    const cfg = write('file-and-plugin.json', { plugins: { ...OFF, isolation: { IsolateDestPrt: true } }, timeouts: { conect: 5 } });
    const r = await runCli(['--config', cfg, '--check']);
    assert.equal(r.code, 78);
    const got = lines(r.stderr);
    assert.equal(got.length, 2, r.stderr);
    assert.match(got[0]!, /^socksmith: config error: timeouts\.conect: unknown key/);
    assert.match(got[1]!, /^socksmith: config error: plugins\.isolation\.IsolateDestPrt: unknown key/);
  });

  // The JSON parser colours its code frame when it thinks the terminal can show colours (it does
  // under CI=true or FORCE_COLOR, even into a pipe): the message must be the same either way.
  for (const [label, env] of [
    ['', undefined],
    [' (FORCE_COLOR=1 CI=true: the parser colours its frame)', { ...process.env, FORCE_COLOR: '1', CI: 'true' }],
  ] as const) {
    test(`a JSON syntax error: one line with line and column, then the code frame${label}`, async () => {
      const cfg = write('broken.json', '{\n  "listen": [\n    { "host": "127.0.0.1", "port": 1080, }\n  ]\n}\n');
      const r = await runCli(['--config', cfg, '--check'], env ? { env } : {});
      assert.equal(r.code, 78);
      const got = r.stderr.split('\n');
      assert.match(got[0]!, new RegExp(`^socksmith: config error: cannot load ${cfg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: JSON syntax error: .* \\(line 3, column 42\\)$`));
      assert.equal(got[3], '  > 3 |     { "host": "127.0.0.1", "port": 1080, }');
      assert.equal(got[4], `      | ${' '.repeat(41)}^`);
      assert.doesNotMatch(r.stderr, /\x1b\[/, 'no terminal escapes');
    });
  }

  test('a YAML syntax error: one line with line and column, then the code frame', async () => {
    const cfg = write('broken.yaml', 'listen:\n  - host: 127.0.0.1\n   port: 1080\n');
    const r = await runCli(['--config', cfg, '--check']);
    assert.equal(r.code, 78);
    assert.deepEqual(r.stderr.split('\n'), [
      `socksmith: config error: cannot load ${cfg}: YAML syntax error: bad indentation of a sequence entry (line 3, column 4)`,
      '   1 | listen:',
      '   2 |   - host: 127.0.0.1',
      '   3 |    port: 1080',
      '  --------^',
      '',
    ]);
  });

  test('a .ts config found by search, importing socksmith in a folder without it: names the file, says to install it or use .json/.yaml', async () => {
    const sub = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-noinstall-'));
    try {
      fs.writeFileSync(path.join(sub, 'proxy.config.ts'), "import { defineConfig } from 'socksmith';\nexport default defineConfig({});\n");
      const r = await runCli(['--check'], { cwd: sub });
      assert.equal(r.code, 78);
      assert.equal(
        r.stderr,
        `socksmith: config error: cannot load ${path.join(fs.realpathSync(sub), 'proxy.config.ts')}: it imports 'socksmith', which is not installed in this folder or above it: install socksmith here (npm install socksmith) or use a .json/.yaml config\n`,
      );
    } finally {
      fs.rmSync(sub, { recursive: true, force: true });
    }
  });
});
