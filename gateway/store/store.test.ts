import { inspect } from 'node:util'
import anyTest, { type TestFn } from 'ava'
import { StoreUnavailableError } from '../errors.js'
import { MemoryStore, RedisStore, createStore } from './index.js'
import type { GcraCheck, Store } from './types.js'
import { command, startRedis, startRedisCluster, uniquePrefix, type RedisServer } from '../../test/helpers/redis.js'
import { FakeClock } from '../../test/helpers/clock.js'
import { until } from '../../test/helpers/until.js'

const test = anyTest as TestFn

/** Store timeout of the outage tests; the other tests use a generous one so a loaded machine cannot fail them. */
const TIMEOUT_MS = 500
const CALL_TIMEOUT_MS = 3000
let redis: RedisServer
const opened: Array<Store | { stop (): Promise<void> }> = []

test.before(async () => {
  redis = await startRedis()
})

test.after.always(async () => {
  await Promise.all(opened.map((item) => 'close' in item ? item.close() : item.stop()))
  await redis?.stop()
})

function track<T extends Store | { stop (): Promise<void> }> (item: T): T {
  opened.push(item)
  return item
}

function redisStore (url: string | { cluster: string[] }, prefix = uniquePrefix('store'), timeoutMs = CALL_TIMEOUT_MS): RedisStore {
  return track(new RedisStore(url, { prefix, timeoutMs }))
}

