/**
 * The UDP load of `npm run bench`'s `udp` phase: one SOCKS5 UDP ASSOCIATE (RFC 1928 §7) through
 * the proxy under test, then `--count` datagrams of `--size` bytes (plus the 10-byte header) to a
 * UDP echo server in this process, with at most `--window` in flight. Each echo releases the next
 * datagram; when nothing comes back for `--stall-ms`, the datagrams in flight are given up on and
 * the window refills (lost = sent − distinct echoes received). Bounded by `--count` and `--timeout`. Prints one JSON line:
 * `{ ok, sent, received, lost, stalls, seconds, rate, cpu_user_s, cpu_sys_s }` (rate = echoes per second).
 *
 * Loopback only: the proxy and the echo server are on 127.0.0.1.
 * @packageDocumentation
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    proxy: { type: 'string' },
    count: { type: 'string', default: '20000' },
    size: { type: 'string', default: '64' },
    window: { type: 'string', default: '64' },
    'stall-ms': { type: 'string', default: '200' },
    timeout: { type: 'string', default: '60' },
  },
});

const clamp = (v: string | undefined, min: number, max: number) => Math.min(max, Math.max(min, Math.floor(Number(v))));
const [proxyHost, proxyPortS] = (values.proxy ?? '').split(':');
const proxyPort = Number(proxyPortS);
if (proxyHost !== '127.0.0.1' || !(proxyPort > 0)) throw new Error('--proxy 127.0.0.1:PORT is required (loopback only)');
const COUNT = clamp(values.count, 1, 10_000_000);
const SIZE = clamp(values.size, 4, 1400);
const WINDOW = clamp(values.window, 1, 4096);
const STALL_MS = clamp(values['stall-ms'], 10, 10_000);
const TIMEOUT_MS = clamp(values.timeout, 1, 600) * 1000;

function result(r: Record<string, unknown>): never {
  const cpu = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ ...r, cpu_user_s: cpu.user / 1e6, cpu_sys_s: cpu.system / 1e6 })}\n`);
  process.exit(0);
}

async function readN(sock: net.Socket, n: number): Promise<Buffer> {
  let buf = Buffer.alloc(0);
  while (buf.length < n) {
    const chunk = sock.read() as Buffer | null;
    if (chunk) buf = Buffer.concat([buf, chunk]);
    else await Promise.race([once(sock, 'readable'), once(sock, 'end').then(() => Promise.reject(new Error('proxy closed the control connection')))]);
  }
  if (buf.length > n) sock.unshift(buf.subarray(n));
  return buf.subarray(0, n);
}

async function main(): Promise<void> {
  const deadline = setTimeout(() => result({ ok: false, error: 'timeout' }), TIMEOUT_MS);
  // The destination: an echo server.
  const echo = dgram.createSocket('udp4');
  echo.on('error', () => {});
  echo.on('message', (m, r) => echo.send(m, r.port, r.address));
  echo.bind(0, '127.0.0.1');
  await once(echo, 'listening');
  const echoPort = echo.address().port;

  // The association.
  const control = net.connect(proxyPort, proxyHost);
  control.on('error', (err) => result({ ok: false, error: `control connection: ${err.message}` }));
  await once(control, 'connect');
  control.write(Buffer.from([5, 1, 0]));
  const method = await readN(control, 2);
  if (method[1] !== 0) result({ ok: false, error: `method ${method[1]}` });
  control.write(Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
  const head = await readN(control, 4);
  if (head[1] !== 0) result({ ok: false, error: `UDP ASSOCIATE refused: REP ${head[1]}` });
  if (head[3] !== 1) result({ ok: false, error: `relay address of ATYP ${head[3]} (expected IPv4)` });
  const bnd = await readN(control, 6);
  let relayHost = `${bnd[0]}.${bnd[1]}.${bnd[2]}.${bnd[3]}`;
  if (relayHost === '0.0.0.0') relayHost = proxyHost;
  const relayPort = bnd.readUInt16BE(4);

  const udp = dgram.createSocket('udp4');
  udp.on('error', () => {});
  udp.bind(0, '127.0.0.1');
  await once(udp, 'listening');
  // One buffer per datagram in flight would do; one template, the sequence number written in place.
  const template = Buffer.alloc(10 + SIZE);
  template.set([0, 0, 0, 1, 127, 0, 0, 1], 0);
  template.writeUInt16BE(echoPort, 8);

  let sent = 0;
  let received = 0;
  let stalls = 0;
  let inFlight = 0;
  const seen = new Uint8Array(COUNT);
  let t0 = 0;
  let lastProgress = 0;
  let done: (() => void) | undefined;
  const finished = new Promise<void>((r) => (done = r));
  const sendOne = () => {
    const d = Buffer.from(template);
    d.writeUInt32BE(sent, 10);
    sent++;
    inFlight++;
    udp.send(d, relayPort, relayHost);
  };
  const fill = () => {
    while (inFlight < WINDOW && sent < COUNT) sendOne();
    if (sent >= COUNT && inFlight === 0) done?.();
  };
  udp.on('message', (m) => {
    if (m.length !== 10 + SIZE) return;
    const seq = m.readUInt32BE(10);
    if (seq >= COUNT || seen[seq]) return;
    seen[seq] = 1;
    received++;
    inFlight = Math.max(0, inFlight - 1);
    lastProgress = performance.now();
    fill();
  });
  const stall = setInterval(() => {
    if (performance.now() - lastProgress > STALL_MS && inFlight > 0) {
      // Nothing back for a while: what is in flight is lost; refill the window.
      stalls++;
      inFlight = 0;
      lastProgress = performance.now();
      fill();
    }
  }, Math.max(5, Math.floor(STALL_MS / 4)));
  t0 = performance.now();
  lastProgress = t0;
  fill();
  await finished;
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(stall);
  clearTimeout(deadline);
  control.destroy();
  udp.close();
  echo.close();
  result({ ok: received > 0, sent, received, lost: sent - received, stalls, seconds, rate: received / seconds, size: SIZE, window: WINDOW });
}

main().catch((err: Error) => result({ ok: false, error: err.message }));
