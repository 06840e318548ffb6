// Tests that count password hashes (the module-wide passwordChecks) are serial: ava runs them before the concurrent ones.
import anyTest, { type TestFn } from 'ava'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import bcrypt from 'bcryptjs'
import { ConfigError, StoreUnavailableError, isRejection, type Rejection } from '../../gateway/errors.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import { RedisStore } from '../../gateway/store/redis.js'
import type { Continue, ListenerInfo, PolicyInstance } from '../types.js'
import { startRedis, uniquePrefix, type RedisServer } from '../../test/helpers/redis.js'
import { FakeClock, countingStore, makeContext, makeDeps, withDefaults, type CountingStore } from '../api-key/fixtures/harness.js'
import { basic, usersSection } from './index.js'
import { ipKey, userKey } from './failures.js'
import { PasswordPool, PoolFullError, type Place } from './password-pool.js'
import { parseBasic } from './credentials.js'
import { passwdCommand, type PasswordInput } from './cli.js'
import { schema, type BasicConfig } from './schema.js'
import { bcryptHash, checkUsers, loadUsers, parsePasswordHash, passwordChecks, scryptHash, verifyPassword } from './users.js'

const test = anyTest as TestFn<{ dir: string, redis: RedisServer, htpasswd: string }>

// Made at run time: bcrypt cost 4 keeps the tests fast (the cost is the file's, not the policy's).
const ALICE_PASSWORD = `alice-${Math.random().toString(36).slice(2)}`
const BOB_PASSWORD = `bob-${Math.random().toString(36).slice(2)}`

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'authgate-basic-'))
  t.context.htpasswd = `# test users\nalice:${await bcryptHash(ALICE_PASSWORD, 4)}\n\nbob:${await bcryptHash(BOB_PASSWORD, 4)}\n`
  await writeFile(join(t.context.dir, 'users.htpasswd'), t.context.htpasswd)
  t.context.redis = await startRedis()
})
// Setups with the same maxConcurrentChecks share the process's password pool (worker threads): released at the end.
const policies: PolicyInstance[] = []

test.after.always(async (t) => {
  await Promise.all(policies.map(async (policy) => await policy.close?.()))
  await rm(t.context.dir, { recursive: true, force: true })
  await t.context.redis?.stop()
})

