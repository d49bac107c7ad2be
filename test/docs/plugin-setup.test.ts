/**
 * docs/writing-plugins.md, "Setting up a plugin project" and "Running code when a stream closes":
 * the tsconfig shown there compiles examples/byte-counter-plugin.ts with the real tsc, both as an
 * ES module package and as the CommonJS package `npm init -y` makes, and the real CLI loads
 * either from a .json config and runs its close-time code; the example loaded as .ts counts the
 * bytes of each stream when it closes. Also checks that the doc shows the code in examples/.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, startCli } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy } from '../helpers/proxy.js';

const DOC = fs.readFileSync(path.join(ROOT, 'docs', 'writing-plugins.md'), 'utf8');
const EXAMPLE = path.join(ROOT, 'examples', 'byte-counter-plugin.ts');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-plugin-setup-'));
let echo: TestServer;
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  await echo.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The fenced block of language `lang` after `<!-- file: name -->`. */
function docBlock(name: string, lang: string): string {
  const marker = `<!-- file: ${name} -->`;
  const at = DOC.indexOf(marker);
  assert.notEqual(at, -1, `no ${marker}`);
  const m = new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\`$`, 'm').exec(DOC.slice(at + marker.length));
  assert.ok(m, `no ${lang} block after ${marker}`);
  return m[1]!;
}

/** A stream of `n` bytes to the echo server through `port`, closed by the client. */
async function stream(port: number, n: number): Promise<void> {
  const c = await RawClient.connect(port);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(echo.port);
  c.write(Buffer.concat([hex('05 01 00 05 01 00 01 7f000001'), p]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.deepEqual((await c.read(10)).subarray(0, 2), hex('05 00'));
  c.write(Buffer.alloc(n, 0x62));
  assert.equal((await c.read(n)).length, n);
  c.end();
  await c.waitEnd();
}

test('the doc shows examples/byte-counter-plugin.ts as it is', () => {
  assert.equal(docBlock('examples/byte-counter-plugin.ts', 'ts'), fs.readFileSync(EXAMPLE, 'utf8'));
});

test('byte-counter (.ts through jiti): the totals are logged when each stream closes, with final counts', async () => {
  const px = await startProxy({ log: { level: 'info' }, plugins: { 'byte-counter': { module: EXAMPLE } } });
  try {
    await stream(px.port, 10);
    await stream(px.port, 32);
    const deadline = Date.now() + 3000;
    while (px.logs.filter((l) => l.msg === 'byte-counter: totals').length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const totals = px.logs.filter((l) => l.msg === 'byte-counter: totals');
    assert.deepEqual(
      totals.map((l) => [l.client, l.up, l.down, l.streams]),
      [
        ['127.0.0.1', 10, 10, 1],
        ['127.0.0.1', 42, 42, 2],
      ],
    );
  } finally {
    await px.close();
  }
});

for (const kind of ['module', 'commonjs'] as const) {
  test(`the documented tsconfig compiles the example with tsc (${kind} package); the CLI loads it from a .json config`, async () => {
    const dir = path.join(tmp, kind);
    fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'node_modules'));
    // socksmith as a dependency of the plugin project: this checkout (built by npm test's tsc).
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'socksmith'), 'dir');
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), docBlock('tsconfig for a plugin', 'json'));
    // `npm init -y` writes no "type": CommonJS.
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `byte-counter-${kind}`, version: '1.0.0', ...(kind === 'module' ? { type: 'module' } : {}) }));
    fs.copyFileSync(EXAMPLE, path.join(dir, 'src', 'index.ts'));
    // A .ts config beside the plugin (where socksmith looks first) must not be part of the build.
    fs.writeFileSync(path.join(dir, 'proxy.config.ts'), "import { defineConfig } from 'socksmith';\nexport default defineConfig({});\n");
    const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', dir], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(tsc.status, 0, `${tsc.stdout}${tsc.stderr}`);
    const js = fs.readFileSync(path.join(dir, 'dist', 'index.js'), 'utf8');
    if (kind === 'commonjs') assert.match(js, /exports\.default = /);
    else assert.match(js, /^export default /m);
    fs.writeFileSync(path.join(dir, 'proxy.config.json'), JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: { 'byte-counter': { module: './dist/index.js' } } }));
    const cli = await startCli(['--log-format', 'json', '--config', 'proxy.config.json'], { cwd: dir });
    try {
      await stream(Number(cli.listening[0]!.split(':').pop()), 7);
      const deadline = Date.now() + 3000;
      while (!cli.stderr().includes('byte-counter: totals') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const line = cli.stderr().split('\n').find((l) => l.includes('byte-counter: totals'));
      assert.ok(line, cli.stderr());
      const rec = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual([rec.client, rec.up, rec.down, rec.streams], ['127.0.0.1', 7, 7, 1]);
    } finally {
      assert.equal(await cli.stop(), 0);
    }
  });
}
