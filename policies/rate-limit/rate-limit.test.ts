import test from 'ava'
import { isRejection, StoreUnavailableError, type ConfigIssue, type Rejection } from '../../gateway/errors.js'
import { validate } from '../../gateway/config/validate.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import { RedisStore } from '../../gateway/store/redis.js'
import type { GcraCheck, GcraResult } from '../../gateway/store/types.js'
import type { Continue, Identity, Outcome, PolicyDeps, PolicyInstance, RouteInfo } from '../types.js'
import { freePort } from '../../test/e2e/support.js'
import { build, identity, makeContext, makeDeps, quietLogger } from '../../test/helpers/policy-harness.js'
import { rateLimit } from './index.js'
import { policies } from '../index.js'
import { keyValue, parseBy } from './limiter.js'


/** A real MemoryStore that records every rateLimit call (to count round trips). */
class CountingStore extends MemoryStore {
  readonly calls: GcraCheck[][] = []
  override async rateLimit (checks: readonly GcraCheck[]): Promise<GcraResult[]> {
    this.calls.push([...checks])
    return await super.rateLimit(checks)
  }
}

interface Clock { now: () => number, advance: (ms: number) => void }
function clock (start = 1_700_000_000_000): Clock {
  let at = start
  return { now: () => at, advance: (ms) => { at += ms } }
}

type Step = Record<string, unknown>

interface Setup {
  store: CountingStore
  instances: PolicyInstance[]
  deps: PolicyDeps
  clock: Clock
  /** Runs the route's rateLimit instances in chain order for one request, as the chain does. */
  request (who?: Partial<Identity>, extra?: { remoteAddress?: string, headers?: Array<[string, string]> }): Promise<{ outcomes: Outcome[], result: Outcome }>
}

/**
 * Builds every rateLimit step of `steps` (a route's policies) with one shared generation cache, as
 * Generation.build does. Other steps are only there for placement.
 */
async function setup (steps: Step[], options: { doc?: Record<string, unknown>, store?: CountingStore, route?: Partial<RouteInfo> & { public?: boolean }, storeConfig?: Record<string, unknown> } = {}): Promise<Setup> {
  const c = clock()
  const store = options.store ?? new CountingStore({ now: c.now })
  const route = { name: 'orders', upstream: 'demo', policies: steps, ...(options.route?.public ? { public: true } : {}) }
  const doc = { rateLimitTiers: {}, store: { onError: 'deny', ...options.storeConfig }, ...options.doc, routes: [route] }
  const shared = new Map<string, unknown>()
  const deps = makeDeps({ store, config: doc, routeName: 'orders', listeners: [], shared, now: c.now })
  const instances: PolicyInstance[] = []
  for (const [index, step] of steps.entries()) {
    if ('rateLimit' in step) instances.push(await build(rateLimit, step.rateLimit, { ...deps, step: { index } }))
  }
  return {
    store,
    instances,
    deps,
    clock: c,
    async request (who = identity(), extra = {}) {
      const ctx = makeContext({ identity: who, ...extra })
      const outcomes: Outcome[] = []
      for (const instance of instances) {
        const outcome = await instance.evaluate(ctx)
        outcomes.push(outcome)
        if (isRejection(outcome)) break
      }
      return { outcomes, result: outcomes.find((o) => isRejection(o) || (o as Continue).responseHeaders !== undefined) ?? outcomes[0]! }
    },
  }
}

const auth: Step = { apiKey: {} }
const limit = (config: Record<string, unknown>): Step => ({ rateLimit: { ...config } })

function headersOf (outcome: Outcome): Record<string, string> {
  return isRejection(outcome) ? { ...outcome.headers } : { ...(outcome as Continue).responseHeaders }
}

