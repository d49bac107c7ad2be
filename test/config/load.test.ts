/**
 * `loadConfig`: config files of every supported kind, written to temp folders, loaded by path
 * (`{ file }`) and by search in the working directory; TypeScript through jiti, including a
 * `.ts` config that imports a `.ts` plugin using tsyringe decorators (deps.md §2D).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/logger.js';
import { SocksmithProxy } from '../../src/proxy.js';
import { ROOT } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient } from '../helpers/net.js';

/** The built package's entry, imported by absolute path from configs and plugins in temp folders. */
const PKG = path.join(ROOT, 'dist/src/index.js');
const OFF = { isolation: false, resolve: false, 'resolve-ptr': false, 'http-detect': false, 'optimistic-data': false };

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh temp folder holding `files` (name → contents). */
function folder(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-config-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** What every loaded fixture below sets, to tell it was really read. */
function assertFixture(c: ResolvedConfig, handshake: number): void {
  assert.equal(c.timeouts.handshake, handshake);
  assert.equal(c.timeouts.connect, 30000, 'defaults fill the rest');
  assert.deepEqual(c.plugins, [], 'every built-in switched off by the file');
  assert.equal(Object.isFrozen(c), true);
}

describe('loadConfig({ file })', () => {
  test('.json', async () => {
    const dir = folder({ 'a.json': JSON.stringify({ timeouts: { handshake: 1111 }, plugins: OFF }) });
    const c = await loadConfig({ file: 'a.json', cwd: dir });
    assertFixture(c, 1111);
    assert.deepEqual(c.source, { file: path.join(dir, 'a.json'), dir });
  });

  test('.yaml', async () => {
    const yaml = ['timeouts:', '  handshake: 2222', 'plugins:', ...Object.keys(OFF).map((k) => `  ${k}: false`), 'listen:', '  - host: "::1"', '    port: 0', ''].join('\n');
    const dir = folder({ 'conf/socksmith.yaml': yaml });
    const c = await loadConfig({ file: path.join(dir, 'conf/socksmith.yaml'), cwd: os.tmpdir() });
    assertFixture(c, 2222);
    assert.deepEqual(c.listen, [{ host: '::1', port: 0 }]);
    assert.equal(c.source.dir, path.join(dir, 'conf'), 'source.dir is the folder of the file, not the cwd');
  });

  test('.mjs with a default export', async () => {
    const dir = folder({ 'c.mjs': `export default { timeouts: { handshake: 3333 }, plugins: ${JSON.stringify(OFF)} };\n` });
    assertFixture(await loadConfig({ file: 'c.mjs', cwd: dir }), 3333);
  });

  test('.js and .cjs compiled by tsc as CommonJS (exports.default, __esModule): the default export is the config', async () => {
    // What tsc emits for `export default defineConfig({...})` in a package without "type": "module".
    const cjs = [
      '"use strict";',
      'Object.defineProperty(exports, "__esModule", { value: true });',
      `exports.default = { timeouts: { handshake: 3434 }, plugins: ${JSON.stringify(OFF)} };`,
      '',
    ].join('\n');
    const dir = folder({ 'package.json': '{"name":"cjs-config","version":"1.0.0"}', 'proxy.config.js': cjs, 'c.cjs': cjs });
    assertFixture(await loadConfig({ cwd: dir }), 3434);
    assertFixture(await loadConfig({ file: 'c.cjs', cwd: dir }), 3434);
    // A plain CommonJS object whose key happens to be "default" (no __esModule) stays an error.
    const plain = folder({ 'c.cjs': 'module.exports = { default: { timeouts: { handshake: 1 } } };\n' });
    await assert.rejects(loadConfig({ file: 'c.cjs', cwd: plain }), /default: unknown key/);
  });

  test('.ts with types and defineConfig from the package', async () => {
    const dir = folder({
      'c.ts': [
        `import { defineConfig, type SocksmithConfig } from ${JSON.stringify(PKG)};`,
        `const handshake: number = 4444;`,
        `const plugins: SocksmithConfig['plugins'] = ${JSON.stringify(OFF)};`,
        `export default defineConfig({ timeouts: { handshake }, plugins });`,
        '',
      ].join('\n'),
    });
    assertFixture(await loadConfig({ file: 'c.ts', cwd: dir }), 4444);
  });

  test('a config module path relative to the file is resolved against the file folder', async () => {
    const dir = folder({ 'etc/p.json': JSON.stringify({ plugins: { ...OFF, mine: { module: './plugins/mine.mjs' } }, upstream: { type: 'module', module: '../up.mjs' } }) });
    const c = await loadConfig({ file: 'etc/p.json', cwd: dir });
    assert.equal(c.plugins[0]!.module, path.join(dir, 'etc/plugins/mine.mjs'));
    assert.deepEqual(c.upstream, { type: 'module', module: path.join(dir, 'up.mjs') });
  });

  test('a missing file: SOCKSMITH_ERR_CONFIG_NOT_FOUND with the absolute path', async () => {
    const dir = folder({});
    await assert.rejects(loadConfig({ file: 'nope.json', cwd: dir }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND');
      assert.equal(err.message, `config file not found: ${path.join(dir, 'nope.json')}`);
      return true;
    });
  });

  test('a file with an unknown key: the validation message of resolveConfig', async () => {
    const dir = folder({ 'bad.json': JSON.stringify({ plugins: OFF, timeout: { handshake: 1 } }) });
    await assert.rejects(loadConfig({ file: 'bad.json', cwd: dir }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
      assert.equal(err.message, 'timeout: unknown key (did you mean "timeouts"? allowed: listen, allowOpenProxy, resolver, upstream, plugins, timeouts, limits, metrics, log, workers)');
      return true;
    });
  });

  test('a .ts config with an error in a value: same message as JSON', async () => {
    const dir = folder({ 'bad.ts': `const t: string = 'soon';\nexport default { timeouts: { handshake: t } };\n` });
    await assert.rejects(loadConfig({ file: 'bad.ts', cwd: dir }), {
      code: 'SOCKSMITH_ERR_CONFIG_INVALID',
      message: "timeouts.handshake: must be integer (Milliseconds a client has to complete the SOCKS handshake (like Dante's negotiate timeout). Default 30000.)",
    });
  });

  test('a module config that throws while loading: one line with its message', async () => {
    const dir = folder({ 'boom.mjs': `throw new Error('config exploded\\nsecond line');\n` });
    await assert.rejects(loadConfig({ file: 'boom.mjs', cwd: dir }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND');
      assert.ok(err.message.startsWith(`cannot load ${path.join(dir, 'boom.mjs')}: config exploded`), err.message);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
  });

  test('a .json file with a syntax error: one line that says what is wrong', async () => {
    const dir = folder({ 'broken.json': '{"listen": [' });
    await assert.rejects(loadConfig({ file: 'broken.json', cwd: dir }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_NOT_FOUND');
      assert.doesNotMatch(err.message, /\n/);
      assert.match(err.message, new RegExp(`^cannot load ${path.join(dir, 'broken.json').replace(/[.]/g, '\\.')}: `));
      assert.match(err.message, /Unexpected end of JSON input/, `the parse error itself is in the line; message was: ${err.message}`);
      return true;
    });
  });

  test('a .yaml file with a syntax error: one line that says what is wrong', async () => {
    const dir = folder({ 'broken.yaml': 'listen: [\n' });
    await assert.rejects(loadConfig({ file: 'broken.yaml', cwd: dir }), (err: Error & { code?: string }) => {
      assert.doesNotMatch(err.message, /\n/);
      assert.match(err.message, /unexpected end of the stream/i, `message was: ${err.message}`);
      return true;
    });
  });
});

describe('loadConfig search in cwd', () => {
  test('finds proxy.config.ts', async () => {
    const dir = folder({ 'proxy.config.ts': `const n: number = 5555;\nexport default { timeouts: { handshake: n }, plugins: ${JSON.stringify(OFF)} };\n` });
    const c = await loadConfig({ cwd: dir });
    assertFixture(c, 5555);
    assert.equal(c.source.file, path.join(dir, 'proxy.config.ts'));
  });

  test('proxy.config.ts wins over proxy.config.json and .socksmithrc.yaml', async () => {
    const dir = folder({
      'proxy.config.json': JSON.stringify({ timeouts: { handshake: 101 }, plugins: OFF }),
      '.socksmithrc.yaml': 'timeouts:\n  handshake: 102\n',
      'proxy.config.ts': `export default { timeouts: { handshake: 6666 }, plugins: ${JSON.stringify(OFF)} };\n`,
    });
    assertFixture(await loadConfig({ cwd: dir }), 6666);
  });

  test('finds proxy.config.json, then .socksmithrc.yaml, then a "socksmith" key in package.json', async () => {
    const a = folder({ 'proxy.config.json': JSON.stringify({ timeouts: { handshake: 7001 }, plugins: OFF }), 'package.json': JSON.stringify({ name: 'x', socksmith: { timeouts: { handshake: 7003 } } }) });
    assertFixture(await loadConfig({ cwd: a }), 7001);
    const b = folder({ '.socksmithrc.yaml': `timeouts:\n  handshake: 7002\nplugins:\n${Object.keys(OFF).map((k) => `  ${k}: false`).join('\n')}\n` });
    assertFixture(await loadConfig({ cwd: b }), 7002);
    const c = folder({ 'package.json': JSON.stringify({ name: 'x', socksmith: { timeouts: { handshake: 7003 }, plugins: OFF } }) });
    assertFixture(await loadConfig({ cwd: c }), 7003);
  });

  test('nothing found: the defaults, with no file and cwd as dir', async () => {
    const dir = folder({ 'package.json': JSON.stringify({ name: 'no-config-here' }) });
    const c = await loadConfig({ cwd: dir });
    assert.deepEqual(c.source, { file: undefined, dir });
    assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 1080 }]);
    assert.equal(c.timeouts.handshake, 30000);
  });

  test('does not look in parent folders', async () => {
    const dir = folder({ 'proxy.config.json': JSON.stringify({ timeouts: { handshake: 9999 } }), 'sub/readme.txt': 'x' });
    const c = await loadConfig({ cwd: path.join(dir, 'sub') });
    assert.equal(c.source.file, undefined);
    assert.equal(c.timeouts.handshake, 30000);
  });
});

