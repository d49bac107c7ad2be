/**
 * Runs the examples of docs/writing-plugins.md. The custom upstream examples/round-robin-upstream.ts is
 * loaded through examples/proxy.config.round-robin.ts exactly as `npx socksmith --config` loads
 * it (jiti, `import … from 'socksmith'` resolving to the built package). Only the member ports are
 * replaced by two in-process socksmith instances (direct upstream) in front of a loopback echo
 * server. The policy plugin examples/deny-list-plugin.ts is loaded as a custom plugin. Also checks
 * that the code shown in the doc is the code in examples/.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfigFile } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { ROOT, portOf, startCli } from '../helpers/cli.js';
import { hex } from '../helpers/hex.js';
import { RawClient, startEchoServer, type TestServer } from '../helpers/net.js';
import { ALL_OFF, startProxy, type TestProxy } from '../helpers/proxy.js';

const EXAMPLES = path.join(ROOT, 'examples');
const UPSTREAM_FILE = path.join(EXAMPLES, 'round-robin-upstream.ts');
const CONFIG_FILE = path.join(EXAMPLES, 'proxy.config.round-robin.ts');
const DENY_FILE = path.join(EXAMPLES, 'deny-list-plugin.ts');
const DOC = path.join(ROOT, 'docs', 'writing-plugins.md');

/** The fenced block that follows `<!-- file: examples/<name> -->` in the doc. */
function docBlock(doc: string, file: string): string {
  const marker = `<!-- file: ${file} -->`;
  const at = doc.indexOf(marker);
  assert.notEqual(at, -1, `docs/writing-plugins.md has no ${marker}`);
  const m = /^```ts\n([\s\S]*?)^```$/m.exec(doc.slice(at + marker.length));
  assert.ok(m, `no \`\`\`ts block after ${marker}`);
  return m[1]!;
}

function portBytes(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(port);
  return b;
}

/** SOCKS5 CONNECT to 127.0.0.1:port through `proxyPort`; returns the client and the 10-byte reply. */
async function connectVia(proxyPort: number, port: number): Promise<{ c: RawClient; reply: Buffer }> {
  const c = await RawClient.connect(proxyPort);
  c.write(Buffer.concat([hex('05 01 00'), hex('05 01 00 01 7f000001'), portBytes(port)]));
  assert.deepEqual(await c.read(2), hex('05 00'));
  return { c, reply: await c.read(10) };
}

const closedStreams = (p: TestProxy) => p.logs.filter((l) => l.msg === 'stream closed').length;

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The example config with its members replaced by `members` (and built-in plugins off). */
async function exampleConfig(members: Array<{ host: string; port: number }>): Promise<ConfigInput> {
  const { raw } = await loadConfigFile({ file: CONFIG_FILE, cwd: ROOT });
  const cfg = raw as ConfigInput & { upstream: { type: string; module: string; options: unknown } };
  assert.equal(cfg.upstream.type, 'module');
  assert.equal(cfg.upstream.module, './round-robin-upstream.ts');
  return { ...cfg, listen: [{ host: '127.0.0.1', port: 0 }], plugins: {}, upstream: { ...cfg.upstream, options: { upstreams: members } } as ConfigInput['upstream'] };
}

let echo: TestServer;
let a: TestProxy;
let b: TestProxy;
before(async () => {
  echo = await startEchoServer();
  a = await startProxy();
  b = await startProxy();
});
after(async () => {
  await a.close();
  await b.close();
  await echo.close();
});

test('the code blocks in docs/writing-plugins.md are the files in examples/', () => {
  const doc = fs.readFileSync(DOC, 'utf8');
  assert.equal(docBlock(doc, 'examples/round-robin-upstream.ts'), fs.readFileSync(UPSTREAM_FILE, 'utf8'));
  assert.equal(docBlock(doc, 'examples/proxy.config.round-robin.ts'), fs.readFileSync(CONFIG_FILE, 'utf8'));
  assert.equal(docBlock(doc, 'examples/deny-list-plugin.ts'), fs.readFileSync(DENY_FILE, 'utf8'));
});

test('round-robin upstream alternates CONNECTs between its two SOCKS5 members', async () => {
  const rr = await startProxy(await exampleConfig([{ host: '127.0.0.1', port: a.port }, { host: '127.0.0.1', port: b.port }]), { cwd: EXAMPLES });
  try {
    assert.equal(rr.proxy.kernel.upstream.name, `round-robin [socks5 127.0.0.1:${a.port}, socks5 127.0.0.1:${b.port}]`);
    const served: string[] = [];
    for (let i = 0; i < 6; i++) {
      const before = { a: closedStreams(a), b: closedStreams(b) };
      const { c, reply } = await connectVia(rr.port, echo.port);
      assert.equal(reply[1], 0x00, `CONNECT ${i} succeeded`);
      c.write(`ping ${i}`);
      assert.equal((await c.read(6)).toString(), `ping ${i}`);
      c.end();
      await c.waitEnd();
      await until(() => closedStreams(a) + closedStreams(b) > before.a + before.b, `stream ${i} to close at a member`);
      served.push(closedStreams(a) > before.a ? 'a' : 'b');
    }
    assert.deepEqual(served, ['a', 'b', 'a', 'b', 'a', 'b']);
  } finally {
    await rr.close();
  }
});

