/**
 * Long fuzz run of the sans-IO codec (`npm run fuzz`; `-- --runs N --seed S`). Not part of
 * `npm test`, which runs the same properties with a small fixed-seed count
 * (test/protocol/properties.test.ts). The last recorded run is in docs/security.md.
 *
 * Properties, for arbitrary bytes and arbitrary chunkings:
 * 1. no parser throws; each returns ok / need-more / error; ok uses 1..len bytes;
 * 2. results are prefix-consistent: an ok message parses the same from exactly its bytes and
 *    with any bytes after it, and every strict prefix of it is need-more;
 * 3. the server handshake state machine, fed any bytes in any chunks (method 00 or 02 chosen,
 *    credentials accepted), produces the same events as when fed all at once, in a bounded
 *    number of steps.
 */
import fc from 'fast-check';
import { parseArgs } from 'node:util';
import {
  parseMethodSelection,
  parseSocks4Reply,
  parseSocks4Request,
  parseSocks5Greeting,
  parseSocks5Reply,
  parseSocks5Request,
  parseUserPass,
  parseUserPassReply,
  type ParseResult,
} from '../../src/protocol/codec.js';
import { ServerHandshake } from '../../src/protocol/server-handshake.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '1000000' }, seed: { type: 'string', default: String(Date.now() % 2 ** 31) } } });
const RUNS = Math.max(1, Math.min(100_000_000, Number(values.runs)));
const SEED = Number(values.seed);

const PARSERS: Array<[string, (b: Uint8Array) => ParseResult<unknown>]> = [
  ['socks5 greeting', (b) => parseSocks5Greeting(b)],
  ['rfc1929 request', (b) => parseUserPass(b)],
  ['socks5 request', (b) => parseSocks5Request(b)],
  ['socks4 request', (b) => parseSocks4Request(b)],
  ['socks5 reply', (b) => parseSocks5Reply(b)],
  ['method selection', (b) => parseMethodSelection(b)],
  ['rfc1929 reply', (b) => parseUserPassReply(b)],
  ['socks4 reply', (b) => parseSocks4Reply(b)],
];

/** Bytes that start like real messages more often than uniform noise would. */
const bytes = fc.oneof(
  fc.uint8Array({ maxLength: 600 }),
  fc.tuple(fc.constantFrom(0x04, 0x05, 0x01, 0x47), fc.uint8Array({ maxLength: 600 })).map(([v, rest]) => Uint8Array.of(v, ...rest)),
  fc.tuple(fc.constantFrom(Uint8Array.of(5, 1, 0), Uint8Array.of(5, 2, 0, 2), Uint8Array.of(5, 1, 2)), fc.uint8Array({ maxLength: 600 })).map(([g, rest]) => Uint8Array.of(...g, 5, ...rest)),
);

function checkParser(name: string, parse: (b: Uint8Array) => ParseResult<unknown>, b: Uint8Array): void {
  const r = parse(b);
  if (r.status === 'ok') {
    if (!(r.length >= 1 && r.length <= b.length)) throw new Error(`${name}: bad length ${r.length} of ${b.length}`);
    const exact = parse(b.subarray(0, r.length));
    if (exact.status !== 'ok' || exact.length !== r.length) throw new Error(`${name}: not prefix-consistent`);
    for (let i = 0; i < r.length; i++) {
      if (parse(b.subarray(0, i)).status !== 'need-more') throw new Error(`${name}: strict prefix ${i} of an ok message is not need-more`);
    }
  } else if (r.status === 'need-more') {
    for (let i = 0; i < b.length; i++) {
      if (parse(b.subarray(0, i)).status !== 'need-more') throw new Error(`${name}: prefix ${i} of a need-more input is not need-more`);
    }
  } else if (r.status !== 'error') {
    throw new Error(`${name}: unknown status`);
  }
}

type Ev = string;

/** Drive a handshake over `chunks`, choosing `method` and accepting credentials. */
function drive(chunks: Uint8Array[], method: number): Ev[] {
  const hs = new ServerHandshake();
  const events: Ev[] = [];
  let buf = Buffer.alloc(0);
  let steps = 0;
  for (const c of chunks) {
    buf = Buffer.concat([buf, c]);
    for (;;) {
      if (++steps > 10_000) throw new Error('handshake did not settle');
      const ev = hs.step(buf, 0);
      if (ev.type === 'need-more') break;
      if (ev.type === 'greeting') {
        events.push(`greeting ${ev.greeting.methods.join(',')}`);
        buf = buf.subarray(ev.length);
        events.push(`sent ${hs.selectMethod(ev.greeting.methods.includes(method) ? method : 0xff).toString('hex')}`);
        if (hs.state === 'failed') return events;
      } else if (ev.type === 'auth') {
        events.push(`auth ${ev.auth.username.toString('hex')}:${ev.auth.password.toString('hex')}`);
        buf = buf.subarray(ev.length);
        events.push(`sent ${hs.authResult(true).toString('hex')}`);
      } else if (ev.type === 'request') {
        events.push(`request ${ev.request.version} ${ev.request.command} ${ev.request.destination.kind} ${ev.request.destination.host} ${ev.request.destination.port}`);
        return events;
      } else if (ev.type === 'unknown-protocol') {
        events.push(`unknown ${ev.firstByte}`);
        return events;
      } else {
        events.push(`error ${ev.error.code} ${ev.reply?.toString('hex') ?? '-'}`);
        return events;
      }
    }
  }
  events.push('need-more');
  return events;
}

function split(b: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let last = 0;
  for (const p of points) {
    out.push(b.subarray(last, p));
    last = p;
  }
  out.push(b.subarray(last));
  return out;
}

const started = Date.now();
console.log(`fuzz: ${RUNS} runs per property, seed ${SEED}`);
for (const [name, parse] of PARSERS) {
  const t = Date.now();
  fc.assert(fc.property(bytes, (b) => checkParser(name, parse, b)), { numRuns: RUNS, seed: SEED });
  console.log(`  ${name.padEnd(18)} ok  (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}
{
  const t = Date.now();
  fc.assert(
    fc.property(bytes, fc.array(fc.nat(700), { maxLength: 8 }), fc.constantFrom(0x00, 0x02), (b, cuts, method) => {
      const whole = drive([b], method);
      const chunked = drive(split(b, cuts), method);
      if (whole.join('|') !== chunked.join('|')) throw new Error(`chunking changed the events:\n${whole.join('|')}\n${chunked.join('|')}`);
    }),
    { numRuns: RUNS, seed: SEED },
  );
  console.log(`  ${'server handshake'.padEnd(18)} ok  (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}
console.log(`fuzz: all properties held for ${RUNS} inputs each (${PARSERS.length + 1} properties) in ${((Date.now() - started) / 1000).toFixed(0)} s`);
