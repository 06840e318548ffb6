/**
 * The console's traffic: the last 15 minutes in 2-second slots, kept in a ring buffer in each gateway process. A
 * timer reads the request-path counters (metrics.ts) every slot and keeps the differences, so the request path pays
 * nothing for it. With `workers: N` the reports of every worker are added slot by slot (same wall-clock slots).
 */
import type { Metrics } from '../metrics.js'

export const SLOT_MS = 2_000
export const SLOTS = 450 // 15 minutes

/** What one process counted during one slot. `routes`: per route, the cumulative latency buckets (`le` order). */
export interface TrafficSlot {
  t: number
  status: Record<string, number>
  routes: Record<string, number[]>
  auth: Record<string, number>
  rateLimited: number
}

export interface TrafficReport { readonly buckets: readonly number[], readonly slots: readonly TrafficSlot[] }

interface Sample { readonly values: Map<string, number>, readonly buckets: number[] }

export class TrafficRecorder {
  private readonly ring: TrafficSlot[] = []
  private previous: Sample = { values: new Map(), buckets: [] }
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly metrics: Metrics, private readonly now: () => number = Date.now) {}

  start (): void {
    this.timer ??= setInterval(() => this.tick(), SLOT_MS)
    this.timer.unref()
  }

  stop (): void { clearInterval(this.timer); this.timer = undefined }

  /** Closes the current slot: what was counted since the last tick. */
  tick (): void {
    const sample = this.sample()
    const slot = this.difference(this.previous, sample, this.slotOf(this.now()))
    this.previous = sample
    const last = this.ring[this.ring.length - 1]
    if (last && last.t === slot.t) merge(last, slot)
    else this.ring.push(slot)
    const oldest = this.slotOf(this.now()) - (SLOTS - 1) * SLOT_MS
    while (this.ring.length > 0 && this.ring[0]!.t < oldest) this.ring.shift()
  }

  /** The ring, plus what the current slot has counted so far (not yet closed). */
  report (): TrafficReport {
    const sample = this.sample()
    const current = this.difference(this.previous, sample, this.slotOf(this.now()))
    return { buckets: sample.buckets, slots: [...this.ring.map(copySlot), current] }
  }

  private slotOf (time: number): number { return Math.floor(time / SLOT_MS) * SLOT_MS }

  /** The cumulative counters now, by series. */
  private sample (): Sample {
    const values = new Map<string, number>()
    for (const v of this.metrics.requests.get().values) {
      const status = Number(v.labels.status)
      const key = `s\u0000${Number.isFinite(status) ? `${Math.floor(status / 100)}xx` : 'other'}`
      values.set(key, (values.get(key) ?? 0) + v.value)
    }
    for (const v of this.metrics.authFailures.get().values) {
      const key = `a\u0000${String(v.labels.code)}`
      values.set(key, (values.get(key) ?? 0) + v.value)
    }
    for (const v of this.metrics.rateLimited.get().values) values.set('r', (values.get('r') ?? 0) + v.value)
    const buckets: number[] = []
    for (const v of this.metrics.duration.get().values) {
      if (v.metricName?.endsWith('_bucket') !== true) continue
      const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le)
      if (Number.isFinite(le) && !buckets.includes(le)) buckets.push(le)
      values.set(`d\u0000${String(v.labels.route)}\u0000${String(v.labels.le)}`, v.value)
    }
    return { values, buckets: buckets.sort((a, b) => a - b) }
  }

  private difference (before: Sample, after: Sample, t: number): TrafficSlot {
    const slot: TrafficSlot = { t, status: {}, routes: {}, auth: {}, rateLimited: 0 }
    const les = [...after.buckets.map(String), '+Inf']
    for (const [key, value] of after.values) {
      const delta = value - (before.values.get(key) ?? 0)
      if (delta <= 0) continue
      const [kind, name, le] = key.split('\u0000') as [string, string | undefined, string | undefined]
      if (kind === 's') slot.status[name!] = delta
      else if (kind === 'a') slot.auth[name!] = delta
      else if (kind === 'r') slot.rateLimited = delta
      else if (kind === 'd') {
        const counts = slot.routes[name!] ??= new Array<number>(les.length).fill(0)
        const i = les.indexOf(le!)
        if (i !== -1) counts[i] = delta
      }
    }
    return slot
  }
}

function copySlot (slot: TrafficSlot): TrafficSlot {
  return { t: slot.t, status: { ...slot.status }, routes: Object.fromEntries(Object.entries(slot.routes).map(([k, v]) => [k, [...v]])), auth: { ...slot.auth }, rateLimited: slot.rateLimited }
}

