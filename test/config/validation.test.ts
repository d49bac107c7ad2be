/**
 * `resolveConfig`: validation errors (one line, naming the full key path, with a "did you mean"
 * hint for typos, like webpack's test/Validation.test.js), defaults, and deep-freezing.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import os from 'node:os';
import { describe, test } from 'node:test';
import { DEFAULTS, resolveConfig } from '../../src/config/normalize.js';
import { Socks5UpstreamSchema } from '../../src/config/schema.js';
import type { ResolvedConfig } from '../../src/config/types.js';

const SOURCE = { file: undefined, dir: '/tmp' } as const;

/** Run resolveConfig on `raw` and return the error it throws (fails the test if it does not). */
function errorOf(raw: unknown): Error & { code?: string; key?: string } {
  try {
    resolveConfig(raw, SOURCE);
  } catch (err) {
    return err as Error & { code?: string; key?: string };
  }
  assert.fail(`resolveConfig accepted ${JSON.stringify(raw)}`);
}

/** Assert the full one-line message, the code and the key. */
function assertConfigError(raw: unknown, key: string, message: string): void {
  const err = errorOf(raw);
  assert.equal(err.message, message);
  assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
  assert.equal(err.key, key);
  assert.equal(err.name, 'ConfigError');
  assert.doesNotMatch(err.message, /\n/, 'one line');
}

const ALL_PLUGINS_OFF = { isolation: false, resolve: false, 'resolve-ptr': false, 'http-detect': false, 'optimistic-data': false };

