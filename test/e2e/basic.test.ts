import anyTest, { type TestFn } from 'ava'
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { Agent } from 'undici'
import { ConfigError } from '../../gateway/errors.js'
import { bcryptHash, passwordChecks, scryptHash } from '../../policies/basic/users.js'
import { assertNotLogged, startGateway, type TestGateway } from '../helpers/gateway.js'
import { mintPki } from '../helpers/pki.js'
import { startRedis, uniquePrefix, type RedisServer } from '../helpers/redis.js'
import { until as untilHelper } from '../helpers/until.js'
import { assertProblem, rawGet, type Echo } from './support.js'

/** True once `check` holds, false when `timeoutMs` passes first (the one poller, test/helpers/until.ts). */
const until = (check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> =>
  untilHelper(check, { timeoutMs, message: 'the condition' }).then(() => true, () => false)

const test = anyTest as TestFn<{ redis: RedisServer, htpasswd: string, gateways: TestGateway[] }>

// Made at run time; bcrypt cost 4 keeps the suite fast except where the cost itself is measured.
const ALICE = randomBytes(12).toString('base64url')
const BOB = randomBytes(12).toString('base64url')
const CHALLENGE = 'Basic realm="authgate", charset="UTF-8"'

test.before(async (t) => {
  t.context.redis = await startRedis()
  t.context.htpasswd = `alice:${await bcryptHash(ALICE, 4)}\nbob:${await bcryptHash(BOB, 4)}\n`
  t.context.gateways = []
})
test.after.always(async (t) => {
  await Promise.all((t.context.gateways ?? []).map(async (gw) => await gw.close()))
  await t.context.redis?.stop()
})

function config (basic: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    users: { htpasswd: 'users.htpasswd' },
    routes: [{ name: 'console', match: { path: '/console/**' }, upstream: 'demo', policies: [{ basic: { allowInsecure: true, ...basic } }] }],
    ...extra,
  }
}

/**
 * Each gateway's requests come from a client address of its own (X-Forwarded-For from loopback, a trusted proxy):
 * the gateways of concurrent tests share the process's password pool, and one address gets only a quarter of it.
 */
const clients = new WeakMap<TestGateway, string>()
let gateways = 0

function clientOf (gw: TestGateway): string {
  return clients.get(gw) ?? '127.0.0.1'
}

async function start (t: import('ava').ExecutionContext<{ redis: RedisServer, htpasswd: string, gateways: TestGateway[] }>, cfg: Record<string, unknown> = config(), options: { redis?: string, files?: Record<string, string> } = {}): Promise<TestGateway> {
  const gw = await startGateway({ trustProxies: ['127.0.0.1/32'], ...cfg }, { files: { 'users.htpasswd': t.context.htpasswd, ...options.files }, ...(options.redis ? { redis: options.redis } : {}) })
  clients.set(gw, `192.0.2.${++gateways}`)
  t.context.gateways.push(gw)
  return gw
}

function basicAuth (username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}

async function as (gw: TestGateway, username: string, password: string, path = '/console/home'): Promise<Response> {
  return await gw.fetch(path, { headers: { authorization: basicAuth(username, password), 'x-forwarded-for': clientOf(gw) } })
}

test('the right password reaches the upstream as the user, without the Authorization header; a wrong one is 401 with the Basic challenge', async (t) => {
  const gw = await start(t)
  const ok = await as(gw, 'alice', ALICE)
  t.is(ok.status, 200)
  const echo = await ok.json() as Echo
  t.is(echo.headers['x-auth-subject'], 'alice')
  t.is(echo.headers['x-auth-client'], 'alice')
  t.is(echo.headers['x-auth-methods'], 'basic')
  t.is(echo.headers.authorization, undefined, 'credentials are not forwarded')

  const wrong = await as(gw, 'alice', 'not-the-password')
  t.is((await assertProblem(t, wrong, 401, 'invalid_credentials')).detail, 'wrong username or password')
  t.is(wrong.headers.get('www-authenticate'), CHALLENGE)

  const missing = await gw.fetch('/console/home')
  await assertProblem(t, missing, 401, 'missing_credentials')
  t.is(missing.headers.get('www-authenticate'), CHALLENGE)
  await assertNotLogged(t, gw, ok.headers.get('x-request-id'), [ALICE], 'the password')
  await assertNotLogged(t, gw, wrong.headers.get('x-request-id'), ['not-the-password', ALICE], 'the password')
})