async function privateRedis (): Promise<RedisServer> {
  const server = await startRedis()
  track({ stop: () => server.stop() })
  return server
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves with the time a promise took to settle, and its rejection if any. */
async function timed (promise: Promise<unknown>): Promise<{ ms: number, error: unknown }> {
  const start = Date.now()
  try {
    await promise
    return { ms: Date.now() - start, error: undefined }
  } catch (error) {
    return { ms: Date.now() - start, error }
  }
}

/** Whether `check` held within `timeoutMs` (an error counts as "still down"). */
async function eventually (check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  return await until(() => check().catch(() => false), { timeoutMs, intervalMs: 50, message: 'the store' }).then(() => true, () => false)
}

/** Subscription is asynchronous in Redis: publish until the subscriber has it, or the deadline passes. */
async function publishUntilReceived (publisher: Store, channel: string, message: string, received: string[], timeoutMs: number) {
  return eventually(async () => {
    await publisher.publish(channel, message)
    await delay(20)
    return received.includes(message)
  }, timeoutMs)
}

interface Kind {
  readonly name: 'memory' | 'redis'
  /** A fresh store with its own prefix. */
  make (prefix?: string): Store
  /** A second store on the same backend (Redis: another connection; memory: the same instance). */
  peer (store: Store): Store
  /** Lets `ms` pass for `store`: memory advances that store's own fake clock; Redis expires keys on its own clock, so waits. */
  pass (store: Store, ms: number): Promise<void>
}

const clocks = new WeakMap<Store, FakeClock>()

const kinds: Kind[] = [
  {
    name: 'memory',
    make: (prefix = uniquePrefix('memory')) => {
      const clock = new FakeClock()
      const store = track(new MemoryStore({ prefix, now: clock.now }))
      clocks.set(store, clock)
      return store
    },
    peer: (store) => store,
    pass: async (store, ms) => { clocks.get(store)!.advance(ms) },
  },
  {
    name: 'redis',
    make: (prefix) => redisStore(redis.url, prefix),
    peer: (store) => redisStore(redis.url, (store as RedisStore).prefix),
    pass: async (_store, ms) => { await delay(ms) }, // a TTL in Redis runs on the server's clock: the test must wait it out
  },
]

const perMinute = (key: string, count: number): GcraCheck => ({ key, emissionIntervalMs: 60_000 / count, burst: count })

for (const kind of kinds) {
  const title = (text: string) => `${kind.name}: ${text}`

  test(title('get returns what set stored, null for an unknown key, and nothing after delete'), async (t) => {
    const store = kind.make()
    t.is(await store.get('absent'), null)
    await store.set('k', 'v1')
    t.is(await store.get('k'), 'v1')
    await store.set('k', 'v2')
    t.is(await store.get('k'), 'v2')
    await store.delete('k')
    t.is(await store.get('k'), null)
    await store.delete('k')
    t.true(store.healthy)
    await t.notThrowsAsync(store.ping())
  })

  test(title('a key set with a TTL expires and one set without a TTL stays'), async (t) => {
    const store = kind.make()
    await store.set('short', 'x', 1000)
    await store.set('long', 'y')
    t.is(await store.get('short'), 'x')
    await kind.pass(store, 1300)
    t.is(await store.get('short'), null)
    t.is(await store.get('long'), 'y')
  })

  test(title('of 100 concurrent setIfAbsent calls exactly one wins, and the key is free again after its TTL'), async (t) => {
    const store = kind.make()
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.setIfAbsent('nonce', `caller-${i}`, 1000)))
    t.is(results.filter(Boolean).length, 1)
    t.is(await store.get('nonce'), `caller-${results.indexOf(true)}`)
    t.false(await store.setIfAbsent('nonce', 'late', 1000))
    await kind.pass(store, 1300)
    t.true(await store.setIfAbsent('nonce', 'after-expiry', 150))
  })

  test(title('a lock lease is renewed or released only by its owner; one that lapsed and was taken is not touched'), async (t) => {
    const store = kind.make()
    t.true(await store.setIfAbsent('lock', 'a', 1000))
    t.false(await store.renewOrReleaseIfHeld('lock', 'b', 5000), 'another owner cannot renew')
    t.false(await store.renewOrReleaseIfHeld('lock', 'b', 0), 'nor release')
    t.is(await store.get('lock'), 'a')
    t.true(await store.renewOrReleaseIfHeld('lock', 'a', 3000), 'the owner renews')
    await kind.pass(store, 1300)
    t.is(await store.get('lock'), 'a', 'the renewed lease outlived the first TTL')
    await kind.pass(store, 2000)
    t.true(await store.setIfAbsent('lock', 'b', 1000), 'lapsed: another instance takes it')
    t.false(await store.renewOrReleaseIfHeld('lock', 'a', 3000), 'the old owner cannot renew over it')
    t.false(await store.renewOrReleaseIfHeld('lock', 'a', 0), 'nor release it')
    t.is(await store.get('lock'), 'b')
    t.true(await store.renewOrReleaseIfHeld('lock', 'b', 0), 'its owner releases it')
    t.is(await store.get('lock'), null)
    t.false(await store.renewOrReleaseIfHeld('missing', 'a', 1000))
  })

  test(title('a hash is stored and read as a flat record, replaced as a whole, and may expire'), async (t) => {
    const store = kind.make()
    t.is(await store.getHash('key:abc'), null)
    await store.setHash('key:abc', { client: 'shop', scopes: 'orders:read orders:write', tier: 'gold' })
    t.deepEqual(await store.getHash('key:abc'), { client: 'shop', scopes: 'orders:read orders:write', tier: 'gold' })
    await store.setHash('key:abc', { client: 'shop', revoked: '1' })
    t.deepEqual(await store.getHash('key:abc'), { client: 'shop', revoked: '1' })
    await store.setHash('key:tmp', { a: '1' }, 1000)
    t.deepEqual(await store.getHash('key:tmp'), { a: '1' })
    await kind.pass(store, 1300)
    t.is(await store.getHash('key:tmp'), null)
    await store.delete('key:abc')
    t.is(await store.getHash('key:abc'), null)
  })

  test(title('a set holds each member once and forgets removed members'), async (t) => {
    const store = kind.make()
    t.deepEqual(await store.members('index'), [])
    await store.addToSet('index', 'k1')
    await store.addToSet('index', 'k2')
    await store.addToSet('index', 'k1')
    t.deepEqual((await store.members('index')).sort(), ['k1', 'k2'])
    await store.removeFromSet('index', 'k1')
    await store.removeFromSet('index', 'absent')
    t.deepEqual(await store.members('index'), ['k2'])
    await store.removeFromSet('index', 'k2')
    t.deepEqual(await store.members('index'), [])
  })

  test(title('increment counts within a fixed window and starts over when the window ends'), async (t) => {
    const store = kind.make()
    const first = await store.increment('fail:alice', 1500)
    t.is(first.count, 1)
    t.true(first.resetMs > 0 && first.resetMs <= 1500)
    t.is((await store.increment('fail:alice', 1500)).count, 2)
    const third = await store.increment('fail:alice', 1500)
    t.is(third.count, 3)
    t.true(third.resetMs <= first.resetMs, 'later increments do not extend the window')
    t.is((await store.increment('fail:bob', 1500)).count, 1)
    await kind.pass(store, 1800)
    const fresh = await store.increment('fail:alice', 1500)
    t.is(fresh.count, 1)
    t.true(fresh.resetMs > 750)
  })

  test(title('reserve: of 30 concurrent reservations on two connections exactly limit are granted; release takes one back'), async (t) => {
    const store = kind.make()
    const peer = kind.peer(store)
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? store : peer).reserve('fail:user:alice', 10, 60_000)))
    t.is(results.filter((r) => r.granted).length, 10, 'never past the limit, however many race')
    t.deepEqual(results.filter((r) => r.granted).map((r) => r.count).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    for (const refused of results.filter((r) => !r.granted)) {
      t.is(refused.count, 10)
      t.true(refused.resetMs > 0 && refused.resetMs <= 60_000)
    }
    const first = results.find((r) => r.count === 1)!
    await store.release('fail:user:alice')
    const again = await peer.reserve('fail:user:alice', 10, 60_000)
    t.like(again, { granted: true, count: 10 })
    t.true(again.resetMs <= first.resetMs, 'a release and a new reservation do not extend the window')
    t.false((await store.reserve('fail:user:alice', 10, 60_000)).granted)
    t.is(await store.get('fail:user:alice'), '10', 'a refused reservation changes nothing')
  })

  test(title('release never goes below zero nor creates a counter; at zero the window is gone'), async (t) => {
    const store = kind.make()
    await store.release('fail:user:nobody')
    t.is(await store.get('fail:user:nobody'), null)
    t.like(await store.reserve('fail:user:bob', 3, 60_000), { granted: true, count: 1 })
    await store.release('fail:user:bob')
    await store.release('fail:user:bob')
    t.is(await store.get('fail:user:bob'), null)
    const fresh = await store.reserve('fail:user:bob', 3, 5_000)
    t.like(fresh, { granted: true, count: 1 })
    t.true(fresh.resetMs > 4_000 && fresh.resetMs <= 5_000, 'the next reservation starts a new window')
    await t.throwsAsync(store.reserve('fail:user:bob', 0, 5_000), { instanceOf: RangeError })
  })

  test(title('with 10/min ten requests at once pass and the eleventh must wait about 6 s'), async (t) => {
    const store = kind.make()
    const check = perMinute('rl:{orders}:client:shop', 10)
    const passed = await Promise.all(Array.from({ length: 10 }, () => store.rateLimit([check])))
    t.true(passed.every(([r]) => r!.allowed && r!.retryAfterMs === 0))
    t.deepEqual(passed.map(([r]) => r!.remaining).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    t.true(passed.every(([r]) => r!.resetMs > 0 && r!.resetMs <= 60_000))

    const [eleventh] = await store.rateLimit([check])
    t.false(eleventh!.allowed)
    t.is(eleventh!.remaining, 0)
    t.true(eleventh!.retryAfterMs > 5000 && eleventh!.retryAfterMs <= 6000, `retryAfterMs ${eleventh!.retryAfterMs}`)
    t.true(eleventh!.resetMs > 55_000 && eleventh!.resetMs <= 60_000, `resetMs ${eleventh!.resetMs}`)

    // A refused request costs nothing: the next one waits the same, not 6 s more.
    const [twelfth] = await store.rateLimit([check])
    t.false(twelfth!.allowed)
    t.true(twelfth!.retryAfterMs <= eleventh!.retryAfterMs)
  })

  test(title('when one check of a call fails no check is charged'), async (t) => {
    const store = kind.make()
    const tight: GcraCheck = { key: 'rl:{search}:ip:10.0.0.1', emissionIntervalMs: 60_000, burst: 1 }
    const roomy: GcraCheck = { key: 'rl:{search}:client:shop', emissionIntervalMs: 1000, burst: 5 }
    t.true((await store.rateLimit([tight]))[0]!.allowed)

    const [denied, wouldPass] = await store.rateLimit([tight, roomy])
    t.false(denied!.allowed)
    t.true(wouldPass!.allowed)

    const [untouched] = await store.rateLimit([roomy])
    t.true(untouched!.allowed)
    t.is(untouched!.remaining, 4, 'the first charge of roomy is this one')

    const [both1, both2] = await store.rateLimit([roomy, { ...roomy, key: 'rl:{search}:route' }])
    t.true(both1!.allowed && both2!.allowed)
    t.is(both1!.remaining, 3)
    t.is(both2!.remaining, 4)
  })

  test(title('the bucket refills at the sustained rate and a request passes after retryAfterMs'), async (t) => {
    const store = kind.make()
    const check: GcraCheck = { key: 'rl:{fast}:client:x', emissionIntervalMs: 1000, burst: 2 }
    t.true((await store.rateLimit([check]))[0]!.allowed)
    t.true((await store.rateLimit([check]))[0]!.allowed)
    const [denied] = await store.rateLimit([check])
    t.false(denied!.allowed)
    t.true(denied!.retryAfterMs > 0 && denied!.retryAfterMs <= 1000)
    await kind.pass(store, denied!.retryAfterMs + 30)
    const [again] = await store.rateLimit([check])
    t.true(again!.allowed)
    t.is(again!.remaining, 0)
  })

  test(title('a request may cost more than one and a cost above the burst never passes'), async (t) => {
    const store = kind.make()
    const check: GcraCheck = { key: 'rl:{upload}:client:x', emissionIntervalMs: 1000, burst: 5, cost: 3 }
    const [first] = await store.rateLimit([check])
    t.true(first!.allowed)
    t.is(first!.remaining, 2)
    const [second] = await store.rateLimit([check])
    t.false(second!.allowed)
    t.true(second!.retryAfterMs > 0 && second!.retryAfterMs <= 1000)
    const [single] = await store.rateLimit([{ ...check, cost: 1 }])
    t.true(single!.allowed)
    t.is(single!.remaining, 1)
    t.false((await store.rateLimit([{ ...check, key: 'rl:{upload}:other', cost: 6 }]))[0]!.allowed)
    t.deepEqual(await store.rateLimit([]), [])
  })

  test(title('a lease takes min(upTo, what conforms now): 4, 4, the 2 left of a burst of 10, then a refusal'), async (t) => {
    const store = kind.make()
    const lease: GcraCheck = { ...perMinute('rl:{lease}:client:shop', 10), upTo: 4 }
    const [first] = await store.rateLimit([lease])
    t.like(first, { allowed: true, granted: 4, remaining: 6, retryAfterMs: 0 })
    t.true(first!.resetMs > 23_000 && first!.resetMs <= 24_000, `resetMs ${first!.resetMs}: four cells of 6 s`)
    const [second] = await store.rateLimit([lease])
    t.like(second, { allowed: true, granted: 4, remaining: 2 })
    const [partial] = await store.rateLimit([lease])
    t.like(partial, { allowed: true, granted: 2, remaining: 0 }, 'fewer than upTo: what the bucket has, not all-or-nothing')
    t.true(partial!.resetMs > 59_000 && partial!.resetMs <= 60_000)
    const [refused] = await store.rateLimit([lease])
    t.like(refused, { allowed: false, granted: 0, remaining: 0 })
    t.true(refused!.retryAfterMs > 5000 && refused!.retryAfterMs <= 6000, `retryAfterMs ${refused!.retryAfterMs}`)
    // A check without upTo keeps today's answer shape: no granted field.
    const [plain] = await store.rateLimit([perMinute('rl:{lease}:client:other', 10)])
    t.false('granted' in plain!)
    t.like(plain, { allowed: true, remaining: 9 })
  })

  test(title('a lease never takes fewer than cost, and a lease refused by another check of the call takes nothing'), async (t) => {
    const store = kind.make()
    const bucket = perMinute('rl:{lease}:route', 10)
    t.like((await store.rateLimit([{ ...bucket, upTo: 9 }]))[0], { allowed: true, granted: 9, remaining: 1 })
    t.like((await store.rateLimit([{ ...bucket, cost: 2, upTo: 5 }]))[0], { allowed: false, granted: 0 }, 'one cell left, two needed')
    const tight: GcraCheck = { key: 'rl:{lease}:ip:10.0.0.1', emissionIntervalMs: 60_000, burst: 1 }
    t.true((await store.rateLimit([tight]))[0]!.allowed)
    const fresh: GcraCheck = { ...perMinute('rl:{lease}:client:shop', 10), upTo: 5 }
    const [wouldTake, denied] = await store.rateLimit([fresh, tight])
    t.like(wouldTake, { allowed: true, granted: 5 }, 'reported as it would be')
    t.false(denied!.allowed)
    t.like((await store.rateLimit([fresh]))[0], { allowed: true, granted: 5, remaining: 5 }, 'the refused call charged nothing')
    t.like((await store.rateLimit([{ ...bucket, upTo: 5 }]))[0], { allowed: true, granted: 1, remaining: 0 })
  })

  test(title('concurrent leases from two connections never take more cells than the burst'), async (t) => {
    const a = kind.make()
    const b = kind.peer(a)
    const lease: GcraCheck = { ...perMinute('rl:{lease}:client:busy', 10), upTo: 3 }
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b).rateLimit([lease])))
    const granted = results.map(([r]) => r!.granted ?? -1)
    t.is(granted.reduce((sum, n) => sum + n, 0), 10, `granted ${granted.join(',')}`)
    t.true(granted.every((n) => n >= 0 && n <= 3))
    t.is(results.filter(([r]) => r!.allowed).length, granted.filter((n) => n > 0).length)
  })

  test(title('a malformed rate limit check is a RangeError, not a store failure'), async (t) => {
    const store = kind.make()
    await t.throwsAsync(store.rateLimit([{ key: 'rl:x', emissionIntervalMs: 0, burst: 1 }]), { instanceOf: RangeError })
    await t.throwsAsync(store.rateLimit([{ key: 'rl:x', emissionIntervalMs: 100, burst: -1 }]), { instanceOf: RangeError })
    for (const upTo of [0, 1.5, -2, Number.NaN]) {
      await t.throwsAsync(store.rateLimit([{ key: 'rl:x', emissionIntervalMs: 100, burst: 5, upTo }]), { instanceOf: RangeError }, `upTo ${upTo}`)
    }
    await t.throwsAsync(store.set('k', 'v', 0), { instanceOf: RangeError })
    t.is(await store.get('rl:x'), null)
  })

  test(title('using a key as the wrong kind rejects with StoreUnavailableError that does not carry the arguments'), async (t) => {
    const store = kind.make()
    await store.set('plain', 'x')
    const error = await t.throwsAsync(store.addToSet('plain', 'member-value-7f3a'), { instanceOf: StoreUnavailableError })
    t.false(inspect(error, { depth: 10, showHidden: true }).includes('member-value-7f3a'))
    await t.throwsAsync(store.getHash('plain'), { instanceOf: StoreUnavailableError })
    t.is(await store.get('plain'), 'x')
  })

  test(title('a published message reaches a subscriber on the same backend, and not after unsubscribe'), async (t) => {
    const publisher = kind.make()
    const subscriber = kind.peer(publisher)
    const received: string[] = []
    const other: string[] = []
    const unsubscribe = subscriber.subscribe('revocations', (message) => received.push(message))
    subscriber.subscribe('elsewhere', (message) => other.push(message))
    t.true(await publishUntilReceived(publisher, 'revocations', 'key:abc', received, 1000), 'delivered within 1 s')
    t.deepEqual(other, [])

    unsubscribe()
    await publisher.publish('revocations', 'key:def')
    // A barrier instead of a sleep: messages arrive in order, so once this one is in, key:def would have been too.
    t.true(await publishUntilReceived(publisher, 'elsewhere', 'barrier', other, 1000), 'the barrier arrived')
    t.false(received.includes('key:def'))
  })

  test(title('stores with different prefixes do not see each other\'s keys'), async (t) => {
    const a = kind.make()
    const b = kind.make()
    await a.set('shared-name', 'from-a')
    await a.addToSet('idx', 'a1')
    t.true((await a.rateLimit([{ key: 'rl:{r}:x', emissionIntervalMs: 60_000, burst: 1 }]))[0]!.allowed)
    t.is(await b.get('shared-name'), null)
    t.deepEqual(await b.members('idx'), [])
    t.true((await b.rateLimit([{ key: 'rl:{r}:x', emissionIntervalMs: 60_000, burst: 1 }]))[0]!.allowed)
    t.is(await a.get('shared-name'), 'from-a')
  })
}

