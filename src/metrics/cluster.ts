/**
 * Metrics with `workers` > 1: every worker keeps its own {@link Metrics} (the diagnostics
 * channels are per process), and the primary serves `/metrics` as their aggregate, built with
 * prom-client's `AggregatorRegistry.aggregate()` (counters, gauges and histogram buckets summed;
 * Node's process metrics by their own aggregator: event-loop lag averaged, versions taken once,
 * start time omitted), plus a few series of its own about the workers.
 *
 * prom-client's `clusterMetrics()` asks every worker in `cluster.workers` and fails the whole
 * scrape after 5 s when one of them cannot answer (a worker still starting, or one that just
 * died). The primary asks only the workers that are listening instead, through socksmith's own
 * IPC messages, and leaves out a worker that exits during the scrape (its counts are gone with it).
 * @packageDocumentation
 */
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import { METRICS_PREFIX, type Metrics } from './metrics.js';
import type { MetricsSource } from './server.js';

/** Options for {@link ClusterMetrics}. */
export interface ClusterMetricsOptions {
  /**
   * Collect `getMetricsAsJSON()` from every serving worker (one array per worker). Rejects when
   * the workers do not answer in time; the scrape then fails with 500.
   */
  readonly collect: () => Promise<ReadonlyArray<readonly object[]>>;
  /** Number of workers serving now (the `socksmith_workers` gauge). */
  readonly workers: () => number;
}

/** The primary's `/metrics`: the workers' metrics aggregated, and the primary's own series. */
export class ClusterMetrics implements MetricsSource {
  /** The primary's own series (`socksmith_workers`, `socksmith_worker_restarts_total`). */
  readonly registry: Registry = new Registry();
  private readonly restarts: Counter;

  constructor(private readonly options: ClusterMetricsOptions) {
    const registers = [this.registry];
    new Gauge({
      name: `${METRICS_PREFIX}workers`,
      help: 'Worker processes serving the listeners now.',
      registers,
      collect() {
        this.set(options.workers());
      },
    });
    this.restarts = new Counter({
      name: `${METRICS_PREFIX}worker_restarts_total`,
      help: 'Workers that exited unexpectedly and were forked again. Counters of the aggregate drop by what such a worker had counted (Prometheus sees a counter reset).',
      registers,
    });
  }

  /** Count a worker that was forked again after it died. */
  workerRestarted(): void {
    this.restarts.inc();
  }

  /** Content-Type of {@link ClusterMetrics.scrape}. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The aggregate of every serving worker, then the primary's own series. */
  async scrape(): Promise<string> {
    const perWorker = await this.options.collect();
    const aggregated: Registry = AggregatorRegistry.aggregate(perWorker.map((m) => [...m]));
    return Registry.merge([aggregated, this.registry]).metrics();
  }
}

/** What a worker answers the primary's metrics request with: its registry as JSON (empty without metrics). */
export async function workerMetricsJson(metrics: Metrics | undefined): Promise<object[]> {
  return metrics ? metrics.registry.getMetricsAsJSON() : [];
}
