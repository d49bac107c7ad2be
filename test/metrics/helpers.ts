/**
 * Helpers for the metrics tests: an HTTP client for the metrics listener, a parser for the
 * Prometheus text format, and a bounded wait.
 */
import http from 'node:http';

/** One HTTP response, body as text. */
export interface HttpResult {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One request to 127.0.0.1:`port` without keep-alive; rejects after `timeoutMs`. */
export function httpRequest(port: number, path: string, method = 'GET', timeoutMs = 5000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${path} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Canonical series key: `name{a="1",b="2"}` with labels sorted by name. */
function seriesKey(name: string, labels: Readonly<Record<string, string>>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`);
  return parts.length ? `${name}{${parts.join(',')}}` : name;
}

/** Parse Prometheus text exposition (format 0.0.4) into series key → value. */
export function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.set(seriesKey(m[1]!, labels), Number(m[3]));
  }
  return out;
}

/** A scrape, with lookups by name and labels. */
export class Scrape {
  readonly series: Map<string, number>;
  constructor(readonly text: string) {
    this.series = parseExposition(text);
  }
  /** Value of one series, or `undefined` when it is not exposed. */
  get(name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
    return this.series.get(seriesKey(name, labels));
  }
  /** Every series of `name` (all label sets), as key → value. */
  all(name: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.series) if (k === name || k.startsWith(`${name}{`)) out[k] = v;
    return out;
  }
}

/** GET /metrics from the metrics listener on `port` and parse it. */
export async function scrape(port: number): Promise<Scrape> {
  const res = await httpRequest(port, '/metrics');
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${res.body}`);
  return new Scrape(res.body);
}

/** Poll `check` every 5 ms until it is true; rejects after `timeoutMs` with `what`. */
export async function waitFor(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
