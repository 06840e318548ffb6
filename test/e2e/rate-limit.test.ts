import test, { type ExecutionContext } from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { until } from '../helpers/until.js'
import { startRedis, startRedisCluster, uniquePrefix } from '../helpers/redis.js'
import { assertProblem } from './support.js'

interface Key { id: string, key: string }

function staticKey (key: Key, client: string, tier?: string) {
  return { id: key.id, hash: hashApiKey(key.key), client, scopes: ['orders:read'], ...(tier ? { tier } : {}) }
}

/** A route `/v1/orders/**` behind an API key, with the given rateLimit steps. */
function limitedConfig (keys: Array<ReturnType<typeof staticKey>>, limits: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}) {
  return {
    apiKeys: keys,
    routes: [
      { name: 'orders', match: { path: '/v1/orders/**' }, upstream: 'demo', policies: [{ apiKey: {} }, ...limits.map((l) => ({ rateLimit: l }))] },
      { name: 'open', match: { path: '/open' }, upstream: 'demo', public: true },
    ],
    ...extra,
  }
}

async function timed (gw: TestGateway, path: string, key: string): Promise<{ res: Response, ms: number }> {
  const started = performance.now()
  const res = await gw.fetch(path, { headers: { 'x-api-key': key } })
  await res.arrayBuffer().catch(() => undefined)
  return { res, ms: performance.now() - started }
}

async function waitUntil (check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  await until(check, { timeoutMs, intervalMs: 100, message: what })
}

/** Waits for the store's first connection, so a slow machine does not turn the first request into a 503. */
async function storeReady (...gateways: TestGateway[]): Promise<void> {
  await waitUntil(() => gateways.every((gw) => gw.gateway.currentStore.healthy), 10_000, 'the store to connect')
}

function assertLimitHeaders (t: ExecutionContext, res: Response, policy: string, state: RegExp) {
  t.is(res.headers.get('ratelimit-policy'), policy)
  t.regex(res.headers.get('ratelimit') ?? '', state)
}

test('two instances on one Redis share a 10/min limit exactly: 15 requests give 10 passes and 5 × 429', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const alice = newApiKey()
  const config = limitedConfig([staticKey(alice, 'alice')], [{ by: 'client', limit: '10/min' }], { store: { prefix: uniquePrefix('rl-shared'), timeout: '3s' } })
  const a = await startGateway(config, { redis: redis.url })
  t.teardown(() => a.close())
  const b = await startGateway(config, { redis: redis.url })
  t.teardown(() => b.close())
  await storeReady(a, b)

  const statuses: number[] = []
  for (let i = 0; i < 15; i++) {
    const gw = i % 2 === 0 ? a : b
    const res = await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': alice.key } })
    statuses.push(res.status)
    t.is(res.headers.get('ratelimit-policy'), '"orders-client";q=10;w=60')
    if (res.status === 200) {
      // r counts down across both instances: one shared counter.
      t.regex(res.headers.get('ratelimit') ?? '', new RegExp(`^"orders-client";r=${9 - i};t=\\d+$`))
      t.is(res.headers.get('retry-after'), null)
      await res.arrayBuffer()
    } else {
      const body = await assertProblem(t, res, 429, 'rate_limited')
      t.regex(String(body.detail), /"orders-client" exceeded/)
      t.regex(res.headers.get('ratelimit') ?? '', /^"orders-client";r=0;t=(59|60)$/)
      const retryAfter = Number(res.headers.get('retry-after'))
      t.true(retryAfter >= 5 && retryAfter <= 6, `Retry-After ${retryAfter}: one emission interval (6 s)`)
    }
  }
  t.deepEqual(statuses, [...Array(10).fill(200), ...Array(5).fill(429)])
})

