/**
 * The access log under load (issue 15): the real CLI, stderr a pipe, thousands of streams; one
 * complete JSON `stream closed` line per stream, none lost on the SIGTERM exit, none split when
 * the pipe is read slowly; and a stderr nobody reads costs bounded memory (lines beyond the
 * buffer are dropped whole, counted, and reported in a `warn` line). Loopback only.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, portOf, startCli, type CliProcess } from '../helpers/cli.js';
import { startEchoServer, type TestServer } from '../helpers/net.js';

let echo: TestServer;
before(async () => {
  echo = await startEchoServer();
});
after(async () => {
  await echo.close();
});

/** One SOCKS5 CONNECT to the echo server, one byte each way, then close. Rejects after 10 s. */
function oneStream(proxyPort: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(proxyPort, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('stream did not finish in 10 s'));
    }, 10_000);
    let got = Buffer.alloc(0);
    let stage = 0;
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('connect', () => {
      const req = Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 0]);
      req.writeUInt16BE(echo.port, 11);
      s.write(req);
    });
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (stage === 0 && got.length >= 12) {
        assert.equal(got[3], 0, 'CONNECT succeeded');
        got = got.subarray(12);
        stage = 1;
        s.write('x');
      }
      if (stage === 1 && got.length >= 1) {
        stage = 2;
        s.end();
      }
    });
    s.on('close', () => {
      clearTimeout(timer);
      if (stage === 2) resolve();
      else reject(new Error(`closed at stage ${stage}`));
    });
  });
}

/** `count` streams, `inFlight` at a time. */
async function streams(proxyPort: number, count: number, inFlight: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      await oneStream(proxyPort);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** The `stream closed` records of the CLI's stderr; every stderr line must be complete JSON. */
function accessLines(cli: CliProcess): Array<Record<string, unknown>> {
  const text = cli.stderr();
  assert.ok(text.endsWith('\n'), 'stderr ends with a complete line');
  const records = text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        assert.fail(`not a complete JSON line: ${l.slice(0, 200)}`);
      }
    });
  return records.filter((r) => r.msg === 'stream closed');
}

function checkLines(lines: Array<Record<string, unknown>>, count: number): void {
  assert.equal(lines.length, count, 'one line per stream');
  assert.equal(new Set(lines.map((l) => l.conn)).size, count, 'one line per connection id');
  for (const l of lines) {
    assert.equal(l.level, 'info');
    assert.equal(typeof l.time, 'string');
    assert.equal(typeof l.pid, 'number');
    assert.equal(l.client, '127.0.0.1');
    assert.equal(l.version, 5);
    assert.equal(l.command, 'CONNECT');
    assert.equal(l.destination, `127.0.0.1:${echo.port}`);
    assert.equal(l.upstream, 'direct');
    assert.equal(l.reply, 'SUCCEEDED');
    assert.equal(l.bytesUp, 1);
    assert.equal(l.bytesDown, 1);
    assert.equal(typeof l.durationMs, 'number');
  }
}

test('5,000 streams, 64 in flight, then SIGTERM: exactly one complete JSON access line per stream', async () => {
  const cli = await startCli(['-l', '127.0.0.1:0', '--log-format', 'json', '--log-level', 'info']);
  try {
    await streams(portOf(cli.listening[0]!), 5000, 64);
  } finally {
    assert.equal(await cli.stop(), 0);
  }
  checkLines(accessLines(cli), 5000);
});

test('stderr read slowly (the pipe full for a while): no line lost, split or interleaved', async () => {
  const cli = await startCli(['-l', '127.0.0.1:0', '--log-format', 'json', '--log-level', 'info']);
  try {
    // Stop reading the CLI's stderr: the pipe fills (some 700,000 bytes of lines for 3,000
    // streams, far more than a pipe holds), and the proxy must keep serving while lines wait.
    cli.child.stderr!.pause();
    await streams(portOf(cli.listening[0]!), 3000, 64);
    cli.child.stderr!.resume();
  } finally {
    assert.equal(await cli.stop(), 0);
  }
  checkLines(accessLines(cli), 3000);
});

test('a stderr nobody reads: the buffer stays bounded, lines beyond it are dropped whole and counted in a warn line', async () => {
  // A process with the JSON logger on fd 2 and a 64 KiB buffer writes 20,000 lines over 100 event
  // loop turns while nobody reads its stderr; then this test reads everything and lets it log
  // one more line and exit.
  const logger = path.join(ROOT, 'dist/src/logger.js');
  const script = `
    const { createLogger, setLogFormat } = await import(${JSON.stringify(logger)});
    setLogFormat('json');
    const log = createLogger('info', undefined, { bufferLimit: 64 * 1024 });
    for (let turn = 0; turn < 100; turn++) {
      for (let i = 0; i < 200; i++) log.info({ n: turn * 200 + i, pad: 'x'.repeat(60) }, 'line');
      await new Promise((r) => setImmediate(r));
    }
    process.stdout.write('wrote ' + process.memoryUsage().rss + '\\n');
    process.stdin.once('data', () => {
      setTimeout(() => {
        log.info('after');
        process.exit(0);
      }, 50);
    });
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    child.stderr.pause();
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`exited ${code} before writing all lines: ${out}`)));
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stderr.resume();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // Let the reader take what waited, then let the child log its last line and exit.
    await new Promise((r) => setTimeout(r, 200));
    child.stdin.write('go\n');
    assert.equal(await exited, 0);
    await new Promise((r) => setImmediate(r));
    const records = err
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; n?: number; linesDropped?: number; level: string });
    const written = records.filter((r) => r.msg === 'line');
    const warns = records.filter((r) => r.linesDropped !== undefined);
    const droppedTotal = warns.reduce((a, r) => a + r.linesDropped!, 0);
    assert.ok(droppedTotal > 0, 'lines were dropped');
    assert.ok(warns.every((w) => w.level === 'warn'));
    assert.equal(written.length + droppedTotal, 20_000, 'every line written or counted as dropped');
    // Those written are in order, and whole (each parsed above).
    for (let i = 1; i < written.length; i++) assert.ok(written[i]!.n! > written[i - 1]!.n!, 'in order');
    assert.equal(records.at(-1)!.msg, 'after');
  } finally {
    clearTimeout(killer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});
