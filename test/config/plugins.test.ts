/**
 * Custom plugin entries: module loading, option validation against the plugin's own schema
 * (errors name `plugins.<name>.<key>`, webpack schemas/plugins), and `dependsOn` (the error names
 * both plugins, fastify lib/plugin-utils.js).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { resolveConfig } from '../../src/config/normalize.js';
import { loadPlugins } from '../../src/kernel/plugin-loader.js';
import { hex } from '../helpers/hex.js';
import { RawClient } from '../helpers/net.js';
import { startProxy } from '../helpers/proxy.js';

const OFF = { isolation: false, resolve: false, 'resolve-ptr': false, 'http-detect': false, 'optimistic-data': false };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-plugins-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Write a plugin module into the temp folder; returns its file name relative to the folder. */
function pluginModule(file: string, meta: object, applyBody = ''): string {
  fs.writeFileSync(
    path.join(dir, file),
    `export default class P {\n  static meta = ${JSON.stringify(meta)};\n  constructor(options) { this.options = options; }\n  apply(kernel) { ${applyBody} }\n}\n`,
  );
  return `./${file}`;
}

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    greeting: { type: 'string', description: 'What to say.' },
    retries: { type: 'integer', minimum: 0, default: 3, description: 'How often to retry.' },
  },
};
const withSchema = pluginModule('with-schema.mjs', { name: 'with-schema', schema: SCHEMA });

/** resolveConfig (relative modules against the temp folder) then loadPlugins. */
function load(plugins: Record<string, unknown>) {
  return loadPlugins(resolveConfig({ plugins: { ...OFF, ...plugins } }, { file: path.join(dir, 'proxy.config.json'), dir }));
}

describe('plugin options are validated against meta.schema', () => {
  test('valid options get the schema defaults and are frozen', async () => {
    const [p] = await load({ greeter: { module: withSchema, options: { greeting: 'hi' } } });
    assert.equal(p!.name, 'greeter');
    assert.deepEqual(p!.options, { greeting: 'hi', retries: 3 });
    assert.equal(Object.isFrozen(p!.options), true);
  });

  test('an unknown option key is named plugins.<name>.<key>, with a hint', async () => {
    await assert.rejects(load({ greeter: { module: withSchema, options: { greting: 'hi' } } }), {
      code: 'SOCKSMITH_ERR_CONFIG_INVALID',
      message: 'plugins.greeter.greting: unknown key (did you mean "greeting"? allowed: greeting, retries)',
    });
  });

  test('a wrongly typed option names plugins.<name>.<key> and says what it is for', async () => {
    await assert.rejects(load({ greeter: { module: withSchema, options: { retries: 'often' } } }), {
      code: 'SOCKSMITH_ERR_CONFIG_INVALID',
      message: 'plugins.greeter.retries: must be integer (How often to retry.)',
    });
  });

  test('a plugin without schema gets its options as written', async () => {
    const [p] = await load({ free: { module: pluginModule('free.mjs', { name: 'free' }), options: { anything: [1, 2] } } });
    assert.deepEqual(p!.options, { anything: [1, 2] });
  });
});

describe('dependsOn', () => {
  const needsB = pluginModule('needs-b.mjs', { name: 'a', dependsOn: ['b'] });
  const b = pluginModule('b.mjs', { name: 'b' });

  test('a missing dependency: SOCKSMITH_ERR_PLUGIN_DEPENDENCY naming both plugins', async () => {
    await assert.rejects(load({ a: { module: needsB } }), (err: Error & { code?: string; key?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_PLUGIN_DEPENDENCY');
      assert.equal(err.message, 'plugins.a: plugin "a" depends on plugin "b", which is not enabled');
      return true;
    });
  });

  test('a dependency that is present but disabled counts as missing', async () => {
    await assert.rejects(load({ a: { module: needsB }, b: { module: b, enabled: false } }), { code: 'SOCKSMITH_ERR_PLUGIN_DEPENDENCY' });
  });

  test('a dependency on a switched-off built-in names the built-in', async () => {
    const needsIso = pluginModule('needs-iso.mjs', { name: 'c', dependsOn: ['isolation'] });
    await assert.rejects(load({ c: { module: needsIso } }), {
      code: 'SOCKSMITH_ERR_PLUGIN_DEPENDENCY',
      message: 'plugins.c: plugin "c" depends on plugin "isolation", which is not enabled',
    });
  });

  test('satisfied in any order', async () => {
    const loaded = await load({ a: { module: needsB }, b: { module: b } });
    assert.deepEqual(
      loaded.map((p) => p.name),
      ['a', 'b'],
    );
  });
});

describe('plugin modules', () => {
  test('a module that is not a plugin class: SOCKSMITH_ERR_CONFIG_MODULE naming plugins.<name>.module', async () => {
    fs.writeFileSync(path.join(dir, 'not-a-plugin.mjs'), 'export default { hello: 1 };\n');
    await assert.rejects(load({ np: { module: './not-a-plugin.mjs' } }), {
      code: 'SOCKSMITH_ERR_CONFIG_MODULE',
      message: `plugins.np.module: ${path.join(dir, 'not-a-plugin.mjs')} must export (default) a class with static meta = { name } and an apply(kernel) method (a CommonJS module's exports.default is accepted too); its default export is an object with keys hello`,
    });
  });

  test('a module that does not exist: SOCKSMITH_ERR_CONFIG_MODULE, one line', async () => {
    await assert.rejects(load({ gone: { module: './gone.mjs' } }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_MODULE');
      assert.match(err.message, new RegExp(`^plugins\\.gone\\.module: cannot load module ${path.join(dir, 'gone.mjs').replace(/[.]/g, '\\.')}: `));
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
  });

  test('enabled: false skips the entry without loading its module', async () => {
    assert.deepEqual(await load({ gone: { module: './gone.mjs', enabled: false } }), []);
  });

  test('a custom plugin from the config taps the kernel of a running proxy', async () => {
    const mod = pluginModule('force-userpass.mjs', { name: 'force-userpass', schema: SCHEMA }, `kernel.hooks.onGreeting.tapPromise('force-userpass', async () => ({ method: 0x02 }));`);
    const px = await startProxy({ plugins: { 'force-userpass': { module: path.join(dir, mod), options: {} } } });
    try {
      const c = await RawClient.connect(px.port);
      c.write(hex('05 01 00'));
      assert.deepEqual(await c.read(2), hex('05 02'), 'method 02 although only 00 was offered');
      c.destroy();
    } finally {
      await px.close();
    }
  });
});
