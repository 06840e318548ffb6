import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { SeriesCounter, SeriesHistogram } from './metric-series.js'

/**
 * Prometheus metrics (DESIGN.md names). One registry per gateway, so tests can run several in one process. Those
 * updated on the request path are SeriesCounter/SeriesHistogram (metric-series.ts); the rest are prom-client's own.
 */
export class Metrics {
  readonly registry = new Registry()
  /** `mode` and `dialect` only on decision requests (decision mode): mode="decide", dialect="nginx|forward|envoy". */
  readonly requests = new SeriesCounter({ name: 'authgate_requests_total', help: 'Requests by route, status and decision code (decision mode: with mode="decide" and the dialect).', labelNames: ['route', 'status', 'code', 'mode', 'dialect'], registers: [this.registry] })
  readonly duration = new SeriesHistogram({ name: 'authgate_request_duration_seconds', help: 'Time from request to response end, by route.', labelNames: ['route'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry] })
  readonly upstreamDuration = new SeriesHistogram({ name: 'authgate_upstream_duration_seconds', help: 'Time spent waiting for the upstream, by upstream.', labelNames: ['upstream'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] })
  readonly authFailures = new SeriesCounter({ name: 'authgate_auth_failures_total', help: 'Rejected credentials by policy and code.', labelNames: ['method', 'code'], registers: [this.registry] })
  readonly rateLimited = new SeriesCounter({ name: 'authgate_rate_limited_total', help: 'Requests refused by a rate limit, by route.', labelNames: ['route'], registers: [this.registry] })
  readonly storeErrors = new SeriesCounter({ name: 'authgate_store_errors_total', help: 'Store (Redis) calls that failed or timed out.', registers: [this.registry] })
  /** Every worker reloads: summed over workers (`workers: N`) one reload would count N times, so the largest count is shown. */
  readonly reloads = new Counter({ name: 'authgate_config_reloads_total', help: 'Configuration reloads by result.', labelNames: ['result'], registers: [this.registry], aggregator: 'max' })
  readonly configInfo = new Gauge({ name: 'authgate_config_info', help: 'The loaded configuration: hash label, value = load time (unix seconds).', labelNames: ['hash'], registers: [this.registry], aggregator: 'max' })
  readonly storeDuration = new SeriesHistogram({ name: 'authgate_store_duration_seconds', help: 'Store (Redis) call latency by operation.', labelNames: ['op'], buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: [this.registry] })
  /** 1 in each process: summed over workers (`workers: N`), how many workers the scrape covers. */
  readonly workers = new Gauge({ name: 'authgate_workers', help: 'Worker processes whose metrics this scrape sums.', registers: [this.registry], aggregator: 'sum' })
  /** Read at scrape time from the caches of the current configuration (apiKey, jwt_token, jwks). */
  cacheStats: () => Array<{ cache: string, hits: number, misses: number }> = () => []
  readonly cacheLookups: Counter<'cache' | 'result'>
  /** Read at scrape time: series that policies count themselves (sessions: logins, refreshes), since the configuration was loaded. */
  reported: () => ReadonlyArray<{ name: string, help: string, type: 'counter' | 'gauge', labels: Readonly<Record<string, string>>, value: number }> = () => []

  /** The exposition text of the `reported` series, appended to the registry's. */
  reportedText (): string { return reportedExposition(this.reported()) }

  constructor (options: { defaultMetrics?: boolean } = {}) {
    const metrics = this
    this.cacheLookups = new Counter({
      name: 'authgate_cache_lookups_total',
      help: 'Cache lookups by cache (apiKey, jwt_token, jwks) and result (hit, miss), since the configuration was loaded.',
      labelNames: ['cache', 'result'],
      registers: [this.registry],
      collect () {
        this.reset()
        for (const { cache, hits, misses } of metrics.cacheStats()) {
          this.inc({ cache, result: 'hit' }, hits)
          this.inc({ cache, result: 'miss' }, misses)
        }
      },
    })
    this.workers.set(1)
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'authgate_' })
  }
}

/** What one worker reports for /metrics (`workers: N`): its registry as JSON and the series its policies count. */
export interface MetricsReport {
  readonly registry: Awaited<ReturnType<Registry['getMetricsAsJSON']>>
  readonly reported: ReturnType<Metrics['reported']>
}

export async function metricsReport (metrics: Metrics): Promise<MetricsReport> {
  return { registry: await metrics.registry.getMetricsAsJSON(), reported: metrics.reported() }
}

/**
 * The exposition of several workers' reports, summed as prom-client's cluster aggregation does: counters and
 * histograms are added, default process metrics use their own aggregators; the policies' own series are added by
 * name and labels.
 */
export async function aggregateMetrics (reports: readonly unknown[]): Promise<{ contentType: string, body: string }> {
  const list = reports as MetricsReport[]
  const registry = AggregatorRegistry.aggregate(list.map((r) => r.registry) as Parameters<typeof AggregatorRegistry.aggregate>[0])
  const summed = new Map<string, ReportedSeries>()
  for (const report of list) {
    for (const series of report.reported) {
      const key = JSON.stringify([series.name, Object.entries(series.labels).sort()])
      const seen = summed.get(key)
      summed.set(key, seen ? { ...seen, value: seen.value + series.value } : series)
    }
  }
  return { contentType: registry.contentType, body: await registry.metrics() + reportedExposition([...summed.values()]) }
}

type ReportedSeries = ReturnType<Metrics['reported']>[number]

/** Prometheus text of series counted outside the registry (Metrics.reported). */
function reportedExposition (series: readonly ReportedSeries[]): string {
  const byName = new Map<string, { help: string, type: string, lines: string[] }>()
  for (const { name, help, type, labels, value } of series) {
    let family = byName.get(name)
    if (family === undefined) { family = { help, type, lines: [] }; byName.set(name, family) }
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`)
    family.lines.push(`${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${value}`)
  }
  let out = ''
  for (const [name, family] of byName) out += `# HELP ${name} ${family.help}\n# TYPE ${name} ${family.type}\n${family.lines.join('\n')}\n`
  return out
}