function checkIssues (steps: Step[], index: number, doc: Record<string, unknown> = {}, isPublic = false): ConfigIssue[] {
  const route = { name: 'orders', upstream: 'demo', policies: steps, ...(isPublic ? { public: true } : {}) }
  const config = (steps[index] as { rateLimit: Record<string, unknown> }).rateLimit
  const schemaIssues = validate(rateLimit.schema, config, [])
  if (schemaIssues.length > 0) return schemaIssues
  return rateLimit.check!(config as never, { config: { rateLimitTiers: {}, ...doc, routes: [route] }, route: { name: 'orders', upstream: 'demo', listeners: [], maxBodyBytes: 1 }, step: { index }, policies })
}

test('GCRA: a 3/min limit lets 3 requests through, then 429 with Retry-After and both RateLimit headers', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '3/min' })])
  for (let i = 0; i < 3; i++) {
    const { result } = await s.request()
    t.false(isRejection(result))
    t.deepEqual(headersOf(result), {
      'RateLimit-Policy': '"orders-client";q=3;w=60',
      RateLimit: `"orders-client";r=${2 - i};t=${20 * (i + 1)}`,
    })
  }
  const { result } = await s.request()
  t.true(isRejection(result))
  const rejection = result as Rejection
  t.is(rejection.status, 429)
  t.is(rejection.code, 'rate_limited')
  t.deepEqual(rejection.headers, {
    'RateLimit-Policy': '"orders-client";q=3;w=60',
    RateLimit: '"orders-client";r=0;t=60',
    'Retry-After': '20',
  })
  s.clock.advance(20_000)
  t.false(isRejection((await s.request()).result), 'one request passes again after Retry-After')
})

test('a refused request costs nothing: waiting Retry-After is always enough', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '2/sec' })])
  await s.request()
  await s.request()
  for (let i = 0; i < 5; i++) t.true(isRejection((await s.request()).result))
  s.clock.advance(500)
  t.false(isRejection((await s.request()).result))
})

test('burst lets more requests through at once while the sustained rate stays the limit', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '60/min', burst: 5 })])
  for (let i = 0; i < 5; i++) t.false(isRejection((await s.request()).result), `request ${i + 1}`)
  const refused = (await s.request()).result as Rejection
  t.is(refused.status, 429)
  t.is(refused.headers['Retry-After'], '1')
  t.is(refused.headers.RateLimit, '"orders-client";r=0;t=5')
  s.clock.advance(1000)
  t.false(isRejection((await s.request()).result))
  t.true(isRejection((await s.request()).result))
})

test('a burst smaller than the count makes the limit stricter at once', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '10/min', burst: 1 })])
  t.false(isRejection((await s.request()).result))
  const refused = (await s.request()).result as Rejection
  t.is(refused.headers['Retry-After'], '6')
})

test('consecutive rateLimit steps of a route make one store call per request, with one header item per limit', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '5/min' }), limit({ by: 'ip', limit: '2/sec' }), { scopes: ['a'] }])
  const { outcomes } = await s.request()
  t.is(s.store.calls.length, 1)
  t.deepEqual(s.store.calls[0]!.map((c) => c.key), ['rl:{orders}:client:web', 'rl:{orders}:ip:127.0.0.1'])
  t.deepEqual(headersOf(outcomes[0]!), {
    'RateLimit-Policy': '"orders-client";q=5;w=60, "orders-ip";q=2;w=1',
    RateLimit: '"orders-client";r=4;t=12, "orders-ip";r=1;t=1',
  })
  t.deepEqual(outcomes[1], { authenticated: false }, 'the second step reuses the first one\'s answer')
  await s.request()
  t.is(s.store.calls.length, 2)
})

test('when one limit refuses, the 429 lists every limit and the others are reported as unchanged', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '5/min' }), limit({ by: 'ip', limit: '1/sec' })])
  await s.request()
  const { outcomes } = await s.request()
  t.is(outcomes.length, 1, 'the chain stops at the first step of the batch')
  const refused = outcomes[0] as Rejection
  t.is(refused.status, 429)
  t.is(refused.headers['RateLimit-Policy'], '"orders-client";q=5;w=60, "orders-ip";q=1;w=1')
  t.is(refused.headers.RateLimit, '"orders-client";r=4;t=12, "orders-ip";r=0;t=1')
  t.is(refused.headers['Retry-After'], '1')
  t.regex(refused.detail, /"orders-ip" exceeded/)
  const stored = await s.store.get('rl:{orders}:client:web')
  t.is(Number(stored), s.clock.now() + 12_000, 'the refused request did not consume the client limit')
})

