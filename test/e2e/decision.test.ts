import { randomBytes, randomUUID } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { SignJWT, createRemoteJWKSet, jwtVerify } from 'jose'
import { request } from 'undici'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { scryptHash } from '../../policies/basic/users.js'
import { signRequest } from '../../policies/hmac/sign.js'
import { assertNotLogged, startGateway, type TestGateway } from '../helpers/gateway.js'
import { mintPki, type Pki } from '../helpers/pki.js'
import { rawRequest } from './support.js'

/**
 * Decision mode (shared/design/decide.md) by HTTP requests shaped as each proxy family sends them. The real nginx
 * and Caddy in front of it are in decision-proxies.test.ts.
 */

interface Context { gw: TestGateway, decide: string, pki: Pki }
const test = anyTest as TestFn<Context>

const alice = newApiKey()
const bob = newApiKey()
const jwtSecret = randomBytes(32)
const hmacSecret = randomBytes(32).toString('base64url')
const password = randomBytes(12).toString('base64url')

test.before(async (t) => {
  const decideOnly = { listener: 'decide' }
  const pki = await mintPki()
  const gw = await startGateway({
    listeners: [
      { name: 'local', address: '127.0.0.1:0' },
      { name: 'decide', address: '127.0.0.1:0', mode: 'decide', clientCA: 'pki/ca.crt', crl: 'pki/crl.pem' },
      { name: 'elsewhere', address: '127.0.0.1:0', mode: 'decide', trustProxies: ['192.0.2.10/32'] },
    ],
    apiKeys: [
      { id: alice.id, hash: hashApiKey(alice.key), client: 'alice-app', scopes: ['orders:read'], tier: 'gold' },
      { id: bob.id, hash: hashApiKey(bob.key), client: 'bob-app', scopes: [] },
    ],
    jwtProviders: { internal: { secret: '${env:JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'internal' } },
    signingClients: [{ keyId: 'billing', client: 'billing-service', secret: '${env:HMAC_SECRET}', scopes: ['write'] }],
    users: { inline: [{ username: 'dana', hash: await scryptHash(password, { N: 1024, r: 8, p: 1 }) }] },
    identity: { signed: { ttl: '60s' } },
    routes: [
      { name: 'orders', match: { host: 'api.example.com', path: '/v1/orders/**', methods: ['GET', 'POST'], ...decideOnly }, upstream: 'demo', policies: [{ apiKey: {} }] },
      { name: 'limited', match: { path: '/v1/limited/**', ...decideOnly }, policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '2/min' } }] },
      { name: 'admin', match: { path: '/v1/admin/**', ...decideOnly }, policies: [{ apiKey: {} }, { scopes: ['admin'] }] },
      { name: 'tokens', match: { path: '/v1/tokens/**', ...decideOnly }, policies: [{ jwt: { provider: 'internal' } }, { claims: { tenant: 'acme' } }] },
      { name: 'payments', match: { path: '/v1/payments/**', ...decideOnly }, policies: [{ hmac: {} }] },
      { name: 'console', match: { path: '/console/**', ...decideOnly }, policies: [{ basic: {} }] },
      { name: 'services', match: { path: '/v1/services/**', ...decideOnly }, policies: [{ mtls: {} }] },
      { name: 'open', match: { path: '/open/**' }, upstream: 'demo', public: true },
    ],
  }, {
    env: { JWT_SECRET: jwtSecret.toString('base64'), HMAC_SECRET: hmacSecret },
    files: { 'pki/ca.crt': pki.ca.cert, 'pki/crl.pem': pki.crl },
  })
  t.context = { gw, decide: gw.urls.decide!, pki }
})

test.after.always(async (t) => { await t.context.gw?.close() })

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: string }