test('an unknown user gets the same 401 as a wrong password; a known user with the right password is 200', async (t) => {
  const gw = await start(t)
  const unknown = await as(gw, 'mallory', 'whatever')
  t.is((await assertProblem(t, unknown, 401, 'invalid_credentials')).detail, 'wrong username or password')
  t.is(unknown.headers.get('www-authenticate'), CHALLENGE)
  t.is((await as(gw, 'bob', BOB)).status, 200)
})

test('malformed Basic credentials are 401 invalid_credentials, never 500', async (t) => {
  const gw = await start(t)
  const b64 = (bytes: Buffer | string) => Buffer.from(bytes).toString('base64')
  const values = [
    'Basic', 'Basic !!!!', 'Basic a', `Basic ${b64('no-colon')}`, `Basic ${b64(':pw')}`, `Basic ${b64(Buffer.from([0xff, 0x3a, 0xfe]))}`,
    `Basic ${b64('alice:a\u0001b')}`, `Basic ${'QUFB'.repeat(3000)}`, `Basic ${b64('alice:x')}=`,
  ]
  for (const value of values) {
    const res = await rawGet(gw.url, '/console/home', [`Authorization: ${value}`])
    t.is(res.status, 401, value.slice(0, 40))
    t.is(JSON.parse(res.body).error, 'invalid_credentials')
    t.is(res.headers['www-authenticate']?.[0], CHALLENGE)
  }
  const twice = await rawGet(gw.url, '/console/home', [`Authorization: ${basicAuth('alice', ALICE)}`, `Authorization: ${basicAuth('alice', ALICE)}`])
  t.is(twice.status, 400)
  t.is(JSON.parse(twice.body).error, 'bad_request')
  t.is((await as(gw, 'alice', ALICE)).status, 200)
})

test.serial('bcrypt runs once, not on every request: later requests are answered from the success cache', async (t) => {
  const password = randomBytes(12).toString('base64url')
  const gw = await start(t, config(), { files: { 'users.htpasswd': `carol:${await bcryptHash(password, 10)}\n` } })
  const before = passwordChecks.count
  const first = performance.now()
  t.is((await as(gw, 'carol', password)).status, 200)
  const firstMs = performance.now() - first
  const rest = performance.now()
  for (let i = 0; i < 10; i++) t.is((await as(gw, 'carol', password)).status, 200)
  const restMs = (performance.now() - rest) / 10
  t.is(passwordChecks.count - before, 1, 'one hash check for eleven requests')
  t.true(restMs < firstMs, `cached ${restMs.toFixed(1)} ms vs first ${firstMs.toFixed(1)} ms`)
  t.is((await as(gw, 'carol', 'wrong')).status, 401)
  t.is(passwordChecks.count - before, 2, 'a wrong password is always checked')
})

test.serial('after maxFailuresPerUser failures even the right password is 429 with Retry-After, across two instances on one Redis', async (t) => {
  const prefix = uniquePrefix('basic')
  const cfg = config({ maxFailuresPerUser: 3, failureWindow: '5m' }, { store: { prefix } })
  const one = await start(t, cfg, { redis: t.context.redis.url })
  const two = await start(t, cfg, { redis: t.context.redis.url })
  t.is((await as(two, 'alice', ALICE)).status, 200)
  for (let i = 0; i < 3; i++) await assertProblem(t, await as(one, 'alice', `guess-${i}`), 401, 'invalid_credentials')
  const before = passwordChecks.count
  const locked = await as(two, 'alice', ALICE, '/console/other') // another path: no cached answer helps
  await assertProblem(t, locked, 429, 'rate_limited')
  const retry = Number(locked.headers.get('retry-after'))
  t.true(retry > 290 && retry <= 300, `Retry-After: ${retry}`)
  t.is(passwordChecks.count, before, 'no bcrypt for a locked-out user')
  t.is((await as(one, 'bob', BOB)).status, 200, 'other users are not locked out')
})

