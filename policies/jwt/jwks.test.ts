import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { isRejection, type Rejection } from '../../gateway/errors.js'
import type { Outcome, PolicyInstance } from '../types.js'
import { jwt } from './index.js'
import type { ProviderRuntime } from './provider.js'
import { schema, type JwtPolicyConfig } from './schema.js'
import { FakeClock, listen, makeDeps, withDefaults, type TestServer } from '../../test/helpers/policy-harness.js'
import { bearer, provider } from './fixtures/harness.js'
import { b64url, makeKey, sign, startJwksServer, type JwksServer, type TestKey } from './fixtures/keys.js'

const test = anyTest as TestFn<{ servers: Array<{ close (): Promise<void> }> }>
test.beforeEach((t) => { t.context.servers = [] })
test.afterEach.always(async (t) => { await Promise.all(t.context.servers.map((s) => s.close())) })

const AUD = 'orders-api'

interface Setup {
  clock: FakeClock
  policy: PolicyInstance
  runtime: ProviderRuntime
  server: JwksServer
  key: TestKey
}

async function setup (t: { context: { servers: Array<{ close (): Promise<void> }> } }, overrides: Record<string, unknown> = {}): Promise<Setup> {
  const key = await makeKey('ES256')
  const server = await startJwksServer([key.publicJwk])
  t.context.servers.push(server)
  const clock = new FakeClock()
  const deps = makeDeps({ clock, config: { jwtProviders: { corp: provider({ jwksUri: server.jwksUri, audience: AUD, algorithms: ['ES256'], ...overrides }) } } })
  const policy = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'corp' }), deps)
  const runtime = deps.shared<ProviderRuntime>('jwt:corp', () => { throw new Error('not built') })
  return { clock, policy, runtime, server, key }
}

async function verify (s: Setup, key: TestKey, claims: Record<string, unknown> = {}): Promise<Outcome> {
  // A distinct subject per call so the verified-token cache does not answer.
  return await s.policy.evaluate(bearer(await sign(key, { aud: AUD, sub: randomBytes(6).toString('hex'), ...claims }, s.clock.now()), s.clock))
}

function detail (outcome: Outcome): string | undefined {
  return isRejection(outcome) ? (outcome as Rejection).detail : undefined
}

/** A token with a kid nobody published, and a signature nobody checks: the key lookup fails first. */
function randomKidToken (nowMs: number): string {
  const header = b64url({ alg: 'ES256', kid: randomBytes(8).toString('hex') })
  const payload = b64url({ aud: AUD, sub: 'x', iat: Math.floor(nowMs / 1000), exp: Math.floor(nowMs / 1000) + 60 })
  return `${header}.${payload}.${randomBytes(64).toString('base64url')}`
}

test('keys are fetched once and reused until the TTL, then refreshed in the background while still served', async (t) => {
  const s = await setup(t, { jwksCacheTtl: '10m' })
  t.is(detail(await verify(s, s.key)), undefined)
  t.is(detail(await verify(s, s.key)), undefined)
  t.is(s.server.count(), 1)
  s.clock.advance(9 * 60_000)
  t.is(detail(await verify(s, s.key)), undefined)
  t.is(s.server.count(), 1)
  s.clock.advance(61_000)
  t.is(detail(await verify(s, s.key)), undefined)
  await s.runtime.remoteKeys!.idle()
  t.is(s.server.count(), 2)
  t.is(detail(await verify(s, s.key)), undefined)
  t.is(s.server.count(), 2)
})

test('an unknown kid refetches the JWKS once the cooldown allows, and a rotated key is then accepted without restart', async (t) => {
  const s = await setup(t, { jwksCooldown: '30s' })
  t.is(detail(await verify(s, s.key)), undefined)
  const next = await makeKey('ES256')
  s.server.keys = [s.key.publicJwk, next.publicJwk]
  // Within the cooldown of the first fetch: no refetch, the new kid is unknown.
  t.is(detail(await verify(s, next)), 'unknown signing key')
  t.is(s.server.count(), 1)
  s.clock.advance(30_000)
  t.is(detail(await verify(s, next)), undefined)
  t.is(s.server.count(), 2)
  // The old key retires: after the next refresh its tokens are refused.
  s.server.keys = [next.publicJwk]
  s.clock.advance(11 * 60_000)
  t.is(detail(await verify(s, s.key)), undefined)
  await s.runtime.remoteKeys!.idle()
  t.is(detail(await verify(s, s.key)), 'unknown signing key')
  t.is(detail(await verify(s, next)), undefined)
})

