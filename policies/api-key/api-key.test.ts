import anyTest, { type TestFn } from 'ava'
import { setImmediate as tick } from 'node:timers/promises'
import { StoreUnavailableError, isRejection, type Rejection } from '../../gateway/errors.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import { RedisStore } from '../../gateway/store/redis.js'
import type { Continue, PolicyInstance } from '../types.js'
import { command, startRedis, uniquePrefix, type RedisServer } from '../../test/helpers/redis.js'
import { until } from '../../test/helpers/until.js'
import { apiKey } from './index.js'
import { KeyDirectory } from './directory.js'
import { hashApiKey, newApiKey } from './format.js'
import { KEY_EVENTS, KEY_INDEX, lastUsedKey, recordKey } from './records.js'
import { schema, type ApiKeyConfig } from './schema.js'
import { KeyRequestError, KeyService } from './service.js'
import { FakeClock, countingStore, makeContext, makeDeps, withDefaults, type CountingStore } from '../../test/helpers/policy-harness.js'

const test = anyTest as TestFn<{ redis: RedisServer }>

test.before(async (t) => {
  t.context.redis = await startRedis()
})
test.after.always(async (t) => {
  await t.context.redis?.stop()
})

interface Setup {
  clock: FakeClock
  store: CountingStore
  service: KeyService
  policy: PolicyInstance
  deps: ReturnType<typeof makeDeps>
  /** Evaluates one request carrying `key` in X-API-Key. */
  send (key: string | undefined, extra?: { query?: string, headers?: Array<[string, string]> }): Promise<Continue | Rejection>
}

async function setup (options: { config?: Partial<ApiKeyConfig>, staticKeys?: unknown[], store?: CountingStore } = {}): Promise<Setup> {
  const clock = new FakeClock()
  const store = options.store ?? countingStore(new MemoryStore())
  const doc = { apiKeys: options.staticKeys ?? [] }
  const deps = makeDeps({ clock, store, config: doc })
  const policy = await apiKey.create(withDefaults<ApiKeyConfig>(schema, options.config ?? {}), deps)
  const service = new KeyService({ store, staticKeys: doc.apiKeys as never, now: clock.now })
  const send = async (key: string | undefined, extra: { query?: string, headers?: Array<[string, string]> } = {}) => {
    const headers: Array<[string, string]> = [...(key === undefined ? [] : [['x-api-key', key] as [string, string]]), ...(extra.headers ?? [])]
    return await policy.evaluate(makeContext({ headers, clock, ...(extra.query ? { query: extra.query } : {}) }))
  }
  return { clock, store, service, policy, deps, send }
}

function assertRejected (t: import('ava').ExecutionContext, outcome: Continue | Rejection, status: number, code: string, detail?: string): void {
  t.true(isRejection(outcome), `expected a rejection, got ${JSON.stringify(outcome)}`)
  const rejection = outcome as Rejection
  t.is<number, number>(rejection.status, status)
  t.is<string, string>(rejection.code, code)
  if (detail !== undefined) t.is(rejection.detail, detail)
}

function assertAccepted (t: import('ava').ExecutionContext, outcome: Continue | Rejection, client: string): void {
  t.false(isRejection(outcome), isRejection(outcome) ? `rejected: ${outcome.code} ${outcome.detail}` : '')
  t.is((outcome as Continue).identity?.client, client)
  t.is((outcome as Continue).identity?.subject, client)
}

test('a static key from apiKeys is accepted with its identity; the same id with another secret is 401 not accepted', async (t) => {
  const { id, key } = newApiKey()
  const other = `agk_${id}_${newApiKey().key.slice(-43)}`
  const { send, store } = await setup({ staticKeys: [{ id, hash: hashApiKey(key), client: 'static-client', scopes: ['read'], tier: 'gold' }] })
  const ok = await send(key)
  assertAccepted(t, ok, 'static-client')
  t.deepEqual((ok as Continue).identity?.scopes, ['read'])
  t.is((ok as Continue).identity?.tier, 'gold')
  assertRejected(t, await send(other), 401, 'invalid_credentials', 'API key not accepted')
  t.is(store.count('getHash'), 0, 'static keys need no store read')
})

test('a key created in the store is accepted with its client, scopes and tier; an unknown well-formed key is 401', async (t) => {
  const { send, service } = await setup()
  const created = await service.create({ client: 'orders-app', scopes: ['orders:read', 'orders:write'], tier: 'gold' })
  t.regex(created.key, /^agk_[a-z0-9]{16}_[0-9A-Za-z]{43}$/)
  t.true(created.key.startsWith(`agk_${created.id}_`))
  const ok = await send(created.key)
  assertAccepted(t, ok, 'orders-app')
  t.deepEqual((ok as Continue).identity?.scopes, ['orders:read', 'orders:write'])
  t.is((ok as Continue).identity?.tier, 'gold')
  assertRejected(t, await send(newApiKey().key), 401, 'invalid_credentials', 'API key not accepted')
})

