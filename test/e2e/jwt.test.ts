import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { assertNotLogged, startGateway, type TestGateway } from '../helpers/gateway.js'
import { rawGet, header } from './support.js'
import { makeKey, sign, startJwksServer, type JwksServer, type TestKey } from '../../policies/jwt/fixtures/keys.js'

interface Context {
  gw: TestGateway
  jwks: JwksServer
  key: TestKey
  secret: Buffer
}
const test = anyTest as TestFn<Context>

const ISSUER = 'https://issuer.test'

test.before(async (t) => {
  const key = await makeKey('ES256')
  const jwks = await startJwksServer([key.publicJwk])
  const secret = randomBytes(32)
  const gw = await startGateway({
    jwtProviders: {
      corp: { issuer: ISSUER, jwksUri: jwks.jwksUri, audience: 'orders-api', algorithms: ['ES256'] },
      internal: { secret: '${env:JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'internal' },
    },
    routes: [
      { name: 'orders', match: { path: '/v1/orders/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'corp' } }] },
      { name: 'pass', match: { path: '/v1/pass/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'corp', passthrough: true } }] },
      { name: 'internal', match: { path: '/internal/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'internal' } }] },
      { name: 'either', match: { path: '/v1/either/**' }, upstream: 'demo', policies: [{ anyOf: [{ apiKey: {} }, { jwt: { provider: 'corp' } }] }] },
    ],
  }, { env: { JWT_SECRET: secret.toString('base64') } })
  t.context = { gw, jwks, key, secret }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.jwks?.close()
})

async function token (t: { context: Context }, claims: Record<string, unknown> = {}): Promise<string> {
  return await sign(t.context.key, { iss: ISSUER, aud: 'orders-api', sub: 'user-1', client_id: 'app-1', scope: 'orders:read', ...claims }, Date.now())
}

test('a valid token reaches the upstream with the identity, and without the Authorization header', async (t) => {
  const jwt = await token(t)
  const res = await t.context.gw.fetch('/v1/orders/7', { headers: { authorization: `Bearer ${jwt}` } })
  t.is(res.status, 200)
  const echo = await res.json() as { headers: Record<string, string | undefined> }
  t.is(echo.headers.authorization, undefined)
  t.is(echo.headers['x-auth-subject'], 'user-1')
  t.is(echo.headers['x-auth-client'], 'app-1')
  t.is(echo.headers['x-auth-methods'], 'jwt')
  t.is(echo.headers['x-auth-scopes'], 'orders:read')
  await assertNotLogged(t, t.context.gw, res.headers.get('x-request-id'), [jwt], 'the token')
})

test('passthrough: true forwards the Authorization header unchanged', async (t) => {
  const jwt = await token(t)
  const res = await t.context.gw.fetch('/v1/pass/1', { headers: { authorization: `Bearer ${jwt}` } })
  t.is(res.status, 200)
  t.is(((await res.json()) as { headers: Record<string, string> }).headers.authorization, `Bearer ${jwt}`)
})

test('no token is 401 missing_credentials with exactly `Bearer realm="authgate"`', async (t) => {
  const res = await t.context.gw.fetch('/v1/orders/7')
  t.is(res.status, 401)
  t.is(res.headers.get('www-authenticate'), 'Bearer realm="authgate"')
  t.like(await res.json(), { status: 401, error: 'missing_credentials' })
})

test('an expired token is 401 invalid_token with the RFC 6750 challenge; a fresh one passes', async (t) => {
  const seconds = Math.floor(Date.now() / 1000)
  const expired = await token(t, { iat: seconds - 600, exp: seconds - 300 })
  const res = await t.context.gw.fetch('/v1/orders/7', { headers: { authorization: `Bearer ${expired}` } })
  t.is(res.status, 401)
  t.is(res.headers.get('www-authenticate'), 'Bearer realm="authgate", error="invalid_token", error_description="token expired"')
  t.like(await res.json(), { error: 'invalid_token', detail: 'token expired' })
  await assertNotLogged(t, t.context.gw, res.headers.get('x-request-id'), [expired], 'the expired token')
  const fresh = await t.context.gw.fetch('/v1/orders/7', { headers: { authorization: `Bearer ${await token(t)}` } })
  t.is(fresh.status, 200)
})

test('a token for another audience is 401 "wrong audience"', async (t) => {
  const res = await t.context.gw.fetch('/v1/orders/7', { headers: { authorization: `Bearer ${await token(t, { aud: 'billing-api' })}` } })
  t.is(res.status, 401)
  t.is(res.headers.get('www-authenticate'), 'Bearer realm="authgate", error="invalid_token", error_description="wrong audience"')
})

test('two Authorization headers are 400 bad_request; one passes', async (t) => {
  const jwt = await token(t)
  const twice = await rawGet(t.context.gw.url, '/v1/orders/7', [`Authorization: Bearer ${jwt}`, `Authorization: Bearer ${jwt}`])
  t.is(twice.status, 400)
  t.like(JSON.parse(twice.body), { error: 'bad_request' })
  const once = await rawGet(t.context.gw.url, '/v1/orders/7', [`Authorization: Bearer ${jwt}`])
  t.is(once.status, 200)
})

test('a token in the query string is 400 and is not logged; lower-case "bearer" in the header passes', async (t) => {
  const jwt = await token(t)
  const res = await t.context.gw.fetch(`/v1/orders/7?access_token=${jwt}`)
  t.is(res.status, 400)
  t.like(await res.json(), { error: 'bad_request', detail: 'tokens belong in the Authorization header' })
  await assertNotLogged(t, t.context.gw, res.headers.get('x-request-id'), [jwt], 'the token in the query')
  const lower = await rawGet(t.context.gw.url, '/v1/orders/7', [`Authorization: bearer ${jwt}`])
  t.is(lower.status, 200)
})

test('HS256 with the secret from the environment passes; the secret never reaches the logs', async (t) => {
  const jwt = await sign(t.context.secret, { aud: 'internal', sub: 'svc-a' }, Date.now())
  const res = await t.context.gw.fetch('/internal/x', { headers: { authorization: `Bearer ${jwt}` } })
  t.is(res.status, 200)
  t.is(((await res.json()) as { headers: Record<string, string> }).headers['x-auth-subject'], 'svc-a')
  const forged = await sign(randomBytes(32), { aud: 'internal', sub: 'svc-a' }, Date.now())
  const bad = await t.context.gw.fetch('/internal/x', { headers: { authorization: `Bearer ${forged}` } })
  t.is(bad.status, 401)
  t.is(bad.headers.get('www-authenticate'), 'Bearer realm="authgate", error="invalid_token", error_description="bad signature"')
  // both requests made the gateway use the secret: wait for both lines
  await t.context.gw.logLine(res.headers.get('x-request-id'))
  await assertNotLogged(t, t.context.gw, bad.headers.get('x-request-id'), [t.context.secret.toString('base64')], 'the HS256 secret')
})

test('in anyOf, a Basic header is no bearer credential, but a bad bearer token is refused at once', async (t) => {
  const basic = await rawGet(t.context.gw.url, '/v1/either/1', ['Authorization: Basic dXNlcjpwYXNz'])
  t.is(basic.status, 401)
  t.like(JSON.parse(basic.body), { error: 'missing_credentials' })
  t.true(basic.headers['www-authenticate']!.includes('Bearer realm="authgate"'))
  const bad = await rawGet(t.context.gw.url, '/v1/either/1', ['Authorization: Bearer not.a.jwt'])
  t.is(bad.status, 401)
  t.like(JSON.parse(bad.body), { error: 'invalid_token', detail: 'malformed token' })
  t.true(bad.headers['www-authenticate']!.includes('Bearer realm="authgate", error="invalid_token", error_description="malformed token"'))
  const good = await rawGet(t.context.gw.url, '/v1/either/1', [`Authorization: Bearer ${await token(t)}`])
  t.is(good.status, 200)
  t.is(header(good, 'content-type')?.startsWith('application/json'), true)
})
