import type { Registry } from 'prom-client'

/**
 * Counters and histograms for the request path. prom-client's own hash the label object, validate every label
 * and search the buckets on each call (about 1 µs per observation, four per request); these keep one series per
 * label combination in a Map keyed by the label values, and build prom-client's exposition format only when
 * /metrics is scraped. They register in a prom-client Registry like any metric, and print exactly as
 * prom-client's Counter and Histogram would (metric-series.test.ts compares the two).
 */

type Labels<L extends string> = Readonly<Record<L, string | number>>
/** A counter's labels may leave some out (undefined): the series is exported without them. */
type SomeLabels<L extends string> = Readonly<Partial<Record<L, string | number>>>

interface MetricOptions<L extends string> {
  readonly name: string
  readonly help: string
  readonly labelNames?: readonly L[]
  readonly registers: readonly Registry[]
}

interface ExportedValue {
  value: number
  labels: Record<string, string | number>
  metricName?: string
}

/** The Map key of one series: its label values in labelNames order (a single label is its own key). */
function seriesKey<L extends string> (names: readonly L[], labels: SomeLabels<L>): string {
  if (names.length === 1) return String(labels[names[0]!])
  let key = ''
  for (let i = 0; i < names.length; i++) key += (i === 0 ? '' : '\u0000') + String(labels[names[i]!])
  return key
}

/** Only the configured label names, in order: the series' labels as exported. */
function pickLabels<L extends string> (names: readonly L[], labels: SomeLabels<L> | undefined): Record<string, string | number> {
  const picked: Record<string, string | number> = {}
  if (labels) for (const name of names) if (labels[name] !== undefined) picked[name] = labels[name]
  return picked
}

export class SeriesCounter<L extends string = never> {
  readonly name: string
  readonly help: string
  readonly type = 'counter'
  readonly aggregator = 'sum'
  readonly #labelNames: readonly L[]
  readonly #series = new Map<string, ExportedValue>()

  constructor (options: MetricOptions<L>) {
    this.name = options.name
    this.help = options.help
    this.#labelNames = options.labelNames ?? []
    for (const registry of options.registers) registry.registerMetric(this as never)
  }

  inc (labels?: SomeLabels<L>, value = 1): void {
    const key = labels === undefined ? '' : seriesKey(this.#labelNames, labels)
    const series = this.#series.get(key)
    if (series) series.value += value
    else this.#series.set(key, { value, labels: pickLabels(this.#labelNames, labels) })
  }

  reset (): void { this.#series.clear() }

  get (): { name: string, help: string, type: string, values: ExportedValue[], aggregator: string } {
    // Copies, as prom-client returns: a scrape never sees later increments or changes them.
    const values = [...this.#series.values()].map((s) => ({ value: s.value, labels: { ...s.labels } }))
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }
}

interface HistogramSeries {
  readonly labels: Record<string, string | number>
  /** Observations per bucket (not cumulative), the last one for +Inf. */
  readonly counts: number[]
  sum: number
  count: number
}

export class SeriesHistogram<L extends string> {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #labelNames: readonly L[]
  readonly #buckets: readonly number[]
  readonly #series = new Map<string, HistogramSeries>()

  constructor (options: MetricOptions<L> & { readonly buckets: readonly number[] }) {
    this.name = options.name
    this.help = options.help
    this.#labelNames = options.labelNames ?? []
    this.#buckets = [...options.buckets].sort((a, b) => a - b)
    for (const registry of options.registers) registry.registerMetric(this as never)
  }

  observe (labels: Labels<L>, value: number): void {
    const key = seriesKey(this.#labelNames, labels)
    let series = this.#series.get(key)
    if (!series) {
      series = { labels: pickLabels(this.#labelNames, labels), counts: new Array<number>(this.#buckets.length + 1).fill(0), sum: 0, count: 0 }
      this.#series.set(key, series)
    }
    const buckets = this.#buckets
    let i = 0
    while (i < buckets.length && value > buckets[i]!) i++
    series.counts[i]!++
    series.sum += value
    series.count++
  }

  reset (): void { this.#series.clear() }

  /** prom-client's Histogram export: cumulative `_bucket` series with `le`, then `_sum` and `_count`, per label set. */
  get (): { name: string, help: string, type: string, values: ExportedValue[], aggregator: string } {
    const values: ExportedValue[] = []
    for (const series of this.#series.values()) {
      let cumulative = 0
      for (let i = 0; i <= this.#buckets.length; i++) {
        cumulative += series.counts[i]!
        const le = i < this.#buckets.length ? this.#buckets[i]! : '+Inf'
        values.push({ value: cumulative, labels: { le, ...series.labels }, metricName: `${this.name}_bucket` })
      }
      values.push({ value: series.sum, labels: { ...series.labels }, metricName: `${this.name}_sum` })
      values.push({ value: series.count, labels: { ...series.labels }, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }
}
