/**
 * How approximate a leased rate limit is (issue 19: `lease: auto`): two gateway instances (separate processes, the
 * real CLI) share one Redis and one counter (`by: route`), both loaded far past the limit; every 200 is timed where
 * the client receives it. For the exact limit (no lease), `lease: auto` and `lease: 100` it prints the requests
 * admitted against GCRA's bound over the run (burst + rate × elapsed) and the most admitted in any window as long as
 * the limit's own (1 s), from the second second on (the first holds the rested burst for every mode).
 * Two load shapes: steady (every connection busy all the time) and pulsed (each instance loads for 100 ms of every
 * 500, the two a quarter period apart: what a lease leaves unspent at the end of one pulse is spent at the start of
 * the next, the most a cell can be late).
 *
 * Run: node --import tsx bench/lease-overshoot.ts [--rate 1000] [--duration 10] [--connections 32]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { startRedis } from '../test/helpers/redis.js'
import { freePort, spawnNode, stopChild, waitForPort } from './lib/procs.js'

const { values } = parseArgs({ options: { rate: { type: 'string', default: '1000' }, duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '32' } } })
const rate = Number(values.rate)
const durationMs = Number(values.duration) * 1000
const connections = Number(values.connections)
const modes = [
  { route: 'exact', lease: undefined },
  { route: 'auto', lease: 'auto' },
  { route: 'fixed', lease: 100 },
] as const

function config (port: number, redisUrl: string): string {
  const routes = modes.map(({ route, lease }) => `  - name: ${route}
    match: { path: /${route} }
    upstream: echo
    public: true
    policies:
      - rateLimit: { by: route, limit: ${rate}/sec${lease === undefined ? '' : `, lease: ${lease}`} }`).join('\n')
  return `version: 1
listeners:
  - { name: plain, address: 127.0.0.1:${port} }
store: { redis: "${redisUrl}", prefix: "overshoot:", onError: deny }
log: { level: warn }
upstreams:
  echo: { echo: true }
routes:
${routes}
`
}

const PULSE_PERIOD_MS = 500
const PULSE_ON_MS = 100

/** Resolves at the next moment this instance's pulse is on (pulsed shape), or at once (steady). */
function pulseOn (offset: number | undefined): Promise<void> | undefined {
  if (offset === undefined) return undefined
  const phase = (performance.now() - offset) % PULSE_PERIOD_MS
  if (phase < PULSE_ON_MS) return undefined
  return new Promise((resolve) => setTimeout(resolve, PULSE_PERIOD_MS - phase))
}

/**
 * Loads one instance until `until` (ms, performance.now()), steadily or in pulses (`offset`: when its pulses start);
 * the arrival time of every 200.
 */
async function drive (port: number, path: string, until: number, offset: number | undefined): Promise<{ admitted: number[], refused: number }> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections })
  const admitted: number[] = []
  let refused = 0
  const loop = async () => {
    while (performance.now() < until) {
      const wait = pulseOn(offset)
      if (wait) {
        await wait
        continue
      }
      const { statusCode, body } = await pool.request({ method: 'GET', path })
      await body.dump()
      if (statusCode === 200) admitted.push(performance.now())
      else if (statusCode === 429) refused++
      else throw new Error(`unexpected ${statusCode} on ${path}`)
    }
  }
  await Promise.all(Array.from({ length: connections }, loop))
  await pool.close()
  return { admitted, refused }
}

/** The most timestamps in any window of `windowMs` that starts at or after `from`. */
function busiestWindow (times: readonly number[], from: number, windowMs: number): number {
  let best = 0
  let end = 0
  for (let start = 0; start < times.length; start++) {
    if (times[start]! < from) continue
    while (end < times.length && times[end]! < times[start]! + windowMs) end++
    best = Math.max(best, end - start)
  }
  return best
}

const redis = await startRedis()
const dir = mkdtempSync(join(tmpdir(), 'authgate-overshoot-'))
const ports = [await freePort(), await freePort()]
const gateways = ports.map((port, i) => {
  const file = join(dir, `gateway-${i}.yaml`)
  writeFileSync(file, config(port, redis.url))
  return spawnNode('bench/gateway-main.ts', ['start', '-c', file])
})
try {
  for (const [i, port] of ports.entries()) await waitForPort(port, gateways[i]!)
  console.log(`two instances, one Redis, by: route, limit ${rate}/sec (burst ${rate}), ${connections} connections each, ${durationMs / 1000} s per mode`)
  for (const shape of ['steady', 'pulsed'] as const) {
    for (const { route, lease } of modes) {
      const started = performance.now()
      const until = started + durationMs
      const offsets = shape === 'pulsed' ? [started, started + PULSE_PERIOD_MS / 4] : [undefined, undefined]
      const runs = await Promise.all(ports.map((port, i) => drive(port, `/${route}`, until, offsets[i])))
      const times = runs.flatMap((r) => r.admitted).sort((a, b) => a - b)
      const elapsed = (times.at(-1)! - started) / 1000
      const bound = rate + rate * elapsed
      const busiest = busiestWindow(times, started + 1000, 1000)
      const refused = runs.reduce((n, r) => n + r.refused, 0)
      console.log(`${shape.padEnd(6)} ${(lease === undefined ? 'exact' : `lease: ${lease}`).padEnd(11)} admitted ${times.length} (${runs.map((r) => r.admitted.length).join(' + ')}), ` +
        `GCRA bound ${Math.floor(bound)} (${(100 * times.length / bound).toFixed(1)}%), refused ${refused}; ` +
        `busiest 1 s window after the first second: ${busiest} (${(100 * busiest / rate).toFixed(1)}% of the limit)`)
      // The counter rests before the next mode: a fresh bucket for each (they are separate keys anyway).
      await new Promise((resolve) => setTimeout(resolve, 1100))
    }
  }
} finally {
  await Promise.all(gateways.map((g) => stopChild(g)))
  await redis.stop()
  rmSync(dir, { recursive: true, force: true })
}
