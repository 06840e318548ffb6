import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { exportPKCS8, importPKCS8, SignJWT } from 'jose'
import { isRejection, Rejection, StoreUnavailableError } from '../../gateway/errors.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import type { Outcome, PolicyInstance, RequestContext } from '../types.js'
import { jwt } from './index.js'
import { schema, type JwtPolicyConfig } from './schema.js'
import { FakeClock, makeContext, makeDeps, withDefaults, type TestDeps } from '../../test/helpers/policy-harness.js'
import { bearer, provider } from './fixtures/harness.js'
import { b64url, makeKey, sign, startJwksServer, type JwksServer, type TestKey } from './fixtures/keys.js'
import { revokeJti } from './tokens.js'

const ISSUER = 'https://issuer.test'

interface Context {
  clock: FakeClock
  rsa: TestKey
  es: TestKey
  secret: Buffer
  jwks: JwksServer
  deps: TestDeps
  policy: (config: Partial<JwtPolicyConfig> & { provider: string }) => Promise<PolicyInstance>
  now: () => number
}
const test = anyTest as TestFn<Context>

function providers (t: { rsa: TestKey, secret: Buffer, jwks: JwksServer }) {
  return {
    rsa: provider({ issuer: ISSUER, audience: 'orders-api', algorithms: ['RS256'], publicKey: t.rsa.publicPem }),
    internal: provider({ issuer: ISSUER, audience: 'internal', algorithms: ['HS256'], secret: t.secret.toString('base64'), secretEncoding: 'base64' }),
    corp: provider({ issuer: ISSUER, audience: 'orders-api', algorithms: ['ES256', 'RS256'], jwksUri: t.jwks.jwksUri }),
    noexp: provider({ issuer: ISSUER, audience: 'orders-api', algorithms: ['RS256'], publicKey: t.rsa.publicPem, requireExp: false }),
    strict: provider({ issuer: ISSUER, audience: 'orders-api', algorithms: ['RS256'], publicKey: t.rsa.publicPem, typ: 'at+jwt', maxAge: '10m', requiredClaims: ['tenant'] }),
    revocable: provider({ issuer: ISSUER, audience: 'orders-api', algorithms: ['RS256'], publicKey: t.rsa.publicPem, revocation: true }),
    multi: provider({ issuer: ISSUER, audience: 'orders-api', algorithms: ['RS256', 'PS256'], publicKey: t.rsa.publicPem }),
    custom: provider({ issuer: ISSUER, audience: 'orders-api', algorithms: ['RS256'], publicKey: t.rsa.publicPem, scopeClaim: 'permissions' }),
  }
}

test.before(async (t) => {
  const clock = new FakeClock()
  const rsa = await makeKey('RS256', 'rsa-1')
  const es = await makeKey('ES256', 'es-1')
  const secret = randomBytes(32)
  const jwks = await startJwksServer([es.publicJwk, rsa.publicJwk])
  const deps = makeDeps({ clock, config: { jwtProviders: providers({ rsa, secret, jwks }) } })
  t.context = {
    clock, rsa, es, secret, jwks, deps,
    now: clock.now,
    policy: async (config) => await jwt.create(withDefaults<JwtPolicyConfig>(schema, config), deps),
  }
})

test.after.always(async (t) => { await t.context.jwks?.close() })

function claims (extra: Record<string, unknown> = {}) {
  return { iss: ISSUER, aud: 'orders-api', sub: 'user-1', ...extra }
}

async function run (policy: PolicyInstance, ctx: RequestContext): Promise<Outcome> {
  return await policy.evaluate(ctx)
}

function assertAccepted (t: { true: (v: boolean, m?: string) => void, fail: (m: string) => void }, outcome: Outcome) {
  if (isRejection(outcome)) t.fail(`rejected: ${outcome.status} ${outcome.code} ${outcome.detail}`)
  else t.true(outcome.identity !== undefined)
}