test('a route with basic on a plain-HTTP listener is a config error naming route and listener, unless allowInsecure', async (t) => {
  const error = await t.throwsAsync(start(t, config({ allowInsecure: false })), { instanceOf: ConfigError })
  t.regex(error!.message, /route "console" uses basic and is reachable on the plain-HTTP listener "local"/)
  t.regex(error!.message, /allowInsecure: true/)
  const gw = await start(t, config({ allowInsecure: true }))
  t.is((await as(gw, 'alice', ALICE)).status, 200)
})

test('on a TLS listener basic needs no allowInsecure', async (t) => {
  const pki = await mintPki()
  const gw = await start(t, {
    listeners: [{ name: 'secure', address: '127.0.0.1:0', tls: { cert: 'pki/server.crt', key: 'pki/server.key' } }],
    users: { htpasswd: 'users.htpasswd' },
    routes: [{ name: 'console', match: { path: '/console/**' }, upstream: 'demo', policies: [{ basic: {} }] }],
  }, { files: { 'pki/server.crt': pki.server.cert, 'pki/server.key': pki.server.key } })
  const agent = new Agent({ connect: { ca: pki.ca.cert } })
  t.teardown(async () => await agent.close())
  const ok = await gw.fetch('/console/home', { listener: 'secure', dispatcher: agent as never, headers: { authorization: basicAuth('alice', ALICE), 'x-forwarded-for': clientOf(gw) } })
  t.is(ok.status, 200)
  const wrong = await gw.fetch('/console/home', { listener: 'secure', dispatcher: agent as never, headers: { authorization: basicAuth('alice', 'nope'), 'x-forwarded-for': clientOf(gw) } })
  await assertProblem(t, wrong, 401, 'invalid_credentials')
})

test('an htpasswd file with an apr1 line is a config error naming the file and line; without it the gateway starts', async (t) => {
  const bad = `${t.context.htpasswd}legacy:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n`
  const error = await t.throwsAsync(start(t, config(), { files: { 'users.htpasswd': bad } }), { instanceOf: ConfigError })
  t.regex(error!.message, /users\.htpasswd line 3: user "legacy" has an apr1/)
  t.false(error!.message.includes('HqJZimcKQFAMYayBlzkrA'), 'the hash is not echoed')
  const gw = await start(t, config())
  t.is((await as(gw, 'alice', ALICE)).status, 200)
})

test('an htpasswd file that cannot be read stops the gateway from starting (fail closed)', async (t) => {
  await t.throwsAsync(start(t, { ...config(), users: { htpasswd: 'nowhere.htpasswd' } }), { instanceOf: ConfigError, message: /cannot read the htpasswd file/ })
})

test('inline scrypt users authenticate; a wrong password is 401', async (t) => {
  const password = randomBytes(12).toString('base64url')
  const gw = await start(t, { ...config(), users: { inline: [{ username: 'dana', hash: await scryptHash(password, { N: 1024, r: 8, p: 1 }) }] } })
  const ok = await as(gw, 'dana', password)
  t.is(ok.status, 200)
  await assertProblem(t, await as(gw, 'dana', 'wrong'), 401, 'invalid_credentials')
  await assertNotLogged(t, gw, ok.headers.get('x-request-id'), [password], 'the password')
})

test('anyOf with apiKey: a Bearer or API-key request is not taken for bad Basic credentials', async (t) => {
  const gw = await start(t, {
    users: { htpasswd: 'users.htpasswd' },
    routes: [{ name: 'either', match: { path: '/either/**' }, upstream: 'demo', policies: [{ anyOf: [{ basic: { allowInsecure: true } }, { apiKey: {} }] }] }],
  })
  const bearer = await gw.fetch('/either/x', { headers: { authorization: 'Bearer something' } })
  await assertProblem(t, bearer, 401, 'missing_credentials')
  const challenges = bearer.headers.get('www-authenticate') ?? ''
  t.true(challenges.includes(CHALLENGE))
  t.true(challenges.includes('ApiKey realm="authgate"'))
  t.is((await as(gw, 'bob', BOB, '/either/x')).status, 200)
})