function basicHeader (username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`
}

interface Setup {
  clock: FakeClock
  store: CountingStore
  policy: PolicyInstance
  deps: ReturnType<typeof makeDeps>
  send (authorization: string | string[] | undefined, from?: string): Promise<Continue | Rejection>
}

let setups = 1

async function setup (dir: string, options: { config?: Partial<BasicConfig>, store?: CountingStore, clock?: FakeClock, users?: unknown, onError?: 'deny' | 'allow' } = {}): Promise<Setup> {
  const clock = options.clock ?? new FakeClock()
  const store = options.store ?? countingStore(new MemoryStore({ now: clock.now }))
  const deps = makeDeps({ clock, store, baseDir: dir, config: { users: options.users ?? { htpasswd: 'users.htpasswd' }, store: { onError: options.onError ?? 'deny' } } })
  const policy = await basic.create(withDefaults<BasicConfig>(schema, { allowInsecure: true, ...options.config }), deps)
  policies.push(policy)
  // Each setup its own default client address: concurrent tests share the process's pool, and one address's share
  // of it is small (a quarter).
  const address = `10.0.${(setups >> 8) & 255}.${setups++ & 255}`
  const send = async (authorization: string | string[] | undefined, from = address) => {
    const values = authorization === undefined ? [] : [authorization].flat()
    return await policy.evaluate(makeContext({ clock, remoteAddress: from, headers: values.map((v) => ['authorization', v] as [string, string]) }))
  }
  return { clock, store, policy, deps, send }
}

function rejected (t: import('ava').ExecutionContext, outcome: Continue | Rejection, status: number, code: string): Rejection {
  t.true(isRejection(outcome), `expected ${status} ${code}, got ${JSON.stringify(outcome)}`)
  t.is<number, number>((outcome as Rejection).status, status)
  t.is<string, string>((outcome as Rejection).code, code)
  return outcome as Rejection
}

function accepted (t: import('ava').ExecutionContext, outcome: Continue | Rejection, username: string): void {
  t.false(isRejection(outcome), isRejection(outcome) ? `rejected: ${outcome.status} ${outcome.code} ${outcome.detail}` : '')
  t.deepEqual((outcome as Continue).identity, { subject: username, client: username })
}

test('the right password is accepted as the user; a wrong one is 401 invalid_credentials with the Basic challenge', async (t) => {
  const { send, policy } = await setup(t.context.dir)
  accepted(t, await send(basicHeader('alice', ALICE_PASSWORD)), 'alice')
  const wrong = rejected(t, await send(basicHeader('alice', 'not-it')), 401, 'invalid_credentials')
  t.deepEqual(wrong.challenge, { scheme: 'Basic', params: { realm: 'authgate', charset: 'UTF-8' } })
  t.deepEqual(policy.challenge, { scheme: 'Basic', params: { realm: 'authgate', charset: 'UTF-8' } })
  t.deepEqual(policy.credentialHeaders, ['authorization'])
})

test.serial('an unknown user is 401 with the same detail as a wrong password, after the same hashing work', async (t) => {
  const { send } = await setup(t.context.dir)
  const wrong = rejected(t, await send(basicHeader('bob', 'nope')), 401, 'invalid_credentials')
  const before = passwordChecks.count
  const unknown = rejected(t, await send(basicHeader('mallory', 'nope')), 401, 'invalid_credentials')
  t.is(passwordChecks.count - before, 1, 'a dummy hash is checked for an unknown user')
  t.is(unknown.detail, wrong.detail)
  accepted(t, await send(basicHeader('bob', BOB_PASSWORD)), 'bob')
})

test('the dummy hash of an unknown user has the cost of the costliest real hash', async (t) => {
  const users = new Map([['u', parsePasswordHash(await bcryptHash('pw', 6))!]])
  const { UserDirectory } = await import('./users.js')
  const directory = new UserDirectory(users) as unknown as { dummy: { kind: string, cost: number, text: string } }
  t.is(directory.dummy.kind, 'bcrypt')
  t.is(directory.dummy.cost, 6)
  t.is(bcrypt.getRounds(directory.dummy.text), 6)
})

test('no Authorization or another scheme is missing_credentials (so anyOf can try other methods); two headers are 400', async (t) => {
  const { send } = await setup(t.context.dir)
  rejected(t, await send(undefined), 401, 'missing_credentials')
  rejected(t, await send('Bearer abc.def.ghi'), 401, 'missing_credentials')
  rejected(t, await send('Digest username="alice"'), 401, 'missing_credentials')
  rejected(t, await send([basicHeader('alice', ALICE_PASSWORD), basicHeader('alice', ALICE_PASSWORD)]), 400, 'bad_request')
  accepted(t, await send(`bAsIc ${Buffer.from(`alice:${ALICE_PASSWORD}`).toString('base64')}`), 'alice')
})

test('malformed Basic credentials are 401 invalid_credentials, never an exception', async (t) => {
  const { send, store } = await setup(t.context.dir)
  const b64 = (bytes: Buffer | string) => Buffer.from(bytes).toString('base64')
  const bad = [
    'Basic', 'Basic ', 'Basic !!!!', 'Basic a', 'Basic ab=c', 'Basic ====', `Basic ${b64('no-colon-here')}`,
    `Basic ${b64(':empty-user')}`, `Basic ${b64(Buffer.from([0xff, 0xfe, 0x3a, 0x41]))}`, `Basic ${b64(Buffer.from([0x61, 0x3a, 0xc3]))}`,
    `Basic ${b64('alice:pass\u0000word')}`, `Basic ${b64('ali\nce:password')}`, `Basic ${b64(`alice:${'x'.repeat(5000)}`)}`,
    `Basic ${'A'.repeat(100_000)}`, `Basic ${b64('alice:pw')}${b64('more')}`, `Basic ${b64('alice:pw')} trailing`,
  ]
  for (const value of bad) {
    const outcome = rejected(t, await send(value), 401, 'invalid_credentials')
    t.is(outcome.detail, 'malformed Basic credentials')
  }
  t.is(store.count(), 0, 'malformed credentials cost no store access')
  accepted(t, await send(basicHeader('alice', ALICE_PASSWORD)), 'alice')
})

test('parseBasic reads UTF-8 user names and passwords and keeps colons in the password', (t) => {
  t.deepEqual(parseBasic(basicHeader('jürgen', 'pa:ss:wörd')), { kind: 'ok', username: 'jürgen', password: 'pa:ss:wörd' })
  t.deepEqual(parseBasic(`Basic ${Buffer.from('a:b').toString('base64').replace(/=+$/, '')}`), { kind: 'ok', username: 'a', password: 'b' })
  t.deepEqual(parseBasic('Basic  YTpi'), { kind: 'ok', username: 'a', password: 'b' })
})

test.serial('a successful check is cached: bcrypt does not run again until cacheTtl has passed; wrong passwords are never cached', async (t) => {
  const { send, clock } = await setup(t.context.dir, { config: { cacheTtl: '60s' } })
  const before = passwordChecks.count
  accepted(t, await send(basicHeader('alice', ALICE_PASSWORD)), 'alice')
  t.is(passwordChecks.count - before, 1)
  for (let i = 0; i < 20; i++) accepted(t, await send(basicHeader('alice', ALICE_PASSWORD)), 'alice')
  t.is(passwordChecks.count - before, 1, 'cache hits run no hash')
  rejected(t, await send(basicHeader('alice', 'wrong')), 401, 'invalid_credentials')
  rejected(t, await send(basicHeader('alice', 'wrong')), 401, 'invalid_credentials')
  t.is(passwordChecks.count - before, 3, 'every wrong password is checked')
  clock.advance(60_000)
  accepted(t, await send(basicHeader('alice', ALICE_PASSWORD)), 'alice')
  t.is(passwordChecks.count - before, 4, 'checked again once the entry is stale')
})

test.serial('concurrent requests with the same credentials share one hash run when the cache has none; different ones do not', async (t) => {
  const { send, clock } = await setup(t.context.dir, { config: { cacheTtl: '60s', maxFailuresPerUser: 100, maxFailuresPerIp: 100 } })
  const before = passwordChecks.count
  const outcomes = await Promise.all(Array.from({ length: 20 }, () => send(basicHeader('alice', ALICE_PASSWORD))))
  for (const outcome of outcomes) accepted(t, outcome, 'alice')
  t.is(passwordChecks.count - before, 1, 'twenty concurrent checks of one credential ran bcrypt once')
  // Wrong passwords share a run too, yet every one of them is refused.
  const wrong = await Promise.all(Array.from({ length: 5 }, () => send(basicHeader('alice', 'wrong-guess'))))
  for (const outcome of wrong) rejected(t, outcome, 401, 'invalid_credentials')
  t.is(passwordChecks.count - before, 2)
  // Expired entry: the next burst runs one check again; another user's concurrent check is its own.
  clock.advance(60_000)
  const mixed = await Promise.all([...Array.from({ length: 10 }, () => send(basicHeader('alice', ALICE_PASSWORD))), send(basicHeader('bob', BOB_PASSWORD))])
  mixed.slice(0, 10).forEach((outcome) => accepted(t, outcome, 'alice'))
  accepted(t, mixed[10]!, 'bob')
  t.is(passwordChecks.count - before, 4)
})

test.serial('after maxFailuresPerUser failures even the right password is 429 with Retry-After, without hashing; other users are fine', async (t) => {
  const { send, clock } = await setup(t.context.dir, { config: { maxFailuresPerUser: 3, failureWindow: '5m' } })
  for (let i = 0; i < 3; i++) rejected(t, await send(basicHeader('alice', `guess-${i}`), '192.0.2.1'), 401, 'invalid_credentials')
  const before = passwordChecks.count
  const locked = rejected(t, await send(basicHeader('alice', ALICE_PASSWORD), '192.0.2.2'), 429, 'rate_limited')
  t.is(locked.headers['Retry-After'], '300')
  t.is(passwordChecks.count, before, 'a locked-out user costs no bcrypt')
  accepted(t, await send(basicHeader('bob', BOB_PASSWORD), '192.0.2.1'), 'bob')
  clock.advance(120_000)
  t.is(rejected(t, await send(basicHeader('alice', ALICE_PASSWORD)), 429, 'rate_limited').headers['Retry-After'], '180')
  clock.advance(180_000)
  accepted(t, await send(basicHeader('alice', ALICE_PASSWORD)), 'alice')
})

// Issue 14: the counters were read before hashing and written after, so concurrent guesses all saw a count under
// the limit. Each store gets the same races; Redis runs the new Lua reservation.
for (const kind of ['memory', 'redis'] as const) {
  const storeFor = (t: import('ava').ExecutionContext<{ redis: RedisServer }>, clock: FakeClock): CountingStore => {
    if (kind === 'memory') return countingStore(new MemoryStore({ now: clock.now }))
    const store = countingStore(new RedisStore(t.context.redis.url, { prefix: uniquePrefix('basic-race'), timeoutMs: 3000 }))
    t.teardown(async () => await store.close())
    return store
  }

  test.serial(`${kind}: of 30 concurrent guesses for one user from one IP only maxFailuresPerUser are checked; the right password 26th is 429, and 200 once the window is over`, async (t) => {
    const clock = new FakeClock()
    const store = storeFor(t, clock)
    // 24 workers and a queue of 96, 30 places per client: only the lockout may refuse here (10 checks run).
    const { send } = await setup(t.context.dir, { clock, store, config: { maxFailuresPerUser: 10, failureWindow: '5m', maxConcurrentChecks: 24 } })
    const before = passwordChecks.count
    const outcomes = await Promise.all(Array.from({ length: 30 }, (_, i) => send(basicHeader('alice', i === 25 ? ALICE_PASSWORD : `guess-${i}`), '192.0.2.10')))
    const statuses = outcomes.map((o) => isRejection(o) ? o.status : 200)
    t.is(statuses.filter((s) => s === 200).length, 0, 'the right password does not get through past the limit')
    t.is(statuses.filter((s) => s === 401).length, 10)
    t.is(statuses.filter((s) => s === 429).length, 20)
    const late = rejected(t, outcomes[25]!, 429, 'rate_limited')
    const retry = Number(late.headers['Retry-After'])
    t.true(retry > 290 && retry <= 300, `Retry-After ${retry}`)
    t.is(passwordChecks.count - before, 10, 'refused attempts cost no hash')
    t.is(await store.get(userKey('alice')), '10')
    if (kind === 'memory') {
      clock.advance(5 * 60_000)
    } else {
      // Redis keeps server time: stand in for the window's end by removing the counters.
      await store.delete(userKey('alice'))
      await store.delete(ipKey('192.0.2.10'))
    }
    accepted(t, await send(basicHeader('alice', ALICE_PASSWORD), '192.0.2.10'), 'alice')
    t.is(await store.get(userKey('alice')), null, 'a success takes its reservation back')
  })

  test.serial(`${kind}: of 40 concurrent unknown-user guesses from one IP only maxFailuresPerIp are checked, the rest 429; the users it named are not locked out`, async (t) => {
    const clock = new FakeClock()
    const store = storeFor(t, clock)
    // 40 places per client (32 workers, a queue of 128): all 40 race for the 10 reservations, 10 checks run.
    const { send } = await setup(t.context.dir, { clock, store, config: { maxConcurrentChecks: 32, maxFailuresPerIp: 10 } })
    const before = passwordChecks.count
    const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => send(basicHeader(`ghost-${i}`, 'guess'), '198.51.100.20')))
    const statuses = outcomes.map((o) => isRejection(o) ? o.status : 200)
    t.is(statuses.filter((s) => s === 401).length, 10, 'the per-IP limit')
    t.is(statuses.filter((s) => s === 429).length, 30)
    for (const outcome of outcomes.filter((o) => isRejection(o) && o.status === 429) as Rejection[]) t.is(outcome.detail, 'too many failed attempts; try again later')
    t.is(passwordChecks.count - before, 10)
    t.is(await store.get(ipKey('198.51.100.20')), '10')
    const refused = outcomes.findIndex((o) => isRejection(o) && o.status === 429)
    t.is(await store.get(userKey(`ghost-${refused}`)), null, 'a refused attempt takes back its reservation on the user')
    rejected(t, await send(basicHeader('bob', BOB_PASSWORD), '198.51.100.20'), 429, 'rate_limited')
    accepted(t, await send(basicHeader('bob', BOB_PASSWORD), '198.51.100.21'), 'bob')
  })
}

test.serial('beyond maxConcurrentChecks and a queue of 4 per worker a check is 429 with Retry-After: 1, not counted as a failure; the right password passes after', async (t) => {
  const { send, store } = await setup(t.context.dir, { config: { maxConcurrentChecks: 1, maxFailuresPerUser: 100, maxFailuresPerIp: 100 } })
  const before = passwordChecks.count
  // Twenty clients, one guess each: the total bound refuses, not the share of each client.
  const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => send(basicHeader('bob', `guess-${i}`), `203.0.113.${i + 1}`)))
  const checked = outcomes.filter((o) => isRejection(o) && o.status === 401)
  const shed = outcomes.filter((o) => isRejection(o) && o.status === 429) as Rejection[]
  t.is(checked.length, 5, 'one running and four queued')
  t.is(shed.length, 15)
  for (const outcome of shed) {
    t.is(outcome.code, 'rate_limited')
    t.is(outcome.headers['Retry-After'], '1')
    t.is(outcome.detail, 'too many password checks in progress; try again shortly')
  }
  t.is(passwordChecks.count - before, 5)
  t.is(await store.get(userKey('bob')), '5', 'only checked attempts count as failures')
  t.is(await store.get(ipKey('203.0.113.1')), '1')
  t.is(await store.get(ipKey('203.0.113.20')), null)
  accepted(t, await send(basicHeader('bob', BOB_PASSWORD), '203.0.113.5'), 'bob')
})

// Review F6: the pool was first come, first served, so one client's burst filled it and every other client without a
// cached success got 429, even with the right password.
test.serial('one client address gets at most its share of the pool (2 of 5 here); past it that address is 429 Retry-After: 1 while another address is still checked', async (t) => {
  const { send, store } = await setup(t.context.dir, { config: { maxConcurrentChecks: 1, maxFailuresPerUser: 1000, maxFailuresPerIp: 1000 } })
  const before = passwordChecks.count
  const burst = Promise.all(Array.from({ length: 20 }, (_, i) => send(basicHeader(`nobody${i}`, 'guess'), '203.0.113.9')))
  // While the burst's checks are queued or running, another address with the right password is queued, not refused.
  const bob = await send(basicHeader('bob', BOB_PASSWORD), '198.51.100.20')
  const outcomes = await burst
  accepted(t, bob, 'bob')
  const checked = outcomes.filter((o) => isRejection(o) && o.status === 401)
  const shed = outcomes.filter((o) => isRejection(o) && o.status === 429) as Rejection[]
  t.is(checked.length, 2, 'the share of one address: a quarter of 1 worker + 4 queued, at least 2')
  t.is(shed.length, 18)
  for (const outcome of shed) {
    t.is(outcome.code, 'rate_limited')
    t.is(outcome.headers['Retry-After'], '1')
    t.is(outcome.detail, 'too many password checks in progress from this address; try again shortly')
  }
  t.is(passwordChecks.count - before, 3, 'two guesses and bob')
  t.is(await store.get(ipKey('203.0.113.9')), '2', 'refused for the share: not counted as failures')

  // One IPv6 /64 is one client for the share too.
  const v6 = await Promise.all(Array.from({ length: 10 }, (_, i) => send(basicHeader(`v6-${i}`, 'guess'), `2001:db8:1:2::${(i + 1).toString(16)}`)))
  t.is(v6.filter((o) => isRejection(o) && o.status === 401).length, 2)
  t.is(v6.filter((o) => isRejection(o) && o.status === 429).length, 8)

  // Parallel requests with the same credentials from one address share one place (and one check): a browser's
  // first page load is not refused.
  const same = await Promise.all(Array.from({ length: 8 }, () => send(basicHeader('alice', ALICE_PASSWORD), '192.0.2.77')))
  for (const outcome of same) accepted(t, outcome, 'alice')

  // The places are given back: the address is checked again once its burst is answered.
  rejected(t, await send(basicHeader('bob', 'wrong'), '203.0.113.9'), 401, 'invalid_credentials')
  accepted(t, await send(basicHeader('bob', BOB_PASSWORD), '203.0.113.9'), 'bob')
})

test('PasswordPool.admit: a client holds at most clientShare places, others still get theirs; release is idempotent', (t) => {
  const pool = new PasswordPool(1)
  t.is(pool.clientShare, 2)
  t.is(new PasswordPool(8).clientShare, 10, 'a quarter of 8 workers + 32 queued')
  t.is(new PasswordPool(2, 0).clientShare, 2, 'at least 2')
  const first = pool.admit('203.0.113.9')
  const second = pool.admit('203.0.113.9')
  t.false(first instanceof PoolFullError)
  t.false(second instanceof PoolFullError)
  const third = pool.admit('203.0.113.9')
  t.true(third instanceof PoolFullError)
  t.is((third as PoolFullError).scope, 'client')
  const other = pool.admit('198.51.100.20')
  t.false(other instanceof PoolFullError)
  ;(first as Place).release()
  ;(first as Place).release()
  t.is(pool.placesOf('203.0.113.9'), 1)
  t.false(pool.admit('203.0.113.9') instanceof PoolFullError)
  t.is(pool.placesOf('203.0.113.9'), 2)
})

test('after maxFailuresPerIp failures from one address every user from it is 429; another address is not limited', async (t) => {
  const { send } = await setup(t.context.dir, { config: { maxFailuresPerIp: 4, maxFailuresPerUser: 100 } })
  for (let i = 0; i < 4; i++) rejected(t, await send(basicHeader(`user${i}`, 'x'), '198.51.100.7'), 401, 'invalid_credentials')
  rejected(t, await send(basicHeader('bob', BOB_PASSWORD), '198.51.100.7'), 429, 'rate_limited')
  accepted(t, await send(basicHeader('bob', BOB_PASSWORD), '198.51.100.8'), 'bob')
})

test('maxFailuresPerIp counts an IPv6 client per /64: rotating addresses inside it is 429 past the limit; another /64 and IPv4 addresses are not', async (t) => {
  const { send, store } = await setup(t.context.dir, { config: { maxFailuresPerIp: 5, maxFailuresPerUser: 1000 } })
  const statuses: number[] = []
  for (let i = 1; i <= 12; i++) {
    const outcome = await send(basicHeader(`user${i}`, 'guess'), `2001:db8:1:2::${i.toString(16)}`)
    statuses.push(isRejection(outcome) ? outcome.status : 200)
  }
  t.deepEqual(statuses, [...Array<number>(5).fill(401), ...Array<number>(7).fill(429)])
  t.is(await store.get(ipKey('2001:db8:1:2::1')), '5', 'one counter for the /64')
  t.is(ipKey('2001:DB8:1:2:0:0:0:ffff'), 'basic:fail:ip:2001:db8:1:2::/64')
  rejected(t, await send(basicHeader('bob', BOB_PASSWORD), '2001:db8:1:2::abcd'), 429, 'rate_limited')
  accepted(t, await send(basicHeader('bob', BOB_PASSWORD), '2001:db8:1:3::1'), 'bob')
  // IPv4 control: the limit holds per address, and an IPv4-mapped address is the IPv4 one.
  const v4: number[] = []
  for (let i = 0; i < 7; i++) {
    const outcome = await send(basicHeader(`v4user${i}`, 'guess'), i % 2 === 0 ? '198.51.100.9' : '::ffff:198.51.100.9')
    v4.push(isRejection(outcome) ? outcome.status : 200)
  }
  t.deepEqual(v4, [401, 401, 401, 401, 401, 429, 429])
  accepted(t, await send(basicHeader('bob', BOB_PASSWORD), '198.51.100.10'), 'bob')
})

test('failed attempts are counted in Redis: failures through one instance lock the user out on another', async (t) => {
  const prefix = uniquePrefix('basic-unit')
  const storeA = countingStore(new RedisStore(t.context.redis.url, { prefix, timeoutMs: 3000 }))
  const storeB = countingStore(new RedisStore(t.context.redis.url, { prefix, timeoutMs: 3000 }))
  t.teardown(async () => { await storeA.close(); await storeB.close() })
  const a = await setup(t.context.dir, { store: storeA, config: { maxFailuresPerUser: 2 } })
  const b = await setup(t.context.dir, { store: storeB, config: { maxFailuresPerUser: 2 } })
  accepted(t, await b.send(basicHeader('alice', ALICE_PASSWORD)), 'alice')
  rejected(t, await a.send(basicHeader('alice', 'one')), 401, 'invalid_credentials')
  rejected(t, await a.send(basicHeader('alice', 'two')), 401, 'invalid_credentials')
  const locked = rejected(t, await b.send(basicHeader('alice', ALICE_PASSWORD)), 429, 'rate_limited')
  const retry = Number(locked.headers['Retry-After'])
  t.true(retry > 290 && retry <= 300, `Retry-After ${retry}`)
  accepted(t, await b.send(basicHeader('bob', BOB_PASSWORD)), 'bob')
})

test('a failing store is 503 (StoreUnavailableError) with onError deny, and per-instance counting with onError allow', async (t) => {
  const deny = await setup(t.context.dir)
  deny.store.failing = true
  await t.throwsAsync(deny.send(basicHeader('alice', ALICE_PASSWORD)), { instanceOf: StoreUnavailableError })
  deny.store.failing = false
  accepted(t, await deny.send(basicHeader('alice', ALICE_PASSWORD)), 'alice')

  const allow = await setup(t.context.dir, { onError: 'allow', config: { maxFailuresPerUser: 2 } })
  allow.store.failing = true
  accepted(t, await allow.send(basicHeader('alice', ALICE_PASSWORD)), 'alice')
  rejected(t, await allow.send(basicHeader('bob', 'x')), 401, 'invalid_credentials')
  rejected(t, await allow.send(basicHeader('bob', 'y')), 401, 'invalid_credentials')
  rejected(t, await allow.send(basicHeader('bob', BOB_PASSWORD)), 429, 'rate_limited')
})

test('inline scrypt and bcrypt hashes are accepted; wrong passwords are refused', async (t) => {
  const scryptPw = 'correct horse battery staple'
  const users = { inline: [{ username: 'carol', hash: await scryptHash(scryptPw, { N: 1024, r: 8, p: 1 }) }, { username: 'dave', hash: await bcryptHash('dave-pw', 4) }] }
  const { send } = await setup(t.context.dir, { users })
  accepted(t, await send(basicHeader('carol', scryptPw)), 'carol')
  rejected(t, await send(basicHeader('carol', 'wrong')), 401, 'invalid_credentials')
  accepted(t, await send(basicHeader('dave', 'dave-pw')), 'dave')
  t.true(await verifyPassword(scryptPw, parsePasswordHash(users.inline[0]!.hash)!))
})

test('htpasswd lines in other formats are config errors naming the file and line; a bcrypt file loads', async (t) => {
  const good = await bcryptHash('pw', 4)
  const cases: Array<[string, RegExp]> = [
    ['$apr1$abc$0123456789abcdefghijkl', /apr1/],
    ['{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=', /SHA-1/],
    ['$6$salt$' + 'x'.repeat(86), /SHA-512-crypt/],
    ['$1$salt$abcdefghijklmnopqrstuv', /MD5-crypt/],
    ['abJnggxhB/yWI', /DES crypt/],
    ['plaintext', /plain-text/],
  ]
  for (const [hash, kind] of cases) {
    await writeFile(join(t.context.dir, 'mixed.htpasswd'), `ok:${good}\n# comment\nbad:${hash}\n`)
    const error = t.throws(() => loadUsers({ htpasswd: 'mixed.htpasswd' }, t.context.dir), { instanceOf: ConfigError })
    const issue = error!.issues[0]!
    t.is(issue.file, join(t.context.dir, 'mixed.htpasswd'))
    t.is(issue.line, 3)
    t.regex(issue.message, kind)
    t.regex(issue.message, /^mixed\.htpasswd line 3: user "bad" has/)
    t.regex(issue.fix ?? '', /authgate passwd bad/)
    t.false(error!.message.includes(hash), 'the hash is not echoed')
  }
  await writeFile(join(t.context.dir, 'good.htpasswd'), `ok:${good}\r\nother:${good.replace('$2y$', '$2b$')}\n`)
  t.is(loadUsers({ htpasswd: 'good.htpasswd' }, t.context.dir).size, 2)
})

