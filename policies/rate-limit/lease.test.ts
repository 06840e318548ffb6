import test from 'ava'
import { isRejection, type Rejection } from '../../gateway/errors.js'
import { validate } from '../../gateway/config/validate.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import { RedisStore } from '../../gateway/store/redis.js'
import type { GcraCheck, GcraResult, Store } from '../../gateway/store/types.js'
import type { Continue, Identity, Outcome, PolicyInstance } from '../types.js'
import { freePort } from '../../test/e2e/support.js'
import { build, identity, makeContext, makeDeps, quietLogger } from '../../test/helpers/policy-harness.js'
import { rateLimit } from './index.js'
import { policies } from '../index.js'
import { LEASE_LIFETIME_MS, Leases } from './lease.js'

/** A real MemoryStore that records every rateLimit call and how many were in flight at once. */
class CountingStore extends MemoryStore {
  readonly calls: GcraCheck[][] = []
  inFlight = 0
  maxInFlight = 0
  override async rateLimit (checks: readonly GcraCheck[]): Promise<GcraResult[]> {
    this.calls.push([...checks])
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight)
    try {
      await new Promise((resolve) => setImmediate(resolve)) // a round trip: requests arriving meanwhile must join it
      return await super.rateLimit(checks)
    } finally {
      this.inFlight--
    }
  }
}

interface Clock { now: () => number, advance: (ms: number) => void }
function clock (start = 1_700_000_000_000): Clock {
  let at = start
  return { now: () => at, advance: (ms) => { at += ms } }
}

type Step = Record<string, unknown>
const auth: Step = { apiKey: {} }
const limit = (config: Record<string, unknown>): Step => ({ rateLimit: { ...config } })

/** One gateway instance's rateLimit steps of route "orders" on a given store and clock. */
async function instance (steps: Step[], store: Store, c: Clock, storeConfig: Record<string, unknown> = { onError: 'deny' }) {
  const route = { name: 'orders', upstream: 'demo', policies: steps }
  const deps = makeDeps({ store, config: { rateLimitTiers: {}, store: storeConfig, routes: [route] }, routeName: 'orders', listeners: [], shared: new Map(), now: c.now, log: quietLogger().log })
  const instances: PolicyInstance[] = []
  for (const [index, step] of steps.entries()) if ('rateLimit' in step) instances.push(await build(rateLimit, step.rateLimit, { ...deps, step: { index } }))
  return {
    instances,
    /** One request through the steps in chain order; the outcome that carries headers (or the rejection). */
    async request (who: Partial<Identity> = identity(), remoteAddress = '127.0.0.1'): Promise<Outcome> {
      const ctx = makeContext({ identity: who, remoteAddress })
      const outcomes: Outcome[] = []
      for (const policy of instances) {
        const outcome = await policy.evaluate(ctx)
        outcomes.push(outcome)
        if (isRejection(outcome)) break
      }
      return outcomes.find((o) => isRejection(o) || (o as Continue).responseHeaders !== undefined) ?? outcomes[0]!
    },
  }
}

async function setup (steps: Step[]) {
  const c = clock()
  const store = new CountingStore({ now: c.now })
  return { clock: c, store, ...await instance(steps, store, c) }
}

function headersOf (outcome: Outcome): Record<string, string> {
  return isRejection(outcome) ? { ...outcome.headers } : { ...(outcome as Continue).responseHeaders }
}

/** r of the first RateLimit item. */
function remainingOf (outcome: Outcome): number {
  return Number(/;r=(\d+)/.exec(headersOf(outcome).RateLimit ?? '')![1])
}

const upTos = (store: CountingStore) => store.calls.map((checks) => checks.map((c) => c.upTo ?? 0).join('+'))

test('lease defaults to 1: one store call per request without upTo, exactly as before', async (t) => {
  const config: Record<string, unknown> = { limit: '600/min' }
  t.deepEqual(validate(rateLimit.schema, config, []), [])
  t.is(config.lease, 1)
  const s = await setup([auth, limit({ by: 'client', limit: '600/min' })])
  for (let i = 0; i < 5; i++) t.false(isRejection(await s.request()))
  t.is(s.store.calls.length, 5)
  t.true(s.store.calls.every((checks) => checks.every((c) => c.upTo === undefined)))
})

