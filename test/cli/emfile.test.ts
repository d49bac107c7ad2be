/**
 * Accept errors (EMFILE: out of file descriptors) never crash the server; it keeps its
 * listeners and serves again once descriptors are free. (libuv handles EMFILE on accept itself:
 * it accepts the excess connection with a reserved descriptor and closes it at once.)
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { test } from 'node:test';
import { CLI } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient } from '../helpers/net.js';
import { ALL_OFF } from '../helpers/proxy.js';

test('with only 200 file descriptors, a flood of 400 connections does not crash the proxy, and it serves again afterwards', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-emfile-'));
  const cfg = path.join(dir, 'c.json');
  fs.writeFileSync(cfg, JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }], plugins: ALL_OFF, log: { level: 'warn' } }));
  const child = spawn('bash', ['-c', `ulimit -n 200 && exec "${process.execPath}" "${CLI}" --config "${cfg}"`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const flood: net.Socket[] = [];
  try {
    const deadline = Date.now() + 15000;
    while (!/listening on \S+:(\d+)/.test(stdout)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no listening line: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const port = Number(/listening on \S+:(\d+)/.exec(stdout)![1]);
    for (let i = 0; i < 400; i++) {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.on('error', () => {});
      flood.push(s);
    }
    await Promise.all(flood.map((s) => Promise.race([once(s, 'connect'), once(s, 'close'), new Promise((r) => setTimeout(r, 3000))])));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(child.exitCode, null, `the proxy is still running; stderr: ${stderr.slice(-500)}`);
    // The flood really exhausted the descriptors (libuv then accepts-and-closes the excess
    // connections with its reserve descriptor, so no error reaches JavaScript).
    const fds = fs.readdirSync(`/proc/${child.pid}/fd`).length;
    assert.ok(fds >= 190, `the proxy ran out of descriptors (${fds} open, limit 200)`);
    for (const s of flood) s.destroy();
    // Once descriptors are free again an honest client is served.
    let served = false;
    for (let attempt = 0; attempt < 20 && !served; attempt++) {
      await new Promise((r) => setTimeout(r, 250));
      try {
        const c = await RawClient.connect(port);
        c.write(hex('05 01 00'));
        served = (await c.read(2, 2000)).equals(hex('05 00'));
        c.destroy();
      } catch {
        /* not yet */
      }
    }
    assert.ok(served, `served again after the flood; stderr: ${stderr.slice(-500)}`);
    assert.equal(child.exitCode, null);
  } finally {
    for (const s of flood) s.destroy();
    child.kill('SIGTERM');
    await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