test('a key is stored as its SHA-256 hash, never as the key itself', async (t) => {
  const inner = new MemoryStore()
  const { service } = await setup({ store: countingStore(inner) })
  const created = await service.create({ client: 'c1' })
  const fields = await inner.getHash(recordKey(created.id))
  t.is(fields?.hash, hashApiKey(created.key))
  t.false(JSON.stringify(fields).includes(created.key.slice(-43)))
  t.deepEqual(await inner.members(KEY_INDEX), [created.id])
})

test('an expired key is 401 "API key expired"; before its expiry the same key is accepted', async (t) => {
  const { send, service, clock } = await setup({ config: { cacheTtl: '2h' } })
  const created = await service.create({ client: 'short-lived', expiresIn: '1h' })
  assertAccepted(t, await send(created.key), 'short-lived')
  clock.advance(3_600_000 - 1)
  assertAccepted(t, await send(created.key), 'short-lived')
  clock.advance(1)
  // Also while cached: the expiry is checked on every hit.
  assertRejected(t, await send(created.key), 401, 'invalid_credentials', 'API key expired')
})

test('a revoked key is 401 "API key revoked" at once, even though it was cached; another key of the client still works', async (t) => {
  const { send, service } = await setup({ config: { cacheTtl: '1h' } })
  const doomed = await service.create({ client: 'c1' })
  const kept = await service.create({ client: 'c1' })
  assertAccepted(t, await send(doomed.key), 'c1')
  t.deepEqual(await service.revoke(doomed.id), { id: doomed.id, revoked: true })
  await tick() // the memory store delivers pub/sub messages on the next turn
  assertRejected(t, await send(doomed.key), 401, 'invalid_credentials', 'API key revoked')
  assertAccepted(t, await send(kept.key), 'c1')
})

test('rotation issues a new key with a new id; the old key stays valid until the grace ends, then is expired', async (t) => {
  const { send, service, clock } = await setup()
  const old = await service.create({ client: 'rotating', scopes: ['a'], tier: 'free', expiresIn: '90d' })
  const rotated = await service.rotate(old.id, '1h')
  t.not(rotated.id, old.id)
  t.is(rotated.replaces, old.id)
  t.like(rotated, { client: 'rotating', scopes: ['a'], tier: 'free' })
  t.is(Date.parse(rotated.expiresAt!), clock.now() + 90 * 86_400_000, 'the new key keeps the old lifetime')
  await tick()
  assertAccepted(t, await send(old.key), 'rotating')
  assertAccepted(t, await send(rotated.key), 'rotating')
  clock.advance(3_600_000)
  assertRejected(t, await send(old.key), 401, 'invalid_credentials', 'API key expired')
  assertAccepted(t, await send(rotated.key), 'rotating')
  const listed = await service.list()
  t.is(listed.find((k) => k.id === old.id)?.expiresAt, new Date(clock.now()).toISOString())
})

test('rotation never extends a key that expires before the grace would end', async (t) => {
  const { service, clock } = await setup()
  const old = await service.create({ client: 'c', expiresIn: '10m' })
  await service.rotate(old.id, '24h')
  const listed = await service.list()
  t.is(listed.find((k) => k.id === old.id)?.expiresAt, new Date(clock.now() + 600_000).toISOString())
})

test('a key in the query string is 400 bad_request by name or by agk_ value; the same key in the header is accepted', async (t) => {
  const { send, service } = await setup()
  const created = await service.create({ client: 'c1' })
  for (const query of [`api_key=${created.key}`, `apikey=${created.key}`, `X-API-Key=${created.key}`, `x-api-key=x`, `token=${created.key}`]) {
    const outcome = await send(undefined, { query })
    assertRejected(t, outcome, 400, 'bad_request')
    t.regex((outcome as Rejection).detail, /belong in the X-API-Key header/)
    t.false((outcome as Rejection).detail.includes(created.key))
  }
  assertAccepted(t, await send(created.key, { query: 'page=2' }), 'c1')
})

