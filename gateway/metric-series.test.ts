import test from 'ava'
import { Counter, Histogram, Registry } from 'prom-client'
import { SeriesCounter, SeriesHistogram } from './metric-series.js'

const buckets = [0.0005, 0.001, 0.005, 0.1, 1]
const observations: Array<[string, number]> = [
  ['orders', 0.0004], ['orders', 0.0005], ['orders', 0.003], ['users', 2], ['orders', 0.2], ['users', 0.001],
  ['we"ird\\route\n', 0.01],
]

test('SeriesHistogram prints exactly what prom-client\'s Histogram prints for the same observations', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const fast = new SeriesHistogram({ name: 'x_seconds', help: 'Help with "quotes" and \\.', labelNames: ['route'], buckets, registers: [ours] })
  const reference = new Histogram({ name: 'x_seconds', help: 'Help with "quotes" and \\.', labelNames: ['route'], buckets, registers: [theirs] })
  for (const [route, value] of observations) {
    fast.observe({ route }, value)
    reference.observe({ route }, value)
  }
  const text = await ours.metrics()
  t.is(text, await theirs.metrics())
  t.true(text.includes('x_seconds_bucket{le="0.005",route="orders"} 3'))
  t.true(text.includes('x_seconds_count{route="users"} 2'))

  fast.reset()
  reference.reset()
  t.is(await ours.metrics(), await theirs.metrics())
})

test('SeriesCounter prints exactly what prom-client\'s Counter prints, with several labels, increments and none', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const fast = new SeriesCounter({ name: 'y_total', help: 'h', labelNames: ['route', 'status', 'code'], registers: [ours] })
  const reference = new Counter({ name: 'y_total', help: 'h', labelNames: ['route', 'status', 'code'], registers: [theirs] })
  const bare = new SeriesCounter({ name: 'z_total', help: 'no labels', registers: [ours] })
  const bareReference = new Counter({ name: 'z_total', help: 'no labels', registers: [theirs] })
  for (const [route, status, code] of [['a', 200, 'ok'], ['a', 200, 'ok'], ['a', 401, 'missing_credentials'], ['b', 200, 'ok']] as const) {
    fast.inc({ route, status, code })
    reference.inc({ route, status, code })
  }
  fast.inc({ route: 'b', status: 200, code: 'ok' }, 5)
  reference.inc({ route: 'b', status: 200, code: 'ok' }, 5)
  bare.inc()
  bareReference.inc()
  const text = await ours.metrics()
  t.is(text, await theirs.metrics())
  t.true(text.includes('y_total{route="a",status="200",code="ok"} 2'))
  t.true(text.includes('y_total{route="b",status="200",code="ok"} 6'))
  t.true(text.includes('z_total 1'))
})

test('a series that differs in one label value is its own series, and a scrape is a snapshot', async (t) => {
  const registry = new Registry()
  const fast = new SeriesCounter({ name: 'c_total', help: 'h', labelNames: ['a', 'b'], registers: [registry] })
  // Keys join values with a NUL: "x\u0000" + "y" and "x" + "\u0000y" must not collide into one series.
  fast.inc({ a: 'x\u0000', b: 'y' })
  fast.inc({ a: 'x', b: '\u0000y' })
  fast.inc({ a: 'x', b: 'y' })
  const snapshot = fast.get()
  fast.inc({ a: 'x', b: 'y' })
  t.is(snapshot.values.find((v) => v.labels.a === 'x' && v.labels.b === 'y')?.value, 1)
  t.is(fast.get().values.find((v) => v.labels.a === 'x' && v.labels.b === 'y')?.value, 2)
  // A NUL in a label value can collide only with another NUL-bearing value; both are still counted.
  t.is(fast.get().values.reduce((sum, v) => sum + v.value, 0), 4)
})