test('an htpasswd file that cannot be read is a config error, so the gateway fails closed', async (t) => {
  const error = t.throws(() => loadUsers({ htpasswd: 'missing.htpasswd' }, t.context.dir), { instanceOf: ConfigError })
  t.regex(error!.message, /cannot read the htpasswd file .*missing\.htpasswd \(ENOENT\)/)
  await t.throwsAsync(setup(t.context.dir, { users: { htpasswd: 'missing.htpasswd' } }), { instanceOf: ConfigError })
})

test('the users section reports bad inline hashes and duplicate users', async (t) => {
  const good = await bcryptHash('pw', 4)
  const issues = checkUsers({ inline: [{ username: 'a', hash: 'plain' }, { username: 'b', hash: good }, { username: 'b', hash: good }] }, undefined).issues
  t.deepEqual(issues.map((i) => i.path), [['users', 'inline', 0, 'hash'], ['users', 'inline', 2, 'username']])
  t.deepEqual(usersSection.check!({ inline: [{ username: 'b', hash: good }] }, {}, { baseDir: t.context.dir }), [])
  t.is(checkUsers({}, undefined).issues.length, 1)
})

test('basic on a plain-HTTP listener is a config error naming the route and listener unless allowInsecure; TLS listeners are fine', (t) => {
  const plain: ListenerInfo = { name: 'local', mode: 'forward', tls: false, clientCA: false, clientCert: 'none' }
  const secure: ListenerInfo = { name: 'public', mode: 'forward', tls: true, clientCA: false, clientCert: 'none' }
  const env = (listeners: ListenerInfo[]) => ({ config: { users: { htpasswd: 'x' } }, route: { name: 'admin-ui', upstream: 'demo', listeners, maxBodyBytes: 1024 } })
  const issues = basic.check!(withDefaults<BasicConfig>(schema, {}), env([secure, plain]))
  t.is(issues.length, 1)
  t.regex(issues[0]!.message, /route "admin-ui".*plain-HTTP listener "local"/)
  t.regex(issues[0]!.fix ?? '', /allowInsecure: true/)
  t.deepEqual(basic.check!(withDefaults<BasicConfig>(schema, { allowInsecure: true }), env([secure, plain])), [])
  t.deepEqual(basic.check!(withDefaults<BasicConfig>(schema, {}), env([secure])), [])
  t.regex(basic.check!(withDefaults<BasicConfig>(schema, {}), { ...env([secure]), config: {} })[0]!.message, /users:/)
})