test('1,000 concurrent verifications with random kids cause one fetch in all (single-flight, then cooldown)', async (t) => {
  const s = await setup(t)
  const outcomes = await Promise.all(Array.from({ length: 1000 }, () => s.policy.evaluate(bearer(randomKidToken(s.clock.now()), s.clock))))
  t.true(outcomes.every((o) => detail(o) === 'unknown signing key'))
  t.is(s.server.count(), 1)
  // After the cooldown another burst may cause exactly one more fetch, shared by all of them.
  s.clock.advance(31_000)
  const again = await Promise.all(Array.from({ length: 1000 }, () => s.policy.evaluate(bearer(randomKidToken(s.clock.now()), s.clock))))
  t.true(again.every((o) => detail(o) === 'unknown signing key'))
  t.is(s.server.count(), 2)
  t.is(detail(await verify(s, s.key)), undefined)
  t.is(s.server.count(), 2)
})

test('unknown kids within the cooldown do not refetch; after it, one does', async (t) => {
  const s = await setup(t, { jwksCooldown: '30s' })
  t.is(detail(await verify(s, s.key)), undefined)
  for (let i = 0; i < 5; i++) {
    s.clock.advance(5_000)
    t.is(detail(await s.policy.evaluate(bearer(randomKidToken(s.clock.now()), s.clock))), 'unknown signing key')
  }
  t.is(s.server.count(), 1)
  s.clock.advance(5_000)
  t.is(detail(await s.policy.evaluate(bearer(randomKidToken(s.clock.now()), s.clock))), 'unknown signing key')
  t.is(s.server.count(), 2)
  t.is(detail(await s.policy.evaluate(bearer(randomKidToken(s.clock.now()), s.clock))), 'unknown signing key')
  t.is(s.server.count(), 2)
})

test('while the IdP is down the last keys serve within the stale grace, then tokens are refused, then accepted when it is back', async (t) => {
  const s = await setup(t, { jwksCacheTtl: '10m', jwksStaleGrace: '1h' })
  t.is(detail(await verify(s, s.key)), undefined)
  s.server.mode = 'fail'
  s.clock.advance(30 * 60_000)
  t.is(detail(await verify(s, s.key)), undefined)
  await s.runtime.remoteKeys!.idle()
  t.is(s.runtime.remoteKeys!.stats.failures, 1)
  s.clock.advance(39 * 60_000)
  t.is(detail(await verify(s, s.key)), undefined)
  await s.runtime.remoteKeys!.idle()
  s.clock.advance(60_000 + 1)
  const refused = await verify(s, s.key)
  t.like(refused, { status: 401, code: 'invalid_token', detail: 'signing keys unavailable' })
  // A failure is retried after a few seconds, not remembered for long.
  s.server.mode = 'ok'
  t.is(detail(await verify(s, s.key)), 'signing keys unavailable')
  s.clock.advance(5_000)
  t.is(detail(await verify(s, s.key)), undefined)
})

test('an IdP that never answers fails closed within the timeout', async (t) => {
  const s = await setup(t, { timeout: '200ms' })
  s.server.mode = 'hang'
  const started = Date.now()
  t.is(detail(await verify(s, s.key)), 'signing keys unavailable')
  t.true(Date.now() - started < 3000)
})

test('a JWKS response larger than maxResponseBytes is refused, a normal one accepted', async (t) => {
  const s = await setup(t, { maxResponseBytes: '64KiB', jwksCooldown: '1s' })
  s.server.mode = 'huge'
  t.is(detail(await verify(s, s.key)), 'signing keys unavailable')
  s.server.mode = 'ok'
  s.clock.advance(5_000)
  t.is(detail(await verify(s, s.key)), undefined)
})

test('a JWKS that is not a key set makes tokens fail closed', async (t) => {
  const server = await listen((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys": "nope"}') })
  t.context.servers.push(server)
  const clock = new FakeClock()
  const deps = makeDeps({ clock, config: { jwtProviders: { corp: provider({ jwksUri: `${server.url}/jwks`, audience: AUD, algorithms: ['ES256'] }) } } })
  const policy = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'corp' }), deps)
  const key = await makeKey('ES256')
  t.is(detail(await policy.evaluate(bearer(await sign(key, { aud: AUD, sub: 'a' }, clock.now()), clock))), 'signing keys unavailable')
})

interface Discovery extends TestServer {
  issuer: string
  metadata: Record<string, unknown> | undefined
  count (): number
}

