/**
 * socksmith as a new user meets it (issue 14), outside the repository:
 *
 * - a fresh clone (the tracked files, no dist/, node_modules as `npm install` leaves it — no
 *   install script builds anything): `npx socksmith` starts a proxy from the TypeScript sources;
 * - `npm pack` there (prepack builds dist/), the tarball's contents (everything the messages and
 *   `--help` point to, nothing from the tests);
 * - `npm install ./socksmith-<version>.tgz` into a temporary folder outside the repository, with
 *   no install-script warning, then `npx socksmith` (--version, --check, a real tunnel, passwd, a
 *   .ts config importing socksmith, a tsc-compiled CommonJS plugin).
 *
 * The suite runs in a network namespace with no route out, so the install is `--offline`: the
 * dependencies come from npm's cache (warm after `npm ci`), pinned to this repository's
 * package-lock.json through a lockfile written into the temporary folder (with the registry's
 * tarball URLs, so npm needs no registry metadata). Every step is bounded in time. In CI a step
 * that cannot run fails; elsewhere an empty npm cache skips the install tests, saying why.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';

const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  bin: Record<string, string>;
  engines: Record<string, string>;
  license: string;
};
const TGZ = `${PKG.name}-${PKG.version}.tgz`;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-package-'));
const clone = path.join(tmp, 'clone');
const packDir = path.join(tmp, 'pack');
const app = path.join(tmp, 'app');
let echo: TestServer;
const children: Array<ReturnType<typeof spawn>> = [];

before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await echo.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Run a command to completion, bounded; throws with its output when it fails. */
function run(cmd: string, args: string[], opts: { cwd: string; input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input ?? '', encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL', env: { ...process.env, npm_config_update_notifier: 'false', ...opts.env } });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return r;
}

/** SOCKS5 CONNECT to the echo server through `port`; checks the bytes come back. */
async function relayThrough(port: number): Promise<void> {
  const c = await RawClient.connect(port, '127.0.0.1');
  try {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(echo.port);
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p]));
    assert.deepEqual(await c.read(2), hex('05 00'));
    assert.deepEqual((await c.read(10)).subarray(0, 2), hex('05 00'));
    c.write(Buffer.from('ping'));
    assert.equal((await c.read(4)).toString(), 'ping');
  } finally {
    c.destroy();
  }
}

/**
 * Start the `socksmith` command that `npx socksmith` runs in `cwd` (`bin`: the file the package's
 * `bin` entry names, or node_modules/.bin/socksmith), directly: npx would stand between the test
 * and the proxy's signals and exit code. Resolves with its port once it listens.
 */
function startBin(cwd: string, bin: string, args: string[]): Promise<{ port: number; stop(): Promise<number | null>; stderr(): string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(cwd, bin), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`socksmith did not listen within 60 s; stderr: ${err}`));
    }, 60_000);
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^socksmith listening on 127\.0\.0\.1:(\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          port: Number(m[1]),
          stderr: () => err,
          stop: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`socksmith exited with ${code}; stderr: ${err}`));
    });
  });
}

/** Missing tool or cache: fail in CI, skip elsewhere. */
function unavailable(t: { skip(message?: string): void }, why: string): void {
  if (process.env.CI) assert.fail(why);
  t.skip(why);
}

