/**
 * Summarise a V8 `.cpuprofile` (from `node --cpu-prof`): top functions by self time, the same by
 * inclusive time for socksmith's own code, and self time grouped by area (node core, socksmith
 * kernel, plugins, each dependency, GC).
 *
 * `npm run bench -- --profile` calls it; on its own:
 * `node dist/bench/cpuprofile.js FILE.cpuprofile [--top 25] [--from US --to US]` (times in the
 * profile's own microsecond clock, CLOCK_MONOTONIC on Linux, to keep only a measured window).
 * @packageDocumentation
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

/** The JSON written by `--cpu-prof`. */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** One row of a summary. */
export interface ProfileRow {
  readonly name: string;
  readonly where: string;
  readonly area: string;
  readonly samples: number;
  readonly percent: number;
}

/** What {@link summarize} returns. */
export interface ProfileSummary {
  readonly samples: number;
  readonly milliseconds: number;
  readonly self: readonly ProfileRow[];
  readonly inclusiveOwn: readonly ProfileRow[];
  readonly areas: readonly ProfileRow[];
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function shortUrl(url: string): string {
  if (!url) return '';
  let u = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (u.startsWith(ROOT + path.sep)) u = path.relative(ROOT, u);
  return u.replace(/^node_modules\//, '');
}

/** Which part of the program a frame belongs to. */
export function areaOf(frame: CallFrame): string {
  const name = frame.functionName;
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)') return '(program): native, not attributed to JS';
  if (name === '(idle)') return '(idle)';
  if (name === '(root)') return '(root)';
  const u = shortUrl(frame.url);
  if (!u) return 'V8/native builtins';
  if (u.startsWith('node:')) {
    if (/^node:(net|internal\/stream_base_commons|internal\/net)/.test(u)) return 'node core: net';
    if (/^node:(internal\/streams|stream)/.test(u)) return 'node core: streams';
    if (/^node:(events|internal\/events)/.test(u)) return 'node core: events';
    if (/^node:internal\/(timers|process\/task_queues)|^node:timers/.test(u)) return 'node core: timers & microtasks';
    return 'node core: other';
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(frame.url);
  if (nm) return `dependency: ${nm[1]}`;
  const own = /(?:^|\/)dist\/(src\/[^/]+|plugins\/[^/]+|bench)/.exec(u);
  if (own) return `socksmith: ${own[1]}`;
  return `other: ${u}`;
}

function isOwn(frame: CallFrame): boolean {
  return areaOf(frame).startsWith('socksmith:');
}

function keyOf(f: CallFrame): string {
  return `${f.functionName || '(anonymous)'}\u0000${f.url}\u0000${f.lineNumber}`;
}

/** Summarise `profile`, keeping samples whose time is within [from, to] (µs, profile clock). */
export function summarize(profile: CpuProfile, opts: { top?: number; from?: number; to?: number } = {}): ProfileSummary {
  const top = opts.top ?? 25;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfCount = new Map<string, number>();
  const inclCount = new Map<string, number>();
  const areaCount = new Map<string, number>();
  const frameOf = new Map<string, CallFrame>();
  let t = profile.startTime;
  let total = 0;
  let first = Infinity;
  let last = -Infinity;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (opts.from !== undefined && t < opts.from) continue;
    if (opts.to !== undefined && t > opts.to) continue;
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    if (node.callFrame.functionName === '(idle)') continue; // waiting in epoll is not work
    total++;
    first = Math.min(first, t);
    last = Math.max(last, t);
    const k = keyOf(node.callFrame);
    frameOf.set(k, node.callFrame);
    selfCount.set(k, (selfCount.get(k) ?? 0) + 1);
    const area = areaOf(node.callFrame);
    areaCount.set(area, (areaCount.get(area) ?? 0) + 1);
    // Inclusive: count each function once per sample, however often it recurses.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id, depth = 0; id !== undefined && depth < 10_000; id = parent.get(id), depth++) {
      const f = byId.get(id)!.callFrame;
      if (!isOwn(f)) continue;
      const kk = keyOf(f);
      if (seen.has(kk)) continue;
      seen.add(kk);
      frameOf.set(kk, f);
      inclCount.set(kk, (inclCount.get(kk) ?? 0) + 1);
    }
  }
  const rows = (m: Map<string, number>, n: number): ProfileRow[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, c]) => {
        const f = frameOf.get(k)!;
        const u = shortUrl(f.url);
        return {
          name: f.functionName || '(anonymous)',
          where: u ? `${u}:${f.lineNumber + 1}` : '',
          area: areaOf(f),
          samples: c,
          percent: total ? (100 * c) / total : 0,
        };
      });
  const areas = [...areaCount.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([a, c]) => ({ name: a, where: '', area: a, samples: c, percent: total ? (100 * c) / total : 0 }));
  return {
    samples: total,
    milliseconds: total ? (last - first) / 1000 : 0,
    self: rows(selfCount, top),
    inclusiveOwn: rows(inclCount, 15),
    areas,
  };
}

/** Render a summary as text tables. */
export function formatSummary(s: ProfileSummary, title: string): string {
  const lines: string[] = [];
  lines.push(`${title}: ${s.samples} samples (idle excluded) over ${(s.milliseconds / 1000).toFixed(1)} s`);
  lines.push('', '  self time by area:');
  for (const r of s.areas) lines.push(`    ${r.percent.toFixed(1).padStart(5)} %  ${r.name}`);
  lines.push('', `  top ${s.self.length} functions by self time:`);
  for (const r of s.self) lines.push(`    ${r.percent.toFixed(1).padStart(5)} %  ${r.name.slice(0, 48).padEnd(48)} ${r.where}`);
  lines.push('', '  socksmith functions by inclusive time (callees included):');
  for (const r of s.inclusiveOwn) lines.push(`    ${r.percent.toFixed(1).padStart(5)} %  ${r.name.slice(0, 48).padEnd(48)} ${r.where}`);
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, from: { type: 'string' }, to: { type: 'string' } },
  });
  if (positionals.length === 0) {
    process.stderr.write('usage: node dist/bench/cpuprofile.js FILE.cpuprofile [--top N] [--from US --to US]\n');
    process.exit(64);
  }
  for (const file of positionals) {
    const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
    const s = summarize(profile, {
      top: Number(values.top),
      ...(values.from !== undefined ? { from: Number(values.from) } : {}),
      ...(values.to !== undefined ? { to: Number(values.to) } : {}),
    });
    process.stdout.write(`${formatSummary(s, path.basename(file))}\n`);
  }
}