test('no password reaches the log', async (t) => {
  const { send, deps } = await setup(t.context.dir, { config: { maxFailuresPerUser: 1 } })
  await send(basicHeader('alice', ALICE_PASSWORD))
  await send(basicHeader('alice', 'wrong-secret-value'))
  await send(basicHeader('alice', 'wrong-secret-value'))
  t.false(deps.logged().includes(ALICE_PASSWORD))
  t.false(deps.logged().includes('wrong-secret-value'))
})

function io () {
  let stdout = ''
  let stderr = ''
  return { io: { stdout: { write: (s: string) => { stdout += s } }, stderr: { write: (s: string) => { stderr += s } } }, out: () => stdout, err: () => stderr }
}

test('passwd prints an htpasswd bcrypt line for a password piped on stdin', async (t) => {
  const run = io()
  t.is(await passwdCommand(['alice', '--cost', '4'], run.io, Readable.from(['s3cret-pw\n']) as PasswordInput), 0)
  const line = run.out().trim()
  t.regex(line, /^alice:\$2y\$04\$[./A-Za-z0-9]{53}$/)
  t.true(await bcrypt.compare('s3cret-pw', line.slice('alice:'.length)))
  t.false(run.out().includes('s3cret-pw'))
  // The line loads as an htpasswd file.
  await writeFile(join(t.context.dir, 'cli.htpasswd'), `${line}\n`)
  t.is(loadUsers({ htpasswd: 'cli.htpasswd' }, t.context.dir).size, 1)
})