test('malformed keys are 401 invalid_credentials without any store access', async (t) => {
  const { send, store } = await setup()
  const good = newApiKey().key
  const bad = [
    'nope', 'agk_', 'agk__', good.slice(0, -1), `${good}x`, good.replace('agk_', 'AGK_'), good.replace('agk_', 'agk-'),
    `agk_short_${good.slice(-43)}`, `agk_${'a'.repeat(33)}_${good.slice(-43)}`, `agk_ABCDEFGH_${good.slice(-43)}`,
    good.slice(0, -1) + '!', good.replace(/_([^_]+)$/, '_$1'.padEnd(10, '=')), `${good} `, 'Bearer ' + good, '\u00e9'.repeat(60),
  ]
  for (const key of bad) {
    assertRejected(t, await send(key), 401, 'invalid_credentials', 'API key not accepted')
  }
  t.is(store.count(), 0, 'no store call at all')
})

test('no key is 401 missing_credentials with the ApiKey challenge; two key headers are 400', async (t) => {
  const { send, service } = await setup()
  const created = await service.create({ client: 'c1' })
  const missing = await send(undefined)
  assertRejected(t, missing, 401, 'missing_credentials')
  t.deepEqual((missing as Rejection).challenge, { scheme: 'ApiKey', params: { realm: 'authgate', header: 'X-API-Key' } })
  assertRejected(t, await send(created.key, { headers: [['x-api-key', created.key]] }), 400, 'bad_request')
  assertAccepted(t, await send(created.key), 'c1')
})

test('the negative cache absorbs 1,000 requests with the same bad key in a few store reads; a good key still reads once', async (t) => {
  const { send, service, store, clock } = await setup()
  const bad = newApiKey().key
  for (let i = 0; i < 500; i++) assertRejected(t, await send(bad), 401, 'invalid_credentials')
  const concurrent = await Promise.all(Array.from({ length: 500 }, async () => await send(bad)))
  t.true(concurrent.every((o) => isRejection(o) && o.code === 'invalid_credentials'))
  t.is(store.count('getHash'), 1)
  clock.advance(2000) // negativeCacheTtl default 2s
  assertRejected(t, await send(bad), 401, 'invalid_credentials')
  t.is(store.count('getHash'), 2)
  const created = await service.create({ client: 'c1' })
  const before = store.count('getHash')
  for (let i = 0; i < 100; i++) assertAccepted(t, await send(created.key), 'c1')
  t.is(store.count('getHash') - before, 1, 'verified keys are cached too')
})

test('the caches are bounded: the oldest entry goes when the bound is reached', async (t) => {
  const clock = new FakeClock()
  const store = countingStore(new MemoryStore())
  const deps = makeDeps({ clock, store })
  const directory = new KeyDirectory([], store, { now: clock.now, log: deps.log, maxEntries: 10 })
  const ttls = { ttlMs: 60_000, negativeTtlMs: 60_000 }
  const keys = Array.from({ length: 11 }, () => newApiKey().key)
  for (const key of keys) await directory.verify(key, ttls)
  t.is(store.count('getHash'), 11)
  await directory.verify(keys[10]!, ttls)
  t.is(store.count('getHash'), 11, 'the newest is still cached')
  await directory.verify(keys[0]!, ttls)
  t.is(store.count('getHash'), 12, 'the oldest was evicted')
  await directory.close()
})

test('lastUsedAt is written in batches: none per request, one write per key at flush, and on close', async (t) => {
  const { send, service, store, clock, policy } = await setup()
  const a = await service.create({ client: 'a' })
  const b = await service.create({ client: 'b' })
  const setsBefore = store.count('set', 'setHash')
  for (let i = 0; i < 50; i++) {
    await send(a.key)
    await send(b.key)
    clock.advance(10)
  }
  t.is(store.count('set', 'setHash'), setsBefore, 'no write on the request path')
  t.deepEqual((await service.list()).map((k) => k.lastUsedAt), [null, null])
  await policy.close?.()
  t.is(store.count('set', 'setHash') - setsBefore, 2)
  const listed = await service.list()
  t.is(listed.find((k) => k.id === a.id)?.lastUsedAt, new Date(clock.now() - 10).toISOString())
  t.is(listed.find((k) => k.id === b.id)?.lastUsedAt, new Date(clock.now() - 10).toISOString())
})

test('a store failure on lookup propagates as StoreUnavailableError; a key verified before keeps working from the cache', async (t) => {
  const { send, service, store, clock } = await setup()
  const known = await service.create({ client: 'known' })
  const stranger = await service.create({ client: 'stranger' })
  assertAccepted(t, await send(known.key), 'known')
  clock.advance(10_000) // past cacheTtl: a store read is due
  store.failing = true
  assertAccepted(t, await send(known.key), 'known')
  await t.throwsAsync(send(stranger.key), { instanceOf: StoreUnavailableError })
  store.failing = false
  assertAccepted(t, await send(stranger.key), 'stranger')
})