test('the schema refuses a lease below 1 or not an integer', (t) => {
  for (const lease of [0, -1, 2.5, '4']) {
    t.true(validate(rateLimit.schema, { limit: '10/min', lease }, []).length > 0, String(lease))
  }
  t.deepEqual(validate(rateLimit.schema, { limit: '10/min', lease: 50 }, []), [])
  t.deepEqual(validate(rateLimit.schema, { limit: '10/min', lease: 'auto' }, []), [])
  for (const lease of ['Auto', 'max', '']) t.true(validate(rateLimit.schema, { limit: '10/min', lease }, []).length > 0, lease)
})

test('lease: auto grows a busy key\'s lease from demand up to burst / 10, keeps r exact, and leases 1 for a quiet key', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '6000/min', lease: 'auto' })])
  for (let i = 0; i < 2000; i++) {
    const outcome = await s.request()
    t.false(isRejection(outcome))
    if (remainingOf(outcome) !== 5999 - i) t.fail(`request ${i + 1}: r = ${remainingOf(outcome)}, not ${5999 - i}`)
  }
  t.deepEqual(upTos(s.store).slice(0, 12), ['1', '2', '4', '8', '16', '32', '64', '128', '256', '512', '600', '600'],
    'doubling while busy, then the burst\'s tenth (6000 / 10) and no more')
  t.is(s.store.calls.length, 12, '2000 requests, 12 round trips (1 + 2 + … + 512 = 1023, then 600 twice)')

  const quiet = await setup([auth, limit({ by: 'client', limit: '6000/min', lease: 'auto' })])
  for (let i = 0; i < 4; i++) {
    await quiet.request()
    quiet.clock.advance(1000) // nothing left alive, nothing to grow for
  }
  t.deepEqual(upTos(quiet.store), ['1', '1', '1', '1'], 'a quiet key behaves as without a lease')
})

test('a cold key leases exactly 1 and gets the same headers as without a lease; a quiet caller stays exact', async (t) => {
  const leased = await setup([auth, limit({ by: 'client', limit: '600/min', lease: 10 })])
  const plain = await setup([auth, limit({ by: 'client', limit: '600/min' })])
  for (let i = 0; i < 5; i++) {
    const a = await leased.request()
    const b = await plain.request()
    t.deepEqual(headersOf(a), headersOf(b), `request ${i + 1}`)
    leased.clock.advance(300) // more than 250 ms apart: never busy enough to lease more
    plain.clock.advance(300)
  }
  t.deepEqual(upTos(leased.store), ['1', '1', '1', '1', '1'], 'one store call per request, each taking 1')
})

test('a busy key\'s lease doubles up to lease, and r still counts every admitted request exactly', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '600/min', lease: 8 })])
  for (let i = 0; i < 40; i++) {
    const outcome = await s.request()
    t.false(isRejection(outcome))
    t.is(remainingOf(outcome), 599 - i, `request ${i + 1}: r = burst - admitted (store remaining + local stock)`)
  }
  t.deepEqual(upTos(s.store).slice(0, 6), ['1', '2', '4', '8', '8', '8'])
  t.is(s.store.calls.length, 8, '40 requests, 8 round trips (1 + 2 + 4 + 8 × 4 = 39, then one more)')
})

test('a lease never asks for more than burst / 10, so a small burst is never held by one instance', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '100/min', burst: 25, lease: 50 })])
  for (let i = 0; i < 25; i++) t.false(isRejection(await s.request()), `request ${i + 1}`)
  t.true(isRejection(await s.request()), 'the 26th is over the burst')
  t.true(Math.max(...s.store.calls.map((checks) => checks[0]!.upTo!)) <= 2, upTos(s.store).join(','))
  const tiny = await setup([auth, limit({ by: 'client', limit: '5/min', lease: 50 })])
  for (let i = 0; i < 6; i++) await tiny.request()
  t.deepEqual(tiny.store.calls.map((checks) => checks[0]!.upTo), [undefined, undefined, undefined, undefined, undefined, undefined],
    'burst 5: a lease of 1, so the exact path without upTo')
})

test('cells are charged in the store before they are spent, and cells left after the lease lifetime are dropped, not returned', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '600/min', lease: 4 })])
  const key = 'rl:{orders}:client:web'
  for (let i = 0; i < 4; i++) await s.request() // leases 1, 2 (one left after the third request), then 4
  t.deepEqual(upTos(s.store), ['1', '2', '4'])
  // 4 admitted, 7 charged: the store's TAT is 7 cells of 100 ms ahead, 3 cells wait here.
  t.is(Number(await s.store.get(key)), s.clock.now() + 700)
  s.clock.advance(LEASE_LIFETIME_MS)
  const late = await s.request()
  t.is(s.store.calls.length, 4, 'the expired stock is not spent: a new store call')
  t.deepEqual(upTos(s.store)[3], '1', 'no lease alive: the key is cold again')
  t.is(remainingOf(late), 599, 'the dropped cells were not given back to the store, which refilled on its own')
})