function assertInvalid (t: { is: (a: unknown, b: unknown) => void, deepEqual: (a: unknown, b: unknown) => void, true: (v: boolean) => void }, outcome: Outcome, detail: string) {
  t.true(isRejection(outcome))
  const rejection = outcome as Rejection
  t.is(rejection.status, 401)
  t.is(rejection.code, 'invalid_token')
  t.is(rejection.detail, detail)
  t.deepEqual(rejection.challenge, { scheme: 'Bearer', params: { realm: 'authgate', error: 'invalid_token', error_description: detail } })
}

test('alg "none" is refused; the same claims signed with RS256 pass', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  const body = { ...claims(), iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 300 }
  for (const alg of ['none', 'None', 'NONE']) {
    const unsigned = `${b64url({ alg, typ: 'JWT' })}.${b64url(body)}.`
    assertInvalid(t, await run(policy, bearer(unsigned, t.context.clock)), 'algorithm not allowed')
  }
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, body, now), t.context.clock)))
})

test('HS256 signed with the RSA public key as secret is refused; the RS256 twin passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  const forged = await new SignJWT({ ...claims(), exp: Math.floor(now / 1000) + 300 })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(Math.floor(now / 1000))
    .sign(new TextEncoder().encode(t.context.rsa.publicPem))
  assertInvalid(t, await run(policy, bearer(forged, t.context.clock)), 'algorithm not allowed')
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims(), now), t.context.clock)))
})

test('an expired token is refused; one expired within the clock tolerance passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  const seconds = Math.floor(now / 1000)
  const expired = await sign(t.context.rsa, claims({ exp: seconds - 31 }), now, { iat: seconds - 600 })
  const withinTolerance = await sign(t.context.rsa, claims({ exp: seconds - 10 }), now, { iat: seconds - 600 })
  assertInvalid(t, await run(policy, bearer(expired, t.context.clock)), 'token expired')
  assertAccepted(t, await run(policy, bearer(withinTolerance, t.context.clock)))
})

test('nbf in the future is refused; nbf within the clock tolerance passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  const seconds = Math.floor(now / 1000)
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ nbf: seconds + 120 }), now), t.context.clock)), 'token not yet valid')
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims({ nbf: seconds + 10 }), now), t.context.clock)))
})

test('iat in the future beyond the tolerance is refused; iat slightly ahead passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  const seconds = Math.floor(now / 1000)
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims(), now, { iat: seconds + 120 }), t.context.clock)), 'token not yet valid')
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims(), now, { iat: seconds + 10 }), t.context.clock)))
})

test('a token for another audience is refused; an aud list naming ours passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ aud: 'billing-api' }), now), t.context.clock)), 'wrong audience')
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ aud: undefined }), now), t.context.clock)), 'wrong audience')
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims({ aud: ['billing-api', 'orders-api'] }), now), t.context.clock)))
})

test('a token from another issuer is refused; the configured issuer passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ iss: 'https://evil.test' }), now), t.context.clock)), 'wrong issuer')
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ iss: `${ISSUER}/` }), now), t.context.clock)), 'wrong issuer')
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ iss: undefined }), now), t.context.clock)), 'wrong issuer')
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims(), now), t.context.clock)))
})

test('a token without exp is refused by default; a provider with requireExp: false accepts it', async (t) => {
  const now = t.context.now()
  const token = await sign(t.context.rsa, claims(), now, { noExp: true })
  assertInvalid(t, await run(await t.context.policy({ provider: 'rsa' }), bearer(token, t.context.clock)), 'missing exp')
  assertAccepted(t, await run(await t.context.policy({ provider: 'noexp' }), bearer(token, t.context.clock)))
})

test('a token whose kid is not in the JWKS is refused; a known kid passes', async (t) => {
  const policy = await t.context.policy({ provider: 'corp' })
  const now = t.context.now()
  const stranger = await makeKey('ES256', 'not-published')
  assertInvalid(t, await run(policy, bearer(await sign(stranger, claims(), now), t.context.clock)), 'unknown signing key')
  assertAccepted(t, await run(policy, bearer(await sign(t.context.es, claims(), now), t.context.clock)))
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims(), now), t.context.clock)))
})

test('a known kid with a signature by another key is refused as a bad signature', async (t) => {
  const policy = await t.context.policy({ provider: 'corp' })
  const impostor = await makeKey('ES256', t.context.es.kid)
  assertInvalid(t, await run(policy, bearer(await sign(impostor, claims(), t.context.now()), t.context.clock)), 'bad signature')
})