test('list shows metadata but never a key or a hash; static keys are listed with source config', async (t) => {
  const fixed = newApiKey()
  const { service } = await setup({ staticKeys: [{ id: fixed.id, hash: hashApiKey(fixed.key), client: 'yaml-client', scopes: [] }] })
  const created = await service.create({ client: 'c1', scopes: 'a,b', tier: 'gold', expiresIn: '90d' })
  const listed = await service.list()
  t.deepEqual(Object.keys(listed[0]!).sort(), ['client', 'createdAt', 'expiresAt', 'id', 'lastUsedAt', 'revoked', 'scopes', 'tier'])
  t.like(listed[0], { id: created.id, client: 'c1', scopes: ['a', 'b'], tier: 'gold', revoked: false, lastUsedAt: null, expiresAt: created.expiresAt })
  t.like(listed[1], { id: fixed.id, client: 'yaml-client', source: 'config', revoked: false })
  const text = JSON.stringify(listed)
  t.false(text.includes(created.key.slice(-43)))
  t.false(text.includes(hashApiKey(created.key).slice(7)))
  t.false(text.includes(hashApiKey(fixed.key).slice(7)))
})

test('the key service refuses bad input, unknown ids and static keys with a KeyRequestError', async (t) => {
  const fixed = newApiKey()
  const { service } = await setup({ staticKeys: [{ id: fixed.id, hash: hashApiKey(fixed.key), client: 'yaml', scopes: [] }] })
  for (const input of [{ client: '' }, { client: 42 }, { client: 'a\nb' }, { client: 'c', scopes: ['has space'] }, { client: 'c', scopes: [1] },
    { client: 'c', tier: 'no spaces please' }, { client: 'c', expiresIn: 'soon' }, { client: 'c', expiresIn: '0s' }, { client: 'c', expiresIn: -5 }]) {
    const error = await t.throwsAsync(service.create(input), { instanceOf: KeyRequestError })
    t.is(error?.problem, 'invalid', JSON.stringify(input))
  }
  t.is((await t.throwsAsync(service.revoke('nosuchkey1'), { instanceOf: KeyRequestError }))?.problem, 'not_found')
  t.is((await t.throwsAsync(service.revoke('../etc'), { instanceOf: KeyRequestError }))?.problem, 'not_found')
  t.is((await t.throwsAsync(service.rotate(fixed.id), { instanceOf: KeyRequestError }))?.problem, 'static')
  const created = await service.create({ client: 'c' })
  await service.revoke(created.id)
  t.deepEqual(await service.revoke(created.id), { id: created.id, revoked: true }, 'revoke is idempotent')
  t.is((await t.throwsAsync(service.rotate(created.id), { instanceOf: KeyRequestError }))?.problem, 'revoked')
})

test('on Redis, a revocation published by one instance drops the cached key of another at once', async (t) => {
  const prefix = uniquePrefix('apikey-unit')
  const storeA = new RedisStore(t.context.redis.url, { prefix, timeoutMs: 3000 })
  const storeB = countingStore(new RedisStore(t.context.redis.url, { prefix, timeoutMs: 3000 }))
  t.teardown(async () => { await storeA.close(); await storeB.close() })
  const { send } = await setup({ store: storeB, config: { cacheTtl: '1h' } })
  const service = new KeyService({ store: storeA })
  const created = await service.create({ client: 'shared' })
  assertAccepted(t, await send(created.key), 'shared')
  // The subscription is made asynchronously: PUBLISH answers how many subscribers got it ('{}' names no key, so it is ignored).
  await until(async () => Number(await command(t.context.redis.port, ['PUBLISH', `${prefix}${KEY_EVENTS}`, '{}'])) > 0,
    { timeoutMs: 5000, intervalMs: 10, message: 'the instance to subscribe to key events' })
  const reads = storeB.count('getHash')
  assertAccepted(t, await send(created.key), 'shared')
  t.is(storeB.count('getHash'), reads, 'served from the cache')
  await service.revoke(created.id)
  const started = Date.now()
  const outcome = await until(async () => { const o = await send(created.key); return isRejection(o) ? o : undefined },
    { timeoutMs: 1000, intervalMs: 10, message: 'the revoked key to be refused by the other instance' })
  assertRejected(t, outcome, 401, 'invalid_credentials', 'API key revoked')
  t.true(Date.now() - started < 1000)
  t.truthy(await storeA.get(lastUsedKey(created.id)) === null, 'lastUsedAt not written yet (batched)')
})