test('two instances with leases on one store never admit more than the burst, and pass again at the sustained rate', async (t) => {
  const c = clock()
  const store = new MemoryStore({ now: c.now })
  const steps = [auth, limit({ by: 'client', limit: '60/min', burst: 100, lease: 10 })]
  const a = await instance(steps, store, c)
  const b = await instance(steps, store, c)
  let admitted = 0
  for (let i = 0; i < 300; i++) {
    const outcome = await (i % 3 === 0 ? b : a).request()
    if (!isRejection(outcome)) admitted++
    else t.is((outcome as Rejection).status, 429)
  }
  t.is(admitted, 100, 'exactly the burst: every charged cell is spent by one instance or the other, none twice')
  c.advance(LEASE_LIFETIME_MS) // a lifetime: stocks expire, one cell refills
  let later = 0
  for (let i = 0; i < 10; i++) if (!isRejection(await (i % 2 === 0 ? a : b).request())) later++
  t.is(later, 1, 'after 1 s of a 1/s rate exactly one more request passes')
})

test('many concurrent requests on a key with an empty stock share one store call at a time, and the leftovers are served by the next lease', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '6000/min', lease: 50 })])
  const outcomes = await Promise.all(Array.from({ length: 40 }, () => s.request()))
  t.true(outcomes.every((o) => !isRejection(o)), 'the bucket (6000) holds them all: no false 429')
  t.is(s.store.maxInFlight, 1, 'never two store calls for the key at once (single flight)')
  t.deepEqual(upTos(s.store), ['1', '39'], 'the cold lease of 1, then one lease sized for the 39 that waited')
  t.deepEqual(outcomes.map(remainingOf).sort((x, y) => y - x), Array.from({ length: 40 }, (_, i) => 5999 - i))
})

test('concurrent requests beyond the bucket are refused with 429 and Retry-After from the store\'s answer', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '60/min', burst: 40, lease: 4 })])
  const outcomes = await Promise.all(Array.from({ length: 60 }, () => s.request()))
  const refused = outcomes.filter(isRejection) as Rejection[]
  t.is(outcomes.length - refused.length, 40, 'exactly the burst passes')
  t.true(refused.every((r) => r.status === 429 && r.headers['Retry-After'] === '1'), 'one emission interval (1 s)')
  t.true(refused.every((r) => /;r=0;t=40$/.test(r.headers.RateLimit ?? '')), refused[0]?.headers.RateLimit)
  t.is(s.store.maxInFlight, 1)
  t.true(s.store.calls.length <= 14, `${s.store.calls.length} store calls for 60 requests`)
  s.clock.advance(1000)
  t.false(isRejection(await s.request()), 'waiting Retry-After is enough')
})

test('in a batch, a request refused by one limit gives back the cell it took from another limit\'s stock', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '600/min', lease: 10 }), limit({ by: 'ip', limit: '2/min' })])
  const seen: number[] = []
  for (let i = 0; i < 6; i++) {
    const ip = `192.0.2.${i}`
    const first = await s.request(identity(), ip)
    t.false(isRejection(first))
    seen.push(remainingOf(first))
    const second = await s.request(identity(), ip)
    t.false(isRejection(second))
    seen.push(remainingOf(second))
    const refused = await s.request(identity(), ip) as Rejection
    t.is(refused.status, 429, `the ip limit (2/min) refuses the third request from ${ip}`)
    t.regex(refused.detail, /"orders-ip" exceeded/)
    t.is(remainingOf(refused), 600 - 2 * (i + 1), 'the client limit is reported as the last 200 left it, without the refused request')
  }
  t.deepEqual(seen, Array.from({ length: 12 }, (_, i) => 599 - i), 'r of the client limit counts only admitted requests')
  const stored = Number(await s.store.get('rl:{orders}:client:web'))
  const charged = Math.round((stored - s.clock.now()) / 100)
  t.true(charged >= 12 && charged <= 12 + 10, `${charged} cells charged for 12 admitted: the rest wait in the stock`)
  t.true(s.store.calls.every((checks) => checks.some((c) => c.key.startsWith('rl:{orders}:ip:'))), 'the ip limit (lease 1) asks the store every time')
})