test("a member that is down costs only its own turns: REP 01 (this server's failure), then the next member", async () => {
  const dead = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const rr = await startProxy(await exampleConfig([{ host: '127.0.0.1', port: dead }, { host: '127.0.0.1', port: a.port }]), { cwd: EXAMPLES });
  try {
    const first = await connectVia(rr.port, echo.port);
    assert.deepEqual(first.reply, hex('05 01 00 01 00000000 0000'));
    await first.c.waitEnd();
    const second = await connectVia(rr.port, echo.port);
    assert.equal(second.reply[1], 0x00);
    second.c.destroy();
  } finally {
    await rr.close();
  }
});

test("options are checked against the example's meta.schema before construction", async () => {
  const cfg = await exampleConfig([]);
  await assert.rejects(startProxy(cfg, { cwd: EXAMPLES }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'SOCKSMITH_ERR_CONFIG_INVALID');
    assert.match(err.message, /^upstream\.options\.upstreams: must NOT have fewer than 1 items \(SOCKS5 servers to use in turn, in this order\.\)$/);
    return true;
  });
});

test('the CLI loads the example upstream from a config file (jiti, self-reference to socksmith)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-rr-'));
  const file = path.join(dir, 'proxy.config.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      plugins: { ...ALL_OFF },
      upstream: { type: 'module', module: UPSTREAM_FILE, options: { upstreams: [{ host: '127.0.0.1', port: a.port }, { host: '127.0.0.1', port: b.port }] } },
    }),
  );
  const cli = await startCli(['--config', file, '--listen', '127.0.0.1:0']);
  try {
    const port = portOf(cli.listening[0]!);
    const start = { a: closedStreams(a), b: closedStreams(b) };
    for (let i = 0; i < 4; i++) {
      const { c, reply } = await connectVia(port, echo.port);
      assert.equal(reply[1], 0x00);
      c.write('x');
      assert.equal((await c.read(1)).toString(), 'x');
      c.end();
      await c.waitEnd();
    }
    await until(() => closedStreams(a) + closedStreams(b) === start.a + start.b + 4, 'four streams to close at the members');
    assert.equal(closedStreams(a) - start.a, 2);
    assert.equal(closedStreams(b) - start.b, 2);
    assert.equal(await cli.stop(), 0);
  } finally {
    await cli.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('deny-list policy plugin: listed hosts, parent domains, ports and file entries get REP 02 / 5B', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'socksmith-deny-'));
  const list = path.join(dir, 'deny.txt');
  fs.writeFileSync(list, '# one host per line\nfromfile.test  # trailing comment\n\n');
  const px = await startProxy({
    plugins: { 'deny-list': { module: DENY_FILE, options: { hosts: ['blocked.test', '10.9.8.7'], ports: [25], file: list } } },
  });
  const name = (host: string, port: number) => Buffer.concat([hex('05 01 00'), hex('05 01 00 03'), Buffer.from([host.length]), Buffer.from(host), portBytes(port)]);
  const refused = hex('05 02 00 01 00000000 0000');
  try {
    assert.ok(px.logs.some((l) => l.msg === 'deny-list loaded' && l.hosts === 3));
    for (const [host, port] of [['blocked.test', 80], ['www.Blocked.TEST.', 443], ['fromfile.test', 80], ['127.0.0.1', 25]] as const) {
      const c = await RawClient.connect(px.port);
      c.write(host === '127.0.0.1' ? Buffer.concat([hex('05 01 00 05 01 00 01 7f000001'), portBytes(port)]) : name(host, port));
      assert.deepEqual(await c.read(2), hex('05 00'));
      assert.deepEqual(await c.read(10), refused, `${host}:${port}`);
      await c.waitEnd();
    }
    const s4 = await RawClient.connect(px.port);
    s4.write(Buffer.concat([hex('04 01'), portBytes(80), hex('0a090807 00')]));
    assert.deepEqual(await s4.read(8), hex('00 5b 0000 00000000'));
    await s4.waitEnd();
    const ok = await connectVia(px.port, echo.port);
    assert.equal(ok.reply[1], 0x00, 'an unlisted destination still connects');
    ok.c.destroy();
  } finally {
    await px.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