test('tier limits come from the API key\'s tier and rateLimitTiers', async (t) => {
  const free = newApiKey()
  const gold = newApiKey()
  const untiered = newApiKey()
  const gw = await startGateway(limitedConfig(
    [staticKey(free, 'cheap', 'free'), staticKey(gold, 'rich', 'gold'), staticKey(untiered, 'plain')],
    [{ by: 'client', tier: true, limit: '1/min' }],
    { rateLimitTiers: { free: '2/min', gold: '4/min' }, store: { timeout: '3s' } },
  ), { redis: true })
  t.teardown(() => gw.close())
  await storeReady(gw)

  const run = async (key: Key, n: number) => {
    const out: number[] = []
    for (let i = 0; i < n; i++) out.push((await timed(gw, '/v1/orders/1', key.key)).res.status)
    return out
  }
  const first = await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': gold.key } })
  t.is(first.status, 200)
  t.is(first.headers.get('ratelimit-policy'), '"orders-client";q=4;w=60')
  t.deepEqual(await run(gold, 4), [200, 200, 200, 429])
  t.deepEqual(await run(free, 3), [200, 200, 429])
  const last = await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': free.key } })
  t.is(last.headers.get('ratelimit-policy'), '"orders-client";q=2;w=60')
  t.is(last.headers.get('retry-after'), '30')
  t.deepEqual(await run(untiered, 2), [200, 429], 'a key without a tier gets the limit given beside tier: true')
})

test('memory store: one instance enforces the same GCRA, with burst, and RateLimit headers on 200 and 429', async (t) => {
  const alice = newApiKey()
  const gw = await startGateway(limitedConfig([staticKey(alice, 'alice')], [{ by: 'client', limit: '6/min', burst: 3 }]))
  t.teardown(() => gw.close())
  t.is(gw.gateway.currentStore.kind, 'memory')
  for (let i = 0; i < 3; i++) {
    const { res } = await timed(gw, '/v1/orders/1', alice.key)
    t.is(res.status, 200)
    // Burst 3 above a sustained 6/min: three at once, then one per 10 s.
    assertLimitHeaders(t, res, '"orders-client";q=6;w=60', new RegExp(`^"orders-client";r=${2 - i};t=(${10 * (i + 1)}|${10 * (i + 1) - 1})$`))
  }
  const refused = await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': alice.key } })
  await assertProblem(t, refused, 429, 'rate_limited')
  assertLimitHeaders(t, refused, '"orders-client";q=6;w=60', /^"orders-client";r=0;t=(29|30)$/)
  const retryAfter = Number(refused.headers.get('retry-after'))
  t.true(retryAfter >= 9 && retryAfter <= 10, `Retry-After ${retryAfter}`)
})

test('a limit placed before authentication puts RateLimit headers on the 401 too, and public routes can be limited by ip', async (t) => {
  const alice = newApiKey()
  const gw = await startGateway({
    apiKeys: [staticKey(alice, 'alice')],
    routes: [
      { name: 'login', match: { path: '/login' }, upstream: 'demo', policies: [{ rateLimit: { by: 'ip', limit: '3/min' } }, { apiKey: {} }] },
      { name: 'status', match: { path: '/status' }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'ip', limit: '1/min' } }] },
    ],
  })
  t.teardown(() => gw.close())
  const anonymous = await gw.fetch('/login')
  await assertProblem(t, anonymous, 401, 'missing_credentials')
  assertLimitHeaders(t, anonymous, '"login-ip";q=3;w=60', /^"login-ip";r=2;t=20$/)
  const ok = await gw.fetch('/login', { headers: { 'x-api-key': alice.key } })
  t.is(ok.status, 200)
  assertLimitHeaders(t, ok, '"login-ip";q=3;w=60', /^"login-ip";r=1;t=40$/)

  const open = await gw.fetch('/status')
  t.is(open.status, 200)
  assertLimitHeaders(t, open, '"status-ip";q=1;w=60', /^"status-ip";r=0;t=60$/)
  const refused = await gw.fetch('/status')
  await assertProblem(t, refused, 429, 'rate_limited')
  t.is(refused.headers.get('retry-after'), '60')
})