// Memory only: exact numbers under a fake clock, and bounded memory.

test('memory: GCRA gives the pinned numbers exactly under a fake clock', async (t) => {
  let now = 1_000_000
  const store = track(new MemoryStore({ now: () => now }))
  const check = perMinute('rl:{orders}:client:shop', 10)
  for (let i = 0; i < 10; i++) {
    t.deepEqual(await store.rateLimit([check]), [{ allowed: true, remaining: 9 - i, resetMs: 6000 * (i + 1), retryAfterMs: 0 }])
  }
  t.deepEqual(await store.rateLimit([check]), [{ allowed: false, remaining: 0, resetMs: 60_000, retryAfterMs: 6000 }])
  t.deepEqual(await store.rateLimit([check]), [{ allowed: false, remaining: 0, resetMs: 60_000, retryAfterMs: 6000 }])
  now += 5999
  t.false((await store.rateLimit([check]))[0]!.allowed)
  now += 1
  t.deepEqual(await store.rateLimit([check]), [{ allowed: true, remaining: 0, resetMs: 60_000, retryAfterMs: 0 }])
  now += 60_000
  t.deepEqual(await store.rateLimit([check]), [{ allowed: true, remaining: 9, resetMs: 6000, retryAfterMs: 0 }])
})

test('memory: a lease gives the pinned numbers exactly under a fake clock, refilling at the sustained rate', async (t) => {
  let now = 1_000_000
  const store = track(new MemoryStore({ now: () => now }))
  const lease: GcraCheck = { key: 'rl:{x}:lease', emissionIntervalMs: 100, burst: 10, upTo: 4 }
  t.deepEqual(await store.rateLimit([lease]), [{ allowed: true, remaining: 6, resetMs: 400, retryAfterMs: 0, granted: 4 }])
  t.deepEqual(await store.rateLimit([lease]), [{ allowed: true, remaining: 2, resetMs: 800, retryAfterMs: 0, granted: 4 }])
  t.deepEqual(await store.rateLimit([lease]), [{ allowed: true, remaining: 0, resetMs: 1000, retryAfterMs: 0, granted: 2 }])
  t.deepEqual(await store.rateLimit([lease]), [{ allowed: false, remaining: 0, resetMs: 1000, retryAfterMs: 100, granted: 0 }])
  now += 250 // two and a half cells refilled: two conform
  t.deepEqual(await store.rateLimit([lease]), [{ allowed: true, remaining: 0, resetMs: 950, retryAfterMs: 0, granted: 2 }])
  now += 2000
  t.deepEqual(await store.rateLimit([{ ...lease, upTo: 1 }]), [{ allowed: true, remaining: 9, resetMs: 100, retryAfterMs: 0, granted: 1 }])
})

