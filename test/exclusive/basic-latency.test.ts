/**
 * Latency under a password-guessing burst: a measurement that other test files running at the same time would
 * distort, so this folder runs alone, after the rest of `npm test` (ava.exclusive.config.js).
 */
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Agent } from 'undici'
import { bcryptHash, passwordChecks } from '../../policies/basic/users.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { until as untilHelper } from '../helpers/until.js'

/** True once `check` holds, false when `timeoutMs` passes first. */
const until = (check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> =>
  untilHelper(check, { timeoutMs, message: 'the condition' }).then(() => true, () => false)

const gateways: TestGateway[] = []
test.after.always(async () => { await Promise.all(gateways.map(async (gw) => await gw.close())) })

function config () {
  return {
    users: { htpasswd: 'users.htpasswd' },
    routes: [{ name: 'console', match: { path: '/console/**' }, upstream: 'demo', policies: [{ basic: { allowInsecure: true } }] }],
  }
}

async function start (_t: unknown, cfg: Record<string, unknown>, options: { files: Record<string, string> }): Promise<TestGateway> {
  const gw = await startGateway({ trustProxies: ['127.0.0.1/32'], ...cfg }, { files: options.files })
  gateways.push(gw)
  return gw
}

function basicAuth (username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}

async function as (gw: TestGateway, username: string, password: string): Promise<Response> {
  return await gw.fetch('/console/home', { headers: { authorization: basicAuth(username, password), 'x-forwarded-for': '192.0.2.1' } })
}

/** A request for the route from `clientIp`, as a trusted proxy on loopback (trustProxies) reports it. */
async function asFrom (gw: TestGateway, username: string, password: string, clientIp: string): Promise<Response> {
  return await gw.fetch('/console/home', { headers: { authorization: basicAuth(username, password), 'x-forwarded-for': clientIp } })
}

test('a public route stays fast (p99 under 50 ms) while a 200-guess burst for bcrypt cost 11 runs', async (t) => {
  const password = randomBytes(12).toString('base64url')
  // The default maxConcurrentChecks: every core hashing (the workers run at a lower priority on Linux).
  const workers = availableParallelism()
  const gw = await start(t, {
    ...config(),
    trustProxies: ['127.0.0.1/32'],
    routes: [...config().routes, { name: 'open', match: { path: '/open' }, upstream: 'demo', public: true }],
  }, { files: { 'users.htpasswd': `carol:${await bcryptHash(password, 11)}\n` } })
  const keepAlive = new Agent({ keepAliveTimeout: 10_000 })
  t.teardown(async () => await keepAlive.close())
  const open = async () => { const res = await gw.fetch('/open', { dispatcher: keepAlive }); await res.arrayBuffer(); return res.status }
  t.is(await open(), 200)
  t.is((await as(gw, 'carol', password)).status, 200)
  // Start every worker first (a cold worker under tsx takes a while).
  t.deepEqual(await Promise.all(Array.from({ length: workers }, async (_, i) => (await asFrom(gw, `warm-${i}`, 'x', `198.19.0.${i + 1}`)).status)), Array(workers).fill(401))

  const baseline: number[] = []
  for (let i = 0; i < 50; i++) {
    const started = performance.now()
    t.is(await open(), 200)
    baseline.push(performance.now() - started)
  }
  baseline.sort((a, b) => a - b)
  const before = passwordChecks.count
  let answered = 0
  const burst = Promise.all(Array.from({ length: 200 }, async (_, i) => {
    // From many addresses, so the pool fills (one address gets only a quarter of it).
    const res = await asFrom(gw, i % 2 === 0 ? 'carol' : `ghost-${i}`, `guess-${i}`, `198.18.${i >> 8}.${i & 255}`)
    await res.arrayBuffer()
    answered++
    return res.status
  }))
  // Measure while the workers hash: the refused part of the burst (HTTP parsing, the store, 429s) is main-thread
  // work of this process, client side included, and is not what this test is about.
  t.true(await until(() => passwordChecks.count > before && answered >= 150, 30_000), 'the burst is hashing, the refused part answered')
  const lag = monitorEventLoopDelay({ resolution: 5 })
  lag.enable()
  const latencies: number[] = []
  for (let i = 0; i < 50; i++) {
    const started = performance.now()
    t.is(await open(), 200)
    latencies.push(performance.now() - started)
  }
  const answeredDuringMeasurement = answered
  lag.disable()
  const statuses = await burst
  latencies.sort((a, b) => a - b)
  const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1]!
  t.log(`without a burst: p50 ${baseline[24]!.toFixed(1)} ms, p99 ${baseline[49]!.toFixed(1)} ms; event loop delay during the measurement: max ${(lag.max / 1e6).toFixed(1)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms`)
  t.log(`public p50 ${latencies[24]!.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms; burst: ${passwordChecks.count - before} hashes, ${statuses.filter((s) => s === 401).length} × 401, ${statuses.filter((s) => s === 429).length} × 429`)
  t.true(answeredDuringMeasurement < 200, 'the public requests ran while the burst was in flight')
  t.true(p99 < 50, `public p99 ${p99.toFixed(1)} ms`)
  t.false(statuses.includes(200))
})