describe('a .ts config importing a .ts plugin with decorators (jiti)', () => {
  const plugin = [
    `import { injectable, inject, Tokens, type Kernel, type ResolvedConfig } from ${JSON.stringify(PKG)};`,
    ``,
    `export interface GatekeeperOptions { readonly deniedPort: number; readonly rep: number }`,
    ``,
    `/** Refuses streams to one port; options and config come in through DI. */`,
    `@injectable()`,
    `export default class GatekeeperPlugin {`,
    `  static meta = {`,
    `    name: 'gatekeeper',`,
    `    schema: {`,
    `      type: 'object',`,
    `      additionalProperties: false,`,
    `      required: ['deniedPort'],`,
    `      properties: {`,
    `        deniedPort: { type: 'integer', description: 'Port to refuse.' },`,
    `        rep: { type: 'integer', default: 2, description: 'REP to refuse with.' },`,
    `      },`,
    `    },`,
    `  };`,
    `  constructor(`,
    `    @inject(Tokens.PluginOptions) private readonly options: GatekeeperOptions,`,
    `    @inject(Tokens.Config) private readonly config: ResolvedConfig,`,
    `  ) {}`,
    `  apply(kernel: Kernel): void {`,
    `    if (this.config !== kernel.config) throw new Error('Tokens.Config is not the kernel config');`,
    `    kernel.hooks.onRequest.tapPromise(GatekeeperPlugin.meta.name, async (_conn, request) =>`,
    `      request.destination.port === this.options.deniedPort ? { rep: this.options.rep } : undefined,`,
    `    );`,
    `  }`,
    `}`,
    ``,
  ].join('\n');
  const config = [
    `import { defineConfig } from ${JSON.stringify(PKG)};`,
    `import Gatekeeper from './plugins/gatekeeper.ts';`,
    ``,
    `export default defineConfig({`,
    `  listen: [{ host: '127.0.0.1', port: 0 }],`,
    `  timeouts: { handshake: 2000 },`,
    `  plugins: { ...${JSON.stringify(OFF)}, [Gatekeeper.meta.name]: { module: './plugins/gatekeeper.ts', options: { deniedPort: 9 } } },`,
    `});`,
    ``,
  ].join('\n');

  test('loads by search, injects options (schema defaults filled) and config, and the plugin answers over a socket', async () => {
    const dir = folder({ 'proxy.config.ts': config, 'plugins/gatekeeper.ts': plugin });
    const c = await loadConfig({ cwd: dir });
    assert.deepEqual(JSON.parse(JSON.stringify(c.plugins)), [{ name: 'gatekeeper', builtin: false, module: path.join(dir, 'plugins/gatekeeper.ts'), options: { deniedPort: 9 } }]);
    const proxy = await SocksmithProxy.create(c, { logger: createLogger('silent') });
    try {
      const [l] = await proxy.listen();
      const client = await RawClient.connect(l!.port);
      client.write(hex('05 01 00  05 01 00 01 7f000001 0009'));
      assert.deepEqual(await client.read(2), hex('05 00'));
      assert.deepEqual(await client.readToEnd(3000), hex('05 02 00 01 00000000 0000'), 'REP 02 from the schema default of `rep`');
    } finally {
      await proxy.close(0);
    }
  });

  test('the plugin may also be imported as ./plugins/gatekeeper.js (jiti maps it to the .ts file)', async () => {
    const dir = folder({ 'proxy.config.ts': config.replace("'./plugins/gatekeeper.ts';", "'./plugins/gatekeeper.js';"), 'plugins/gatekeeper.ts': plugin });
    const c = await loadConfig({ cwd: dir });
    assert.equal(c.plugins.length, 1);
  });
});
