// Micro-benchmark: small per-request costs of the forwarding path, each measured alone: request ids, clocks,
// abort signals as undici registers them, 'close' listeners, Prometheus label lookups.
// Run: node --import tsx bench/micro/request-overhead.ts
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { Counter, Histogram, Registry } from 'prom-client'
import { SeriesCounter, SeriesHistogram } from '../../gateway/metric-series.js'
import { bench, section } from './harness.js'

section('request bookkeeping')
bench('randomUUID() (X-Request-Id)', 2_000_000, () => randomUUID())
bench('performance.now()', 5_000_000, () => performance.now())

// undici's addSignal/removeSignal, as api-stream.js does them per request.
const noop = () => {}
bench('AbortController + addEventListener/removeEventListener', 1_000_000, () => {
  const controller = new AbortController()
  controller.signal.addEventListener('abort', noop, { once: true })
  controller.signal.removeEventListener('abort', noop)
  return controller
})
class Gone extends EventEmitter { aborted = false; reason: unknown = undefined }
bench('EventEmitter signal + once/removeListener', 1_000_000, () => {
  const gone = new Gone()
  gone.once('abort', noop)
  gone.removeListener('abort', noop)
  return gone
})
const res = new EventEmitter()
bench("res.once('close', closure) then off", 2_000_000, (i) => {
  const listener = () => i
  res.once('close', listener)
  res.off('close', listener)
  return listener
})
bench("res.on('close', closure) then off", 2_000_000, (i) => {
  const listener = () => i
  res.on('close', listener)
  res.off('close', listener)
  return listener
})

section('Prometheus metrics (prom-client 15)')
const registry = new Registry()
const requests = new Counter({ name: 'r_total', help: 'h', labelNames: ['route', 'status', 'code'], registers: [registry] })
const duration = new Histogram({ name: 'd_seconds', help: 'h', labelNames: ['route'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] })
bench('Counter.inc({ route, status, code })', 2_000_000, () => requests.inc({ route: 'orders', status: 200, code: 'ok' }))
const counterChild = requests.labels({ route: 'orders', status: 200, code: 'ok' })
bench('cached child Counter.inc()', 2_000_000, () => counterChild.inc())
bench('Histogram.observe({ route }, v)', 2_000_000, (i) => duration.observe({ route: 'orders' }, (i % 100) / 10_000))
const histogramChild = duration.labels({ route: 'orders' })
bench('cached child Histogram.observe(v)', 2_000_000, (i) => histogramChild.observe((i % 100) / 10_000))

section('request-path metrics (gateway/metric-series.ts)')
{
  const registry = new Registry()
  const fastRequests = new SeriesCounter({ name: 'fast_requests_total', help: 'h', labelNames: ['route', 'status', 'code'], registers: [registry] })
  const fastDuration = new SeriesHistogram({ name: 'fast_duration_seconds', help: 'h', labelNames: ['route'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] })
  bench('SeriesCounter.inc({ route, status, code })', 2_000_000, () => fastRequests.inc({ route: 'orders', status: 200, code: 'ok' }))
  bench('SeriesHistogram.observe({ route }, v)', 2_000_000, (i) => fastDuration.observe({ route: 'orders' }, (i % 100) / 10_000))
}
