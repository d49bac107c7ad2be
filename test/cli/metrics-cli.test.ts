/**
 * The metrics listener as operators run it: `metrics: { host, port }` in the config, the CLI
 * prints `socksmith metrics on HOST:PORT`, Prometheus scrapes /metrics, /healthz answers 200.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { portOf, startCli } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer } from '../helpers/net.js';
import { ALL_OFF } from '../helpers/proxy.js';

function get(port: number, p: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

test('CLI with metrics: the metrics line, /healthz 200, /metrics counts a real stream', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-metrics-'));
  const echo = await startEchoServer();
  const cfg = path.join(dir, 'c.json');
  fs.writeFileSync(cfg, JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], metrics: { host: '127.0.0.1', port: 0 }, plugins: ALL_OFF, log: { level: 'warn' } }));
  const cli = await startCli(['--config', cfg]);
  try {
    const deadline = Date.now() + 5000;
    while (!/^socksmith metrics on /m.test(cli.stdout()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const m = /^socksmith metrics on (\S+)$/m.exec(cli.stdout());
    assert.ok(m, `metrics line printed: ${cli.stdout()}`);
    const mport = portOf(m[1]!);
    const health = await get(mport, '/healthz');
    assert.deepEqual([health.status, health.body], [200, 'ok\n']);

    const c = await RawClient.connect(portOf(cli.listening[0]!));
    const p = Buffer.alloc(2);
    p.writeUInt16BE(echo.port);
    c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), p, Buffer.from('ping')]));
    await c.read(2 + 10 + 4);
    c.end();
    await c.waitEnd();
    c.destroy();
    await new Promise((r) => setTimeout(r, 200));

    const scrape = await get(mport, '/metrics');
    assert.equal(scrape.status, 200);
    assert.match(scrape.type, /^text\/plain/);
    assert.match(scrape.body, /^socksmith_connections_total\{version="5",command="CONNECT",reply="SUCCEEDED"\} 1$/m);
    assert.match(scrape.body, /^socksmith_bytes_total\{direction="up"\} 4$/m);
    assert.match(scrape.body, /^socksmith_bytes_total\{direction="down"\} 4$/m);
    assert.match(scrape.body, /^socksmith_handshake_duration_seconds_count 1$/m);
    assert.equal((await get(mport, '/nope')).status, 404);
  } finally {
    assert.equal(await cli.stop('SIGTERM'), 0);
    await echo.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