test('memory: a fractional emission interval still lets the whole burst through', async (t) => {
  const store = track(new MemoryStore({ now: () => 5000 }))
  const check: GcraCheck = { key: 'rl:x', emissionIntervalMs: 1000 / 3, burst: 3 }
  const remaining = []
  for (let i = 0; i < 3; i++) remaining.push((await store.rateLimit([check]))[0]!.remaining)
  t.deepEqual(remaining, [2, 1, 0])
  t.false((await store.rateLimit([check]))[0]!.allowed)
})

test('memory: expired keys are swept so memory stays bounded', async (t) => {
  let now = 0
  const store = track(new MemoryStore({ now: () => now, sweepIntervalMs: 10 }))
  for (let i = 0; i < 1000; i++) await store.set(`k${i}`, 'v', 1000)
  await store.rateLimit([{ key: 'rl:y', emissionIntervalMs: 100, burst: 5 }])
  await store.increment('fail:z', 500)
  await store.set('kept', 'v')
  t.is(store.size, 1003)
  now = 1001
  await until(() => store.size === 1, { timeoutMs: 2000, intervalMs: 5, message: 'the next sweep (every 10 ms)' }).catch(() => {})
  t.is(store.size, 1)
})

test('memory: a closed store rejects calls with StoreUnavailableError and reports unhealthy', async (t) => {
  const store = new MemoryStore()
  await store.close()
  t.false(store.healthy)
  await t.throwsAsync(store.get('k'), { instanceOf: StoreUnavailableError })
})