test('rateLimit steps separated by another step are two batches, and check() warns about the extra round trip', async (t) => {
  const steps = [limit({ by: 'ip', limit: '100/min' }), auth, limit({ by: 'client', limit: '10/min' })]
  const s = await setup(steps)
  const { outcomes } = await s.request()
  t.is(s.store.calls.length, 2)
  t.is(headersOf(outcomes[0]!)['RateLimit-Policy'], '"orders-ip";q=100;w=60')
  t.is(headersOf(outcomes[1]!)['RateLimit-Policy'], '"orders-client";q=10;w=60')
  const issues = checkIssues(steps, 2)
  t.deepEqual(issues.map((i) => i.severity), ['warning'])
  t.regex(issues[0]!.message, /one store round trip per group/)
})

test('tier limits take the rate from rateLimitTiers by the identity\'s tier', async (t) => {
  const s = await setup([auth, limit({ by: 'client', tier: true })], { doc: { rateLimitTiers: { free: '2/min', gold: '5/min' } } })
  const free = identity({ client: 'cheap', tier: 'free' })
  const gold = identity({ client: 'rich', tier: 'gold' })
  t.is(headersOf((await s.request(free)).result)['RateLimit-Policy'], '"orders-client";q=2;w=60')
  t.false(isRejection((await s.request(free)).result))
  t.true(isRejection((await s.request(free)).result))
  for (let i = 0; i < 5; i++) t.false(isRejection((await s.request(gold)).result))
  const refused = (await s.request(gold)).result as Rejection
  t.is(refused.headers['RateLimit-Policy'], '"orders-client";q=5;w=60')
  t.is(refused.headers['Retry-After'], '12')
})

test('a caller without a known tier gets the limit given beside tier: true, else the default tier, else 403', async (t) => {
  const withLimit = await setup([auth, limit({ by: 'client', tier: true, limit: '1/min' })], { doc: { rateLimitTiers: { gold: '5/min', default: '3/min' } } })
  t.is(headersOf((await withLimit.request(identity({ client: 'x' }))).result)['RateLimit-Policy'], '"orders-client";q=1;w=60')
  t.is(headersOf((await withLimit.request(identity({ client: 'y', tier: 'platinum' }))).result)['RateLimit-Policy'], '"orders-client";q=1;w=60')

  const withDefault = await setup([auth, limit({ by: 'client', tier: true })], { doc: { rateLimitTiers: { gold: '5/min', default: '3/min' } } })
  t.is(headersOf((await withDefault.request(identity({ client: 'x' }))).result)['RateLimit-Policy'], '"orders-client";q=3;w=60')

  const strict = await setup([auth, limit({ by: 'client', tier: true })], { doc: { rateLimitTiers: { gold: '5/min' } } })
  const refused = (await strict.request(identity({ client: 'x', tier: 'bronze' }))).result as Rejection
  t.is(refused.status, 403)
  t.is(refused.code, 'forbidden')
  t.is(strict.store.calls.length, 0)
  t.false(isRejection((await strict.request(identity({ client: 'x', tier: 'gold' }))).result))
})