test('a tampered payload is refused; the untouched token passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const token = await sign(t.context.rsa, claims({ scope: 'orders:read' }), t.context.now())
  const [header, payload, signature] = token.split('.')
  const changed = { ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), scope: 'orders:read orders:admin', sub: 'admin' }
  const tampered = `${header}.${b64url(changed)}.${signature}`
  assertInvalid(t, await run(policy, bearer(tampered, t.context.clock)), 'bad signature')
  assertAccepted(t, await run(policy, bearer(token, t.context.clock)))
})

test('a token in the query string is 400 bad_request; the same token in the header passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const token = await sign(t.context.rsa, claims(), t.context.now())
  for (const query of [`access_token=${token}`, `a=1&access%5Ftoken=${token}`]) {
    const outcome = await run(policy, makeContext({ query, clock: t.context.clock }))
    t.like(outcome, { status: 400, code: 'bad_request', detail: 'tokens belong in the Authorization header' })
    t.false((outcome as Rejection).detail.includes(token))
  }
  const both = await run(policy, makeContext({ query: `access_token=${token}`, headers: [['authorization', `Bearer ${token}`]], clock: t.context.clock }))
  t.like(both, { status: 400, code: 'bad_request' })
  assertAccepted(t, await run(policy, makeContext({ query: 'page=2', headers: [['authorization', `Bearer ${token}`]], clock: t.context.clock })))
})

test('two Authorization headers are 400 bad_request; one passes', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const token = await sign(t.context.rsa, claims(), t.context.now())
  const other = await sign(t.context.rsa, claims({ sub: 'user-2' }), t.context.now())
  const twice = await run(policy, makeContext({ headers: [['authorization', `Bearer ${token}`], ['Authorization', `Bearer ${other}`]], clock: t.context.clock }))
  t.like(twice, { status: 400, code: 'bad_request', detail: 'only one Authorization header is allowed' })
  const sameTwice = await run(policy, makeContext({ headers: [['authorization', `Bearer ${token}`], ['authorization', `Bearer ${token}`]], clock: t.context.clock }))
  t.like(sameTwice, { status: 400, code: 'bad_request' })
  assertAccepted(t, await run(policy, makeContext({ headers: [['authorization', `Bearer ${token}`]], clock: t.context.clock })))
})

test('the scheme is case-insensitive: "bearer" and "BEARER" pass like "Bearer"', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const token = await sign(t.context.rsa, claims(), t.context.now())
  for (const scheme of ['bearer', 'BEARER', 'Bearer', 'bEaReR']) {
    assertAccepted(t, await run(policy, makeContext({ headers: [['authorization', `${scheme} ${token}`]], clock: t.context.clock })))
  }
})

test('extra spaces inside the credential are a malformed token; spaces after the scheme are allowed (RFC 6750 1*SP)', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const token = await sign(t.context.rsa, claims(), t.context.now())
  const [a, b, c] = token.split('.')
  for (const value of [`Bearer ${a}. ${b}.${c}`, `Bearer ${token} extra`, `Bearer ${token} ${token}`, `Bearer\t${token}`, 'Bearer', 'Bearer ', `Bearer ${token},`]) {
    assertInvalid(t, await run(policy, makeContext({ headers: [['authorization', value]], clock: t.context.clock })), 'malformed token')
  }
  assertAccepted(t, await run(policy, makeContext({ headers: [['authorization', `Bearer  ${token}`]], clock: t.context.clock })))
  assertAccepted(t, await run(policy, makeContext({ headers: [['authorization', `Bearer ${token}`]], clock: t.context.clock })))
})

test('garbage that is not a JWT is a malformed token, and the detail never echoes it', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  for (const token of ['abc', 'a.b', 'a.b.c', `${b64url({ alg: 'RS256' })}.${b64url('not json')}.${b64url('sig')}`, 'eyJ.eyJ.', 'x.y.z.w']) {
    const outcome = await run(policy, bearer(token, t.context.clock))
    t.like(outcome, { status: 401, code: 'invalid_token' })
    t.false(JSON.stringify(outcome).includes(token))
  }
})