// Issue 14: lockout races and bcrypt on the event loop, over HTTP, on both stores.
for (const kind of ['memory', 'redis'] as const) {
  // bcrypt cost 10 as in production (the dummy hash copies it): a hash takes long enough for requests to overlap.
  const on = async (t: import('ava').ExecutionContext<{ redis: RedisServer, htpasswd: string, gateways: TestGateway[] }>, basic: Record<string, unknown>) => {
    const files = { 'users.htpasswd': `alice:${await bcryptHash(ALICE, 10)}\nbob:${await bcryptHash(BOB, 10)}\n` }
    return kind === 'memory'
      ? await start(t, config(basic), { files })
      : await start(t, config(basic, { store: { prefix: uniquePrefix('basic-race') } }), { redis: t.context.redis.url, files })
  }

  test.serial(`${kind}: 30 concurrent guesses for one user, the right password 26th: no 200, 429 past the limit, and 200 once the window is over`, async (t) => {
    // Places enough for all 30 from one address (24 workers + 96 queued, a quarter each): only the lockout refuses.
    const gw = await on(t, { maxFailuresPerUser: 10, failureWindow: '5s', maxConcurrentChecks: 24 })
    const responses = await Promise.all(Array.from({ length: 30 }, (_, i) => as(gw, 'alice', i === 25 ? ALICE : `guess-${i}`)))
    const statuses = responses.map((r) => r.status)
    t.is(statuses.filter((s) => s === 200).length, 0, 'the right password does not get in past the limit')
    t.is(statuses.filter((s) => s === 401).length, 10)
    t.is(statuses.filter((s) => s === 429).length, 20)
    await assertProblem(t, responses[25]!, 429, 'rate_limited')
    t.true(Number(responses[25]!.headers.get('retry-after')) >= 1)
    t.true(await until(async () => (await as(gw, 'alice', ALICE)).status === 200, 15_000), 'the right password passes once the window is over')
  })

  test.serial(`${kind}: 40 concurrent unknown-user guesses from one IP: maxFailuresPerIp are checked, the rest 429; another address is not limited`, async (t) => {
    // 40 places for one address (32 workers + 128 queued, a quarter each): all 40 race for the 10 reservations.
    const gw = await on(t, { maxConcurrentChecks: 32, maxFailuresPerIp: 10 })
    const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => as(gw, `ghost-${i}`, 'guess')))
    const statuses = responses.map((r) => r.status)
    t.is(statuses.filter((s) => s === 401).length, 10, 'the per-IP limit')
    t.is(statuses.filter((s) => s === 429).length, 30)
    for (const res of responses.filter((r) => r.status === 429)) await assertProblem(t, res, 429, 'rate_limited')
    const locked = await as(gw, 'bob', BOB)
    await assertProblem(t, locked, 429, 'rate_limited')
    t.true(Number(locked.headers.get('retry-after')) > 200, 'the address is locked out for the window, even with a right password')
    // Linux routes all of 127.0.0.0/8 to loopback: a second client address.
    const other = await new Promise<number>((resolve, reject) => {
      const url = new URL('/console/home', gw.url)
      request(url, { localAddress: '127.0.0.2', headers: { authorization: basicAuth('bob', BOB) } }, (res) => { res.resume(); resolve(res.statusCode!) })
        .on('error', reject).end()
    })
    t.is(other, 200, 'another address is not limited')
  })
}

/** A request for the route from `clientIp`, as a trusted proxy on loopback (trustProxies) reports it. */
async function asFrom (gw: TestGateway, username: string, password: string, clientIp: string): Promise<Response> {
  return await gw.fetch('/console/home', { headers: { authorization: basicAuth(username, password), 'x-forwarded-for': clientIp } })
}

async function statusOf (response: Promise<Response>): Promise<number> {
  const res = await response
  await res.arrayBuffer()
  return res.status
}

