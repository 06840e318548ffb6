import anyTest, { type TestFn } from 'ava'
import { randomBytes } from 'node:crypto'
import { Agent } from 'undici'
import { ConfigError } from '../../gateway/errors.js'
import { bcryptHash, passwordChecks, scryptHash } from '../../policies/basic/users.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { mintPki } from '../helpers/pki.js'
import { startRedis, uniquePrefix, type RedisServer } from '../helpers/redis.js'
import { assertProblem, rawGet, type Echo } from './support.js'

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

async function start (t: import('ava').ExecutionContext<{ redis: RedisServer, htpasswd: string, gateways: TestGateway[] }>, cfg: Record<string, unknown> = config(), options: { redis?: string, files?: Record<string, string> } = {}): Promise<TestGateway> {
  const gw = await startGateway(cfg, { files: { 'users.htpasswd': t.context.htpasswd, ...options.files }, ...(options.redis ? { redis: options.redis } : {}) })
  t.context.gateways.push(gw)
  return gw
}

function basicAuth (username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}

async function as (gw: TestGateway, username: string, password: string, path = '/console/home'): Promise<Response> {
  return await gw.fetch(path, { headers: { authorization: basicAuth(username, password) } })
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
  t.false(gw.rawLogs().includes(ALICE))
  t.false(gw.rawLogs().includes('not-the-password'))
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
  const ok = await gw.fetch('/console/home', { listener: 'secure', dispatcher: agent as never, headers: { authorization: basicAuth('alice', ALICE) } })
  t.is(ok.status, 200)
  const wrong = await gw.fetch('/console/home', { listener: 'secure', dispatcher: agent as never, headers: { authorization: basicAuth('alice', 'nope') } })
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
  t.is((await as(gw, 'dana', password)).status, 200)
  await assertProblem(t, await as(gw, 'dana', 'wrong'), 401, 'invalid_credentials')
  t.false(gw.rawLogs().includes(password))
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