test('no Authorization header is 401 missing_credentials with a bare Bearer challenge', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const outcome = await run(policy, makeContext({ clock: t.context.clock }))
  t.like(outcome, { status: 401, code: 'missing_credentials' })
  t.deepEqual((outcome as Rejection).challenge, { scheme: 'Bearer', params: { realm: 'authgate' } })
  t.deepEqual(policy.challenge, { scheme: 'Bearer', params: { realm: 'authgate' } })
})

test('another scheme (Basic) counts as no bearer credential, so anyOf can try its other members', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const outcome = await run(policy, makeContext({ headers: [['authorization', 'Basic dXNlcjpwYXNz']], clock: t.context.clock }))
  t.like(outcome, { status: 401, code: 'missing_credentials' })
  t.deepEqual((outcome as Rejection).challenge, { scheme: 'Bearer', params: { realm: 'authgate' } })
})

test('a valid token yields subject, client, scopes, tier and every claim', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  const outcome = await run(policy, bearer(await sign(t.context.rsa, claims({ client_id: 'mobile-app', scope: 'orders:read  orders:write', tier: 'gold', tenant: 'acme' }), now), t.context.clock))
  t.false(isRejection(outcome))
  const identity = (outcome as { identity: Record<string, unknown> }).identity
  t.like(identity, { subject: 'user-1', client: 'mobile-app', scopes: ['orders:read', 'orders:write'], tier: 'gold' })
  t.like(identity.claims, { tenant: 'acme', sub: 'user-1', iss: ISSUER })
  t.true(Object.isFrozen(identity.claims))
})

test('client falls back to azp, then sub; scp arrays are read when scope is absent', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  const azp = await run(policy, bearer(await sign(t.context.rsa, claims({ azp: 'spa', scp: ['a', 'b', 7] }), now), t.context.clock))
  t.like((azp as { identity: object }).identity, { subject: 'user-1', client: 'spa', scopes: ['a', 'b'] })
  const subOnly = await run(policy, bearer(await sign(t.context.rsa, claims(), now), t.context.clock))
  t.like((subOnly as { identity: object }).identity, { subject: 'user-1', client: 'user-1', scopes: [] })
  t.false('tier' in (subOnly as { identity: object }).identity)
})

test('scopeClaim reads scopes from the configured claim only', async (t) => {
  const policy = await t.context.policy({ provider: 'custom' })
  const outcome = await run(policy, bearer(await sign(t.context.rsa, claims({ permissions: ['orders:read'], scope: 'admin' }), t.context.now()), t.context.clock))
  t.like((outcome as { identity: object }).identity, { scopes: ['orders:read'] })
})

test('typ, maxAge and requiredClaims are enforced; a token meeting them passes', async (t) => {
  const policy = await t.context.policy({ provider: 'strict' })
  const now = t.context.now()
  const seconds = Math.floor(now / 1000)
  const good = { header: { typ: 'at+jwt' } }
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ tenant: 'acme' }), now), t.context.clock)), 'wrong token type')
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims(), now, good), t.context.clock)), 'missing tenant')
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ tenant: 'acme', exp: seconds + 3600 }), now, { ...good, iat: seconds - 700 }), t.context.clock)), 'token expired')
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims({ tenant: 'acme' }), now, good), t.context.clock)))
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims({ tenant: 'acme' }), now, { header: { typ: 'application/at+jwt' } }), t.context.clock)))
})

test('HS256 with the shared secret passes; a token signed with another secret is a bad signature', async (t) => {
  const policy = await t.context.policy({ provider: 'internal' })
  const now = t.context.now()
  const body = claims({ aud: 'internal' })
  assertAccepted(t, await run(policy, bearer(await sign(t.context.secret, body, now), t.context.clock)))
  assertInvalid(t, await run(policy, bearer(await sign(randomBytes(32), body, now), t.context.clock)), 'bad signature')
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, body, now), t.context.clock)), 'algorithm not allowed')
})