test('createStore picks memory without a Redis URL and Redis with one', async (t) => {
  const memory = track(createStore({ prefix: 'authgate:' }))
  t.is(memory.kind, 'memory')
  t.is(track(createStore({ redis: '', prefix: 'authgate:' })).kind, 'memory')
  const remote = track(createStore({ redis: redis.url, prefix: uniquePrefix('create'), timeoutMs: CALL_TIMEOUT_MS }))
  t.is(remote.kind, 'redis')
  await t.notThrowsAsync(remote.ping())
  t.throws(() => createStore({ redis: 'http://127.0.0.1:6379', prefix: 'x:' }), { instanceOf: RangeError })
})

// Redis only: the prefix on the wire, faults, Cluster.

test('redis: keys and channels carry the prefix, and hash tags survive it', async (t) => {
  const prefix = uniquePrefix('wire')
  const store = redisStore(redis.url, prefix)
  await store.set('plain', 'v')
  t.is(await command(redis.port, ['GET', `${prefix}plain`]), 'v')
  await store.rateLimit([{ key: 'rl:{orders}:client:shop', emissionIntervalMs: 1000, burst: 5 }])
  const tat = Number(await command(redis.port, ['GET', `${prefix}rl:{orders}:client:shop`]))
  t.true(tat > 1_600_000_000_000, 'the TAT is a Redis-time timestamp in ms')
  const received: string[] = []
  const subscriber = redisStore(redis.url, prefix)
  subscriber.subscribe('events', (message) => received.push(message))
  t.true(await publishUntilReceived(store, 'events', 'hello', received, 1000))
  t.is(await command(redis.port, ['PUBLISH', `${prefix}events`, 'raw']), '1', 'one subscriber on the prefixed channel')
  t.is(await command(redis.port, ['PUBLISH', 'events', 'raw']), '0')
})