async function startDiscovery (jwks: JwksServer): Promise<Discovery> {
  let count = 0
  const state: { metadata: Record<string, unknown> | undefined } = { metadata: undefined }
  const server = await listen((req, res) => {
    if (req.url !== '/tenant/.well-known/openid-configuration') return void res.writeHead(404).end()
    count++
    if (!state.metadata) return void res.writeHead(500).end()
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(state.metadata))
  })
  const issuer = `${server.url}/tenant`
  state.metadata = { issuer, jwks_uri: jwks.jwksUri }
  return {
    ...server, issuer, count: () => count,
    get metadata () { return state.metadata },
    set metadata (value) { state.metadata = value },
  }
}

async function discoverySetup (t: { context: { servers: Array<{ close (): Promise<void> }> } }) {
  const key = await makeKey('ES256')
  const jwks = await startJwksServer([key.publicJwk])
  const discovery = await startDiscovery(jwks)
  t.context.servers.push(jwks, discovery)
  const clock = new FakeClock()
  const deps = makeDeps({ clock, config: { jwtProviders: { corp: provider({ issuer: discovery.issuer, audience: AUD, algorithms: ['ES256'] }) } } })
  const policy = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'corp' }), deps)
  const run = async (claims: Record<string, unknown> = {}) =>
    detail(await policy.evaluate(bearer(await sign(key, { iss: discovery.issuer, aud: AUD, sub: randomBytes(4).toString('hex'), ...claims }, clock.now()), clock)))
  return { key, jwks, discovery, clock, run }
}

test('with only issuer, keys are found by OIDC discovery on first use, and discovery is not repeated', async (t) => {
  const d = await discoverySetup(t)
  t.is(d.discovery.count(), 0)
  t.is(await d.run(), undefined)
  t.is(d.discovery.count(), 1)
  t.is(d.jwks.count(), 1)
  t.is(await d.run({ iss: 'https://other.test' }), 'wrong issuer')
  d.clock.advance(11 * 60_000)
  t.is(await d.run(), undefined)
  t.is(d.discovery.count(), 1)
})

test('discovery metadata naming another issuer is refused (fail closed); the exact issuer is accepted', async (t) => {
  const d = await discoverySetup(t)
  d.discovery.metadata = { issuer: `${d.discovery.issuer}/`, jwks_uri: d.jwks.jwksUri }
  t.is(await d.run(), 'signing keys unavailable')
  t.is(d.jwks.count(), 0)
  d.discovery.metadata = { issuer: d.discovery.issuer, jwks_uri: d.jwks.jwksUri }
  d.clock.advance(5_000)
  t.is(await d.run(), undefined)
})

test('a discovered jwks_uri on plain http off loopback is refused', async (t) => {
  const d = await discoverySetup(t)
  d.discovery.metadata = { issuer: d.discovery.issuer, jwks_uri: 'http://idp.example.com/jwks' }
  t.is(await d.run(), 'signing keys unavailable')
  d.discovery.metadata = { issuer: d.discovery.issuer, jwks_uri: d.jwks.jwksUri }
  d.clock.advance(5_000)
  t.is(await d.run(), undefined)
})

test('a failed discovery is retried after a short delay, not cached as an answer', async (t) => {
  const d = await discoverySetup(t)
  const good = d.discovery.metadata
  d.discovery.metadata = undefined
  t.is(await d.run(), 'signing keys unavailable')
  t.is(await d.run(), 'signing keys unavailable')
  t.is(d.discovery.count(), 1)
  d.discovery.metadata = good
  d.clock.advance(5_000)
  t.is(await d.run(), undefined)
  t.is(d.discovery.count(), 2)
})

test('a token without kid is checked against every fitting key; a signature by none of them is refused, never a fault', async (t) => {
  const s = await setup(t)
  const second = await makeKey('ES256')
  s.server.keys = [s.key.publicJwk, second.publicJwk]
  const noKid = { header: { kid: undefined } }
  const token = await sign(second, { aud: AUD, sub: 'no-kid' }, s.clock.now(), noKid)
  t.is(detail(await s.policy.evaluate(bearer(token, s.clock))), undefined)
  const stranger = await makeKey('ES256')
  t.is(detail(await s.policy.evaluate(bearer(await sign(stranger, { aud: AUD, sub: 'x' }, s.clock.now(), noKid), s.clock))), 'bad signature')
  const expired = await sign(second, { aud: AUD, sub: 'old', exp: Math.floor(s.clock.now() / 1000) - 120 }, s.clock.now(), { ...noKid, iat: Math.floor(s.clock.now() / 1000) - 600 })
  t.is(detail(await s.policy.evaluate(bearer(expired, s.clock))), 'token expired')
})
