/**
 * Several methods on one route, through a real gateway (issue 14): anyOf is order-free, a JWT without client_id
 * keeps the client of an earlier step, and identity values with surrounding whitespace are refused. Each refusal is
 * paired with the request it must still let through.
 */
import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { Agent } from 'undici'
import { issueClientCert, type PemPair } from '../../certs/pki.js'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { sign } from '../../policies/jwt/fixtures/keys.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { mintPki, type Pki } from '../helpers/pki.js'
import { assertProblem } from './support.js'

interface Context {
  gw: TestGateway
  pki: Pki
  key: string
  secret: Buffer
  partnerSecret: Buffer
  spaced: PemPair
  agents: Agent[]
}
const test = anyTest as TestFn<Context>

test.before(async (t) => {
  const pki = await mintPki()
  const { id, key } = newApiKey()
  const secret = randomBytes(32)
  const partnerSecret = randomBytes(32)
  const gw = await startGateway({
    listeners: [{ name: 'tls', address: '127.0.0.1:0', tls: { cert: 'pki/server.crt', key: 'pki/server.key', clientCA: 'pki/ca.crt', clientCert: 'optional' } }],
    apiKeys: [{ id, hash: hashApiKey(key), client: 'key-client', scopes: ['read'] }],
    jwtProviders: {
      internal: { secret: '${env:JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'internal' },
      partner: { secret: '${env:PARTNER_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'internal' },
    },
    routes: [
      { name: 'key-jwt', match: { path: '/key-jwt/**' }, upstream: 'demo', policies: [{ anyOf: [{ apiKey: {} }, { jwt: { provider: 'internal' } }] }] },
      { name: 'jwt-key', match: { path: '/jwt-key/**' }, upstream: 'demo', policies: [{ anyOf: [{ jwt: { provider: 'internal' } }, { apiKey: {} }] }] },
      { name: 'cert-jwt', match: { path: '/cert-jwt/**' }, upstream: 'demo', policies: [{ mtls: {} }, { jwt: { provider: 'internal' } }] },
      { name: 'two-idps', match: { path: '/two-idps/**' }, upstream: 'demo', policies: [{ anyOf: [{ jwt: { provider: 'internal' } }, { jwt: { provider: 'partner' } }, { apiKey: {} }] }] },
      { name: 'jwt', match: { path: '/jwt/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'internal' } }] },
      { name: 'cert', match: { path: '/cert/**' }, upstream: 'demo', policies: [{ mtls: { subjectFrom: 'cn' } }] },
    ],
  }, {
    env: { JWT_SECRET: secret.toString('base64'), PARTNER_SECRET: partnerSecret.toString('base64') },
    files: { 'pki/server.crt': pki.server.cert, 'pki/server.key': pki.server.key, 'pki/ca.crt': pki.ca.cert },
  })
  const spaced = await issueClientCert(pki.ca, { commonName: ' admin ', days: 1 })
  t.context = { gw, pki, key, secret, partnerSecret, spaced, agents: [] }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await Promise.all((t.context.agents ?? []).map(async (agent) => await agent.close()))
})

async function get (t: { context: Context }, path: string, headers: Record<string, string> = {}, client?: PemPair): Promise<Response> {
  const agent = new Agent({ connect: { ca: t.context.pki.ca.cert, servername: 'localhost', ...(client ? { cert: client.cert, key: client.key } : {}) } })
  t.context.agents.push(agent)
  // The harness's init type intersects undici's Dispatcher with the global RequestInit's: cast past it.
  return await t.context.gw.fetch(path, { dispatcher: agent as never, headers })
}

async function token (t: { context: Context }, claims: Record<string, unknown> = {}): Promise<string> {
  return await sign(t.context.secret, { aud: 'internal', sub: 'user-1', client_id: 'app-1', ...claims }, Date.now())
}

async function seen (res: Response): Promise<Record<string, string>> {
  return (await res.json() as { headers: Record<string, string> }).headers
}

test('anyOf: a valid API key with an invalid bearer token is 401 whatever the order; the key alone is 200', async (t) => {
  const bad = await token(t, { aud: 'elsewhere' })
  for (const route of ['/key-jwt/x', '/jwt-key/x']) {
    const refused = await get(t, route, { 'x-api-key': t.context.key, authorization: `Bearer ${bad}` })
    const body = await assertProblem(t, refused, 401, 'invalid_token')
    t.is(body.detail, 'wrong audience', route)
    const challenges = refused.headers.get('www-authenticate') ?? ''
    t.true(challenges.includes('ApiKey realm="authgate"'), challenges)
    t.true(challenges.includes('Bearer realm="authgate", error="invalid_token", error_description="wrong audience"'), challenges)

    const alone = await get(t, route, { 'x-api-key': t.context.key })
    t.is(alone.status, 200, route)
    t.like(await seen(alone), { 'x-auth-subject': 'key-client', 'x-auth-methods': 'apiKey' })
  }
})

test('anyOf: a valid key and a valid token of the same caller: the first listed method gives the identity and both are listed', async (t) => {
  const good = await token(t, { sub: 'key-client' })
  const keyFirst = await get(t, '/key-jwt/x', { 'x-api-key': t.context.key, authorization: `Bearer ${good}` })
  t.is(keyFirst.status, 200)
  t.like(await seen(keyFirst), { 'x-auth-subject': 'key-client', 'x-auth-client': 'key-client', 'x-auth-methods': 'apiKey,jwt', 'x-auth-scopes': 'read' })
  const tokenFirst = await get(t, '/jwt-key/x', { 'x-api-key': t.context.key, authorization: `Bearer ${good}` })
  t.is(tokenFirst.status, 200)
  t.like(await seen(tokenFirst), { 'x-auth-subject': 'key-client', 'x-auth-client': 'app-1', 'x-auth-methods': 'jwt,apiKey' })
})

test('anyOf: a valid key and a valid token of different callers are 400 in either order; each alone passes (review F4)', async (t) => {
  const other = await token(t)
  for (const path of ['/key-jwt/x', '/jwt-key/x']) {
    await assertProblem(t, await get(t, path, { 'x-api-key': t.context.key, authorization: `Bearer ${other}` }), 400, 'bad_request')
    t.is((await get(t, path, { 'x-api-key': t.context.key })).status, 200)
    t.is((await get(t, path, { authorization: `Bearer ${other}` })).status, 200)
  }
})

test('anyOf with two JWT providers: a token either one accepts passes; one neither accepts is 401, also next to a valid key', async (t) => {
  for (const [secret, subject] of [[t.context.secret, 'internal-user'], [t.context.partnerSecret, 'partner-user']] as const) {
    const res = await get(t, '/two-idps/x', { authorization: `Bearer ${await sign(secret, { aud: 'internal', sub: subject }, Date.now())}` })
    t.is(res.status, 200, subject)
    t.like(await seen(res), { 'x-auth-subject': subject, 'x-auth-methods': 'jwt' })
  }
  const neither = `Bearer ${await sign(randomBytes(32), { aud: 'internal', sub: 'x' }, Date.now())}`
  await assertProblem(t, await get(t, '/two-idps/x', { authorization: neither }), 401, 'invalid_token')
  await assertProblem(t, await get(t, '/two-idps/x', { authorization: neither, 'x-api-key': t.context.key }), 401, 'invalid_token')
  t.is((await get(t, '/two-idps/x', { 'x-api-key': t.context.key })).status, 200)
})

test('mtls then a JWT without client_id: the certificate\'s client reaches the upstream; a token naming its client wins', async (t) => {
  const cert = t.context.pki.otherClient // CN=billing-service
  const bare = await get(t, '/cert-jwt/x', { authorization: `Bearer ${await token(t, { client_id: undefined })}` }, cert)
  t.is(bare.status, 200)
  t.like(await seen(bare), { 'x-auth-subject': 'user-1', 'x-auth-client': 'billing-service', 'x-auth-methods': 'mtls,jwt' })
  const named = await get(t, '/cert-jwt/x', { authorization: `Bearer ${await token(t, { client_id: undefined, azp: 'spa' })}` }, cert)
  t.is(named.status, 200)
  t.like(await seen(named), { 'x-auth-subject': 'user-1', 'x-auth-client': 'spa' })
  // Without an earlier step the same kind of token's client is its sub.
  const alone = await get(t, '/jwt/x', { authorization: `Bearer ${await token(t, { client_id: undefined })}` })
  t.is(alone.status, 200)
  t.like(await seen(alone), { 'x-auth-subject': 'user-1', 'x-auth-client': 'user-1' })
})

test('a JWT sub with surrounding spaces is 401 and never reaches the upstream; the trimmed sub passes', async (t) => {
  for (const sub of [' admin ', 'admin ', ' admin']) {
    const refused = await get(t, '/jwt/x', { authorization: `Bearer ${await token(t, { sub })}` })
    const body = await assertProblem(t, refused, 401, 'invalid_credentials')
    t.regex(String(body.detail), /whitespace/)
  }
  const spacedClient = await get(t, '/jwt/x', { authorization: `Bearer ${await token(t, { client_id: 'app-1 ' })}` })
  await assertProblem(t, spacedClient, 401, 'invalid_credentials')
  const ok = await get(t, '/jwt/x', { authorization: `Bearer ${await token(t, { sub: 'admin' })}` })
  t.is(ok.status, 200)
  t.like(await seen(ok), { 'x-auth-subject': 'admin' })
})

test('a client certificate whose CN has surrounding spaces is 401; a plain CN from the same CA passes', async (t) => {
  const refused = await get(t, '/cert/x', {}, t.context.spaced)
  await assertProblem(t, refused, 401, 'invalid_credentials')
  const ok = await get(t, '/cert/x', {}, t.context.pki.otherClient)
  t.is(ok.status, 200)
  t.like(await seen(ok), { 'x-auth-subject': 'billing-service' })
})
