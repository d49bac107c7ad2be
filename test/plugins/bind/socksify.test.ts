/**
 * Dante's client (`socksify`, Debian package dante-client 1.4.2) drives a real BIND through
 * socksmith: `socksify socat TCP-LISTEN:0 STDIO` turns socat's bind()/listen()/accept() into a
 * SOCKS BIND (Dante sends DST 0.0.0.0:0, SOCKS5 and SOCKS4 alike) and its accept() into the wait
 * for the second reply. The test then plays the remote side of an FTP active-mode data connection:
 * it connects to the port socksmith announced, and data flows both ways.
 *
 * socat, not a Python listener: Python's socket.accept() calls accept4(2), which Dante 1.4.2 does
 * not intercept (the call fails with EINVAL on the control socket); socat calls accept(2).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { startProxy } from '../../helpers/proxy.js';
import { requireTool } from '../../helpers/tools.js';
import { waitFor } from '../helpers/socks.js';

async function exchange(t: TestContext, proxyprotocol: 'socks_v5' | 'socks_v4'): Promise<void> {
  const socksify = requireTool(t, 'socksify', 'dante-client');
  const socat = requireTool(t, 'socat');
  if (!socksify || !socat) return;
  const px = await startProxy({ plugins: { bind: true } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-socksify-'));
  const conf = path.join(dir, 'socks.conf');
  fs.writeFileSync(
    conf,
    ['logoutput: stderr', 'route {', `  from: 0.0.0.0/0 to: 0.0.0.0/0 via: 127.0.0.1 port = ${px.port}`, `  proxyprotocol: ${proxyprotocol}`, '  command: bind connect', '  method: none', '}', ''].join('\n'),
  );
  const child = spawn(socksify, [socat, '-t', '2', 'TCP-LISTEN:0,bind=0.0.0.0', 'STDIO'], { env: { ...process.env, SOCKS_CONF: conf }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin!.on('error', () => {});
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let peer: net.Socket | undefined;
  try {
    await waitFor(() => px.logs.some((l) => l.msg === 'bind: listening'), `socksmith listening for socat (stderr: ${stderr})`, 10_000);
    const listening = String(px.logs.find((l) => l.msg === 'bind: listening')!.listening);
    assert.match(listening, /^127\.0\.0\.1:\d+$/);
    // The remote side of an active-mode data connection: connect to the announced port, talk.
    const s = net.connect({ host: '127.0.0.1', port: Number(listening.split(':')[1]), allowHalfOpen: true });
    peer = s;
    s.on('error', () => {});
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    s.write(`to socat over ${proxyprotocol}\n`);
    child.stdin!.end(`from socat over ${proxyprotocol}\n`);
    await waitFor(() => got.length > 0 && stdout.length > 0, `data both ways (stdout ${JSON.stringify(stdout)}, stderr ${stderr})`, 10_000);
    s.end();
    assert.equal(await exited, 0, stderr);
    assert.equal(stdout, `to socat over ${proxyprotocol}\n`);
    assert.equal(got, `from socat over ${proxyprotocol}\n`);
    await waitFor(() => px.logs.some((l) => l.msg === 'stream closed' && l.command === 'BIND'), 'access line');
    const line = px.logs.find((l) => l.msg === 'stream closed' && l.command === 'BIND')!;
    // What Dante's client sends: DST 0.0.0.0 port 0 (any peer).
    assert.equal(line.destination, '0.0.0.0:0');
    assert.equal(line.version, proxyprotocol === 'socks_v5' ? 5 : 4);
    assert.equal(line.reply, 'SUCCEEDED');
  } finally {
    peer?.destroy();
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
    await exited;
    await px.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('socksify (Dante 1.4.2) around socat TCP-LISTEN: a real SOCKS5 BIND, data both ways', { timeout: 30_000 }, (t) => exchange(t, 'socks_v5'));

test('socksify (Dante 1.4.2) around socat TCP-LISTEN: a real SOCKS4 BIND, data both ways', { timeout: 30_000 }, (t) => exchange(t, 'socks_v4'));
