/**
 * Reading CPU time and memory of a process tree from /proc, for `npm run bench`.
 *
 * A proxy is measured as its whole tree: dante-server forks i/o children, microsocks runs a
 * thread per client (threads are in the process's own counters), Node has helper threads.
 * @packageDocumentation
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** Clock ticks per second of utime/stime in /proc/PID/stat. */
export const CLK_TCK: number = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

interface StatLine {
  readonly ppid: number;
  /** Minor page faults, its own and its waited-for children's. */
  readonly minflt: number;
  readonly utime: number;
  readonly stime: number;
  /** CPU of children that exited and were waited for. */
  readonly cutime: number;
  readonly cstime: number;
}

function readStat(pid: number): StatLine | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name is in parentheses and may contain spaces: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, minflt 10, cminflt 11, utime 14, stime 15,
  // cutime 16, cstime 17.
  return {
    ppid: Number(rest[1]),
    minflt: Number(rest[7]) + Number(rest[8]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    cutime: Number(rest[13]),
    cstime: Number(rest[14]),
  };
}

/** `pid` and all its descendants that are alive now. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (!st) continue;
    const list = children.get(st.ppid);
    if (list) list.push(Number(name));
    else children.set(st.ppid, [Number(name)]);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0 && out.length < 100_000) {
    const p = queue.shift()!;
    if (!fs.existsSync(`/proc/${p}`)) continue;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

/** CPU seconds (user, system) used so far by the given processes, and their minor page faults. */
export interface CpuSample {
  readonly user: number;
  readonly sys: number;
  readonly minflt: number;
}

/**
 * Sum utime/stime over `pids` (dead ones count 0), plus cutime/cstime: dante-server's i/o
 * processes may exit when their client goes, and their CPU then lives on only in the parent's
 * cutime/cstime.
 */
export function cpuOf(pids: readonly number[]): CpuSample {
  let u = 0;
  let s = 0;
  let f = 0;
  for (const p of pids) {
    const st = readStat(p);
    if (!st) continue;
    u += st.utime + st.cutime;
    s += st.stime + st.cstime;
    f += st.minflt;
  }
  return { user: u / CLK_TCK, sys: s / CLK_TCK, minflt: f };
}

/** A CPU meter over a process tree: call `stop()` for the seconds used since `start`. */
export function cpuMeter(rootPid: number): { stop(): CpuSample & { pids: number } } {
  // The tree is taken at the start and again at the end, so children forked during the run
  // (dante spawns i/o processes under load) count from zero. A child that exited and was reaped
  // in between (dante's i/o processes may exit with their last client) lives on in its parent's
  // cutime/cstime with its whole life; what it had used before the start is subtracted, so only
  // the interval counts.
  const before = new Map<number, CpuSample>();
  for (const p of processTree(rootPid)) before.set(p, cpuOf([p]));
  return {
    stop() {
      let user = 0;
      let sys = 0;
      let minflt = 0;
      const pids = processTree(rootPid);
      const alive = new Set(pids);
      for (const p of pids) {
        const now = cpuOf([p]);
        const was = before.get(p) ?? { user: 0, sys: 0, minflt: 0 };
        user += now.user - was.user;
        sys += now.sys - was.sys;
        minflt += now.minflt - was.minflt;
      }
      for (const [p, was] of before) {
        if (alive.has(p)) continue;
        user -= was.user;
        sys -= was.sys;
        minflt -= was.minflt;
      }
      return { user: Math.max(0, user), sys: Math.max(0, sys), minflt: Math.max(0, minflt), pids: pids.length };
    },
  };
}

/** Proportional and resident set size, in bytes, summed over `pids` (smaps_rollup). */
export function memoryOf(pids: readonly number[]): { pss: number; rss: number } {
  let pss = 0;
  let rss = 0;
  for (const p of pids) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
    } catch {
      continue;
    }
    const m = /^Pss:\s+(\d+) kB/m.exec(text);
    const r = /^Rss:\s+(\d+) kB/m.exec(text);
    if (m) pss += Number(m[1]) * 1024;
    if (r) rss += Number(r[1]) * 1024;
  }
  return { pss, rss };
}

/** The 1-, 5- and 15-minute load averages. */
export function loadAverage(): [number, number, number] {
  const parts = fs.readFileSync('/proc/loadavg', 'utf8').split(' ');
  return [Number(parts[0]), Number(parts[1]), Number(parts[2])];
}

interface CoreTicks {
  /** user + nice + system + irq + steal: work that is not softirq. */
  readonly work: number;
  readonly softirq: number;
  readonly total: number;
}

function coreTicks(): Map<number, CoreTicks> {
  const out = new Map<number, CoreTicks>();
  for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = m[2]!.split(/\s+/).map(Number);
    out.set(Number(m[1]), { work: user + nice + system + irq + steal, softirq, total: user + nice + system + idle + iowait + irq + softirq + steal });
  }
  return out;
}

/**
 * Busy time of each core over an interval, in % of that core: `work` (user, system, irq, steal:
 * everything that runs in some process's name) and `softirq` (loopback TCP delivery mostly runs
 * there, on behalf of whichever process sent). Subtracting our own processes' CPU from `work`
 * leaves what other processes took from the core while we measured.
 */
export function coreMeter(): { stop(): Map<number, { work: number; softirq: number }> } {
  const before = coreTicks();
  return {
    stop() {
      const after = coreTicks();
      const out = new Map<number, { work: number; softirq: number }>();
      for (const [cpu, a] of after) {
        const b = before.get(cpu);
        if (!b) continue;
        const total = a.total - b.total;
        if (total <= 0) continue;
        out.set(cpu, { work: (100 * (a.work - b.work)) / total, softirq: (100 * (a.softirq - b.softirq)) / total });
      }
      return out;
    },
  };
}