test('passwd --scrypt prints an inline users entry whose hash verifies', async (t) => {
  const run = io()
  t.is(await passwdCommand(['carol', '--scrypt'], run.io, Readable.from(['long pass phrase']) as PasswordInput), 0)
  const match = /^- \{ username: "carol", hash: "(scrypt\$[^"]+)" \}\n$/.exec(run.out())
  t.truthy(match, run.out())
  t.true(await verifyPassword('long pass phrase', parsePasswordHash(match![1]!)!))
})

test('passwd refuses empty and multi-line passwords (exit 1) and bad usage (exit 2)', async (t) => {
  for (const input of ['', '\n', 'a\nb\n']) {
    const run = io()
    t.is(await passwdCommand(['alice', '--cost', '4'], run.io, Readable.from([input]) as PasswordInput), 1, JSON.stringify(input))
    t.is(run.out(), '')
  }
  for (const args of [[], ['a', 'b'], ['bad:name'], ['alice', '--cost', '3'], ['alice', '--cost', 'x'], ['alice', '--bogus']]) {
    const run = io()
    t.is(await passwdCommand(args, run.io, Readable.from(['pw']) as PasswordInput), 2, args.join(' '))
    t.regex(run.err(), /usage: authgate passwd/)
  }
})

/** A terminal stand-in: raw mode is recorded, typed characters arrive as data. */
function fakeTty (typed: string[]): PasswordInput & { rawModes: boolean[] } {
  const stream = new PassThrough() as unknown as PasswordInput & { rawModes: boolean[] }
  stream.isTTY = true
  stream.rawModes = []
  stream.setRawMode = (mode: boolean) => {
    stream.rawModes.push(mode)
    if (mode) setImmediate(() => (stream as unknown as PassThrough).write(typed.shift() ?? '\r'))
    return stream
  }
  return stream
}

