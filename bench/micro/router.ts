// Micro-benchmark of normalizePath + RouteTable.match with 200 routes.
// Run: node --import tsx bench/micro/router.ts
import { normalizePath, compileRoutes, type RouteSpec } from '../../gateway/router/index.js'

/** Best of 7 rounds (the machine is shared), after a warm-up. */
function bench (label: string, n: number, fn: (i: number) => unknown) {
  for (let i = 0; i < 200_000; i++) fn(i)
  let best = Infinity
  let sink = 0
  for (let round = 0; round < 7; round++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) if (fn(i)) sink++
    best = Math.min(best, Number(process.hrtime.bigint() - start) / n)
  }
  console.log(`${label.padEnd(58)} ${best.toFixed(1).padStart(7)} ns/op${sink < 0 ? '!' : ''}`)
}

// Table A: 200 routes over 20 services (first segments), mixed kinds, some host/method/listener restrictions.
const spread: RouteSpec[] = []
for (let s = 0; s < 20; s++) {
  for (let r = 0; r < 10; r++) {
    const base = `/svc${s}/v1/resource${r}`
    const kind = r % 3
    spread.push({
      name: `svc${s}-${r}`,
      index: spread.length,
      path: kind === 0 ? base : kind === 1 ? `${base}/*` : `${base}/**`,
      ...(r % 4 === 0 ? { methods: ['GET', 'HEAD'] } : {}),
      ...(r % 5 === 0 ? { hosts: ['api.example.com', '*.internal.example.com'] } : {}),
      ...(r % 7 === 0 ? { listeners: ['public'] } : {}),
    })
  }
}
spread[spread.length - 1] = { name: 'fallback', path: '/**', index: spread.length - 1 }

// Table B: 200 routes that all share the first segment /v1 (buckets do not help: a tight loop).
const flat: RouteSpec[] = []
for (let r = 0; r < 199; r++) flat.push({ name: `r${r}`, index: r, path: `/v1/resource${r}/**`, methods: ['GET', 'POST'] })
flat.push({ name: 'fallback', path: '/**', index: 199 })

const tableA = compileRoutes(spread)
const tableB = compileRoutes(flat)
const N = 500_000
const host = 'api.example.com:8443'

const typical = '/svc12/v1/resource7/12345?expand=items&limit=10'
const escaped = '/svc12/v1/resource7/%61bc%c3%a9//x?limit=10'
console.log('node', process.version, process.arch)
bench('normalizePath typical (no change)', N, () => normalizePath(typical).ok)
bench('normalizePath with escapes and //', N, () => normalizePath(escaped).ok)
bench('normalizePath refusal (/a/../b)', N, () => normalizePath('/public/../v1/data').ok)
const p = normalizePath(typical)
if (!p.ok) throw new Error('bad')
bench('match A (200 routes, 20 buckets), typical', N, () => tableA.match({ host, path: p.path, method: 'GET', listener: 'public' }).route)
bench('normalize+match A, typical', N, () => {
  const n = normalizePath(typical)
  return n.ok && tableA.match({ host, path: n.path, method: 'GET', listener: 'public' }).route
})
bench('normalize+match A, no route in bucket -> fallback', N, () => {
  const n = normalizePath('/unknown/x?y=1')
  return n.ok && tableA.match({ host, path: n.path, method: 'GET', listener: 'public' }).route
})
bench('normalize+match B (200 routes, one bucket), 100th route', N, () => {
  const n = normalizePath('/v1/resource100/42?x=1')
  return n.ok && tableB.match({ host, path: n.path, method: 'GET', listener: 'public' }).route
})
bench('normalize+match B, worst case (falls to route 200)', N, () => {
  const n = normalizePath('/v1/nothing/42')
  return n.ok && tableB.match({ host, path: n.path, method: 'GET', listener: 'public' }).route
})
const t0 = process.hrtime.bigint()
for (let i = 0; i < 100; i++) compileRoutes(spread)
console.log(`${'compileRoutes (200 routes)'.padEnd(58)} ${(Number(process.hrtime.bigint() - t0) / 100 / 1000).toFixed(1).padStart(7)} µs`)