describe('a fresh clone, the packed tarball, and an install outside the repository', () => {
  let cloned = '';
  let packed = '';
  let installed = '';

  test('fresh clone (no dist/, no install script ran): npx socksmith starts a proxy from the sources', async (t) => {
    const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    if (files.status !== 0) { unavailable(t, `git ls-files failed (not a git checkout?): ${files.stderr ?? files.error?.message}`); return; }
    for (const f of files.stdout.split('\0')) {
      if (!f || !fs.existsSync(path.join(ROOT, f))) continue; // deleted in the working tree
      fs.mkdirSync(path.dirname(path.join(clone, f)), { recursive: true });
      fs.copyFileSync(path.join(ROOT, f), path.join(clone, f));
    }
    // What `npm install` leaves in a clone: node_modules (no lifecycle script builds dist/).
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'), 'dir');
    assert.equal(fs.existsSync(path.join(clone, 'dist')), false);
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(PKG.scripts[s], undefined, `package.json has no ${s} script`);
    assert.equal(PKG.scripts.prepack, 'npm run build');

    const check = run('npx', ['--offline', 'socksmith', '--check'], { cwd: clone });
    assert.equal(check.stdout, `socksmith: configuration ok (${path.join(clone, 'proxy.config.ts')})\n`, check.stderr);
    assert.equal(check.status, 0);
    const proxy = await startBin(clone, PKG.bin.socksmith!, ['-l', '127.0.0.1:0']);
    await relayThrough(proxy.port);
    assert.equal(await proxy.stop(), 0);
    assert.equal(fs.existsSync(path.join(clone, 'dist')), false, 'running from the sources writes nothing');
    cloned = clone;
  });

  test('npm pack builds dist/ (prepack) and ships what the messages point to, and no tests', (t) => {
    if (!cloned) { unavailable(t, 'no clone (see the previous test)'); return; }
    fs.mkdirSync(packDir);
    const r = run('npm', ['pack', '--pack-destination', packDir, '--loglevel', 'warn'], { cwd: clone, timeoutMs: 300_000 });
    assert.equal(r.status, 0, r.stderr);
    const tgz = path.join(packDir, TGZ);
    assert.ok(fs.existsSync(tgz), `${TGZ} in ${packDir}`);
    const list = run('tar', ['-tzf', tgz], { cwd: packDir }).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    const has = new Set(list);
    const expected = [
      'package.json',
      'README.md',
      'LICENSE',
      'bin/socksmith.js',
      'dist/src/cli/main.js',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/plugins/auth/passwd.js',
      ...fs.readdirSync(path.join(ROOT, 'docs')).map((f) => `docs/${f}`),
      ...fs.readdirSync(path.join(ROOT, 'examples')).map((f) => `examples/${f}`),
      ...fs.readdirSync(path.join(ROOT, 'plugins')).map((p) => `plugins/${p}/README.md`),
    ];
    for (const f of expected) assert.ok(has.has(f), `the tarball holds ${f}`);
    // Every "see <file>" in the code and every link in the README resolves inside the package.
    const extracted = path.join(packDir, 'x');
    fs.mkdirSync(extracted);
    assert.equal(run('tar', ['-xzf', tgz, '-C', extracted], { cwd: packDir }).status, 0);
    const pointed = new Set<string>();
    for (const f of list.filter((x) => x.endsWith('.js') || x.endsWith('.md'))) {
      const text = fs.readFileSync(path.join(extracted, 'package', f), 'utf8');
      for (const m of text.matchAll(/(?<![\w/.-])((?:docs|plugins\/[a-z-]+|examples)\/[\w.-]+\.(?:md|ts))\b/g)) if (!m[1]!.startsWith('plugins/') || m[1]!.endsWith('README.md')) pointed.add(m[1]!);
    }
    for (const f of pointed) assert.ok(has.has(f), `${f} is referred to and must be in the tarball`);
    for (const f of list) assert.doesNotMatch(f, /^(dist\/)?test\/|^src\/|^dist\/bench\/|^scripts\//, `${f} is not shipped`);
    packed = tgz;
  });

  test('npm install ./socksmith-*.tgz outside the repository: no install-script warning, npx socksmith works', async (t) => {
    if (!packed) { unavailable(t, 'no tarball (see the previous test)'); return; }
    fs.mkdirSync(app);
    fs.copyFileSync(packed, path.join(app, TGZ));
    const registry = run('npm', ['config', 'get', 'registry'], { cwd: app }).stdout.trim().replace(/\/$/, '');
    writePinnedLock(app, registry);
    const r = run('npm', ['install', '--offline', '--no-audit', '--no-fund', `./${TGZ}`], { cwd: app, timeoutMs: 180_000 });
    if (r.status !== 0 && /ENOTCACHED/.test(r.stderr)) { unavailable(t, `npm's cache lacks a dependency (run npm ci first): ${r.stderr.split('\n')[1] ?? r.stderr}`); return; }
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(`${r.stdout}${r.stderr}`, /install-scripts|allow-scripts|lifecycle/i);
    installed = app;

    const version = run('npx', ['--offline', 'socksmith', '--version'], { cwd: app });
    assert.equal(version.stdout, `${PKG.version}\n`, version.stderr);
    const help = run('npx', ['--offline', 'socksmith', '--help'], { cwd: app });
    assert.ok(help.stdout.endsWith(`Docs: README.md, docs/ and plugins/*/README.md in the package:\n  ${fs.realpathSync(path.join(app, 'node_modules/socksmith'))}\n`), help.stdout);
    for (const f of ['README.md', 'docs/config.md', 'docs/metrics.md', 'plugins/auth/README.md', 'examples/deny-list-plugin.ts']) {
      assert.ok(fs.existsSync(path.join(app, 'node_modules/socksmith', f)), `installed package holds ${f}`);
    }

    // A .ts config importing socksmith, next to the installed package.
    fs.writeFileSync(path.join(app, 'proxy.config.ts'), "import { defineConfig } from 'socksmith';\nexport default defineConfig({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: { isolation: false } });\n");
    const check = run('npx', ['--offline', 'socksmith', '--check'], { cwd: app });
    assert.equal(check.stdout, `socksmith: configuration ok (${path.join(app, 'proxy.config.ts')})\n`, check.stderr);
    const proxy = await startBin(app, 'node_modules/.bin/socksmith', []);
    await relayThrough(proxy.port);
    assert.equal(await proxy.stop(), 0);
  });

  test('installed: npx socksmith passwd writes a users file the auth plugin loads', async (t) => {
    if (!installed) { unavailable(t, 'not installed (see the previous test)'); return; }
    const users = path.join(installed, 'users.txt');
    const r = run('npx', ['--offline', 'socksmith', 'passwd', 'alice', '--users-file', 'users.txt'], { cwd: installed, input: 's3cret\n' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, `socksmith passwd: added alice to ${users}\n`);
    assert.match(fs.readFileSync(users, 'utf8'), /^alice:\$scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}\n$/);
    assert.equal(fs.statSync(users).mode & 0o777, 0o600);
    fs.writeFileSync(path.join(installed, 'auth.json'), JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: { auth: { usersFile: './users.txt' } } }));
    const proxy = await startBin(installed, 'node_modules/.bin/socksmith', ['--config', 'auth.json']);
    const c = await RawClient.connect(proxy.port, '127.0.0.1');
    try {
      c.write(Buffer.concat([hex('05 01 02'), hex('01 05'), Buffer.from('alice'), hex('06'), Buffer.from('s3cret')]));
      assert.deepEqual(await c.read(2), hex('05 02'));
      assert.deepEqual(await c.read(2), hex('01 00'), 'the password passwd hashed is accepted');
    } finally {
      c.destroy();
    }
    assert.equal(await proxy.stop(), 0);
  });
});

