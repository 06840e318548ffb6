import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { SignJWT } from 'jose'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { assertProblem } from './support.js'

interface Context { gw: TestGateway, secret: Buffer }
const test = anyTest as TestFn<Context>

const reader = newApiKey()
const writer = newApiKey()

test.before(async (t) => {
  const secret = randomBytes(32)
  const gw = await startGateway({
    jwtProviders: {
      internal: { secret: '${env:JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'internal' },
    },
    apiKeys: [
      { id: reader.id, hash: hashApiKey(reader.key), client: 'reader', scopes: ['orders:read'] },
      { id: writer.id, hash: hashApiKey(writer.key), client: 'writer', scopes: ['orders:read', 'orders:write'] },
    ],
    routes: [
      { name: 'key-write', match: { path: '/key/write' }, upstream: 'demo', policies: [{ apiKey: {} }, { scopes: ['orders:write'] }] },
      { name: 'key-any', match: { path: '/key/any' }, upstream: 'demo', policies: [{ apiKey: {} }, { scopes: { anyOf: ['admin', 'orders:write'] } }] },
      { name: 'jwt-write', match: { path: '/jwt/write' }, upstream: 'demo', policies: [{ jwt: { provider: 'internal' } }, { scopes: ['orders:read', 'orders:write'] }] },
      { name: 'jwt-tenant', match: { path: '/jwt/tenant' }, upstream: 'demo', policies: [{ jwt: { provider: 'internal' } }, { claims: { tenant: 'acme' } }] },
      { name: 'jwt-roles', match: { path: '/jwt/roles' }, upstream: 'demo', policies: [{ jwt: { provider: 'internal' } }, { claims: { roles: ['admin', 'ops'], tenant: ['acme', 'beta'] } }] },
      {
        name: 'mixed',
        match: { path: '/mixed' },
        upstream: 'demo',
        policies: [{ anyOf: [{ apiKey: {} }, { jwt: { provider: 'internal' } }] }, { scopes: ['orders:write'] }, { claims: { tenant: 'acme' } }],
      },
    ],
  }, { env: { JWT_SECRET: secret.toString('base64') } })
  t.context = { gw, secret }
})

test.after.always(async (t) => { await t.context.gw?.close() })

async function token (t: { context: Context }, claims: Record<string, unknown>): Promise<string> {
  return await new SignJWT({ client_id: 'app-1', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('user-1')
    .setAudience('internal')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(t.context.secret)
}

const bearer = (jwt: string) => ({ authorization: `Bearer ${jwt}` })
const key = (k: { key: string }) => ({ 'x-api-key': k.key })

test('without credentials every authorization-guarded route is 401 with a challenge, never 403', async (t) => {
  for (const path of ['/key/write', '/key/any', '/jwt/write', '/jwt/tenant', '/jwt/roles', '/mixed']) {
    const res = await t.context.gw.fetch(path)
    await assertProblem(t, res, 401, 'missing_credentials')
    t.truthy(res.headers.get('www-authenticate'), path)
  }
  const mixed = await t.context.gw.fetch('/mixed')
  t.is(mixed.headers.get('www-authenticate'), 'ApiKey realm="authgate", header="X-API-Key", Bearer realm="authgate"')
})

test('bad credentials are 401 before any scope or claim is looked at', async (t) => {
  const forged = await new SignJWT({ scope: 'orders:read orders:write', tenant: 'acme' })
    .setProtectedHeader({ alg: 'HS256' }).setSubject('x').setAudience('internal').setExpirationTime('5m').sign(randomBytes(32))
  for (const path of ['/jwt/write', '/jwt/tenant', '/mixed']) {
    const res = await t.context.gw.fetch(path, { headers: bearer(forged) })
    await assertProblem(t, res, 401, 'invalid_token')
  }
  await assertProblem(t, await t.context.gw.fetch('/key/write', { headers: { 'x-api-key': `agk_${reader.id}_${'A'.repeat(43)}` } }), 401, 'invalid_credentials')
})

test('an API key without the scope is 403 insufficient_scope without a Bearer challenge; with it, 200', async (t) => {
  const denied = await t.context.gw.fetch('/key/write', { headers: key(reader) })
  const body = await assertProblem(t, denied, 403, 'insufficient_scope')
  t.is(body.detail, 'missing scope: orders:write')
  t.is(denied.headers.get('www-authenticate'), null)
  const ok = await t.context.gw.fetch('/key/write', { headers: key(writer) })
  t.is(ok.status, 200)
  t.is(((await ok.json()) as { headers: Record<string, string> }).headers['x-auth-scopes'], 'orders:read orders:write')
})

test('scopes anyOf: one listed scope suffices, none is 403', async (t) => {
  await assertProblem(t, await t.context.gw.fetch('/key/any', { headers: key(reader) }), 403, 'insufficient_scope')
  t.is((await t.context.gw.fetch('/key/any', { headers: key(writer) })).status, 200)
})

test('a bearer token without the scope gets exactly the RFC 6750 insufficient_scope challenge; with it, 200', async (t) => {
  const denied = await t.context.gw.fetch('/jwt/write', { headers: bearer(await token(t, { scope: 'orders:read' })) })
  const body = await assertProblem(t, denied, 403, 'insufficient_scope')
  t.is(body.detail, 'missing scope: orders:write')
  t.is(denied.headers.get('www-authenticate'), 'Bearer realm="authgate", error="insufficient_scope", scope="orders:read orders:write"')
  const ok = await t.context.gw.fetch('/jwt/write', { headers: bearer(await token(t, { scope: 'orders:write orders:read' })) })
  t.is(ok.status, 200)
})

test('a claim with the wrong value is 403 forbidden; the right value passes', async (t) => {
  const denied = await t.context.gw.fetch('/jwt/tenant', { headers: bearer(await token(t, { tenant: 'beta' })) })
  const body = await assertProblem(t, denied, 403, 'forbidden')
  t.is(body.detail, 'claim "tenant" does not have an allowed value')
  t.is(denied.headers.get('www-authenticate'), null)
  t.is((await t.context.gw.fetch('/jwt/tenant', { headers: bearer(await token(t, { tenant: 'acme' })) })).status, 200)
})

test('a missing claim is 403 forbidden naming the claim', async (t) => {
  const body = await assertProblem(t, await t.context.gw.fetch('/jwt/tenant', { headers: bearer(await token(t, {})) }), 403, 'forbidden')
  t.is(body.detail, 'required claim "tenant" is missing')
})

test('claim lists are membership, and an array claim passes when it contains one of the values', async (t) => {
  const run = async (claims: Record<string, unknown>) => (await t.context.gw.fetch('/jwt/roles', { headers: bearer(await token(t, claims)) })).status
  t.is(await run({ roles: ['viewer', 'ops'], tenant: 'beta' }), 200)
  t.is(await run({ roles: 'admin', tenant: 'acme' }), 200)
  t.is(await run({ roles: ['viewer'], tenant: 'acme' }), 403)
  t.is(await run({ roles: ['admin'], tenant: 'gamma' }), 403)
})

test('on a route accepting a key or a token, only the bearer caller gets the insufficient_scope challenge', async (t) => {
  const viaKey = await t.context.gw.fetch('/mixed', { headers: key(reader) })
  await assertProblem(t, viaKey, 403, 'insufficient_scope')
  t.is(viaKey.headers.get('www-authenticate'), null)
  const viaToken = await t.context.gw.fetch('/mixed', { headers: bearer(await token(t, { scope: 'orders:read', tenant: 'acme' })) })
  await assertProblem(t, viaToken, 403, 'insufficient_scope')
  t.is(viaToken.headers.get('www-authenticate'), 'Bearer realm="authgate", error="insufficient_scope", scope="orders:write"')
  const wrongTenant = await t.context.gw.fetch('/mixed', { headers: bearer(await token(t, { scope: 'orders:write', tenant: 'beta' })) })
  await assertProblem(t, wrongTenant, 403, 'forbidden')
  t.is((await t.context.gw.fetch('/mixed', { headers: bearer(await token(t, { scope: 'orders:write', tenant: 'acme' })) })).status, 200)
  await assertProblem(t, await t.context.gw.fetch('/mixed', { headers: key(writer) }), 403, 'forbidden')
})

test('a config with scopes on a public route, or a claims step in anyOf, is refused at load', async (t) => {
  await t.throwsAsync(() => startGateway({
    routes: [{ name: 'open', match: { path: '/open' }, upstream: 'demo', public: true, policies: [{ scopes: ['a'] }] }],
  }), { message: /meaningless on a public route/ })
  await t.throwsAsync(() => startGateway({
    routes: [{ name: 'r', match: { path: '/r' }, upstream: 'demo', policies: [{ anyOf: [{ apiKey: {} }, { claims: { a: 'b' } }] }] }],
  }), { message: /cannot be an anyOf member/ })
})
