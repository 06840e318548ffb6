// Micro-benchmark: the rate-limit Lua script (GCRA, store.rateLimit) against a real redis-server spawned for the
// run, one call at a time and 64 in flight (ioredis auto-pipelining), one and two limits per call; and the
// in-process MemoryStore for comparison; and a request admitted through `lease` stocks (policies/rate-limit/lease.ts).
// Run: node --import tsx bench/micro/rate-limit.ts
import { MemoryStore } from '../../gateway/store/memory.js'
import { RedisStore } from '../../gateway/store/redis.js'
import { Leases } from '../../policies/rate-limit/lease.js'
import { rateLimit } from '../../policies/rate-limit/index.js'
import type { Identity, RequestContext } from '../../policies/types.js'
import { build, makeDeps } from '../../test/helpers/policy-harness.js'
import { startRedis } from '../../test/helpers/redis.js'
import { benchAsync, section } from './harness.js'

const redis = await startRedis()
const store = new RedisStore(redis.url, { prefix: 'micro:', timeoutMs: 2000 })
const memory = new MemoryStore({ prefix: 'micro:' })
// 1,000,000 per second: never refused, so every call writes (the costlier path of the script).
const one = [{ key: 'rl:{route}:client:bench', emissionIntervalMs: 0.001, burst: 1_000_000 }]
const two = [...one, { key: 'rl:{route}:ip:127.0.0.1', emissionIntervalMs: 0.001, burst: 1_000_000 }]

section('rate limit (GCRA)')
try {
  await store.ping()
  await benchAsync('RedisStore.rateLimit, 1 limit, 1 in flight', 5_000, 1, () => store.rateLimit(one))
  await benchAsync('RedisStore.rateLimit, 1 limit, 64 in flight', 50_000, 64, () => store.rateLimit(one))
  await benchAsync('RedisStore.rateLimit, 2 limits, 64 in flight', 50_000, 64, () => store.rateLimit(two))
  await benchAsync('MemoryStore.rateLimit, 1 limit', 200_000, 1, () => memory.rateLimit(one))
  for (const lease of [1, 10, 100]) {
    const leases = new Leases(() => Date.now(), (checks) => store.rateLimit(checks))
    const limits = [{ check: one[0]!, lease }]
    await benchAsync(`Leases.admit (Redis), lease: ${lease}, 64 in flight`, 50_000, 64, () => leases.admit(limits))
  }
  // The whole policy per request: counter key, store call, RateLimit headers (a new request context each time).
  const who: Partial<Identity> = { subject: 'bench', client: 'bench', methods: ['apiKey'], scopes: [], claims: {} }
  for (const [label, lease, policyStore] of [['Redis', 1, store], ['Redis', 100, store], ['memory', 1, memory]] as const) {
    const route = { name: 'bench', upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '1000000/sec', lease } }] }
    const deps = makeDeps({ store: policyStore, now: Date.now, routeName: 'bench', config: { rateLimitTiers: {}, store: { onError: 'deny' }, routes: [route] } })
    const policy = await build(rateLimit, route.policies[1]!.rateLimit, { ...deps, step: { index: 1 } })
    await benchAsync(`rateLimit policy (${label}), lease: ${lease}, 64 in flight`, 50_000, 64, () => Promise.resolve(policy.evaluate({ identity: who, remoteAddress: '127.0.0.1' } as RequestContext)))
  }
} finally {
  await store.close()
  await memory.close()
  await redis.stop()
}
