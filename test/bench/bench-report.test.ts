/**
 * `npm run bench`'s pure parts: argument parsing (bench/run.ts parseSettings) and the markdown
 * report (report, issue15, pairedRatios) on made-up samples. No proxy, no load, nothing timed:
 * the bench's figures never enter `npm test`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pairedRatios, parseSettings, report, type Sample } from '../../bench/run.js';

test('bench: by default socksmith at its defaults is the first target, the log-cost target runs, socksmith-info does not', () => {
  const s = parseSettings([]);
  assert.equal(s.targets[0], 'socksmith-default');
  assert.ok(s.targets.includes('socksmith-default-warn'));
  assert.ok(s.targets.includes('socksmith-on'));
  assert.ok(!s.targets.includes('socksmith-info'));
  // The idle test: not the handshake-only log-cost target, never "no proxy".
  assert.equal(s.idleTargets[0], 'socksmith-default');
  assert.ok(!s.idleTargets.includes('socksmith-default-warn'));
  assert.ok(!s.idleTargets.includes('none'));
  assert.equal(s.runs, 1);
  assert.equal(s.markdown, undefined);
  assert.equal(s.tunnels, 9900);
});

test('bench: --markdown FILE and --runs N are parsed; --runs is bounded; an unknown target is refused', () => {
  const s = parseSettings(['--markdown', 'out.md', '--runs', '3', '--targets', 'socksmith-default,dante']);
  assert.equal(s.markdown, 'out.md');
  assert.equal(s.runs, 3);
  assert.deepEqual(s.targets, ['socksmith-default', 'dante']);
  assert.equal(parseSettings(['--runs', '99']).runs, 10);
  assert.equal(parseSettings(['--runs', '0']).runs, 1);
  assert.throws(() => parseSettings(['--targets', 'socksmith-defaults']), /unknown target "socksmith-defaults"/);
  assert.throws(() => parseSettings(['--no-such-flag']), /Unknown option/);
});

function sample(phase: Sample['phase'], target: Sample['target'], run: number, rep: number, value: number, more: Partial<Sample> = {}): Sample {
  return { phase, target, run, rep, ok: true, value, ...more };
}

const SAMPLES: Sample[] = [
  // Handshakes: defaults at info vs at warn, and the Node floor; CPU per handshake in µs.
  sample('handshake', 'socksmith-default', 1, 1, 900, { proxyCpuPerUnit: 300, extra: { pacedCpu: 240, pacedRate: 3000 } }),
  sample('handshake', 'socksmith-default-warn', 1, 1, 1000, { proxyCpuPerUnit: 200 }),
  sample('handshake', 'node-floor', 1, 1, 2000, { proxyCpuPerUnit: 150, extra: { pacedCpu: 200, pacedRate: 3000 } }),
  // Repetition 2: socksmith did not keep up with the paced rate (pacedCpu NaN): no paced pair.
  sample('handshake', 'socksmith-default', 1, 2, 800, { proxyCpuPerUnit: 330, extra: { pacedCpu: NaN, pacedRate: 2500 } }),
  sample('handshake', 'socksmith-default-warn', 1, 2, 1000, { proxyCpuPerUnit: 220 }),
  sample('handshake', 'node-floor', 1, 2, 2000, { proxyCpuPerUnit: 150, extra: { pacedCpu: 180, pacedRate: 3000 } }),
  // Bulk: two separate runs of one repetition each.
  sample('bulk-down', 'socksmith-default', 1, 1, 1200),
  sample('bulk-down', 'dante', 1, 1, 1000),
  sample('bulk-down', 'socksmith-default', 2, 1, 1500),
  sample('bulk-down', 'dante', 2, 1, 1000),
  // Idle: all 9,900 held.
  sample('idle', 'socksmith-default', 1, 1, 3.5, { extra: { open: 9900 } }),
];

test('bench: per-repetition ratios pair samples of the same run and repetition only', () => {
  assert.deepEqual(pairedRatios(SAMPLES, 'handshake', 'socksmith-default', 'socksmith-default-warn'), [
    { run: 1, rep: 1, ratio: 0.9 },
    { run: 1, rep: 2, ratio: 0.8 },
  ]);
  assert.deepEqual(pairedRatios(SAMPLES, 'bulk-down', 'socksmith-default', 'dante'), [
    { run: 1, rep: 1, ratio: 1.2 },
    { run: 2, rep: 1, ratio: 1.5 },
  ]);
  // A failed sample has no pair.
  const failed = SAMPLES.map((x) => (x.target === 'dante' && x.run === 2 ? { ...x, ok: false } : x));
  assert.deepEqual(pairedRatios(failed, 'bulk-down', 'socksmith-default', 'dante'), [{ run: 1, rep: 1, ratio: 1.2 }]);
});

test('bench: the markdown report names command, commit, date and runs, puts the defaults first and gives the issue-15 figures with ranges', () => {
  const s = parseSettings(['--phases', 'bulk-down,handshake,idle', '--runs', '2', '--markdown', 'x.md']);
  const meta = { when: '2026-12-04 18:00 UTC', command: 'npm run bench -- --runs 2 --markdown x.md', socksmith: 'abc1234 (dist/ as compiled at the start, run from a snapshot)', runs: '2 separate runs' };
  const md = report(SAMPLES, s, meta).split('\n');
  assert.equal(md[0], '### Results (2026-12-04 18:00 UTC)');
  assert.ok(md.includes('- command: npm run bench -- --runs 2 --markdown x.md'));
  assert.ok(md.includes('- socksmith: abc1234 (dist/ as compiled at the start, run from a snapshot)'));
  assert.ok(md.includes('- runs: 2 separate runs'));
  // The main table: socksmith at its defaults is the first column.
  assert.ok(md.includes('| figure | socksmith (defaults) | dante-server | Node floor | socksmith (defaults, log warn) |'), md.join('\n'));
  assert.ok(md.includes('| handshakes, /s | 850 (800–900) |  | 2,000 (2,000–2,000) | 1,000 (1,000–1,000) |'), md.join('\n'));
  // Issue 15's figures.
  assert.ok(md.includes('| log cost: handshakes/s at info ÷ at warn (defaults; goal ≥ 0.95×) | 0.85× (0.80–0.90, n=2) |'), md.join('\n'));
  assert.ok(md.includes('| log cost: CPU per handshake at info ÷ at warn (defaults) | 1.50× (1.50–1.50, n=2) |'), md.join('\n'));
  assert.ok(md.includes('| proxy CPU per handshake, socksmith (defaults), µs | 315 (300–330) |'), md.join('\n'));
  assert.ok(md.includes('| proxy CPU per handshake, Node floor, µs | 150 (150–150) |'), md.join('\n'));
  assert.ok(md.includes('| CPU per handshake, socksmith (defaults) ÷ Node floor (goal ≤ 1.15×) | 2.10× (2.00–2.20, n=2) |'), md.join('\n'));
  // The paced run (3,000/s offered by default): the same two proxies under the same load.
  assert.ok(md.includes('| proxy CPU per handshake at 3,000/s offered, socksmith (defaults), µs | 240 |'), md.join('\n'));
  assert.ok(md.includes('| proxy CPU per handshake at 3,000/s offered, Node floor, µs | 190 (180–200) |'), md.join('\n'));
  assert.ok(md.includes('| CPU per handshake at 3,000/s offered, socksmith (defaults) ÷ Node floor | 1.20× (n=1) |'), md.join('\n'));
  assert.ok(md.includes('| bulk, 1 stream down, socksmith (defaults) ÷ dante-server (goal ≥ 1.2×) | 1.35× (1.20–1.50, n=2) |'), md.join('\n'));
  assert.ok(md.includes("| … each separate run's median (2 runs) | 1.20×, 1.50×; range 1.20–1.50× |"), md.join('\n'));
  assert.ok(md.includes('| idle tunnels held at the defaults (of 9,900 asked) | 9,900 |'), md.join('\n'));
});

test('bench: the udp phase is in the default phases and --udp-count is parsed and bounded', () => {
  assert.ok(parseSettings([]).phases.includes('udp'));
  assert.equal(parseSettings([]).udpCount, 50_000);
  assert.equal(parseSettings(['--quick']).udpCount, 10_000);
  assert.equal(parseSettings(['--udp-count', '5']).udpCount, 100);
});

test('bench: --paced-rate is parsed (default 3000, 0 turns the paced run off) and bounded', () => {
  assert.equal(parseSettings([]).pacedRate, 3000);
  assert.equal(parseSettings(['--paced-rate', '0']).pacedRate, 0);
  assert.equal(parseSettings(['--paced-rate', '2500']).pacedRate, 2500);
  assert.equal(parseSettings(['--paced-rate', '9999999']).pacedRate, 100_000);
  const off = report(SAMPLES, parseSettings(['--phases', 'handshake', '--paced-rate', '0']), { when: 'w', command: 'c', socksmith: 's', runs: '1' });
  assert.ok(!off.includes('offered'), off);
});

test('bench: the udp figures (64 and 512 B) sit beside dante-server with the ratio socksmith ÷ dante and the loss', () => {
  const udp = (target: Sample['target'], rep: number, size: number, value: number, lost = 0): Sample => sample('udp', target, 1, rep, value, { extra: { size, sent: 1000, received: 1000 - lost, lost } });
  const samples: Sample[] = [
    udp('socksmith-default', 1, 64, 30_000),
    udp('dante', 1, 64, 20_000, 3),
    udp('socksmith-default', 2, 64, 40_000),
    udp('dante', 2, 64, 20_000),
    udp('socksmith-default', 1, 512, 25_000),
    udp('dante', 1, 512, 25_000),
  ];
  const s = parseSettings(['--phases', 'udp', '--targets', 'socksmith-default,dante', '--udp-count', '1000']);
  const md = report(samples, s, { when: '2026-12-04 20:00 UTC' }).split('\n');
  assert.ok(md.includes('| UDP datagrams, 64 B, one association, /s | 35,000 (30,000–40,000) | 20,000 (20,000–20,000) |'), md.join('\n'));
  assert.ok(md.includes('| UDP datagrams, 512 B, one association, /s | 25,000 | 25,000 |'), md.join('\n'));
  assert.ok(md.includes('| UDP datagrams, 64 B, one association | 1.75× |'), md.join('\n'));
  assert.ok(md.includes('| UDP datagrams, 512 B, one association | 1.00× |'), md.join('\n'));
  assert.ok(md.some((l) => l.startsWith('UDP: through one SOCKS5 UDP ASSOCIATE') && l.includes('socksmith (defaults) + udp-associate 0 of 3,000; dante-server 3 of 3,000')), md.join('\n'));
});