/** How many times Redis ran a script since its stats were last reset (EVALSHA and EVAL together). */
async function scriptRuns (port: number): Promise<number> {
  const stats = await command(port, ['INFO', 'commandstats'])
  let runs = 0
  for (const match of stats.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)) runs += Number(match[1])
  return runs
}

test('redis: the rate limits of one event-loop turn are one script call, and each request is decided alone, in order', async (t) => {
  const server = await privateRedis()
  const store = redisStore(server.url)
  const tight: GcraCheck = { key: 'rl:{b}:tight', emissionIntervalMs: 60_000, burst: 1 }
  const roomy: GcraCheck = { key: 'rl:{b}:roomy', emissionIntervalMs: 60_000, burst: 3 }
  await store.ping()
  await store.rateLimit([{ key: 'rl:{b}:warm', emissionIntervalMs: 1000, burst: 1 }]) // the script is loaded
  await command(server.port, ['CONFIG', 'RESETSTAT'])
  const same: GcraCheck = { key: 'rl:{b}:same', emissionIntervalMs: 60_000, burst: 10 }
  // All made in this turn: 40 on one key (burst 10), then three whose checks overlap.
  const calls = Array.from({ length: 40 }, () => store.rateLimit([same]))
  const first = store.rateLimit([tight])
  const both = store.rateLimit([tight, roomy])
  const after = store.rateLimit([roomy])
  const results = (await Promise.all(calls)).map(([result]) => result!)
  t.is(await scriptRuns(server.port), 1, '44 requests, one script call')
  t.deepEqual(results.slice(0, 10).map((r) => r.remaining), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], 'in the order they were made')
  t.true(results.slice(0, 10).every((r) => r.allowed))
  t.true(results.slice(10).every((r) => !r.allowed && r.retryAfterMs > 0), 'the 30 past the burst are refused')
  t.true((await first)[0]!.allowed)
  const [denied, wouldPass] = await both
  t.false(denied!.allowed, 'the tight limit was taken by the request before it in the same call')
  t.true(wouldPass!.allowed)
  t.like((await after)[0], { allowed: true, remaining: 2 }, 'the refused request charged nothing, even inside one call')
})