async function ask (t: { context: Context }, path: string, headers: Record<string, string>, init: { method?: string, body?: string | Buffer, base?: string } = {}): Promise<Answer> {
  const res = await request(`${init.base ?? t.context.decide}${path}`, { method: (init.method ?? 'GET') as 'GET', headers, ...(init.body !== undefined ? { body: init.body } : {}) })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

/** What nginx's auth_request subrequest sends, as the snippet in docs/decision-mode.md configures it. */
function nginx (method: string, uri: string, extra: Record<string, string> = {}): Record<string, string> {
  return { 'x-original-method': method, 'x-original-uri': uri, 'x-forwarded-host': 'api.example.com', 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.7', ...extra }
}

/** What Traefik's ForwardAuth sends (pkg/middlewares/auth/forward.go, writeHeader): GET with X-Forwarded-*. */
function traefik (method: string, uri: string, extra: Record<string, string> = {}): Record<string, string> {
  return { 'x-forwarded-method': method, 'x-forwarded-uri': uri, 'x-forwarded-host': 'api.example.com', 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.4', ...extra }
}

test('/nginx allows a keyed request: exactly 200, empty body, every identity header, the signed identity, no-store', async (t) => {
  const answer = await ask(t, '/nginx', nginx('GET', '/v1/orders/7?expand=1', { 'x-api-key': alice.key }))
  t.is(answer.status, 200)
  t.is(answer.body, '')
  t.like(answer.headers, {
    'x-auth-subject': 'alice-app',
    'x-auth-client': 'alice-app',
    'x-auth-methods': 'apiKey',
    'x-auth-scopes': 'orders:read',
    'x-auth-tier': 'gold',
    'cache-control': 'no-store',
    'content-length': '0',
  })
  const jwks = createRemoteJWKSet(new URL(`${t.context.gw.adminUrl}/.well-known/jwks.json`))
  const { payload } = await jwtVerify(String(answer.headers['x-auth-identity']), jwks, { issuer: 'authgate', audience: 'demo' })
  t.is(payload.sub, 'alice-app')

  const line = await assertNotLogged(t, t.context.gw, String(answer.headers['x-request-id']), [alice.key], 'the API key')
  t.like(line, { mode: 'decide', dialect: 'nginx', method: 'GET', path: '/v1/orders/7?expand=1', route: 'orders', status: 200, subject: 'alice-app', remote: '203.0.113.7' })
})

test('identity headers are always present, empty when the identity has no such value (a proxy copy then always overwrites)', async (t) => {
  const answer = await ask(t, '/forward', traefik('GET', '/v1/orders/1', { 'x-api-key': bob.key }))
  t.is(answer.status, 200)
  t.is(answer.headers['x-auth-subject'], 'bob-app')
  t.is(answer.headers['x-auth-scopes'], '')
  t.is(answer.headers['x-auth-tier'], '')
  // Caddy's forward_auth appends the original query to its uri: ignored, the target is X-Forwarded-Uri.
  const open = await ask(t, '/forward?page=2', traefik('GET', '/open/page'))
  t.is(open.status, 200)
  for (const name of ['x-auth-subject', 'x-auth-client', 'x-auth-methods', 'x-auth-scopes', 'x-auth-tier', 'x-auth-identity']) t.is(open.headers[name], '', name)
})

test('a refusal is the same problem and challenge as proxy mode on /forward; /nginx says 401 with its challenge and X-Authgate-Status', async (t) => {
  const forward = await ask(t, '/forward', traefik('GET', '/v1/orders/7'))
  t.is(forward.status, 401)
  t.regex(String(forward.headers['www-authenticate']), /^ApiKey /)
  t.is(forward.headers['content-type'], 'application/problem+json')
  t.like(JSON.parse(forward.body), { status: 401, error: 'missing_credentials' })
  t.is(forward.headers['x-authgate-status'], undefined)

  const proxied = await t.context.gw.fetch('/open/x')
  t.is(proxied.status, 200, 'the forward-mode listener still forwards')

  const viaNginx = await ask(t, '/nginx', nginx('GET', '/v1/orders/7', { 'x-api-key': 'agk_wrong_0000000000000000000000' }))
  t.is(viaNginx.status, 401)
  t.is(viaNginx.headers['x-authgate-status'], '401')
  t.is(viaNginx.headers['x-authgate-error'], 'invalid_credentials', 'the code, for the body nginx builds itself')
  t.regex(String(viaNginx.headers['www-authenticate']), /^ApiKey /)
  t.like(await t.context.gw.logLine(String(viaNginx.headers['x-request-id'])), { status: 401, mode: 'decide', dialect: 'nginx' })
})

test('/nginx answers only 200, 401 or 403: a 429 is 403 with X-Authgate-Status 429 and Retry-After, a 404 is 403 with 404', async (t) => {
  const headers = nginx('GET', '/v1/limited/a', { 'x-api-key': alice.key })
  t.is((await ask(t, '/nginx', headers)).status, 200)
  const second = await ask(t, '/nginx', headers)
  t.is(second.status, 200)
  t.truthy(second.headers.ratelimit, 'the allow answer carries the RateLimit headers')
  t.truthy(second.headers['ratelimit-policy'])
  const third = await ask(t, '/nginx', headers)
  t.is(third.status, 403)
  t.is(third.headers['x-authgate-status'], '429')
  t.truthy(third.headers['retry-after'])
  t.like(JSON.parse(third.body), { status: 429, error: 'rate_limited' })
  t.like(await t.context.gw.logLine(String(third.headers['x-request-id'])), { status: 429, code: 'rate_limited', dialect: 'nginx' })
  // The same refusal on /forward keeps its own status.
  const forward = await ask(t, '/forward', traefik('GET', '/v1/limited/a', { 'x-api-key': alice.key }))
  t.is(forward.status, 429)

  const missing = await ask(t, '/nginx', nginx('GET', '/nowhere'))
  t.is(missing.status, 403)
  t.is(missing.headers['x-authgate-status'], '404')
  const scoped = await ask(t, '/nginx', nginx('GET', '/v1/admin/x', { 'x-api-key': alice.key }))
  t.is(scoped.status, 403)
  t.is(scoped.headers['x-authgate-status'], '403', 'a real 403 says so too')
  t.like(JSON.parse(scoped.body), { error: 'insufficient_scope' })
})

test('routes match the reconstructed request: host, method (404 on a mismatch), listener', async (t) => {
  t.is((await ask(t, '/nginx', nginx('POST', '/v1/orders/7', { 'x-api-key': alice.key }))).status, 200)
  const del = await ask(t, '/forward', traefik('DELETE', '/v1/orders/7', { 'x-api-key': alice.key }))
  t.is(del.status, 404)
  const otherHost = await ask(t, '/forward', traefik('GET', '/v1/orders/7', { 'x-api-key': alice.key, 'x-forwarded-host': 'evil.example.com' }))
  t.is(otherHost.status, 404)
  // The decision-only routes are not on the forwarding listener.
  t.is((await t.context.gw.fetch('/v1/limited/a', { headers: { 'x-api-key': alice.key } })).status, 404)
})

test('/envoy/<path>: the original method, path and query are the request\'s own, Host is the original host', async (t) => {
  // Envoy ext_authz HTTP service (source/extensions/filters/common/ext_authz/ext_authz_http_impl.cc): the check
  // request keeps the method, its path is path_prefix + the original :path (query included), :authority stays.
  const ok = await ask(t, '/envoy/v1/orders/9?x=1', { host: 'api.example.com', 'content-length': '0', 'x-api-key': alice.key, 'x-forwarded-proto': 'https' }, { method: 'POST' })
  t.is(ok.status, 200)
  t.is(ok.headers['x-auth-subject'], 'alice-app')
  t.is(ok.headers['x-envoy-auth-headers-to-remove'], 'x-api-key', 'Envoy drops the consumed key, as proxy mode does')
  t.like(await t.context.gw.logLine(String(ok.headers['x-request-id'])), { method: 'POST', path: '/v1/orders/9?x=1', dialect: 'envoy', route: 'orders' })
  const refused = await ask(t, '/envoy/v1/orders/9', { host: 'api.example.com', 'content-length': '0' })
  t.is(refused.status, 401)
  t.regex(String(refused.headers['www-authenticate']), /^ApiKey /)
  t.is((await ask(t, '/envoy/v1/orders/9', { host: 'other.example.com', 'x-api-key': alice.key })).status, 404)
})

test('a peer outside the listener\'s trustProxies gets 403 and nothing it sent is read', async (t) => {
  const answer = await ask(t, '/nginx', nginx('GET', '/v1/orders/7', { 'x-api-key': alice.key }), { base: t.context.gw.urls.elsewhere })
  t.is(answer.status, 403)
  t.like(JSON.parse(answer.body), { error: 'forbidden' })
  t.is(answer.headers['x-auth-subject'], undefined)
  const line = await t.context.gw.logLine(String(answer.headers['x-request-id']))
  t.is(line.route, '(none)')
  t.is(line.path, '/nginx', 'the description it sent was not read')
  // The same request from the trusted loopback on the other decision listener is allowed.
  t.is((await ask(t, '/nginx', nginx('GET', '/v1/orders/7', { 'x-api-key': alice.key }))).status, 200)
})

test('malformed or missing descriptions are 400, never 200 (Authelia CVE-2021-32637)', async (t) => {
  const key = { 'x-api-key': alice.key }
  const cases: Array<[string, string, Record<string, string>]> = [
    ['no method', '/nginx', { 'x-original-uri': '/open/x', 'x-forwarded-host': 'api.example.com' }],
    ['unknown method', '/nginx', nginx('FROB', '/open/x')],
    ['method with spaces', '/forward', traefik('GET /x', '/open/x')],
    ['no target', '/nginx', { 'x-original-method': 'GET', 'x-forwarded-host': 'api.example.com' }],
    ['no target (forward)', '/forward', { 'x-forwarded-method': 'GET', 'x-forwarded-host': 'api.example.com' }],
    ['relative target', '/forward', traefik('GET', 'open/x')],
    ['fragment', '/nginx', nginx('GET', '/open/x#/v1/orders')],
    ['space', '/forward', traefik('GET', '/open/x /v1/orders')],
    ['no host', '/forward', { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/open/x' }],
    ['host list', '/forward', traefik('GET', '/open/x', { 'x-forwarded-host': 'a.example.com, api.example.com' })],
    ['host with userinfo', '/nginx', nginx('GET', '/open/x', { 'x-forwarded-host': 'user@api.example.com' })],
    ['bad URL', '/nginx', { 'x-original-method': 'GET', 'x-original-url': 'javascript:alert(1)' }],
    ['URL and URI disagree', '/nginx', { 'x-original-method': 'GET', 'x-original-url': 'https://api.example.com/open/x', 'x-original-uri': '/v1/orders/1' }],
    ['odd scheme', '/forward', traefik('GET', '/open/x', { 'x-forwarded-proto': 'gopher' })],
    ['schemes disagree', '/nginx', { 'x-original-method': 'GET', 'x-original-url': 'https://api.example.com/open/x', 'x-forwarded-proto': 'http' }],
    ['dot segments', '/forward', traefik('GET', '/open/../v1/orders/1', key)],
    ['encoded slash', '/forward', traefik('GET', '/open/..%2fv1/orders/1', key)],
    ['last X-Forwarded-For not an address', '/nginx', nginx('GET', '/open/x', { 'x-forwarded-for': '203.0.113.7, nonsense' })],
  ]
  for (const [what, endpoint, headers] of cases) {
    const answer = await ask(t, endpoint, headers)
    const expected = endpoint === '/nginx' ? 403 : 400
    t.is(answer.status, expected, what)
    t.is(JSON.parse(answer.body).status, 400, what)
    if (endpoint === '/nginx') t.is(answer.headers['x-authgate-status'], '400', what)
    t.is(answer.headers['x-auth-subject'], undefined, what)
  }
  // A duplicated description header is ambiguous.
  const raw = await new Promise<number>((resolve, reject) => {
    import('node:http').then(({ request: httpRequest }) => {
      const req = httpRequest(`${t.context.decide}/forward`, { headers: [['X-Forwarded-Method', 'GET'], ['X-Forwarded-Uri', '/open/x'], ['X-Forwarded-Uri', '/v1/orders/1'], ['X-Forwarded-Host', 'api.example.com']] as never }, (res) => { res.resume(); resolve(res.statusCode!) })
      req.on('error', reject)
      req.end()
    }, reject)
  })
  t.is(raw, 400)
  // And the well-formed version of the same requests passes.
  t.is((await ask(t, '/forward', traefik('GET', '/open/x'))).status, 200)
  t.is((await ask(t, '/nginx', { 'x-original-method': 'GET', 'x-original-url': 'https://api.example.com/open/x?y=1' })).status, 200)
})

test('query and fragment tricks do not move the path that is matched (oauth2-proxy GHSA-7rh7-c77v-6434, GHSA-pxq7-h93f-9jrg)', async (t) => {
  // A public path in the query or after an encoded `?` does not make a private path public.
  for (const uri of ['/v1/orders/1?/open/x', '/v1/orders/1?next=/open/x', '/v1/orders/1%3f/open/x', '/v1/orders/1;/open/x']) {
    const answer = await ask(t, '/forward', traefik('GET', uri))
    t.not(answer.status, 200, uri)
  }
  t.is((await ask(t, '/forward', traefik('GET', '/open/x?/v1/orders/1'))).status, 200, 'the public path with a query is public')
})

test('forwarding headers from the client never choose the original request: only the dialect\'s own headers and the last X-Forwarded-For entry count', async (t) => {
  // The client sent X-Forwarded-For: 10.0.0.1 and the proxy appended its peer: the client is the last entry.
  const answer = await ask(t, '/nginx', nginx('GET', '/v1/orders/1', { 'x-api-key': alice.key, 'x-forwarded-for': '10.0.0.1, 203.0.113.9', 'x-real-ip': '10.0.0.2' }))
  t.is(answer.status, 200)
  t.like(await t.context.gw.logLine(String(answer.headers['x-request-id'])), { remote: '203.0.113.9' })
  // X-Original-URL on /forward is not the forward dialect's: the client sent it, and the upstream behind the proxy
  // may serve the path it names (IIS, Symfony): 400 as in proxy mode, never followed nor ignored.
  const override = await ask(t, '/forward', traefik('GET', '/open/x', { 'x-original-url': 'https://api.example.com/v1/orders/1' }))
  t.is(override.status, 400)
  t.regex(JSON.parse(override.body).detail, /X-Original-URL/)
  t.is((await ask(t, '/envoy/open/x', { host: 'api.example.com', 'x-rewrite-url': '/v1/orders/1' })).status, 400)
  // On /nginx it is the description, and a host it names must agree with X-Forwarded-Host.
  const hostSwap = await ask(t, '/nginx', { 'x-original-method': 'GET', 'x-original-url': 'https://other.example.com/v1/orders/1', 'x-original-uri': '/v1/orders/1', 'x-forwarded-host': 'api.example.com', 'x-api-key': alice.key })
  t.is(hostSwap.status, 403)
  t.is(hostSwap.headers['x-authgate-status'], '400')
  const agreed = await ask(t, '/nginx', { 'x-original-method': 'GET', 'x-original-url': 'https://API.example.com/v1/orders/1', 'x-original-uri': '/v1/orders/1', 'x-forwarded-host': 'api.example.com', 'x-api-key': alice.key })
  t.is(agreed.status, 200)
  // Identity headers the client sent are not the identity.
  const spoof = await ask(t, '/forward', traefik('GET', '/open/x', { 'x-auth-subject': 'root', 'x-auth-scopes': 'admin' }))
  t.is(spoof.headers['x-auth-subject'], '')
  t.is(spoof.headers['x-auth-scopes'], '')
})

test('jwt and claims decide as in proxy mode: a token of the right tenant passes, another tenant is 403', async (t) => {
  const token = async (tenant: string) => await new SignJWT({ tenant, scope: 'a b' }).setProtectedHeader({ alg: 'HS256' }).setSubject('svc-1')
    .setAudience('internal').setIssuedAt().setExpirationTime('5m').sign(jwtSecret)
  const ok = await ask(t, '/forward', traefik('GET', '/v1/tokens/x', { authorization: `Bearer ${await token('acme')}` }))
  t.is(ok.status, 200)
  t.like(ok.headers, { 'x-auth-subject': 'svc-1', 'x-auth-methods': 'jwt', 'x-auth-scopes': 'a b' })
  const other = await ask(t, '/forward', traefik('GET', '/v1/tokens/x', { authorization: `Bearer ${await token('beta')}` }))
  t.is(other.status, 403)
})

test('basic follows the original scheme: https passes, http is 403 "credentials over plain HTTP"', async (t) => {
  const authorization = `Basic ${Buffer.from(`dana:${password}`).toString('base64')}`
  const secure = await ask(t, '/forward', traefik('GET', '/console/home', { authorization }))
  t.is(secure.status, 200)
  t.is(secure.headers['x-auth-subject'], 'dana')
  const plain = await ask(t, '/forward', traefik('GET', '/console/home', { authorization, 'x-forwarded-proto': 'http' }))
  t.is(plain.status, 403)
  t.regex(JSON.parse(plain.body).detail, /plain HTTP/)
  const absent = await ask(t, '/nginx', { ...nginx('GET', '/console/home', { authorization }), 'x-forwarded-proto': '' })
  t.is(absent.status, 403, 'no X-Forwarded-Proto means http')
})

test('hmac verifies the body the proxy sends; a POST whose body the proxy withheld is 401 "the proxy sent no body"', async (t) => {
  const body = JSON.stringify({ amount: 12, id: randomUUID() })
  const signed = signRequest({ keyId: 'billing', secret: hmacSecret, method: 'POST', url: 'https://api.example.com/v1/payments/charge', body })
  // Envoy with_request_body: the body rides with the check request, Content-Length set to its length.
  const withBody = await ask(t, '/envoy/v1/payments/charge', { host: 'api.example.com', ...signed, 'x-forwarded-proto': 'https' }, { method: 'POST', body })
  t.is(withBody.status, 200, withBody.body)
  t.is(withBody.headers['x-auth-subject'], 'billing-service')

  const tampered = await ask(t, '/envoy/v1/payments/charge', { host: 'api.example.com', ...signed, 'x-forwarded-proto': 'https' }, { method: 'POST', body: body.replace('12', '13') })
  t.is(tampered.status, 401)

  const noBody = await ask(t, '/nginx', nginx('POST', '/v1/payments/charge', signed))
  t.is(noBody.status, 401)
  t.like(JSON.parse(noBody.body), { error: 'invalid_signature', detail: 'the proxy sent no body' })
  t.truthy(noBody.headers['www-authenticate'])

  const partial = await ask(t, '/envoy/v1/payments/charge', { host: 'api.example.com', ...signed, 'x-envoy-auth-partial-body': 'true' }, { method: 'POST', body: body.slice(0, 5) })
  t.is(partial.status, 401)
  t.like(JSON.parse(partial.body), { detail: 'the proxy sent only part of the body' })
})

test('a path that is no decision endpoint is 404, and an upgrade is refused', async (t) => {
  const answer = await ask(t, '/auth', nginx('GET', '/open/x'))
  t.is(answer.status, 404)
  t.like(JSON.parse(answer.body), { error: 'no_route' })
  t.is((await ask(t, '/forward', traefik('GET', '/open/x'))).status, 200)
  const upgrade = await rawRequest(t.context.decide, 'GET /forward HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /open/x\r\nX-Forwarded-Host: api.example.com\r\n\r\n')
  t.is(upgrade.status, 400)
  t.regex(upgrade.body, /does not upgrade/)
})

test('metrics count decisions with mode="decide" and the dialect', async (t) => {
  await ask(t, '/forward', traefik('GET', '/open/metrics-probe'))
  const text = await (await fetch(`${t.context.gw.adminUrl}/metrics`)).text()
  t.regex(text, /authgate_requests_total\{route="open",status="200",code="ok",mode="decide",dialect="forward"\} \d+/)
})

test('mtls: a certificate the proxy forwards is verified again against the listener\'s clientCA and CRL (a rogue CA\'s twin, revoked, expired: 401)', async (t) => {
  const { pki } = t.context
  // nginx $ssl_client_escaped_cert: the leaf's PEM, percent-encoded.
  const nginxCert = (pem: string) => ({ 'x-ssl-client-cert': encodeURIComponent(pem) })
  const ok = await ask(t, '/nginx', nginx('GET', '/v1/services/a', nginxCert(pki.client.cert)))
  t.is(ok.status, 200, ok.body)
  t.like(ok.headers, { 'x-auth-subject': 'spiffe://example.org/ns/default/sa/client-one', 'x-auth-methods': 'mtls' })
  for (const [what, pem] of [['rogue CA, same subject and SAN', pki.untrusted.cert], ['revoked', pki.revoked.cert], ['expired', pki.expired.cert]] as const) {
    const refused = await ask(t, '/nginx', nginx('GET', '/v1/services/a', nginxCert(pem)))
    t.is(refused.status, 401, what)
    t.is(refused.headers['x-auth-subject'], undefined, what)
  }
  t.is((await ask(t, '/nginx', nginx('GET', '/v1/services/a'))).status, 401, 'no certificate')
  // Envoy XFCC (Cert= URL-encoded PEM) and Traefik's base64 DER, on the same verification.
  const xfcc = await ask(t, '/forward', traefik('GET', '/v1/services/a', { 'x-forwarded-client-cert': `Cert="${encodeURIComponent(pki.client.cert)}"` }))
  t.is(xfcc.status, 200, xfcc.body)
  const der = pki.client.cert.replace(/-----[^-]+-----|\s/g, '')
  t.is((await ask(t, '/forward', traefik('GET', '/v1/services/a', { 'x-forwarded-tls-client-cert': der }))).status, 200)
  // Two proxies' headers at once are ambiguous: refused.
  t.is((await ask(t, '/forward', traefik('GET', '/v1/services/a', { 'x-forwarded-tls-client-cert': der, 'x-ssl-client-cert': encodeURIComponent(pki.otherClient.cert) }))).status, 401)
})

test('introspection decides as in proxy mode: an active token passes with its subject and scopes, an inactive one is 401', async (t) => {
  const active = randomBytes(16).toString('hex')
  const { createServer } = await import('node:http')
  // An RFC 7662 endpoint: active for one token, inactive for any other.
  const idp = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => { body += chunk.toString() })
    req.on('end', () => {
      const token = new URLSearchParams(body).get('token')
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify(token === active ? { active: true, sub: 'svc-9', client_id: 'svc-9', scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 300 } : { active: false }))
    })
  })
  await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { idp.close() })
  const port = (idp.address() as { port: number }).port
  const gw = await startGateway({
    listeners: [{ name: 'decide', address: '127.0.0.1:0', mode: 'decide' }],
    routes: [{ name: 'opaque', match: { path: '/v1/opaque/**' }, policies: [{ introspection: { endpoint: `http://127.0.0.1:${port}/introspect`, clientId: 'gw', clientSecret: '${env:INTROSPECT_SECRET}' } }] }],
  }, { env: { INTROSPECT_SECRET: randomBytes(16).toString('hex') } })
  t.teardown(async () => await gw.close())
  const ok = await ask(t, '/forward', traefik('GET', '/v1/opaque/1', { authorization: `Bearer ${active}` }), { base: gw.urls.decide })
  t.is(ok.status, 200, ok.body)
  t.like(ok.headers, { 'x-auth-subject': 'svc-9', 'x-auth-methods': 'introspection', 'x-auth-scopes': 'orders:read' })
  const inactive = await ask(t, '/forward', traefik('GET', '/v1/opaque/1', { authorization: 'Bearer not-a-live-token' }), { base: gw.urls.decide })
  t.is(inactive.status, 401)
  t.regex(String(inactive.headers['www-authenticate']), /^Bearer /)
})
