// Paired micro-benchmark: the request path's metric calls (a three-label counter inc and a one-label histogram
// observe, as request-log.ts makes them), this tree against another, one process, rounds alternating.
// Run: node --import tsx bench/micro/paired/metrics.ts DIR
import { resolve } from 'node:path'
import { Registry } from 'prom-client'

const other = resolve(process.argv[2]!)
const here = resolve(import.meta.dirname, '../../..')
async function load (dir: string) {
  const { SeriesCounter, SeriesHistogram } = await import(`${dir}/gateway/metric-series.ts`)
  const registry = new Registry()
  const requests = new SeriesCounter({ name: 'requests', help: 'h', labelNames: ['route', 'status', 'code'], registers: [registry] })
  const duration = new SeriesHistogram({ name: 'duration', help: 'h', labelNames: ['route'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1], registers: [registry] })
  const routes = ['orders', 'search', 'public', 'admin']
  return (i: number) => {
    const route = routes[i & 3]!
    requests.inc({ route, status: 200, code: 'ok' })
    duration.observe({ route }, 0.002)
  }
}
const trees = { new: await load(here), base: await load(other) }
const ns: Record<string, number[]> = { new: [], base: [] }
for (let round = 0; round < 14; round++) {
  for (const name of (round % 2 ? ['base', 'new'] as const : ['new', 'base'] as const)) {
    const call = trees[name]
    const total = 2_000_000
    const started = process.hrtime.bigint()
    for (let i = 0; i < total; i++) call(i)
    ns[name]!.push(Number(process.hrtime.bigint() - started) / total)
  }
}
const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!
for (const name of ['new', 'base'] as const) console.log(`${name}: ns per request's metric calls (inc + observe), median ${med(ns[name]!.slice(2)).toFixed(1)}, best ${Math.min(...ns[name]!.slice(2)).toFixed(1)}`)
