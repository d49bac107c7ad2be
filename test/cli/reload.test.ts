/**
 * SIGHUP reload: the config is re-read and re-validated; new connections use the new one, an
 * open tunnel is untouched; an invalid config is rejected with a log line and the old one stays;
 * listener changes bind and unbind.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { portOf, startCli } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { ALL_OFF } from '../helpers/proxy.js';

let echo: TestServer;
let dir: string;
before(async () => {
  echo = await startEchoServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-reload-'));
});
after(async () => {
  await echo.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function tunnel(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(echo.port);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  assert.equal((await c.read(10))[1], 0);
  return c;
}

async function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });
}

test('SIGHUP: new config for new connections, open tunnel untouched, invalid config rejected, listeners bound and unbound', async () => {
  const file = path.join(dir, 'proxy.config.json');
  const write = (cfg: object) => fs.writeFileSync(file, JSON.stringify(cfg));
  write({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: ALL_OFF, log: { level: 'info' } });
  const cli = await startCli(['--config', file]);
  try {
    const port1 = portOf(cli.listening[0]!);
    // Before: http-detect is off, so 'G' is an unknown version: closed without a byte.
    const g0 = await RawClient.connect(port1);
    g0.write('G');
    assert.equal((await g0.readToEnd(3000)).length, 0);
    g0.destroy();
    const open = await tunnel(port1);

    // A second listener on a fixed free port, and http-detect on.
    const probe = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => probe.once('listening', r));
    const port2 = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    write({
      listen: [{ host: '127.0.0.1', port: portOf(cli.listening[0]!) }, { host: '127.0.0.1', port: port2 }],
      plugins: { ...ALL_OFF, 'http-detect': true },
      log: { level: 'info' },
    });
    // port 0 in the old entry would be a new listener; keep the same port by naming it.
    cli.child.kill('SIGHUP');
    await waitFor(() => cli.stderr().includes('configuration reloaded') || cli.stderr().includes('reload failed'), 'the reload');
    assert.match(cli.stderr(), /configuration reloaded/, cli.stderr().slice(-600));
    await waitFor(() => cli.stdout().includes(`socksmith listening on 127.0.0.1:${port2}`), 'the new listening line');

    // New connections meet the new config on both listeners.
    for (const p of [port1, port2]) {
      const g = await RawClient.connect(p);
      g.write('G');
      assert.match((await g.readToEnd(3000)).toString('latin1'), /^HTTP\/1\.0 501 /);
      g.destroy();
    }
    // The tunnel opened before the reload still relays.
    open.write('still here');
    assert.equal((await open.read(10)).toString(), 'still here');

    // An invalid config is rejected with a log line; the running one stays.
    fs.writeFileSync(file, JSON.stringify({ listen: [{ host: '127.0.0.1', port: port2 }], plugins: { isolatoin: true } }));
    cli.child.kill('SIGHUP');
    await waitFor(() => cli.stderr().includes('reload failed'), 'the failed reload');
    const failed = cli
      .stderr()
      .split('\n')
      .filter((l) => l.includes('reload failed'))
      .map((l) => JSON.parse(l) as { level: string; err: string; msg: string });
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.level, 'error');
    assert.match(failed[0]!.err, /^plugins\.isolatoin: unknown plugin/);
    const g2 = await RawClient.connect(port1);
    g2.write('G');
    assert.match((await g2.readToEnd(3000)).toString('latin1'), /^HTTP\/1\.0 501 /, 'old config still in force on port 1');
    g2.destroy();

    // Dropping a listener unbinds it.
    write({ listen: [{ host: '127.0.0.1', port: port2 }], plugins: ALL_OFF, log: { level: 'info' } });
    const before = (cli.stderr().match(/configuration reloaded/g) ?? []).length;
    cli.child.kill('SIGHUP');
    await waitFor(() => (cli.stderr().match(/configuration reloaded/g) ?? []).length > before, 'the third reload');
    assert.equal(await refused(port1), true, 'the removed listener no longer accepts');
    open.write('after unbind');
    assert.equal((await open.read(12)).toString(), 'after unbind', 'the tunnel accepted on the removed listener is untouched');
    open.end();
    await open.waitEnd();
    open.destroy();
  } finally {
    assert.equal(await cli.stop('SIGTERM'), 0);
  }
});

test('after a reload, the "shutting down" line counts the old configuration\'s open tunnels and gives the current drain (issue #10 review)', async () => {
  const file = path.join(dir, 'shutdown.config.json');
  const write = (drain: number, port: number) => fs.writeFileSync(file, JSON.stringify({ listen: [{ host: '127.0.0.1', port }], plugins: ALL_OFF, log: { level: 'info' }, timeouts: { drain } }));
  write(20_000, 0);
  const cli = await startCli(['--config', file]);
  let open: RawClient | undefined;
  try {
    const port = portOf(cli.listening[0]!);
    open = await tunnel(port);
    write(1_500, port);
    cli.child.kill('SIGHUP');
    await waitFor(() => cli.stderr().includes('configuration reloaded') || cli.stderr().includes('reload failed'), 'the reload');
    assert.match(cli.stderr(), /configuration reloaded/, cli.stderr().slice(-600));
    cli.child.kill('SIGTERM');
    await waitFor(() => cli.stderr().includes('"shutting down"'), 'the shutting-down line');
    const line = cli
      .stderr()
      .split('\n')
      .filter((l) => l.includes('"shutting down"'))
      .map((l) => JSON.parse(l) as { signal: string; drainMs: number; open: number });
    assert.equal(line.length, 1);
    assert.equal(line[0]!.signal, 'SIGTERM');
    assert.equal(line[0]!.open, 1, 'the tunnel the old configuration accepted is open');
    assert.equal(line[0]!.drainMs, 1_500, 'the reloaded configuration\'s drain, which close() applies');
    // The drain really is the new one: the tunnel is cut (reset) after 1.5 s, not 20 s; the exit is clean.
    assert.equal(await cli.exited, 0);
  } finally {
    open?.destroy();
    await cli.stop('SIGKILL');
  }
});
