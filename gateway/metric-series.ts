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

/**
 * Series by their label values, one Map level per label (keyed by `String(value)`), so that a call builds no key
 * string: the values on the request path are the same strings each time (route names, codes, small numbers whose
 * strings V8 caches), and a lookup is one hash per label.
 */
class SeriesIndex<S> {
  readonly #root = new Map<string, unknown>()
  readonly #names: readonly string[]
  /** Every series, in creation order (what a scrape prints). */
  readonly all: S[] = []

  constructor (names: readonly string[]) {
    this.#names = names
  }

  find (labels: Readonly<Record<string, unknown>> | undefined): S | undefined {
    const names = this.#names
    if (names.length === 0 || labels === undefined) return this.#root.get('') as S | undefined
    let node = this.#root
    for (let i = 0; i < names.length; i++) {
      const next = node.get(String(labels[names[i]!]))
      if (next === undefined) return undefined
      node = next as Map<string, unknown>
    }
    return node as S
  }

  add (labels: Readonly<Record<string, unknown>> | undefined, series: S): void {
    const names = this.#names
    this.all.push(series)
    if (names.length === 0 || labels === undefined) {
      this.#root.set('', series)
      return
    }
    let node = this.#root
    for (let i = 0; i < names.length - 1; i++) {
      const key = String(labels[names[i]!])
      let next = node.get(key) as Map<string, unknown> | undefined
      if (next === undefined) node.set(key, next = new Map())
      node = next
    }
    node.set(String(labels[names[names.length - 1]!]), series)
  }

  clear (): void {
    this.#root.clear()
    this.all.length = 0
  }
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
  readonly #series: SeriesIndex<ExportedValue>

  constructor (options: MetricOptions<L>) {
    this.name = options.name
    this.help = options.help
    this.#labelNames = options.labelNames ?? []
    this.#series = new SeriesIndex(this.#labelNames)
    for (const registry of options.registers) registry.registerMetric(this as never)
  }

  inc (labels?: SomeLabels<L>, value = 1): void {
    const series = this.#series.find(labels)
    if (series) series.value += value
    else this.#series.add(labels, { value, labels: pickLabels(this.#labelNames, labels) })
  }

  reset (): void { this.#series.clear() }

  get (): { name: string, help: string, type: string, values: ExportedValue[], aggregator: string } {
    // Copies, as prom-client returns: a scrape never sees later increments or changes them.
    const values = this.#series.all.map((s) => ({ value: s.value, labels: { ...s.labels } }))
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
  readonly #series: SeriesIndex<HistogramSeries>

  constructor (options: MetricOptions<L> & { readonly buckets: readonly number[] }) {
    this.name = options.name
    this.help = options.help
    this.#labelNames = options.labelNames ?? []
    this.#series = new SeriesIndex(this.#labelNames)
    this.#buckets = [...options.buckets].sort((a, b) => a - b)
    for (const registry of options.registers) registry.registerMetric(this as never)
  }

  observe (labels: Labels<L>, value: number): void {
    let series = this.#series.find(labels)
    if (!series) {
      series = { labels: pickLabels(this.#labelNames, labels), counts: new Array<number>(this.#buckets.length + 1).fill(0), sum: 0, count: 0 }
      this.#series.add(labels, series)
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
    for (const series of this.#series.all) {
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
