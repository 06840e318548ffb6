import test from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { until } from '../helpers/until.js'
import { FakeClock } from '../helpers/clock.js'
import { command, startRedis, uniquePrefix } from '../helpers/redis.js'
import { assertProblem } from './support.js'

/** Calls of the rate-limit script Redis has run (EVALSHA, and EVAL after a NOSCRIPT). */
async function scriptCalls (port: number): Promise<number> {
  const stats = await command(port, ['INFO', 'commandstats'])
  let calls = 0
  for (const match of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(match[1])
  return calls
}

async function waitUntil (check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  await until(check, { timeoutMs, intervalMs: 100, message: what })
}

test('two instances with lease: 10 on one Redis never admit more than the GCRA bound, in fewer round trips than requests', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const alice = newApiKey()
  // 600/min: one cell per 100 ms, burst 60, so a lease is at most 6 (burst / 10).
  const config = {
    apiKeys: [{ id: alice.id, hash: hashApiKey(alice.key), client: 'alice', scopes: [] }],
    routes: [{ name: 'orders', match: { path: '/v1/orders/**' }, upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '600/min', burst: 60, lease: 10 } }] }],
    store: { prefix: uniquePrefix('rl-lease'), timeout: '3s' },
  }
  const a = await startGateway(config, { redis: redis.url })
  t.teardown(() => a.close())
  const b = await startGateway(config, { redis: redis.url })
  t.teardown(() => b.close())
  await waitUntil(() => a.gateway.currentStore.healthy && b.gateway.currentStore.healthy, 10_000, 'the store to connect')
  const callsBefore = await scriptCalls(redis.port)

  const statuses: number[] = []
  const send = async (gw: TestGateway) => {
    const res = await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': alice.key } })
    statuses.push(res.status)
    t.is(res.headers.get('ratelimit-policy'), '"orders-client";q=600;w=60')
    t.regex(res.headers.get('ratelimit') ?? '', /^"orders-client";r=\d+;t=\d+$/)
    if (res.status === 429) {
      await assertProblem(t, res, 429, 'rate_limited')
      t.regex(res.headers.get('retry-after') ?? '', /^[1-9]\d*$/)
    } else {
      t.is(res.status, 200)
      t.is(res.headers.get('retry-after'), null)
      await res.arrayBuffer()
    }
  }
  // The counter is fresh: every pass below was charged in Redis between `started` and `ended`.
  const started = Date.now()
  for (let wave = 0; wave < 12; wave++) {
    await Promise.all(Array.from({ length: 16 }, (_, i) => send(i % 2 === 0 ? a : b)))
  }
  const ended = Date.now()
  const passed = statuses.filter((s) => s === 200).length
  const bound = 60 + Math.floor((ended - started) / 100) + 1
  t.true(passed <= bound, `${passed} passed; GCRA allows at most ${bound} in ${ended - started} ms`)
  t.true(statuses.includes(429), 'the 192 requests outran the limit')
  t.true(passed >= 60 - 2 * 6, `${passed} passed: at most one lease per instance may sit unused`)
  const roundTrips = await scriptCalls(redis.port) - callsBefore
  t.true(roundTrips < statuses.length / 2, `${roundTrips} store round trips for ${statuses.length} requests`)
  t.log(`${passed} of ${statuses.length} passed in ${ended - started} ms (bound ${bound}); ${roundTrips} store round trips`)
})

test('lease: a quiet caller on Redis gets the exact headers of lease 1, one round trip per request', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const alice = newApiKey()
  const config = {
    apiKeys: [{ id: alice.id, hash: hashApiKey(alice.key), client: 'alice', scopes: [] }],
    routes: [{ name: 'orders', match: { path: '/v1/orders/**' }, upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '3/sec', burst: 30, lease: 10 } }] }],
    store: { prefix: uniquePrefix('rl-quiet'), timeout: '3s' },
  }
  // The gateway's clock stands still during each request and is set to the real time before it: the headers then say
  // what Redis answered, however long a loaded machine takes between the answer and the headers (they are aged by the
  // gateway's clock). Redis keeps its own real clock, which the 400 ms pauses advance.
  const clock = new FakeClock()
  const gw = await startGateway(config, { redis: redis.url, now: clock.now })
  t.teardown(() => gw.close())
  await waitUntil(() => gw.gateway.currentStore.healthy, 10_000, 'the store to connect')
  const callsBefore = await scriptCalls(redis.port)
  for (let i = 0; i < 3; i++) {
    clock.ms = Date.now()
    const res = await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': alice.key } })
    t.is(res.status, 200)
    // 3/s with burst 30: each request 333 ms of a 10 s bucket; 400 ms apart two thirds of a cell refill.
    t.regex(res.headers.get('ratelimit') ?? '', /^"orders-client";r=29;t=1$/)
    await res.arrayBuffer()
    await new Promise((resolve) => setTimeout(resolve, 400))
  }
  t.is(await scriptCalls(redis.port) - callsBefore, 3)
})