test('redis: more rate-limit checks in one turn than one script call takes are split, and all decided', async (t) => {
  const server = await privateRedis()
  const store = redisStore(server.url)
  await store.ping()
  await store.rateLimit([{ key: 'rl:{s}:warm', emissionIntervalMs: 1000, burst: 1 }])
  await command(server.port, ['CONFIG', 'RESETSTAT'])
  const check: GcraCheck = { key: 'rl:{s}:k', emissionIntervalMs: 60_000, burst: 1000 }
  const results = await Promise.all(Array.from({ length: 300 }, () => store.rateLimit([check])))
  t.deepEqual(results.map(([r]) => r!.remaining), Array.from({ length: 300 }, (_, i) => 999 - i))
  t.is(await scriptRuns(server.port), 2, '300 checks: 256 in the first call, 44 in the second')
})

test('redis: a rate-limit key of another kind fails its own request only, not the others of its call', async (t) => {
  const store = redisStore(redis.url)
  await store.addToSet('rl:{w}:wrong', 'member')
  const check: GcraCheck = { key: 'rl:{w}:right', emissionIntervalMs: 60_000, burst: 5 }
  const before = store.rateLimit([check])
  const wrong = store.rateLimit([check, { key: 'rl:{w}:wrong', emissionIntervalMs: 60_000, burst: 5 }])
  const next = store.rateLimit([check])
  t.like((await before)[0], { allowed: true, remaining: 4 })
  await t.throwsAsync(wrong, { instanceOf: StoreUnavailableError })
  t.like((await next)[0], { allowed: true, remaining: 3 }, 'the failed request charged nothing')
  t.deepEqual(await store.members('rl:{w}:wrong'), ['member'])
})

test('redis: a killed server makes calls fail fast with StoreUnavailableError, and the same store recovers after a restart', async (t) => {
  const server = await privateRedis()
  const store = redisStore(server.url, undefined, TIMEOUT_MS)
  // Connected first: the short timeout is for the outage, not for a first connection on a loaded machine.
  t.true(await eventually(async () => await store.ping().then(() => true, () => false), 5000))
  await store.set('k', 'before')
  t.true(store.healthy)

  await server.kill()
  const first = await timed(store.get('k'))
  t.true(first.error instanceof StoreUnavailableError, String(first.error))
  t.true(first.ms < 2000, `rejected after ${first.ms} ms`)
  t.true(await eventually(async () => !store.healthy, 2000), 'healthy goes false')
  for (const call of [store.rateLimit([perMinute('rl:{x}:y', 10)]), store.ping(), store.setIfAbsent('n', '1', 1000)]) {
    const outcome = await timed(call)
    t.true(outcome.error instanceof StoreUnavailableError)
    t.true(outcome.ms < 2000)
  }
  await delay(TIMEOUT_MS + 100)
  const known = await timed(store.get('k'))
  t.true(known.error instanceof StoreUnavailableError)
  t.true(known.ms < TIMEOUT_MS, `an outage already known fails without waiting (${known.ms} ms)`)

  await server.restart()
  t.true(await eventually(async () => (await store.ping(), true), 5000), 'recovers by itself')
  t.true(store.healthy)
  await store.set('k', 'after')
  t.is(await store.get('k'), 'after')
})

