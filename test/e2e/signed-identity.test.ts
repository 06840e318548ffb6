import test from 'ava'
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { assertNotLogged, startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import type { Echo } from './support.js'

const alice = newApiKey()

function config (extra: Record<string, unknown> = {}) {
  return {
    upstreams: { orders: { echo: true }, billing: { echo: true } },
    apiKeys: [{ id: alice.id, hash: hashApiKey(alice.key), client: 'alice-app', scopes: ['orders:read', 'orders:write'] }],
    identity: { signed: { ttl: '60s' } },
    routes: [
      { name: 'orders', match: { path: '/v1/orders/**' }, upstream: 'orders', policies: [{ apiKey: {} }] },
      { name: 'billing', match: { path: '/v1/billing/**' }, upstream: 'billing', policies: [{ apiKey: {} }] },
      { name: 'open', match: { path: '/open' }, upstream: 'orders', public: true },
    ],
    ...extra,
  }
}

async function identityHeader (gw: TestGateway, path: string, headers: Record<string, string> = {}): Promise<string | undefined> {
  const { value } = await identityExchange(gw, path, headers)
  return value
}

/** The X-Auth-Identity the upstream received for one request, and that request's id. */
async function identityExchange (gw: TestGateway, path: string, headers: Record<string, string> = {}): Promise<{ value: string | undefined, requestId: string | null }> {
  const res = await gw.fetch(path, { headers: { 'x-api-key': alice.key, ...headers } })
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`)
  const echo = await res.json() as Echo
  const value = echo.headers['x-auth-identity']
  return { value: Array.isArray(value) ? value.join(',') : value, requestId: res.headers.get('x-request-id') }
}

test('X-Auth-Identity verifies against the admin JWKS, carries the identity, and its aud is the upstream', async (t) => {
  const gw = await (await startGateway(config()))
  t.teardown(() => gw.close())
  const jwks = createRemoteJWKSet(new URL(`${gw.adminUrl}/.well-known/jwks.json`))

  const { value: token, requestId } = await identityExchange(gw, '/v1/orders/7')
  t.truthy(token)
  const { payload, protectedHeader } = await jwtVerify(token!, jwks, { issuer: 'authgate', audience: 'orders', algorithms: ['ES256'] })
  t.is(protectedHeader.alg, 'ES256')
  t.truthy(protectedHeader.kid)
  t.like(payload, { iss: 'authgate', aud: 'orders', sub: 'alice-app', client: 'alice-app', scope: 'orders:read orders:write' })
  t.deepEqual(payload.methods, ['apiKey'])
  t.is(payload.exp! - payload.iat!, 60)
  t.true(Math.abs(payload.iat! - Date.now() / 1000) < 5)
  t.regex(String(payload.jti), /^[0-9a-f-]{36}$/)

  const billing = await identityHeader(gw, '/v1/billing/1')
  t.is((await jwtVerify(billing!, jwks, { issuer: 'authgate', audience: 'billing' })).payload.aud, 'billing')
  await t.throwsAsync(() => jwtVerify(billing!, jwks, { issuer: 'authgate', audience: 'orders' }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' },
    'a token meant for billing is refused by orders')
  await assertNotLogged(t, gw, requestId, [token!], 'the signed token')
  t.false(gw.rawLogs().includes(token!), 'the signed token is not logged')
})

test('the JWKS endpoint is public, cacheable for a short time, and holds no private key material', async (t) => {
  const gw = await (await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: 'admin-token-for-test-0123456789' } }))
  t.teardown(() => gw.close())
  const res = await fetch(`${gw.adminUrl}/.well-known/jwks.json`)
  t.is(res.status, 200)
  t.is(res.headers.get('content-type'), 'application/jwk-set+json')
  t.regex(res.headers.get('cache-control') ?? '', /^public, max-age=\d+$/)
  const body = await res.json() as { keys: Array<Record<string, unknown>> }
  t.is(body.keys.length, 1)
  t.like(body.keys[0], { kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
  t.false('d' in body.keys[0]!)
  t.is((await fetch(`${gw.adminUrl}/admin/keys`)).status, 401, 'the admin API itself still needs the token')
})

test('a client-sent X-Auth-Identity never reaches the upstream: replaced on authenticated routes, removed on public ones', async (t) => {
  const gw = await (await startGateway(config()))
  t.teardown(() => gw.close())
  const forged = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.'
  const token = await identityHeader(gw, '/v1/orders/1', { 'x-auth-identity': forged })
  t.not(token, forged)
  t.is(decodeJwt(token!).sub, 'alice-app')
  t.is(decodeProtectedHeader(token!).alg, 'ES256')

  const open = await gw.fetch('/open', { headers: { 'x-auth-identity': forged, 'X-AUTH-IDENTITY': forged } })
  t.is(open.status, 200)
  const echo = await open.json() as Echo
  t.is(echo.headers['x-auth-identity'], undefined, 'nobody authenticated: no identity at all')
})

test('instances sharing a store sign with one key: a token from one verifies against the other\'s JWKS', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const shared = config({ store: { prefix: uniquePrefix('signed') } })
  const a = await (await startGateway(shared, { redis: redis.url }))
  t.teardown(() => a.close())
  const b = await (await startGateway(shared, { redis: redis.url }))
  t.teardown(() => b.close())
  const token = await identityHeader(a, '/v1/orders/1')
  const jwksOfB = createRemoteJWKSet(new URL(`${b.adminUrl}/.well-known/jwks.json`))
  t.is((await jwtVerify(token!, jwksOfB, { issuer: 'authgate', audience: 'orders' })).payload.sub, 'alice-app')
  const fromB = await identityHeader(b, '/v1/orders/1')
  t.is(decodeProtectedHeader(fromB!).kid, decodeProtectedHeader(token!).kid)
})
