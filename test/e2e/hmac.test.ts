// Registers hmac + signingClients until policies/index.ts lists them (must come before the gateway imports).
import { createHmac, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { Agent } from 'undici'
import { assertNotLogged, startGateway, type TestGateway } from '../helpers/gateway.js'
import { uniquePrefix } from '../helpers/redis.js'
import { assertProblem, header, rawRequest, recordingUpstream, type Echo, type RecordingUpstream } from './support.js'
import { signRequest, signingInterceptor } from '../../policies/hmac/sign.js'

interface Context {
  gw: TestGateway
  second: TestGateway
  upstream: RecordingUpstream
  config: Record<string, unknown>
  files: Record<string, string>
}
const test = anyTest as TestFn<Context>

const secret = randomBytes(32).toString('base64url')
const githubSecret = randomBytes(20).toString('hex')
const partner = generateKeyPairSync('ed25519')
const env = { BILLING_SECRET: secret, GH_SECRET: githubSecret }

test.before(async (t) => {
  const upstream = await recordingUpstream()
  const files = { 'keys/partner.pem': partner.publicKey.export({ type: 'spki', format: 'pem' }).toString() }
  const config = {
    store: { prefix: uniquePrefix('hmac-e2e') },
    upstreams: { demo: { echo: true }, rec: { url: upstream.url } },
    signingClients: [
      { keyId: 'billing', client: 'billing-service', secret: '${env:BILLING_SECRET}', scopes: ['write'] },
      { keyId: 'partner-ed', client: 'partner', algorithm: 'ed25519', publicKey: '${file:keys/partner.pem}' },
    ],
    routes: [
      { name: 'payments', match: { path: '/v1/payments/**' }, upstream: 'rec', limits: { maxBodyBytes: '1KiB' }, policies: [{ hmac: {} }] },
      { name: 'signed', match: { path: '/v2/**' }, upstream: 'demo', policies: [{ hmac: { scheme: 'rfc9421' } }] },
      { name: 'github', match: { path: '/hooks/github' }, upstream: 'demo', policies: [{ hmac: { scheme: 'github', secret: '${env:GH_SECRET}' } }] },
    ],
  }
  const gw = await startGateway(config, { redis: true, env, files })
  const second = await startGateway(config, { redis: gw.redis!.url, env, files })
  t.context = { gw, second, upstream, config, files }
})

test.after.always(async (t) => {
  await t.context.second?.close()
  await t.context.gw?.close()
  await t.context.upstream?.close()
})

function signedInit (method: string, target: string, body?: Buffer | string, extra: Record<string, string> = {}): RequestInit {
  const headers = signRequest({ keyId: 'billing', secret, method, url: `http://127.0.0.1${target}`, ...(body !== undefined ? { body } : {}) })
  return { method, headers: { ...headers, ...extra }, ...(body !== undefined ? { body } : {}) }
}

test('a signed POST reaches the upstream with the identity, its body byte for byte, and without the signature headers', async (t) => {
  const probe = randomUUID()
  const body = randomBytes(700)
  const res = await t.context.gw.fetch('/v1/payments/charge?id=7', signedInit('POST', '/v1/payments/charge?id=7', body, { 'x-probe': probe }))
  t.is(res.status, 200, await res.clone().text())
  const [seen] = t.context.upstream.withProbe(probe)
  if (!seen) return t.fail('the upstream saw nothing')
  await seen.settled
  t.deepEqual(seen.body, body)
  t.is(seen.headers['content-length'], '700')
  t.is(seen.url, '/v1/payments/charge?id=7')
  t.is(seen.headers['x-auth-subject'], 'billing-service')
  t.is(seen.headers['x-auth-methods'], 'hmac')
  t.is(seen.headers['x-auth-scopes'], 'write')
  for (const name of ['x-signature', 'x-key-id', 'x-timestamp']) t.is(seen.headers[name], undefined, name)
  await assertNotLogged(t, t.context.gw, res.headers.get('x-request-id'), [secret], 'the signing secret')
})

test('a tampered body is 401 invalid_signature with the HMAC challenge and never reaches the upstream', async (t) => {
  const probe = randomUUID()
  const init = signedInit('POST', '/v1/payments/charge', '{"amount":1}', { 'x-probe': probe })
  const res = await t.context.gw.fetch('/v1/payments/charge', { ...init, body: '{"amount":9}' })
  const problem = await assertProblem(t, res, 401, 'invalid_signature')
  t.is(problem.detail, 'bad signature')
  t.is(res.headers.get('www-authenticate'), 'HMAC realm="authgate", headers="X-Key-Id X-Timestamp X-Signature"')
  t.deepEqual(t.context.upstream.withProbe(probe), [])
  const good = await t.context.gw.fetch('/v1/payments/charge', signedInit('POST', '/v1/payments/charge', '{"amount":9}'))
  t.is(good.status, 200)
})

test('a tampered path or query is refused, the signed target passes', async (t) => {
  const init = signedInit('GET', '/v1/payments/1?x=1')
  t.is((await t.context.gw.fetch('/v1/payments/2?x=1', init)).status, 401)
  t.is((await t.context.gw.fetch('/v1/payments/1?x=2', init)).status, 401)
  t.is((await t.context.gw.fetch('/v1/payments/1?x=1', init)).status, 200)
})

test('a request without signature headers is 401 missing_credentials with the challenge', async (t) => {
  const res = await t.context.gw.fetch('/v1/payments/1')
  await assertProblem(t, res, 401, 'missing_credentials')
  t.is(res.headers.get('www-authenticate'), 'HMAC realm="authgate", headers="X-Key-Id X-Timestamp X-Signature"')
})

test('a stale timestamp is 401 with the reason, a fresh one passes', async (t) => {
  const stale = signRequest({ keyId: 'billing', secret, method: 'GET', url: 'http://h/v1/payments/s', now: Date.now() - 301_000 })
  const problem = await assertProblem(t, await t.context.gw.fetch('/v1/payments/s', { headers: stale }), 401, 'invalid_signature')
  t.regex(String(problem.detail), /stale timestamp/)
  t.is((await t.context.gw.fetch('/v1/payments/s', signedInit('GET', '/v1/payments/s'))).status, 200)
})

test('an exact replay is refused by a second gateway instance on the same Redis, and after a restart', async (t) => {
  const init = signedInit('POST', '/v1/payments/once', 'pay once')
  t.is((await t.context.gw.fetch('/v1/payments/once', init)).status, 200)
  const replay = await t.context.second.fetch('/v1/payments/once', init)
  await assertProblem(t, replay, 401, 'replayed_request')
  t.is(replay.headers.get('www-authenticate'), 'HMAC realm="authgate", headers="X-Key-Id X-Timestamp X-Signature"')
  const restarted = await startGateway(t.context.config, { redis: t.context.gw.redis!.url, env, files: t.context.files })
  t.teardown(() => restarted.close())
  await assertProblem(t, await restarted.fetch('/v1/payments/once', init), 401, 'replayed_request')
  t.is((await restarted.fetch('/v1/payments/twice', signedInit('POST', '/v1/payments/twice', 'pay once'))).status, 200)
})

test('an unknown key id or a wrong secret is 401 invalid_signature', async (t) => {
  const unknown = signRequest({ keyId: 'nobody', secret, method: 'GET', url: 'http://h/v1/payments/k' })
  t.is((await assertProblem(t, await t.context.gw.fetch('/v1/payments/k', { headers: unknown }), 401, 'invalid_signature')).detail, 'unknown key id')
  const wrong = signRequest({ keyId: 'billing', secret: `${secret}x`, method: 'GET', url: 'http://h/v1/payments/k' })
  t.is((await assertProblem(t, await t.context.gw.fetch('/v1/payments/k', { headers: wrong }), 401, 'invalid_signature')).detail, 'bad signature')
})

test('a duplicated signature header is 400 bad_request, the single one passes', async (t) => {
  const headers = signRequest({ keyId: 'billing', secret, method: 'GET', url: 'http://h/v1/payments/d' })
  const { host } = new URL(t.context.gw.url)
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
  const twice = await rawRequest(t.context.gw.url, ['GET /v1/payments/d HTTP/1.1', `Host: ${host}`, ...lines, `X-Signature: ${headers['X-Signature']}`].join('\r\n'))
  await assertProblem(t, twice, 400, 'bad_request')
  const once = await rawRequest(t.context.gw.url, ['GET /v1/payments/d HTTP/1.1', `Host: ${host}`, ...lines].join('\r\n'))
  t.is(once.status, 200)
})

test('a body over the route\'s maxBodyBytes is 413 before any signature work, declared or chunked; 1 KiB passes', async (t) => {
  const big = Buffer.alloc(2048, 'a')
  const probe = randomUUID()
  await assertProblem(t, await t.context.gw.fetch('/v1/payments/big', signedInit('POST', '/v1/payments/big', big, { 'x-probe': probe })), 413, 'payload_too_large')
  const { host } = new URL(t.context.gw.url)
  const headers = signRequest({ keyId: 'billing', secret, method: 'POST', url: 'http://h/v1/payments/big', body: big })
  const chunked = await rawRequest(t.context.gw.url, ['POST /v1/payments/big HTTP/1.1', `Host: ${host}`, 'Transfer-Encoding: chunked', `X-Probe: ${probe}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)].join('\r\n'), `800\r\n${big.toString()}\r\n0\r\n\r\n`)
  await assertProblem(t, chunked, 413, 'payload_too_large')
  t.deepEqual(t.context.upstream.withProbe(probe), [])
  t.is((await t.context.gw.fetch('/v1/payments/fits', signedInit('POST', '/v1/payments/fits', Buffer.alloc(1024, 'b')))).status, 200)
})

test('rfc9421: a Node client signing through the undici interceptor passes; an unsigned request gets the Signature challenge and Accept-Signature', async (t) => {
  const dispatcher = new Agent().compose(signingInterceptor({ scheme: 'rfc9421', keyId: 'partner-ed', privateKey: partner.privateKey }))
  t.teardown(() => dispatcher.close())
  const res = await t.context.gw.fetch('/v2/orders?id=1', { method: 'POST', body: '{"item":"book"}', headers: { 'content-type': 'application/json' }, dispatcher })
  t.is(res.status, 200, await res.clone().text())
  const echo = await res.json() as Echo
  t.is(echo.body, '{"item":"book"}')
  t.is(echo.headers['x-auth-subject'], 'partner')
  t.false('signature' in echo.headers)
  t.false('signature-input' in echo.headers)
  t.truthy(echo.headers['content-digest'], 'Content-Digest is representation metadata and is forwarded')

  const unsigned = await t.context.gw.fetch('/v2/orders', { method: 'POST', body: 'x' })
  await assertProblem(t, unsigned, 401, 'missing_credentials')
  t.is(unsigned.headers.get('www-authenticate'), 'Signature realm="authgate"')
  t.is(unsigned.headers.get('accept-signature'), 'sig1=("@method" "@target-uri" "content-digest");created')
})

test('rfc9421: a body changed after signing fails the Content-Digest check', async (t) => {
  const headers = signRequest({ scheme: 'rfc9421', keyId: 'partner-ed', privateKey: partner.privateKey, method: 'POST', url: `${t.context.gw.url}/v2/orders`, body: 'original' })
  const problem = await assertProblem(t, await t.context.gw.fetch('/v2/orders', { method: 'POST', headers, body: 'tampered' }), 401, 'invalid_signature')
  t.is(problem.detail, 'Content-Digest does not match the body')
  t.is((await t.context.gw.fetch('/v2/orders', { method: 'POST', headers, body: 'original' })).status, 200)
})

test('rfc9421: Content-Digest: constructor=:AAAA: is 401 invalid_signature (not a 500), the real digest passes', async (t) => {
  const url = `${t.context.gw.url}/v2/orders`
  const digest = 'constructor=:AAAA:'
  const headers = signRequest({
    scheme: 'rfc9421', keyId: 'partner-ed', privateKey: partner.privateKey, method: 'POST', url,
    headers: { 'content-digest': digest }, components: ['@method', '@target-uri', 'content-digest'],
  })
  const res = await t.context.gw.fetch('/v2/orders', { method: 'POST', headers: { ...headers, 'content-digest': digest }, body: 'x' })
  const problem = await assertProblem(t, res, 401, 'invalid_signature')
  t.is(problem.detail, 'Content-Digest has no supported algorithm (sha-256, sha-512)')
  t.is(res.headers.get('www-authenticate'), 'Signature realm="authgate"')
  const valid = signRequest({ scheme: 'rfc9421', keyId: 'partner-ed', privateKey: partner.privateKey, method: 'POST', url, body: 'x' })
  t.is((await t.context.gw.fetch('/v2/orders', { method: 'POST', headers: valid, body: 'x' })).status, 200)
})

test('github: a delivery signed with the secret from the environment passes as the route; a forged one does not; the secret is never logged', async (t) => {
  const body = '{"action":"opened"}'
  const signature = `sha256=${createHmac('sha256', githubSecret).update(body).digest('hex')}`
  const res = await t.context.gw.fetch('/hooks/github', { method: 'POST', body, headers: { 'x-hub-signature-256': signature } })
  t.is(res.status, 200)
  const echo = await res.json() as Echo
  t.is(echo.headers['x-auth-subject'], 'github')
  t.false('x-hub-signature-256' in echo.headers)
  const forged = await t.context.gw.fetch('/hooks/github', { method: 'POST', body: '{"action":"deleted"}', headers: { 'x-hub-signature-256': signature } })
  await assertProblem(t, forged, 401, 'invalid_signature')
  t.is(forged.headers.get('www-authenticate'), 'HMAC realm="authgate"')
  // both requests carried the signature and made the gateway use the secret: wait for both lines
  await t.context.gw.logLine(res.headers.get('x-request-id'))
  await assertNotLogged(t, t.context.gw, forged.headers.get('x-request-id'), [githubSecret], 'the webhook secret')
  await assertNotLogged(t, t.context.gw, forged.headers.get('x-request-id'), [signature.slice(7)], 'the signature')
})

test('when Redis stops answering, a signed request is 503 store_unavailable, never let through', async (t) => {
  const gw = await startGateway({ ...t.context.config, store: { prefix: uniquePrefix('hmac-down'), timeout: '300ms' } }, { redis: true, env, files: t.context.files })
  t.teardown(() => gw.close())
  t.is((await gw.fetch('/v1/payments/up', signedInit('GET', '/v1/payments/up'))).status, 200)
  gw.redis!.pause()
  try {
    await assertProblem(t, await gw.fetch('/v1/payments/down', signedInit('GET', '/v1/payments/down')), 503, 'store_unavailable')
  } finally {
    gw.redis!.resume()
  }
  t.is(header(await rawRequest(gw.url, `GET /v1/payments/x HTTP/1.1\r\nHost: ${new URL(gw.url).host}`), 'www-authenticate'), 'HMAC realm="authgate", headers="X-Key-Id X-Timestamp X-Signature"')
})
