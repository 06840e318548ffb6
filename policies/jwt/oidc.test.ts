import anyTest, { type TestFn } from 'ava'
import { decodeProtectedHeader } from 'jose'
import { isRejection, type Rejection } from '../../gateway/errors.js'
import type { Outcome, PolicyInstance } from '../types.js'
import { introspection } from '../introspection/index.js'
import { schema as introspectionSchema, type IntrospectionConfig } from '../introspection/schema.js'
import { jwt } from './index.js'
import { schema, type JwtPolicyConfig } from './schema.js'
import { FakeClock, makeDeps, withDefaults, type TestDeps } from '../../test/helpers/policy-harness.js'
import { bearer, provider } from './fixtures/harness.js'
import { startIdp, type TestIdp } from './fixtures/idp.js'

interface Context {
  idp: TestIdp
  clock: FakeClock
  deps: TestDeps
  orders: PolicyInstance
}
const test = anyTest.serial as TestFn<Context>

test.before(async (t) => {
  const idp = await startIdp()
  const clock = new FakeClock()
  // Only `issuer:`: the JWKS is found by OIDC discovery (plain http is allowed on loopback).
  const deps = makeDeps({ clock, config: { jwtProviders: { idp: provider({ issuer: idp.issuer, audience: 'orders-api', algorithms: ['ES256'], typ: 'at+jwt' }) } } })
  const orders = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'idp' }), deps)
  t.context = { idp, clock, deps, orders }
})

test.after.always(async (t) => { await t.context.idp?.close() })

function detail (outcome: Outcome): string | undefined {
  return isRejection(outcome) ? `${(outcome as Rejection).code}: ${(outcome as Rejection).detail}` : undefined
}

test('a client-credentials JWT access token from the IdP is accepted with only issuer configured', async (t) => {
  const token = await t.context.idp.token('orders', 'orders:read')
  t.is(decodeProtectedHeader(token).typ, 'at+jwt')
  const outcome = await t.context.orders.evaluate(bearer(token, t.context.clock))
  t.is(detail(outcome), undefined)
  const identity = (outcome as { identity: Record<string, unknown> }).identity
  t.like(identity, { subject: 'orders-client', client: 'orders-client', scopes: ['orders:read'] })
  t.like(identity.claims, { iss: t.context.idp.issuer, aud: 'orders-api', client_id: 'orders-client' })
})

test('a token the IdP issued for another audience is refused', async (t) => {
  const token = await t.context.idp.token('billing')
  t.is(detail(await t.context.orders.evaluate(bearer(token, t.context.clock))), 'invalid_token: wrong audience')
  // The same token passes on a route that expects that audience: only the audience differed.
  const billing = await jwt.create(withDefaults<JwtPolicyConfig>(schema, { provider: 'idp', audience: 'billing-api' }), t.context.deps)
  t.is(detail(await billing.evaluate(bearer(token, t.context.clock))), undefined)
})

test('an opaque token is not a JWT for the jwt policy', async (t) => {
  const token = await t.context.idp.token('opaque')
  t.is(detail(await t.context.orders.evaluate(bearer(token, t.context.clock))), 'invalid_token: malformed token')
})

test('an opaque token is accepted by introspection at the IdP; a made-up one is refused', async (t) => {
  const policy = await introspection.create(withDefaults<IntrospectionConfig>(introspectionSchema, {
    endpoint: `${t.context.idp.issuer}/token/introspection`,
    clientId: t.context.idp.introspector.id,
    clientSecret: t.context.idp.introspector.secret,
    audience: 'orders-api',
  }), t.context.deps)
  const token = await t.context.idp.token('opaque')
  const outcome = await policy.evaluate(bearer(token, t.context.clock))
  t.is(detail(outcome), undefined)
  t.like((outcome as { identity: object }).identity, { subject: 'orders-client', client: 'orders-client', scopes: ['orders:read'] })
  t.is(detail(await policy.evaluate(bearer('x'.repeat(43), t.context.clock))), 'invalid_token: token not active')

  const wrongSecret = await introspection.create(withDefaults<IntrospectionConfig>(introspectionSchema, {
    endpoint: `${t.context.idp.issuer}/token/introspection`, clientId: t.context.idp.introspector.id, clientSecret: 'wrong-secret', cacheTtl: '1s',
  }), t.context.deps)
  t.is(detail(await wrongSecret.evaluate(bearer(token, t.context.clock))), 'invalid_token: token introspection unavailable')
})

test('a key rotation at the IdP is followed without restart: new tokens pass, tokens of the retired key fail', async (t) => {
  const before = await t.context.idp.token('orders')
  const unusedBefore = await t.context.idp.token('orders')
  t.is(detail(await t.context.orders.evaluate(bearer(before, t.context.clock))), undefined)
  const oldKid = t.context.idp.kid
  await t.context.idp.rotate()
  const after = await t.context.idp.token('orders')
  t.not(decodeProtectedHeader(after).kid, oldKid)
  const fetchesBefore = t.context.idp.jwksRequests()
  // Past the refetch cooldown the unknown kid makes the gateway fetch the JWKS again, once.
  t.context.clock.advance(31_000)
  t.is(detail(await t.context.orders.evaluate(bearer(after, t.context.clock))), undefined)
  t.is(t.context.idp.jwksRequests(), fetchesBefore + 1)
  // A token signed by the retired key that was never verified before is refused now.
  t.is(detail(await t.context.orders.evaluate(bearer(unusedBefore, t.context.clock))), 'invalid_token: unknown signing key')
  t.is(t.context.idp.jwksRequests(), fetchesBefore + 1)
})