/**
 * package.json and package-lock.json for the temporary folder: socksmith from the tarball, its
 * dependencies at exactly the versions of this repository's lockfile, each with its registry
 * tarball URL and integrity, so that an offline install needs nothing but npm's cache.
 */
function writePinnedLock(dir: string, registry: string): void {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
  const integrity = `sha512-${crypto.createHash('sha512').update(fs.readFileSync(path.join(dir, TGZ))).digest('base64')}`;
  const spec = `file:${TGZ}`;
  const packages: Record<string, unknown> = {
    '': { name: 'socksmith-user', version: '1.0.0', dependencies: { socksmith: spec } },
    'node_modules/socksmith': { version: PKG.version, resolved: spec, integrity, license: PKG.license, dependencies: PKG.dependencies, bin: PKG.bin, engines: PKG.engines },
  };
  for (const [k, v] of Object.entries(lock.packages)) {
    if (k === '' || v.dev === true || v.link === true) continue;
    const name = k.slice(k.lastIndexOf('node_modules/') + 'node_modules/'.length);
    packages[k] = { ...v, resolved: v.resolved ?? `${registry}/${name}/-/${name.split('/').pop()}-${String(v.version)}.tgz` };
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'socksmith-user', version: '1.0.0', private: true, dependencies: { socksmith: spec } }, null, 2));
  fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ name: 'socksmith-user', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));
}