test('redis: a paused server makes calls reject within the timeout instead of hanging', async (t) => {
  const server = await privateRedis()
  const store = redisStore(server.url, undefined, TIMEOUT_MS)
  // Connected first: the short timeout is for the outage, not for a first connection on a loaded machine.
  t.true(await eventually(async () => await store.ping().then(() => true, () => false), 5000))
  await store.set('k', 'v')

  server.pause()
  try {
    const outcome = await timed(store.get('k'))
    t.true(outcome.error instanceof StoreUnavailableError, String(outcome.error))
    t.true(outcome.ms >= TIMEOUT_MS - 50 && outcome.ms < 2000, `rejected after ${outcome.ms} ms`)
    t.false(store.healthy)
    const limited = await timed(store.rateLimit([perMinute('rl:{p}:x', 10)]))
    t.true(limited.error instanceof StoreUnavailableError)
    t.true(limited.ms < 2000)
  } finally {
    server.resume()
  }
  t.true(await eventually(async () => await store.get('k') === 'v', 5000))
  t.true(store.healthy)
})

test('redis: a store created while Redis is down rejects within the timeout and connects when Redis appears', async (t) => {
  const server = await privateRedis()
  await server.kill()
  const store = redisStore(server.url, undefined, TIMEOUT_MS)
  const outcome = await timed(store.get('k'))
  t.true(outcome.error instanceof StoreUnavailableError)
  t.true(outcome.ms < 2000)
  t.false(store.healthy)
  await server.restart()
  t.true(await eventually(async () => (await store.ping(), true), 5000))
})

test('redis: subscriptions are restored after Redis restarts', async (t) => {
  const server = await privateRedis()
  const prefix = uniquePrefix('resub')
  const publisher = redisStore(server.url, prefix)
  const subscriber = redisStore(server.url, prefix)
  const received: string[] = []
  subscriber.subscribe('revocations', (message) => received.push(message))
  t.true(await publishUntilReceived(publisher, 'revocations', 'one', received, 1000))

  await server.kill()
  await server.restart()
  t.true(await publishUntilReceived(publisher, 'revocations', 'two', received, 5000), 'delivered after the restart')
})

test('redis: a rate limit with several checks holds across two stores on a 3-master cluster', async (t) => {
  const cluster = track(await startRedisCluster(3))
  const prefix = uniquePrefix('cluster')
  const a = redisStore({ cluster: cluster.urls }, prefix)
  const b = redisStore({ cluster: cluster.urls }, prefix)
  const checks: GcraCheck[] = [
    perMinute('rl:{orders}:client:shop', 5),
    perMinute('rl:{orders}:ip:10.0.0.7', 100),
    perMinute('rl:{orders}:route', 1000),
  ]
  const outcomes = []
  for (let i = 0; i < 8; i++) outcomes.push(await (i % 2 === 0 ? a : b).rateLimit(checks))
  t.deepEqual(outcomes.map((results) => results.every((r) => r.allowed)), [true, true, true, true, true, false, false, false])
  t.true(outcomes[5]![0]!.retryAfterMs > 10_000 && outcomes[5]![0]!.retryAfterMs <= 12_000)
  // Refused requests cost nothing in the other checks.
  t.is(outcomes[7]![1]!.remaining, 100 - 6)
  const port = Number(new URL(cluster.urls[0]!).port)
  t.is(await command(port, ['CLUSTER', 'KEYSLOT', `${prefix}rl:{orders}:client:shop`]),
    await command(port, ['CLUSTER', 'KEYSLOT', 'orders']), 'the prefix leaves the hash tag in charge')

  await a.set('plain', 'v')
  t.is(await b.get('plain'), 'v')
  const received: string[] = []
  b.subscribe('revocations', (message) => received.push(message))
  t.true(await publishUntilReceived(a, 'revocations', 'key:1', received, 2000))
  t.true(a.healthy && b.healthy)
})