describe('resolveConfig errors name the key', () => {
  test('unknown top-level key, with a hint and the allowed keys', () => {
    assertConfigError(
      { listn: [{ host: '127.0.0.1', port: 1080 }] },
      'listn',
      'listn: unknown key (did you mean "listen"? allowed: listen, allowOpenProxy, resolver, upstream, plugins, timeouts, limits, metrics, log, workers)',
    );
  });

  test('unknown top-level key with nothing close: the allowed keys only', () => {
    assertConfigError({ zzzzzzzzzz: 1 }, 'zzzzzzzzzz', 'zzzzzzzzzz: unknown key (allowed: listen, allowOpenProxy, resolver, upstream, plugins, timeouts, limits, metrics, log, workers)');
  });

  test('listen.0.port out of range', () => {
    assertConfigError(
      { listen: [{ host: '127.0.0.1', port: 70000 }] },
      'listen.0.port',
      'listen.0.port: must be <= 65535 (TCP port; 0 picks a free port, printed in the "listening on" line. With host.)',
    );
  });

  test('listen.1.port negative (index of the bad entry)', () => {
    assertConfigError(
      { listen: [{ host: '127.0.0.1', port: 1 }, { host: '::1', port: -1 }] },
      'listen.1.port',
      'listen.1.port: must be >= 0 (TCP port; 0 picks a free port, printed in the "listening on" line. With host.)',
    );
  });

  test('listen: an empty list', () => {
    assertConfigError({ listen: [] }, 'listen', 'listen: must NOT have fewer than 1 items (Listeners. Default [{ host: "127.0.0.1", port: 1080 }].)');
  });

  test('upstream.hostt next to host: unknown key with did you mean "host"', () => {
    // The socks5 upstream's key list is still growing; the message lists whatever its schema has.
    const allowed = Object.keys(Socks5UpstreamSchema.properties).join(', ');
    assert.match(allowed, /^type, host, port, /);
    assertConfigError(
      { upstream: { type: 'socks5', host: '127.0.0.1', hostt: '127.0.0.2', port: 9050 } },
      'upstream.hostt',
      `upstream.hostt: unknown key (did you mean "host"? allowed: ${allowed})`,
    );
  });

  test('upstream.hostt instead of host (the usual typo): the error names the typo, not only the missing key', () => {
    const err = errorOf({ upstream: { type: 'socks5', hostt: '127.0.0.1', port: 9050 } });
    assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
    assert.match(err.message, /^upstream\.hostt: /, `message was: ${err.message}`);
    assert.match(err.message, /did you mean "host"/, `message was: ${err.message}`);
  });

  test('custom plugin { modul } instead of { module }: the error names the typo', () => {
    const err = errorOf({ plugins: { ...ALL_PLUGINS_OFF, mine: { modul: './mine.mjs' } } });
    assert.match(err.message, /^plugins\.mine\.modul: unknown key \(did you mean "module"\?/, `message was: ${err.message}`);
  });

  test('upstream.type not one of direct, socks5, module: the message lists all three', () => {
    assertConfigError(
      { upstream: { type: 'http' } },
      'upstream.type',
      `upstream.type: must be one of: "direct", "socks5", "module" (How streams leave the proxy: 'direct', 'socks5' or 'module'.)`,
    );
  });

  test('upstream.type of the wrong JSON type', () => {
    assertConfigError(
      { upstream: { type: 5 } },
      'upstream.type',
      `upstream.type: must be one of: "direct", "socks5", "module" (How streams leave the proxy: 'direct', 'socks5' or 'module'.)`,
    );
  });

  test('log.level not a level: the message lists the levels', () => {
    const err = errorOf({ log: { level: 'loud' } });
    assert.equal(err.key, 'log.level');
    assert.match(err.message, /^log\.level: must be one of: "fatal", "error", "warn", "info", "debug", "trace", "silent"/, `message was: ${err.message}`);
  });

  test('a built-in plugin entry that is neither boolean nor object: the message says both are allowed', () => {
    const err = errorOf({ plugins: { isolation: 5 } });
    assert.equal(err.key, 'plugins.isolation');
    assert.match(err.message, /boolean/);
    assert.match(err.message, /object/, `message was: ${err.message}`);
  });

  test('upstream: unknown key for its type, with the keys of that type', () => {
    assertConfigError(
      { upstream: { type: 'direct', localAdress: '127.0.0.1' } },
      'upstream.localAdress',
      'upstream.localAdress: unknown key (did you mean "localAddress"? allowed: type, localAddress, attemptTimeout, interceptors)',
    );
  });

  test('upstream module without module', () => {
    assertConfigError(
      { upstream: { type: 'module' } },
      'upstream.module',
      'upstream.module: required key is missing (Path (relative to the config file) or package name of a module whose default export is an upstream class.)',
    );
  });

  test('misspelled built-in plugin plugins.isolatoin: true', () => {
    assertConfigError(
      { plugins: { isolatoin: true } },
      'plugins.isolatoin',
      'plugins.isolatoin: unknown plugin (did you mean "isolation"?); built-ins are isolation, resolve, resolve-ptr, http-detect, optimistic-data, extended-errors, auth, policy, bind, udp-associate, and a custom plugin is { module, options }',
    );
  });

  test('misspelled built-in plugin with options: plugins.isolatoin: {}', () => {
    assertConfigError(
      { plugins: { isolatoin: {} } },
      'plugins.isolatoin',
      'plugins.isolatoin: unknown plugin (did you mean "isolation"?); a custom plugin is { module, options }',
    );
  });

  test('plugins.custom without module', () => {
    assertConfigError(
      { plugins: { custom: {} } },
      'plugins.custom.module',
      'plugins.custom.module: required key is missing (Path (relative to the config file) or package name whose default export is the plugin class.)',
    );
  });

  test('plugins.custom with a misspelled options key', () => {
    assertConfigError(
      { plugins: { custom: { module: './x.mjs', optoins: {} } } },
      'plugins.custom.optoins',
      'plugins.custom.optoins: unknown key (did you mean "options"? allowed: module, options, enabled)',
    );
  });

  test('resolver.servers.0 in a bad format', () => {
    assertConfigError({ resolver: { servers: ['dns.example'] } }, 'resolver.servers.0', 'resolver.servers.0: must be IP, IP:PORT or [IPv6]:PORT, got "dns.example"');
  });

  test('resolver.servers.1 with a port out of range', () => {
    assertConfigError(
      { resolver: { servers: ['127.0.0.1:53', '127.0.0.1:65536'] } },
      'resolver.servers.1',
      'resolver.servers.1: must be IP, IP:PORT or [IPv6]:PORT, got "127.0.0.1:65536"',
    );
  });

  test('resolver.servers accepts IP, IP:PORT, [IPv6]:PORT and a bare IPv6', () => {
    const c = resolveConfig({ resolver: { servers: ['127.0.0.1', '127.0.0.1:5353', '[::1]:53', '::1'] } }, SOURCE);
    assert.deepEqual(c.resolver.servers, ['127.0.0.1', '127.0.0.1:5353', '[::1]:53', '::1']);
  });

  test('timeouts.handshake of the wrong type', () => {
    assertConfigError(
      { timeouts: { handshake: '30s' } },
      'timeouts.handshake',
      "timeouts.handshake: must be integer (Milliseconds a client has to complete the SOCKS handshake (like Dante's negotiate timeout). Default 30000.)",
    );
  });

  test('timeouts.handshake below its minimum', () => {
    assertConfigError(
      { timeouts: { handshake: 5 } },
      'timeouts.handshake',
      "timeouts.handshake: must be >= 100 (Milliseconds a client has to complete the SOCKS handshake (like Dante's negotiate timeout). Default 30000.)",
    );
  });

  test('nested unknown key resolver.cache.maxEntris', () => {
    assertConfigError(
      { resolver: { cache: { maxEntris: 5 } } },
      'resolver.cache.maxEntris',
      'resolver.cache.maxEntris: unknown key (did you mean "maxEntries"? allowed: maxEntries, maxTtl, systemTtl, negativeTtl)',
    );
  });

  test('workers: not an integer of 1-1024 nor "auto": one line naming workers, with the allowed forms', () => {
    const message =
      "workers: must be one of: integer 1-1024, \"auto\" (Processes that serve the listeners: an integer 1-1024, or 'auto' for one per CPU (os.availableParallelism()). Above 1 the CLI runs a node:cluster primary that forks the workers; every worker accepts on the same sockets. Default 1: one process, no cluster. Read at start only.)";
    for (const workers of [0, -1, 1025, 2.5, 'many', '2', true, null]) assertConfigError({ workers }, 'workers', message);
  });

  test('the root must be an object', () => {
    assertConfigError([], '', 'must be object (socksmith configuration.)');
  });
});

describe('resolveConfig defaults and freezing', () => {
  test('an empty config gets every default', () => {
    const c = resolveConfig({}, SOURCE);
    assert.deepEqual(JSON.parse(JSON.stringify(c)), {
      listen: [{ host: '127.0.0.1', port: 1080 }],
      allowOpenProxy: false,
      resolver: { timeout: 5000, tries: 2, maxPending: 256, maxPendingPerClient: 64, cache: { maxEntries: 10000, maxTtl: 3600, systemTtl: 30, negativeTtl: 5 } },
      upstream: { type: 'direct' },
      plugins: [
        { name: 'isolation', builtin: true, options: {} },
        { name: 'resolve', builtin: true, options: {} },
        { name: 'resolve-ptr', builtin: true, options: {} },
        { name: 'http-detect', builtin: true, options: {} },
        { name: 'optimistic-data', builtin: true, options: {} },
      ],
      timeouts: { handshake: 30000, connect: 30000, idle: 0, drain: 10000, pluginStart: 10000 },
      limits: { maxConnections: 10000, maxConnectionsPerClient: 1024, handshakeBuffer: 1024, earlyData: 65536, perClientCountsLoopback: false },
      log: { level: 'info', safeLogging: false },
      workers: 1,
      source: { dir: '/tmp' },
    });
    assert.equal(c.resolver.servers, undefined, 'system resolver by default');
    assert.deepEqual(c.source, { file: undefined, dir: '/tmp' });
    assert.deepEqual(c.listen, DEFAULTS.listen);
  });

  test('workers: default 1, an integer as given, "auto" one per CPU', () => {
    assert.equal(resolveConfig({}, SOURCE).workers, 1);
    assert.equal(resolveConfig({ workers: 1 }, SOURCE).workers, 1);
    assert.equal(resolveConfig({ workers: 4 }, SOURCE).workers, 4);
    assert.equal(resolveConfig({ workers: 1024 }, SOURCE).workers, 1024);
    assert.equal(resolveConfig({ workers: 'auto' }, SOURCE).workers, os.availableParallelism());
  });

  test('undefined and null are an empty config', () => {
    assert.deepEqual(resolveConfig(undefined, SOURCE).listen, [{ host: '127.0.0.1', port: 1080 }]);
    assert.deepEqual(resolveConfig(null, SOURCE).timeouts.handshake, 30000);
  });

  test('partial sections are merged with the defaults', () => {
    const c = resolveConfig({ timeouts: { connect: 1000 }, resolver: { cache: { maxTtl: 60 } }, limits: { earlyData: 4096 } }, SOURCE);
    assert.deepEqual(c.timeouts, { handshake: 30000, connect: 1000, idle: 0, drain: 10000, pluginStart: 10000 });
    assert.deepEqual(c.resolver.cache, { maxEntries: 10000, maxTtl: 60, systemTtl: 30, negativeTtl: 5 });
    assert.equal(c.limits.earlyData, 4096);
  });

  test('plugins: true/false/{} normalize to entries; extended-errors is off unless asked; custom entries follow built-ins', () => {
    const c = resolveConfig(
      { plugins: { isolation: false, resolve: true, 'resolve-ptr': { x: 1 }, 'http-detect': false, 'optimistic-data': false, 'extended-errors': true, mine: { module: './p/mine.mjs', options: { a: 1 } }, off: { module: './off.mjs', enabled: false } } },
      { file: '/etc/socksmith/proxy.config.json', dir: '/etc/socksmith' },
    );
    assert.deepEqual(JSON.parse(JSON.stringify(c.plugins)), [
      { name: 'resolve', builtin: true, options: {} },
      { name: 'resolve-ptr', builtin: true, options: { x: 1 } },
      { name: 'extended-errors', builtin: true, options: {} },
      { name: 'mine', builtin: false, module: '/etc/socksmith/p/mine.mjs', options: { a: 1 } },
    ]);
  });

  test('a relative upstream module is resolved against the config folder', () => {
    const c = resolveConfig({ upstream: { type: 'module', module: '../up/tor.mjs' } }, { file: '/etc/socksmith/proxy.config.json', dir: '/etc/socksmith' });
    assert.deepEqual(c.upstream, { type: 'module', module: '/etc/up/tor.mjs' });
  });

  test('the result is deep-frozen', () => {
    const c: ResolvedConfig = resolveConfig({ plugins: { isolation: { a: { b: [1] } } }, resolver: { servers: ['127.0.0.1'] } }, SOURCE);
    const objects: unknown[] = [c, c.listen, c.listen[0], c.resolver, c.resolver.cache, c.resolver.servers, c.upstream, c.plugins, c.plugins[0], c.plugins[0]!.options, c.timeouts, c.limits, c.log, c.source];
    for (const o of objects) assert.equal(Object.isFrozen(o), true, `frozen: ${JSON.stringify(o)}`);
    const opts = c.plugins[0]!.options as { a: { b: number[] } };
    assert.equal(Object.isFrozen(opts.a), true);
    assert.equal(Object.isFrozen(opts.a.b), true);
    assert.throws(() => {
      (c.timeouts as { handshake: number }).handshake = 1;
    }, TypeError);
    assert.throws(() => {
      (c.listen as Array<unknown>).push({ host: '0.0.0.0', port: 1 });
    }, TypeError);
  });

  test("the caller's object is neither changed nor frozen", () => {
    const raw = { timeouts: { connect: 1000 }, plugins: { isolation: { x: 1 } } };
    const before = JSON.stringify(raw);
    resolveConfig(raw, SOURCE);
    assert.equal(JSON.stringify(raw), before);
    assert.equal(Object.isFrozen(raw), false);
    assert.equal(Object.isFrozen(raw.timeouts), false);
    assert.equal(Object.isFrozen(raw.plugins.isolation), false);
  });
});
