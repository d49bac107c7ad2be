/**
 * A built-in could be its own npm package (issue 12, "Done when"): the compiled
 * `plugins/optimistic-data` is copied, unchanged, into a temporary package
 * `socksmith-optimistic-data` that depends on `socksmith`, loaded as a module plugin (the built-in
 * switched off), and passes that plugin's wire test: the early bytes reach a recording socks5
 * upstream right behind the request, before its reply. Nothing is rewritten in the copy: the
 * plugin imports only 'socksmith' (and @sinclair/typebox, a dependency).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT } from '../helpers/cli.js';
import { hex, toHex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { startProxy } from '../helpers/proxy.js';
import { tempDir } from '../kernel/hook-kit.js';
import { startRecordingUpstream, type RecordingUpstream } from '../plugins/helpers/recording-upstream.js';
import { readReply5, req5, socks5Upstream } from '../plugins/helpers/socks.js';

const DELAY = 300;
const tmp = tempDir('socksmith-external-plugin-');
let up: RecordingUpstream;
let echo: TestServer;

before(async () => {
  // The package: the compiled plugin files as they are, a package.json, and its dependencies.
  const pkg = path.join(tmp.dir, 'node_modules', 'socksmith-optimistic-data');
  fs.mkdirSync(pkg, { recursive: true });
  const built = path.join(ROOT, 'dist', 'plugins', 'optimistic-data');
  for (const f of fs.readdirSync(built)) if (f.endsWith('.js')) fs.copyFileSync(path.join(built, f), path.join(pkg, f));
  fs.writeFileSync(
    path.join(pkg, 'package.json'),
    JSON.stringify({ name: 'socksmith-optimistic-data', version: '1.0.0', type: 'module', main: 'index.js', peerDependencies: { socksmith: '*' }, dependencies: { '@sinclair/typebox': '*' } }),
  );
  // socksmith itself and the plugin's dependency, as an install would link them. Node resolves
  // the symlinks to their real paths: the plugin gets the very socksmith (and tsyringe) this test runs.
  fs.symlinkSync(ROOT, path.join(tmp.dir, 'node_modules', 'socksmith'), 'dir');
  fs.mkdirSync(path.join(tmp.dir, 'node_modules', '@sinclair'));
  fs.symlinkSync(path.join(ROOT, 'node_modules', '@sinclair', 'typebox'), path.join(tmp.dir, 'node_modules', '@sinclair', 'typebox'), 'dir');
  up = await startRecordingUpstream({ replyDelayMs: DELAY });
  echo = await startEchoServer();
});
after(async () => {
  await up.close();
  await echo.close();
  tmp.cleanup();
});

test('the copied package has no import but socksmith, node:* and its dependency', () => {
  const code = fs.readFileSync(path.join(tmp.dir, 'node_modules', 'socksmith-optimistic-data', 'index.js'), 'utf8');
  const specs = [...code.matchAll(/\bfrom\s*['"]([^'"]+)['"]/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(specs)].sort(), ['@sinclair/typebox', 'socksmith']);
});

test('loaded as a module plugin (the built-in off), it sends early bytes before the upstream replies', async () => {
  const px = await startProxy(
    { upstream: socks5Upstream(up.port, { pipelining: true }), plugins: { 'optimistic-data': false, od: { module: 'socksmith-optimistic-data' } } },
    { cwd: tmp.dir },
  );
  try {
    const n = up.sessions.length;
    const early = Buffer.from('EARLY-DATA-0123456789');
    const c = await RawClient.connect(px.port);
    c.write(hex('05 01 00'));
    assert.equal(toHex(await c.read(2)), '05 00');
    c.write(Buffer.concat([req5(1, 'localhost', echo.port), early]));
    const reply = await readReply5(c);
    assert.equal(toHex(reply.subarray(0, 3)), '05 00 00');
    assert.equal((await c.read(early.length)).toString(), early.toString(), 'the destination got the early bytes');
    c.destroy();
    const s = up.sessions[n]!;
    assert.ok(s.request && s.replyAt && s.requestAt);
    assert.ok(s.replyAt - s.requestAt >= DELAY - 20, 'the upstream really delayed its reply');
    assert.equal(s.earlyBeforeReply.toString(), early.toString(), 'early bytes were at the upstream before it replied');
  } finally {
    await px.close();
  }
});