function addInto (into: Record<string, number>, from: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v
}

function merge (into: TrafficSlot, from: TrafficSlot): void {
  addInto(into.status, from.status)
  addInto(into.auth, from.auth)
  into.rateLimited += from.rateLimited
  for (const [route, counts] of Object.entries(from.routes)) {
    const mine = into.routes[route]
    if (!mine) into.routes[route] = [...counts]
    else for (let i = 0; i < counts.length; i++) mine[i] = (mine[i] ?? 0) + counts[i]!
  }
}

/** What the console plots: the workers' reports added slot by slot, as series over the last 15 minutes. */
export interface TrafficView {
  readonly slotMs: number
  /** Slot start times (unix seconds), oldest first, one every slotMs, the last one still counting. */
  readonly times: number[]
  /** Requests per second by status class (1xx..5xx). */
  readonly rps: Record<string, number[]>
  /** Latency quantiles (seconds) per route and slot; null where the route had no request. */
  readonly latency: Record<string, { p50: Array<number | null>, p99: Array<number | null> }>
  readonly authFailures: Record<string, number[]>
  readonly rateLimited: number[]
  /** Totals over the window. */
  readonly totals: { requests: number, byStatus: Record<string, number>, authFailures: Record<string, number>, rateLimited: number }
  readonly workers: number
}

export function trafficView (reports: readonly TrafficReport[], now: number): TrafficView {
  const last = Math.floor(now / SLOT_MS) * SLOT_MS
  const first = last - (SLOTS - 1) * SLOT_MS
  const bySlot = new Map<number, TrafficSlot>()
  let buckets: readonly number[] = []
  for (const report of reports) {
    if (report.buckets.length > buckets.length) buckets = report.buckets
    for (const slot of report.slots) {
      if (slot.t < first || slot.t > last) continue
      const mine = bySlot.get(slot.t)
      if (mine) merge(mine, slot)
      else bySlot.set(slot.t, copySlot(slot))
    }
  }
  const times: number[] = []
  const rps: Record<string, number[]> = { '2xx': [], '3xx': [], '4xx': [], '5xx': [] }
  const latency: Record<string, { p50: Array<number | null>, p99: Array<number | null> }> = {}
  const authFailures: Record<string, number[]> = {}
  const rateLimited: number[] = []
  const totals = { requests: 0, byStatus: {} as Record<string, number>, authFailures: {} as Record<string, number>, rateLimited: 0 }
  for (const slot of bySlot.values()) {
    for (const route of Object.keys(slot.routes)) latency[route] ??= { p50: [], p99: [] }
    for (const code of Object.keys(slot.auth)) authFailures[code] ??= []
    for (const cls of Object.keys(slot.status)) rps[cls] ??= []
  }
  for (let t = first, i = 0; t <= last; t += SLOT_MS, i++) {
    const slot = bySlot.get(t)
    times.push(t / 1000)
    for (const [cls, series] of Object.entries(rps)) {
      const n = slot?.status[cls] ?? 0
      series.push(n / (SLOT_MS / 1000))
      totals.requests += n
      if (n > 0) totals.byStatus[cls] = (totals.byStatus[cls] ?? 0) + n
    }
    for (const [route, series] of Object.entries(latency)) {
      const counts = slot?.routes[route]
      series.p50.push(counts ? quantile(0.5, buckets, counts) : null)
      series.p99.push(counts ? quantile(0.99, buckets, counts) : null)
    }
    for (const [code, series] of Object.entries(authFailures)) {
      const n = slot?.auth[code] ?? 0
      series.push(n)
      if (n > 0) totals.authFailures[code] = (totals.authFailures[code] ?? 0) + n
    }
    rateLimited.push(slot?.rateLimited ?? 0)
    totals.rateLimited += slot?.rateLimited ?? 0
  }
  return { slotMs: SLOT_MS, times, rps, latency, authFailures, rateLimited, totals, workers: reports.length }
}

/** histogram_quantile over cumulative bucket counts (`buckets` the finite upper bounds, then +Inf). */
export function quantile (q: number, buckets: readonly number[], counts: readonly number[]): number | null {
  const total = counts[counts.length - 1] ?? 0
  if (total <= 0) return null
  const target = q * total
  for (let i = 0; i < counts.length; i++) {
    if (counts[i]! >= target) {
      const lower = i === 0 ? 0 : buckets[i - 1]!
      if (i >= buckets.length) return lower
      const below = i === 0 ? 0 : counts[i - 1]!
      const inBucket = counts[i]! - below
      return inBucket <= 0 ? buckets[i]! : lower + (buckets[i]! - lower) * (target - below) / inBucket
    }
  }
  return null
}