test('a provider listing RS256 and PS256 verifies both with one PEM key; ES256 is not allowed', async (t) => {
  const policy = await t.context.policy({ provider: 'multi' })
  const now = t.context.now()
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims(), now), t.context.clock)))
  const psKey = await importPKCS8(await exportPKCS8(t.context.rsa.privateKey), 'PS256')
  const ps = await new SignJWT({ ...claims(), exp: Math.floor(now / 1000) + 60 }).setProtectedHeader({ alg: 'PS256' }).sign(psKey)
  assertAccepted(t, await run(policy, bearer(ps, t.context.clock)))
  assertInvalid(t, await run(policy, bearer(await sign(t.context.es, claims(), now), t.context.clock)), 'algorithm not allowed')
})

test('a route audience overrides the provider audience, also for a token already in the cache', async (t) => {
  const plain = await t.context.policy({ provider: 'rsa' })
  const billing = await t.context.policy({ provider: 'rsa', audience: ['billing-api'] })
  const token = await sign(t.context.rsa, claims({ aud: 'orders-api', sub: 'aud-override' }), t.context.now())
  assertAccepted(t, await run(plain, bearer(token, t.context.clock)))
  assertInvalid(t, await run(billing, bearer(token, t.context.clock)), 'wrong audience')
  const billingToken = await sign(t.context.rsa, claims({ aud: 'billing-api', sub: 'aud-override-2' }), t.context.now())
  assertAccepted(t, await run(billing, bearer(billingToken, t.context.clock)))
  assertInvalid(t, await run(plain, bearer(billingToken, t.context.clock)), 'wrong audience')
})

test('credentials are removed before forwarding unless passthrough is set', async (t) => {
  t.deepEqual((await t.context.policy({ provider: 'rsa' })).credentialHeaders, ['authorization'])
  t.deepEqual((await t.context.policy({ provider: 'rsa', passthrough: true })).credentialHeaders, [])
})

test('check names an unknown provider with the known ones and a did-you-mean', (t) => {
  const config = t.context.deps.config
  const route = t.context.deps.route
  const [issue] = jwt.check!(withDefaults<JwtPolicyConfig>(schema, { provider: 'corp2' }), { config, route })
  t.like(issue, { severity: 'error', path: ['provider'], fix: 'did you mean "corp"?' })
  t.is(issue!.message, 'unknown provider "corp2" (known: rsa, internal, corp, noexp, strict, revocable, multi, custom)')
  t.deepEqual(jwt.check!(withDefaults<JwtPolicyConfig>(schema, { provider: 'corp' }), { config, route }), [])
  const [none] = jwt.check!(withDefaults<JwtPolicyConfig>(schema, { provider: 'x' }), { config: {}, route })
  t.like(none, { path: ['provider'], message: 'unknown provider "x" (no jwtProviders are configured)' })
})

test('the verified-token cache answers repeated calls and still refuses the token once it expires', async (t) => {
  const clock = new FakeClock()
  const deps = makeDeps({ clock, config: { jwtProviders: providers(t.context) } })
  const policy = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'rsa' }), deps)
  const runtime = deps.shared('jwt:rsa', () => { throw new Error('built already') }) as { cacheStats: { hits: number, misses: number } }
  const token = await sign(t.context.rsa, claims(), clock.now())
  for (let i = 0; i < 5; i++) assertAccepted(t, await run(policy, bearer(token, clock)))
  t.deepEqual(runtime.cacheStats, { hits: 4, misses: 1 })
  clock.advance(200_000)
  assertAccepted(t, await run(policy, bearer(token, clock)))
  t.deepEqual(runtime.cacheStats, { hits: 5, misses: 1 })
  clock.advance(131_000)
  assertInvalid(t, await run(policy, bearer(token, clock)), 'token expired')
  t.is(runtime.cacheStats.misses, 2)
})

test('a failed verification is never cached: a token refused for nbf passes once nbf is reached', async (t) => {
  const clock = new FakeClock()
  const deps = makeDeps({ clock, config: { jwtProviders: providers(t.context) } })
  const policy = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'rsa' }), deps)
  const token = await sign(t.context.rsa, claims({ nbf: Math.floor(clock.now() / 1000) + 60 }), clock.now())
  assertInvalid(t, await run(policy, bearer(token, clock)), 'token not yet valid')
  clock.advance(61_000)
  assertAccepted(t, await run(policy, bearer(token, clock)))
})