test('onError deny: while Redis is down limited routes answer 503 store_unavailable quickly, others keep serving, and it recovers', async (t) => {
  const alice = newApiKey()
  const gw = await startGateway(limitedConfig([staticKey(alice, 'alice')], [{ by: 'client', limit: '100/min' }], { store: { onError: 'deny', timeout: '1s' } }), { redis: true })
  t.teardown(() => gw.close())
  await storeReady(gw)
  t.is((await timed(gw, '/v1/orders/1', alice.key)).res.status, 200)

  await gw.redis!.kill()
  for (let i = 0; i < 4; i++) {
    const started = performance.now()
    const res = await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': alice.key } })
    const ms = performance.now() - started
    await assertProblem(t, res, 503, 'store_unavailable')
    t.true(ms < 2500, `request ${i} took ${Math.round(ms)} ms (store timeout 1 s)`)
  }
  const open = await timed(gw, '/open', '')
  t.is(open.res.status, 200, 'a route that does not need the store keeps serving')
  t.true(open.ms < 1000, 'and does not wait for the store')
  const ready = await fetch(`${gw.adminUrl}/readyz`)
  t.is(ready.status, 503)

  await gw.redis!.restart()
  await waitUntil(async () => (await timed(gw, '/v1/orders/1', alice.key)).res.status === 200, 10_000, 'the limited route to pass again')
  const back = await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': alice.key } })
  t.is(back.status, 200)
  t.regex(back.headers.get('ratelimit') ?? '', /^"orders-client";r=\d+;t=\d+$/)
})

test('onError allow: while Redis is down each instance limits on its own, and shared limits return with Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const alice = newApiKey()
  const config = limitedConfig([staticKey(alice, 'alice')], [{ by: 'client', limit: '3/min' }],
    { store: { prefix: uniquePrefix('rl-allow'), onError: 'allow', timeout: '1s' } })
  const a = await startGateway(config, { redis: redis.url })
  t.teardown(() => a.close())
  const b = await startGateway(config, { redis: redis.url })
  t.teardown(() => b.close())
  await storeReady(a, b)
  t.is((await timed(a, '/v1/orders/1', alice.key)).res.status, 200)

  await redis.kill()
  const outage: number[] = []
  for (let i = 0; i < 4; i++) {
    const { res, ms } = await timed(a, '/v1/orders/1', alice.key)
    outage.push(res.status)
    t.true(ms < 2500, `request ${i} took ${Math.round(ms)} ms (store timeout 1 s)`)
    t.is(res.headers.get('ratelimit-policy'), '"orders-client";q=3;w=60')
  }
  t.deepEqual(outage, [200, 200, 200, 429], 'instance A falls back to its own counters and still limits')
  t.is((await timed(b, '/v1/orders/1', alice.key)).res.status, 200, 'instance B has counters of its own')
  t.regex(a.rawLogs(), /rate limits fall back to per-instance counters/)

  await redis.restart()
  await waitUntil(() => a.gateway.currentStore.healthy && b.gateway.currentStore.healthy, 10_000, 'both instances to reconnect')
  // Redis restarted empty: A's exhausted local counter no longer decides.
  t.is((await timed(a, '/v1/orders/1', alice.key)).res.status, 200)
  t.is((await timed(a, '/v1/orders/1', alice.key)).res.status, 200)
  t.is((await timed(b, '/v1/orders/1', alice.key)).res.status, 200)
  // B's own counter would allow this one (its second); the shared one (the fourth) does not.
  const shared = await b.fetch('/v1/orders/1', { headers: { 'x-api-key': alice.key } })
  await assertProblem(t, shared, 429, 'rate_limited')
  t.regex(a.rawLogs(), /rate limits are shared across instances again/)
})

test('Redis Cluster: two limits of one route are checked in one script on one slot', async (t) => {
  const cluster = await startRedisCluster(3)
  t.teardown(() => cluster.stop())
  const alice = newApiKey()
  const bob = newApiKey()
  const config = limitedConfig([staticKey(alice, 'alice'), staticKey(bob, 'bob')],
    [{ by: 'client', limit: '3/min' }, { by: 'route', limit: '5/min' }],
    { store: { redis: { cluster: cluster.urls }, prefix: uniquePrefix('rl-cluster'), timeout: '3s' } })
  const a = await startGateway(config)
  t.teardown(() => a.close())
  const b = await startGateway(config)
  t.teardown(() => b.close())
  t.is(a.gateway.currentStore.kind, 'redis')
  await storeReady(a, b)

  const first = await a.fetch('/v1/orders/1', { headers: { 'x-api-key': alice.key } })
  t.is(first.status, 200, await first.clone().text())
  t.is(first.headers.get('ratelimit-policy'), '"orders-client";q=3;w=60, "orders-route";q=5;w=60')
  t.regex(first.headers.get('ratelimit') ?? '', /^"orders-client";r=2;t=20, "orders-route";r=4;t=12$/)
  const statuses = [first.status]
  for (let i = 0; i < 3; i++) statuses.push((await timed(i % 2 === 0 ? b : a, '/v1/orders/1', alice.key)).res.status)
  t.deepEqual(statuses, [200, 200, 200, 429], 'the client limit holds across instances')
  const bobs = []
  for (let i = 0; i < 3; i++) bobs.push((await timed(i % 2 === 0 ? a : b, '/v1/orders/1', bob.key)).res.status)
  t.deepEqual(bobs, [200, 200, 429], 'the route limit (5) counts alice\'s 3 passes, not her refused request')
  const refused = await b.fetch('/v1/orders/1', { headers: { 'x-api-key': bob.key } })
  t.regex(refused.headers.get('ratelimit') ?? '', /^"orders-client";r=1;t=\d+, "orders-route";r=0;t=\d+$/)
})