test('a refused lease (store says no) refuses every waiter and leaves the counters as they were', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '600/min', burst: 20, lease: 2 })])
  for (let i = 0; i < 20; i++) t.false(isRejection(await s.request()))
  const before = await s.store.get('rl:{orders}:client:web')
  const outcomes = await Promise.all(Array.from({ length: 5 }, () => s.request()))
  t.true(outcomes.every((o) => isRejection(o) && o.status === 429 && o.headers['Retry-After'] === '1'))
  t.is(await s.store.get('rl:{orders}:client:web'), before)
})

test('onError allow: with leases, a dead store falls back to per-instance counters that still hold the limit', async (t) => {
  const port = await freePort()
  const store = new RedisStore(`redis://127.0.0.1:${port}`, { prefix: 't:', timeoutMs: 200 })
  try {
    const c = clock()
    const s = await instance([auth, limit({ by: 'client', limit: '20/min', lease: 5 })], store, c, { onError: 'allow' })
    const statuses: number[] = []
    for (let i = 0; i < 21; i++) {
      const outcome = await s.request()
      statuses.push(isRejection(outcome) ? outcome.status : 200)
    }
    t.deepEqual(statuses, [...Array(20).fill(200), 429])
    for (const policy of s.instances) await policy.close?.()
  } finally {
    await store.close()
  }
})

test('stocks of keys gone quiet are swept, so memory stays bounded', async (t) => {
  const c = clock()
  const store = new MemoryStore({ now: c.now })
  const leases = new Leases(c.now, (checks) => store.rateLimit(checks))
  const check = (client: string) => ({ check: { key: `rl:{orders}:client:${client}`, emissionIntervalMs: 100, burst: 600 }, lease: 10 })
  for (let i = 0; i < 200; i++) t.true((await leases.admit([check(`c${i}`)])).allowed)
  t.is(leases.size, 200)
  c.advance(LEASE_LIFETIME_MS)
  await leases.admit([check('late')])
  t.is(leases.size, 1, 'only the key leased just now is kept')
})

test('after the store refuses a key, its requests are refused here until the Retry-After it gave, without a round trip', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '60/min', burst: 20, lease: 2 })])
  for (let i = 0; i < 20; i++) t.false(isRejection(await s.request()))
  const first = await s.request() as Rejection
  t.is(first.status, 429)
  const calls = s.store.calls.length
  s.clock.advance(400)
  const local = await s.request() as Rejection
  t.is(local.status, 429)
  t.is(s.store.calls.length, calls, 'no round trip inside the Retry-After')
  t.deepEqual(local.headers, { ...first.headers, RateLimit: '"orders-client";r=0;t=20' })
  t.is(first.headers['Retry-After'], '1')
  s.clock.advance(600)
  t.false(isRejection(await s.request()), 'at the Retry-After the store is asked again, and the refilled cell passes')
  t.is(s.store.calls.length, calls + 1)
})

test('check(): a lease that a small burst caps at 1 is a warning; a burst of 20 or more is not', (t) => {
  const issues = (config: Record<string, unknown>) => {
    const step = limit(config)
    const steps = [auth, step]
    const route = { name: 'orders', upstream: 'demo', policies: steps }
    t.deepEqual(validate(rateLimit.schema, step.rateLimit, []), [])
    return rateLimit.check!(step.rateLimit as never, { config: { rateLimitTiers: {}, routes: [route] }, route: { name: 'orders', upstream: 'demo', listeners: [], maxBodyBytes: 1 }, step: { index: 1 }, policies })
  }
  const small = issues({ by: 'client', limit: '10/min', lease: 5 })
  t.deepEqual(small.map((i) => [i.severity, i.path]), [['warning', ['lease']]])
  t.regex(small[0]!.message, /no effect with a burst of 10/)
  t.deepEqual(issues({ by: 'client', limit: '10/min', burst: 20, lease: 5 }), [])
  t.deepEqual(issues({ by: 'client', limit: '100/min', lease: 5 }), [])
  t.deepEqual(issues({ by: 'client', limit: '10/min' }), [], 'no lease, no warning')
  t.deepEqual(issues({ by: 'client', limit: '10/min', lease: 'auto' }).map((i) => i.path), [['lease']], 'auto: the same warning')
  t.deepEqual(issues({ by: 'client', limit: '100/min', lease: 'auto' }), [])
})