test('passwd reads from a terminal in raw mode without echo, twice, and refuses a mismatch', async (t) => {
  const run = io()
  const tty = fakeTty(['tty-pass\u007fS\r', 'tty-pasS\r'])
  t.is(await passwdCommand(['erin', '--cost', '4'], run.io, tty), 0)
  t.deepEqual(tty.rawModes, [true, false, true, false])
  t.true(await bcrypt.compare('tty-pasS', run.out().trim().slice('erin:'.length)))
  t.false(run.err().includes('tty-pas'), 'nothing typed is echoed')
  t.regex(run.err(), /Password: \nRetype password: \n/)

  const mismatch = io()
  t.is(await passwdCommand(['erin', '--cost', '4'], mismatch.io, fakeTty(['one\r', 'two\r'])), 1)
  t.regex(mismatch.err(), /do not match/)
  t.is(mismatch.out(), '')
})

test('the users section checks the htpasswd file when the loader gives it the config folder (authgate check)', async (t) => {
  await writeFile(join(t.context.dir, 'check.htpasswd'), `good:${await bcryptHash('pw', 4)}\nold:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n`)
  const issues = usersSection.check!({ htpasswd: 'check.htpasswd' }, {}, { baseDir: t.context.dir })
  t.is(issues.length, 1)
  t.regex(issues[0]!.message, /^check\.htpasswd line 2: user "old" has a \{SHA\}/)
  t.deepEqual(usersSection.check!({ htpasswd: 'users.htpasswd' }, {}, { baseDir: t.context.dir }), [])
})