test('onError allow with a stalled Redis: one request waits for the store timeout, the next ones use local counters at once', async (t) => {
  const alice = newApiKey()
  const gw = await startGateway(limitedConfig([staticKey(alice, 'alice')], [{ by: 'client', limit: '100/min' }], { store: { onError: 'allow', timeout: '1s' } }), { redis: true })
  t.teardown(() => gw.close())
  await storeReady(gw)
  t.is((await timed(gw, '/v1/orders/1', alice.key)).res.status, 200)
  gw.redis!.pause()
  const first = await timed(gw, '/v1/orders/1', alice.key)
  t.is(first.res.status, 200)
  t.true(first.ms >= 900 && first.ms < 2500, `the first request waited ${Math.round(first.ms)} ms`)
  const next = await timed(gw, '/v1/orders/1', alice.key)
  t.is(next.res.status, 200)
  t.true(next.ms < 500, `the next request took ${Math.round(next.ms)} ms`)
  gw.redis!.resume()
  // Each request after the pause probes the store at most once a second, so the shared limits come back by themselves.
  await waitUntil(async () => {
    await timed(gw, '/v1/orders/1', alice.key)
    return gw.rawLogs().includes('rate limits are shared across instances again')
  }, 10_000, 'rate limits to use the store again')
  t.true(gw.gateway.currentStore.healthy)
  t.is(gw.rawLogs().match(/fall back to per-instance counters/g)?.length, 1, 'one warning for the whole outage')
})

test('by ip uses X-Forwarded-For only from a trusted proxy, else the socket address', async (t) => {
  const route = { name: 'status', match: { path: '/status' }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'ip', limit: '1/min' } }] }
  const trusting = await startGateway({ trustProxies: ['127.0.0.1/32'], routes: [route] })
  t.teardown(() => trusting.close())
  const via = (gw: TestGateway, client: string) => gw.fetch('/status', { headers: { 'x-forwarded-for': client } }).then(async (res) => { await res.arrayBuffer(); return res.status })
  t.is(await via(trusting, '192.0.2.1'), 200)
  t.is(await via(trusting, '192.0.2.1'), 429)
  t.is(await via(trusting, '192.0.2.2'), 200, 'another client behind the trusted proxy has its own counter')

  const untrusting = await startGateway({ routes: [route] })
  t.teardown(() => untrusting.close())
  t.is(await via(untrusting, '192.0.2.1'), 200)
  t.is(await via(untrusting, '192.0.2.2'), 429, 'a forged X-Forwarded-For does not buy a fresh counter')
})

test('by ip counts an IPv6 client behind a trusted proxy per /64; an IPv4 client per address', async (t) => {
  const route = { name: 'status', match: { path: '/status' }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'ip', limit: '2/min' } }] }
  const gw = await startGateway({ trustProxies: ['127.0.0.1/32'], routes: [route] })
  t.teardown(() => gw.close())
  const via = (client: string) => gw.fetch('/status', { headers: { 'x-forwarded-for': client } }).then(async (res) => { await res.arrayBuffer(); return res.status })
  const rotating: number[] = []
  for (let i = 1; i <= 5; i++) rotating.push(await via(`2001:db8:1:2::${i.toString(16)}`))
  t.deepEqual(rotating, [200, 200, 429, 429, 429], 'five addresses of one /64 share one counter')
  t.is(await via('2001:db8:1:3::1'), 200, 'the next /64 is another client')
  t.deepEqual([await via('198.51.100.7'), await via('198.51.100.7'), await via('198.51.100.7'), await via('198.51.100.8')], [200, 200, 429, 200])
})