test('keys are hash-tagged by route and readable when plain, hashed when long or odd', async (t) => {
  const ctx = (who: Partial<Identity>, extra: { remoteAddress?: string, headers?: Array<[string, string]> } = {}) => makeContext({ identity: who, ...extra })
  t.is(keyValue(parseBy('client')!, ctx(identity({ client: 'web-1' }))), 'web-1')
  t.is(keyValue(parseBy('subject')!, ctx(identity({ subject: 'user@example.com' }))), '#' + (await sha256hex('user@example.com')).slice(0, 32))
  t.is(keyValue(parseBy('ip')!, ctx({}, { remoteAddress: '2001:db8::1' })), '2001:db8::/64', 'an IPv6 address counts as its /64')
  t.is(keyValue(parseBy('ip')!, ctx({}, { remoteAddress: '::ffff:192.0.2.9' })), '192.0.2.9')
  t.is(keyValue(parseBy('route')!, ctx({})), '-')
  t.is(keyValue(parseBy('header:X-Tenant')!, ctx({}, { headers: [['x-tenant', 'acme']] })), 'acme')
  t.is(keyValue(parseBy('header:X-Tenant')!, ctx({}, { remoteAddress: '192.0.2.7' })), '@ip:192.0.2.7', 'a missing header counts against the address')
  t.is(keyValue(parseBy('claim:org')!, ctx(identity({ claims: { org: 42 } }))), '42')
  t.is(keyValue(parseBy('claim:org')!, ctx(identity({ claims: {} }), { remoteAddress: '192.0.2.8' })), '@ip:192.0.2.8')
  t.is(keyValue(parseBy('claim:org')!, ctx(identity({ claims: {} }), { remoteAddress: '2001:db8:1:2::8' })), '@ip:2001:db8:1:2::/64')
  const long = 'x'.repeat(200)
  t.regex(keyValue(parseBy('header:x-tenant')!, ctx({}, { headers: [['x-tenant', long]] })), /^#[0-9a-f]{32}$/)
  t.regex(keyValue(parseBy('header:x-tenant')!, ctx({}, { headers: [['x-tenant', 'a}b{c']] })), /^#[0-9a-f]{32}$/, 'braces never reach a key')
})

test('header and claim limits keep separate counters per value, and name the limit after by', async (t) => {
  const s = await setup([auth, limit({ by: 'header:X-Tenant', limit: '1/min' }), limit({ by: 'claim:org', limit: '5/min' })])
  const acme = await s.request(identity({ claims: { org: 'o1' } }), { headers: [['x-tenant', 'acme']] })
  t.is(headersOf(acme.result)['RateLimit-Policy'], '"orders-header:x-tenant";q=1;w=60, "orders-claim:org";q=5;w=60')
  t.deepEqual(s.store.calls[0]!.map((c) => c.key), ['rl:{orders}:header:x-tenant:acme', 'rl:{orders}:claim:org:o1'])
  t.false(isRejection((await s.request(identity({ claims: { org: 'o1' } }), { headers: [['x-tenant', 'beta']] })).result))
  t.true(isRejection((await s.request(identity({ claims: { org: 'o1' } }), { headers: [['x-tenant', 'acme']] })).result))
})

test('by route is one counter for every caller', async (t) => {
  const s = await setup([limit({ by: 'route', limit: '2/min' })], { route: { public: true } })
  t.false(isRejection((await s.request({}, { remoteAddress: '192.0.2.1' })).result))
  t.false(isRejection((await s.request({}, { remoteAddress: '192.0.2.2' })).result))
  t.true(isRejection((await s.request({}, { remoteAddress: '192.0.2.3' })).result))
})

test('by ip counts each client address on its own', async (t) => {
  const s = await setup([limit({ by: 'ip', limit: '1/min' })], { route: { public: true } })
  t.false(isRejection((await s.request({}, { remoteAddress: '192.0.2.1' })).result))
  t.true(isRejection((await s.request({}, { remoteAddress: '192.0.2.1' })).result))
  t.false(isRejection((await s.request({}, { remoteAddress: '192.0.2.2' })).result))
})

test('by ip counts an IPv6 client per /64: rotating addresses inside it buys no fresh counter; another /64 has its own', async (t) => {
  const s = await setup([limit({ by: 'ip', limit: '3/min' })], { route: { public: true } })
  const from = async (remoteAddress: string) => isRejection((await s.request({}, { remoteAddress })).result) ? 429 : 200
  const rotating: number[] = []
  for (let i = 1; i <= 6; i++) rotating.push(await from(`2001:db8:1:2::${i.toString(16)}`))
  t.deepEqual(rotating, [200, 200, 200, 429, 429, 429])
  t.is(await from('2001:db8:1:2:ffff:ffff:ffff:ffff'), 429, 'the last address of the /64 too')
  t.deepEqual(s.store.calls.map((calls) => calls[0]!.key).slice(0, 2), ['rl:{orders}:ip:2001:db8:1:2::/64', 'rl:{orders}:ip:2001:db8:1:2::/64'])
  t.is(await from('2001:db8:1:3::1'), 200, 'the next /64 is another client')
  // IPv4 control: one counter per address, an IPv4-mapped address counts as the IPv4 one.
  t.deepEqual([await from('192.0.2.1'), await from('::ffff:192.0.2.1'), await from('192.0.2.1'), await from('192.0.2.1'), await from('192.0.2.2')], [200, 200, 200, 429, 200])
})

async function deadRedis (): Promise<RedisStore> {
  const port = await freePort()
  return new RedisStore(`redis://127.0.0.1:${port}`, { prefix: 't:', timeoutMs: 200 })
}

test('onError deny: a store failure propagates as StoreUnavailableError (the core answers 503)', async (t) => {
  const store = await deadRedis()
  try {
    const deps = makeDeps({ store, routeName: 'orders', listeners: [], now: Date.now, config: { rateLimitTiers: {}, store: { onError: 'deny' }, routes: [{ name: 'orders', policies: [auth, limit({ by: 'client', limit: '2/min' })] }] } })
    const policy = await build(rateLimit, { by: 'client', limit: '2/min' }, { ...deps, step: { index: 1 } })
    const started = Date.now()
    await t.throwsAsync(async () => await policy.evaluate(makeContext({ identity: identity() })), { instanceOf: StoreUnavailableError })
    t.true(Date.now() - started < 1500, 'bounded by the store timeout')
  } finally {
    await store.close()
  }
})

test('onError allow: while the store is down, per-instance counters still enforce the limit', async (t) => {
  const store = await deadRedis()
  const logs = quietLogger()
  try {
    const step = limit({ by: 'client', limit: '2/min' })
    const deps = makeDeps({ store, log: logs.log, routeName: 'orders', listeners: [], now: Date.now, config: { rateLimitTiers: {}, store: { onError: 'allow' }, routes: [{ name: 'orders', policies: [auth, step] }] } })
    const policy = await build(rateLimit, step.rateLimit, { ...deps, step: { index: 1 } })
    const results = []
    for (let i = 0; i < 3; i++) results.push(await policy.evaluate(makeContext({ identity: identity() })))
    t.deepEqual(results.map((r) => isRejection(r) ? r.status : 200), [200, 200, 429])
    t.is((results[2] as Rejection).headers['RateLimit-Policy'], '"orders-client";q=2;w=60')
    t.regex(logs.lines(), /fall back to per-instance counters/)
    t.is(logs.lines().match(/fall back to per-instance/g)!.length, 1, 'logged once per outage')
    await policy.close?.()
  } finally {
    await store.close()
  }
})

test('check(): a limit or tier: true is required, and tier: true needs rateLimitTiers', (t) => {
  const none = checkIssues([auth, limit({ by: 'client' })], 1)
  t.is(none.length, 1)
  t.regex(none[0]!.message, /needs `limit: N\/unit` or `tier: true`/)
  const tierOff = checkIssues([auth, limit({ by: 'client', tier: false })], 1)
  t.is(tierOff[0]!.severity, 'error')
  const noTiers = checkIssues([auth, limit({ tier: true })], 1)
  t.deepEqual(noTiers.map((i) => i.path), [['tier']])
  t.regex(noTiers[0]!.message, /rateLimitTiers/)
  t.deepEqual(checkIssues([auth, limit({ tier: true })], 1, { rateLimitTiers: { default: '10/min' } }), [])
  t.deepEqual(checkIssues([auth, limit({ tier: true, limit: '1/min' })], 1, { rateLimitTiers: { gold: '10/min' } }), [])
  const strict = checkIssues([auth, limit({ tier: true })], 1, { rateLimitTiers: { gold: '10/min' } })
  t.deepEqual(strict.map((i) => i.severity), ['warning'])
})

test('check(): unknown by values are errors with the list of valid ones', (t) => {
  for (const by of ['user', 'header:', 'header:X Tenant', 'claim:', 'cookie:x', 'IP']) {
    const issues = checkIssues([auth, limit({ by, limit: '1/min' })], 1)
    t.deepEqual(issues.map((i) => i.path), [['by']], by)
    t.regex(issues[0]!.fix ?? '', /client, subject, ip, route, header:NAME or claim:NAME/)
  }
  t.deepEqual(checkIssues([auth, limit({ by: 'header:X-Tenant', limit: '1/min' })], 1), [])
})

test('check(): by client, subject or claim is an error on a public route and before authentication', (t) => {
  for (const by of ['client', 'subject', 'claim:org']) {
    const onPublic = checkIssues([limit({ by, limit: '1/min' })], 0, {}, true)
    t.deepEqual(onPublic.map((i) => i.path), [['by']], by)
    t.regex(onPublic[0]!.message, /public/)
    const early = checkIssues([limit({ by, limit: '1/min' }), auth], 0)
    t.deepEqual(early.map((i) => i.path), [['by']], by)
    t.regex(early[0]!.message, /before any authentication/)
    t.deepEqual(checkIssues([{ anyOf: [auth, { jwt: {} }] }, limit({ by, limit: '1/min' })], 1), [])
  }
  for (const by of ['ip', 'route', 'header:X-Tenant']) {
    t.deepEqual(checkIssues([limit({ by, limit: '1/min' })], 0, {}, true), [], by)
  }
})

test('check(): two limits of a route with the same name are an error until one gets its own name', (t) => {
  const steps = [auth, limit({ by: 'client', limit: '10/sec' }), limit({ by: 'client', limit: '1000/day' })]
  t.deepEqual(checkIssues(steps, 1), [])
  const issues = checkIssues(steps, 2)
  t.deepEqual(issues.map((i) => i.path), [['name']])
  const named = [auth, limit({ by: 'client', limit: '10/sec' }), limit({ by: 'client', limit: '1000/day', name: 'daily' })]
  t.deepEqual(checkIssues(named, 2), [])
})

test('a named limit uses its name in headers and keys', async (t) => {
  const s = await setup([auth, limit({ by: 'client', limit: '10/sec' }), limit({ by: 'client', limit: '1000/day', name: 'daily' })])
  const { result } = await s.request()
  t.is(headersOf(result)['RateLimit-Policy'], '"orders-client";q=10;w=1, "orders-daily";q=1000;w=86400')
  t.deepEqual(s.store.calls[0]!.map((c) => c.key), ['rl:{orders}:client:web', 'rl:{orders}:daily:web'])
})

test('the schema defaults by to client and refuses unknown fields, bad rates and a zero burst', (t) => {
  const config: Record<string, unknown> = { limit: '10/min' }
  t.deepEqual(validate(rateLimit.schema, config, []), [])
  t.is(config.by, 'client')
  for (const bad of [{ limit: '10 per minute' }, { limit: '10/min', burst: 0 }, { limit: '10/min', per: 'x' }, { limit: '10/min', name: 'has space' }]) {
    t.true(validate(rateLimit.schema, bad, []).length > 0, JSON.stringify(bad))
  }
})

async function sha256hex (text: string): Promise<string> {
  const { createHash } = await import('node:crypto')
  return createHash('sha256').update(text).digest('hex')
}