test('a revoked jti is refused, also from the cache; other tokens of the provider pass', async (t) => {
  const clock = new FakeClock()
  const store = new MemoryStore({ now: clock.now })
  const deps = makeDeps({ clock, store, config: { jwtProviders: providers(t.context) } })
  const policy = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'revocable' }), deps)
  const token = await sign(t.context.rsa, claims({ jti: 'jti-1' }), clock.now())
  const other = await sign(t.context.rsa, claims({ jti: 'jti-2' }), clock.now())
  assertAccepted(t, await run(policy, bearer(token, clock)))
  await revokeJti(store, 'jti-1', clock.now() + 3_600_000, clock.now())
  assertInvalid(t, await run(policy, bearer(token, clock)), 'token revoked')
  assertAccepted(t, await run(policy, bearer(other, clock)))
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims(), clock.now()), clock)), 'missing jti')
  await store.close()
})

test('revocation is only checked for providers that enable it', async (t) => {
  const clock = new FakeClock()
  const store = new MemoryStore({ now: clock.now })
  const deps = makeDeps({ clock, store, config: { jwtProviders: providers(t.context) } })
  const policy = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'rsa' }), deps)
  await revokeJti(store, 'jti-9', clock.now() + 60_000, clock.now())
  await store.close()
  // The store is closed (down): a provider without revocation never asks it.
  assertAccepted(t, await run(policy, bearer(await sign(t.context.rsa, claims({ jti: 'jti-9' }), clock.now()), clock)))
})

test('a revocation list the store cannot answer is a 503 fault with onError deny, and skipped with onError allow', async (t) => {
  const clock = new FakeClock()
  const token = await sign(t.context.rsa, claims({ jti: 'jti-3' }), clock.now())
  for (const onError of ['deny', 'allow']) {
    const store = new MemoryStore({ now: clock.now })
    await store.close()
    const deps = makeDeps({ clock, store, config: { store: { onError }, jwtProviders: providers(t.context) } })
    const policy = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'revocable' }), deps)
    if (onError === 'deny') await t.throwsAsync(async () => await run(policy, bearer(token, clock)), { instanceOf: StoreUnavailableError })
    else assertAccepted(t, await run(policy, bearer(token, clock)))
  }
})

test('a non-string sub is a malformed token; a token with neither sub nor client is refused', async (t) => {
  const policy = await t.context.policy({ provider: 'rsa' })
  const now = t.context.now()
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ sub: 42 }), now), t.context.clock)), 'malformed token')
  assertInvalid(t, await run(policy, bearer(await sign(t.context.rsa, claims({ sub: undefined }), now), t.context.clock)), 'missing sub')
  const clientOnly = await run(policy, bearer(await sign(t.context.rsa, claims({ sub: undefined, client_id: 'svc' }), now), t.context.clock))
  t.like((clientOnly as { identity: object }).identity, { subject: 'svc', client: 'svc' })
})

test('arbitrary Authorization values never throw and are never accepted', async (t) => {
  const fc = await import('fast-check')
  const policy = await t.context.policy({ provider: 'rsa' })
  const token = await sign(t.context.rsa, claims(), t.context.now())
  const [h, p, s] = token.split('.') as [string, string, string]
  const part = fc.oneof(fc.constant(h), fc.constant(p), fc.constant(s), fc.base64String(), fc.string())
  const value = fc.oneof(
    fc.string(),
    fc.tuple(fc.constantFrom('Bearer ', 'bearer ', 'Bearer  ', 'Basic '), fc.string()).map(([a, b]) => a + b),
    fc.tuple(part, part, part).map(([a, b, c]) => `Bearer ${a}.${b}.${c}`),
  ).filter((v) => v !== `Bearer ${token}`)
  await t.notThrowsAsync(fc.assert(fc.asyncProperty(value, async (header) => {
    const outcome = await policy.evaluate(makeContext({ headers: [['authorization', header]], clock: t.context.clock }))
    return isRejection(outcome) && (outcome.status === 400 || outcome.status === 401)
  }), { numRuns: 500 }))
})