test('maxFailuresPerIp holds for one client rotating addresses inside its IPv6 /64, as for one IPv4 address; another /64 is not limited', async (t) => {
  const gw = await start(t, config({ maxFailuresPerIp: 5, maxFailuresPerUser: 1000 }, { trustProxies: ['127.0.0.1/32'] }))
  const v6: number[] = []
  for (let i = 1; i <= 12; i++) v6.push(await statusOf(asFrom(gw, `user${i}`, 'guess', `2001:db8:1:2::${i.toString(16)}`)))
  t.deepEqual(v6, [...Array<number>(5).fill(401), ...Array<number>(7).fill(429)])
  t.is(await statusOf(asFrom(gw, 'bob', BOB, '2001:db8:1:2::ffff')), 429, 'the right password too, from the same /64')
  t.is(await statusOf(asFrom(gw, 'bob', BOB, '2001:db8:1:3::1')), 200, 'the next /64 is another client')
  const v4: number[] = []
  for (let i = 1; i <= 8; i++) v4.push(await statusOf(asFrom(gw, `v4user${i}`, 'guess', '198.51.100.7')))
  t.deepEqual(v4, [401, 401, 401, 401, 401, 429, 429, 429])
  t.is(await statusOf(asFrom(gw, 'bob', BOB, '198.51.100.8')), 200)
})

test.serial('past maxConcurrentChecks and its queue a password check is 429 rate_limited with Retry-After: 1; the right password passes after', async (t) => {
  const password = randomBytes(12).toString('base64url')
  const gw = await start(t, config({ maxConcurrentChecks: 1, maxFailuresPerUser: 100, maxFailuresPerIp: 100 }, { trustProxies: ['127.0.0.1/32'] }), { files: { 'users.htpasswd': `carol:${await bcryptHash(password, 10)}\n` } })
  // Twenty client addresses, one guess each: the total bound refuses, not the share of one address.
  const responses = await Promise.all(Array.from({ length: 20 }, (_, i) => asFrom(gw, 'carol', `guess-${i}`, `203.0.113.${i + 1}`)))
  const shed = responses.filter((r) => r.status === 429)
  const checked = responses.filter((r) => r.status === 401)
  t.true(shed.length >= 15, `${shed.length} refused`)
  t.true(checked.length >= 1 && checked.length <= 5, `${checked.length} checked: one running, four queued`)
  for (const res of shed) {
    t.is(res.headers.get('retry-after'), '1')
    await assertProblem(t, res, 429, 'rate_limited')
  }
  t.is((await as(gw, 'carol', password)).status, 200)
})

// Review F6: one client filled the shared pool, and everyone else without a cached success got 429.
test.serial('one address\'s burst of guesses gets its share of the pool, the rest 429 Retry-After: 1; another address with the right password is checked: 200', async (t) => {
  const password = randomBytes(12).toString('base64url')
  // bcrypt cost 12: the burst is still hashing when the other client arrives.
  const gw = await start(t, config({ maxConcurrentChecks: 1, maxFailuresPerUser: 1000, maxFailuresPerIp: 50 }, { trustProxies: ['127.0.0.1/32'] }),
    { files: { 'users.htpasswd': `alice:${await bcryptHash(password, 12)}\n` } })
  const before = passwordChecks.count
  const burst = Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const res = await asFrom(gw, `nobody${i}`, 'guess', '203.0.113.9')
    await res.arrayBuffer()
    return res
  }))
  t.true(await until(() => passwordChecks.count > before, 10_000), 'the burst is hashing')
  const alice = await asFrom(gw, 'alice', password, '198.51.100.20')
  const responses = await burst
  t.is(alice.status, 200, `the other address: ${alice.status} ${alice.headers.get('retry-after') ?? ''}`)
  t.is((await alice.json() as Echo).headers['x-auth-subject'], 'alice')
  t.is(responses.filter((r) => r.status === 401).length, 2, 'the share of one address: a quarter of 1 worker + 4 queued, at least 2')
  const shed = responses.filter((r) => r.status === 429)
  t.is(shed.length, 18)
  for (const res of shed) t.is(res.headers.get('retry-after'), '1')
  // One /64 is one address for the share too; its other half is refused while the first checks run.
  const v6 = await Promise.all(Array.from({ length: 6 }, (_, i) => statusOf(asFrom(gw, `v6-${i}`, 'guess', `2001:db8:1:2::${i + 1}`))))
  t.deepEqual(v6.filter((s) => s === 401).length, 2, v6.join(' '))
  t.deepEqual(v6.filter((s) => s === 429).length, 4, v6.join(' '))
})

