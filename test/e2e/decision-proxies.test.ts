/**
 * Decision mode behind the real proxies: nginx (`auth_request` to `/nginx`) and Caddy (`forward_auth` to `/forward`),
 * from the system packages, each running the snippet of docs/decision-mode.md marked `<!-- tested: ... -->`
 * (test/helpers/proxies.ts), in front of a recording upstream. One authgate with a decision listener answers both.
 *
 * Each refusal is paired with the request that passes; each answer is tied to authgate's access line for it through
 * the X-Request-Id the proxy passed on.
 */
import test, { type ExecutionContext } from 'ava'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type AccessLine, type TestGateway } from '../helpers/gateway.js'
import { findBinary, startCaddy, startNginx, substitute, testedSnippet, type ProxyProcess } from '../helpers/proxies.js'
import { probe, recordingUpstream, type RecordingUpstream, type Seen } from './support.js'

const alice = newApiKey() // orders:read, tier gold
const bob = newApiKey() // no scopes, no tier
const root = newApiKey() // orders:read and admin
const nginxLimited = newApiKey() // the 429 through nginx
const caddyLimited = newApiKey() // the 429 through Caddy

const IDENTITY = ['x-auth-subject', 'x-auth-client', 'x-auth-methods', 'x-auth-scopes', 'x-auth-tier', 'x-auth-identity'] as const

interface World {
  gw: TestGateway
  upstream: RecordingUpstream
  nginx: ProxyProcess
  caddy: ProxyProcess
}

let world: World | undefined
const closers: Array<() => Promise<void>> = []

test.before(async () => {
  const gw = await startGateway({
    listeners: [{ name: 'decide', address: '127.0.0.1:0', mode: 'decide' }],
    apiKeys: [
      { id: alice.id, hash: hashApiKey(alice.key), client: 'alice-app', scopes: ['orders:read'], tier: 'gold' },
      { id: bob.id, hash: hashApiKey(bob.key), client: 'bob-app', scopes: [] },
      { id: root.id, hash: hashApiKey(root.key), client: 'root-app', scopes: ['orders:read', 'admin'] },
      { id: nginxLimited.id, hash: hashApiKey(nginxLimited.key), client: 'nginx-limited', scopes: [] },
      { id: caddyLimited.id, hash: hashApiKey(caddyLimited.key), client: 'caddy-limited', scopes: [] },
    ],
    identity: { signed: { ttl: '60s' } },
    routes: [
      // Reachable on the decision listener only: no upstream of authgate's own (the proxy forwards).
      { name: 'orders', match: { path: '/v1/orders/**' }, policies: [{ apiKey: {} }] },
      { name: 'limited', match: { path: '/v1/limited/**' }, policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '2/min' } }] },
      { name: 'open', match: { path: '/v1/open/**' }, public: true },
      { name: 'admin', match: { path: '/v1/admin/**' }, upstream: 'demo', policies: [{ apiKey: {} }, { scopes: ['admin'] }] },
    ],
  })
  closers.push(() => gw.close())
  const upstream = await recordingUpstream()
  closers.push(() => upstream.close())
  const authgate = new URL(gw.urls.decide!).host
  const targets = { authgate, upstream: `127.0.0.1:${upstream.port}` }
  const nginx = await startNginx(targets)
  closers.push(() => nginx.stop())
  const caddy = await startCaddy(targets)
  closers.push(() => caddy.stop())
  world = { gw, upstream, nginx, caddy }
})

test.after.always(async () => {
  for (const close of closers.reverse()) await close().catch(() => {})
})

function w (): World {
  if (!world) throw new Error('the gateway and proxies did not start (see the before hook)')
  return world
}

interface Answer { status: number, headers: Headers, text: string }

async function get (proxy: ProxyProcess, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(proxy.url + path, { headers, redirect: 'manual' })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

/** A header as the upstream received it; '' when absent (nginx sends no header for an empty value). */
function seenHeader (seen: Seen, name: string): string {
  const value = seen.headers[name]
  return Array.isArray(value) ? value.join(', ') : value ?? ''
}

/** A request that passes: the upstream got it (found by its probe), with the target the client sent. */
async function passes (t: ExecutionContext, proxy: ProxyProcess, path: string, headers: Record<string, string>): Promise<{ seen: Seen, line: AccessLine, answer: Answer }> {
  const id = probe()
  const answer = await get(proxy, path, { ...headers, 'x-probe': id })
  t.is(answer.status, 200, answer.text)
  const [seen] = w().upstream.withProbe(id)
  t.truthy(seen, 'the upstream received the request')
  t.is(seen!.url, path, 'the upstream received the original target')
  t.is(seen!.headers['x-api-key'], undefined, 'the consumed API key is dropped by the proxy')
  const line = await w().gw.logLine(seenHeader(seen!, 'x-request-id'))
  t.is(line.listener, 'decide')
  t.is(line.status, 200)
  return { seen: seen!, line, answer }
}

/** A refusal: the client got `status` with authgate's request id, the upstream got nothing, authgate logged `code`. */
async function refused (t: ExecutionContext, proxy: ProxyProcess, path: string, headers: Record<string, string>, status: number, code: string): Promise<{ answer: Answer, line: AccessLine, body: Record<string, unknown> }> {
  const id = probe()
  const answer = await get(proxy, path, { ...headers, 'x-probe': id })
  t.is(answer.status, status, answer.text)
  t.is(answer.headers.get('content-type'), 'application/problem+json')
  const body = JSON.parse(answer.text) as Record<string, unknown>
  t.is(body.status, status)
  t.is(body.error, code, 'the error code reaches the client (nginx: from X-Authgate-Error)')
  t.is(typeof body.title, 'string')
  const requestId = answer.headers.get('x-request-id')
  t.regex(requestId ?? '', /^[0-9a-f-]{36}$/, 'authgate\'s request id reaches the client')
  t.is(body.requestId, requestId)
  t.deepEqual(w().upstream.withProbe(id), [], 'a refused request never reaches the upstream')
  const line = await w().gw.logLine(requestId)
  t.is(line.listener, 'decide')
  t.is(line.status, status)
  t.is(line.code, code)
  t.is(line.path, path)
  return { answer, line, body }
}

test('a missing binary or a snippet that drifted from what the tests substitute fails loudly, never a skip', (t) => {
  t.throws(() => findBinary('nginx', '/nonexistent/nginx'), { message: /nginx is not installed.*apt-get install nginx/s })
  t.regex(findBinary('nginx', process.env.NGINX_BIN), /nginx$/)
  t.regex(findBinary('caddy', process.env.CADDY_BIN), /caddy$/)
  t.throws(() => testedSnippet('haproxy'), { message: /no "<!-- tested: haproxy -->"/ })
  t.throws(() => substitute(testedSnippet('nginx'), { 'listen 8080;': 'listen 127.0.0.1:1;' }), { message: /no longer contains "listen 8080;"/ })
  for (const name of ['nginx', 'caddy']) t.true(testedSnippet(name).includes('authgate:8181'), `the ${name} snippet names the decision listener`)
})

for (const kind of ['nginx', 'caddy'] as const) {
  const proxyOf = () => w()[kind]

  test(`${kind}: an allowed request reaches the upstream with the identity authgate decided, and its access line`, async (t) => {
    const { seen, line } = await passes(t, proxyOf(), '/v1/orders/7?expand=items', { 'x-api-key': alice.key })
    t.is(seenHeader(seen, 'x-auth-subject'), 'alice-app')
    t.is(seenHeader(seen, 'x-auth-client'), 'alice-app')
    t.is(seenHeader(seen, 'x-auth-methods'), 'apiKey')
    t.is(seenHeader(seen, 'x-auth-scopes'), 'orders:read')
    t.is(seenHeader(seen, 'x-auth-tier'), 'gold')
    t.like(line, { route: 'orders', method: 'GET', path: '/v1/orders/7?expand=items', subject: 'alice-app', mode: 'decide', dialect: kind === 'nginx' ? 'nginx' : 'forward' })
    const jwks = createRemoteJWKSet(new URL(`${w().gw.adminUrl}/.well-known/jwks.json`))
    const { payload } = await jwtVerify(seenHeader(seen, 'x-auth-identity'), jwks, { issuer: 'authgate', audience: 'orders' })
    t.like(payload, { sub: 'alice-app', client: 'alice-app' }, 'the signed identity, aud = the route name (no upstream)')
  })

  test(`${kind}: no API key is 401 with authgate's challenge and a problem body; the key makes it pass`, async (t) => {
    const { answer } = await refused(t, proxyOf(), '/v1/orders/1', {}, 401, 'missing_credentials')
    t.regex(answer.headers.get('www-authenticate') ?? '', /^ApiKey realm="authgate"/)
    await refused(t, proxyOf(), '/v1/orders/1', { 'x-api-key': `${alice.key}x` }, 401, 'invalid_credentials')
    await passes(t, proxyOf(), '/v1/orders/1', { 'x-api-key': alice.key })
  })

  test(`${kind}: a key without the route's scope is 403; a key with it passes`, async (t) => {
    await refused(t, proxyOf(), '/v1/admin/users', { 'x-api-key': alice.key }, 403, 'insufficient_scope')
    const { seen, line } = await passes(t, proxyOf(), '/v1/admin/users', { 'x-api-key': root.key })
    t.is(seenHeader(seen, 'x-auth-scopes'), 'orders:read admin')
    t.is(line.route, 'admin')
  })

  test(`${kind}: the third request in a 2/min window is 429 with Retry-After and RateLimit headers`, async (t) => {
    const key = kind === 'nginx' ? nginxLimited.key : caddyLimited.key
    const first = await passes(t, proxyOf(), '/v1/limited/a', { 'x-api-key': key })
    if (kind === 'nginx') t.regex(first.answer.headers.get('ratelimit') ?? '', /^"limited-client";r=1;t=\d+$/, 'the snippet adds authgate\'s RateLimit to allowed answers')
    await passes(t, proxyOf(), '/v1/limited/b', { 'x-api-key': key })
    const { answer, body } = await refused(t, proxyOf(), '/v1/limited/c', { 'x-api-key': key }, 429, 'rate_limited')
    t.is(body.error, 'rate_limited')
    const retryAfter = Number(answer.headers.get('retry-after'))
    t.true(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${answer.headers.get('retry-after')}`)
    t.regex(answer.headers.get('ratelimit') ?? '', /^"limited-client";r=0;t=\d+$/)
    t.is(answer.headers.get('ratelimit-policy'), '"limited-client";q=2;w=60')
    t.is(answer.headers.get('x-authgate-status') ?? '429', '429')
  })

  test(`${kind}: identity headers a client sends itself are replaced, empty where the identity has none`, async (t) => {
    const forged = {
      'x-auth-subject': 'root-app',
      'x-auth-client': 'root-app',
      'x-auth-methods': 'mtls',
      'x-auth-scopes': 'admin',
      'x-auth-tier': 'platinum',
      'x-auth-identity': 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290LWFwcCJ9.',
    }
    const { seen } = await passes(t, proxyOf(), '/v1/orders/2', { 'x-api-key': bob.key, ...forged })
    t.is(seenHeader(seen, 'x-auth-subject'), 'bob-app')
    t.is(seenHeader(seen, 'x-auth-client'), 'bob-app')
    t.is(seenHeader(seen, 'x-auth-methods'), 'apiKey')
    t.is(seenHeader(seen, 'x-auth-scopes'), '', 'bob holds no scope: the client\'s "admin" is gone')
    t.is(seenHeader(seen, 'x-auth-tier'), '', 'bob has no tier: the client\'s "platinum" is gone')
    t.not(seenHeader(seen, 'x-auth-identity'), forged['x-auth-identity'])
    for (const name of IDENTITY) t.false(seenHeader(seen, name).includes('{'), `${name} is no placeholder`)
    for (const [name, value] of Object.entries(forged)) {
      const values = seen.rawHeaders.filter((_, i) => i % 2 === 1 && seen.rawHeaders[i - 1]!.toLowerCase() === name)
      t.false(values.includes(value), `the client's ${name} does not reach the upstream`)
    }

    // The same forgery with a key that has scopes and a tier: the upstream sees the real ones.
    const real = await passes(t, proxyOf(), '/v1/orders/3', { 'x-api-key': alice.key, ...forged })
    t.is(seenHeader(real.seen, 'x-auth-subject'), 'alice-app')
    t.is(seenHeader(real.seen, 'x-auth-scopes'), 'orders:read')
    t.is(seenHeader(real.seen, 'x-auth-tier'), 'gold')
  })

  test(`${kind}: a POST with a 100 kB body passes whole to the upstream; without a key it is 401`, async (t) => {
    const id = probe()
    const body = JSON.stringify({ item: 'x'.repeat(100_000) })
    const res = await fetch(proxyOf().url + '/v1/orders', { method: 'POST', body, headers: { 'x-api-key': alice.key, 'content-type': 'application/json', 'x-probe': id } })
    t.is(res.status, 200, await res.text())
    const [seen] = w().upstream.withProbe(id)
    await seen!.settled
    t.is(seen!.method, 'POST')
    t.is(seen!.body.toString(), body)
    const line = await w().gw.logLine(seenHeader(seen!, 'x-request-id'))
    t.like(line, { method: 'POST', route: 'orders', status: 200 })
    const refused = await fetch(proxyOf().url + '/v1/orders', { method: 'POST', body, headers: { 'content-type': 'application/json' } })
    t.is(refused.status, 401, await refused.text())
  })

  test(`${kind}: a public route passes with every identity header empty, whatever the client sent`, async (t) => {
    const { seen, line } = await passes(t, proxyOf(), '/v1/open/news', { 'x-auth-subject': 'root-app', 'x-auth-scopes': 'admin', 'x-auth-identity': 'forged' })
    t.is(line.route, 'open')
    for (const name of IDENTITY) t.is(seenHeader(seen, name), '', `${name} is empty at the upstream`)
    const { seen: authenticated } = await passes(t, proxyOf(), '/v1/orders/4', { 'x-api-key': alice.key, 'x-auth-subject': 'root-app' })
    t.is(seenHeader(authenticated, 'x-auth-subject'), 'alice-app')
  })
}

test('nginx: authgate\'s 400 and 404 reach the client with their own status through the mapping', async (t) => {
  const nginx = w().nginx
  const bad = await refused(t, nginx, '/v1/orders/1?_method=DELETE', { 'x-api-key': alice.key }, 400, 'bad_request')
  t.is(bad.body.error, 'bad_request')
  const none = await refused(t, nginx, '/v2/nothing-here', { 'x-api-key': alice.key }, 404, 'no_route')
  t.is(none.body.error, 'no_route')
  await passes(t, nginx, '/v1/orders/1?method=DELETE', { 'x-api-key': alice.key })
})

test('nginx: a client\'s X-Original-URL neither changes the decision nor reaches the upstream; X-Rewrite-URL is 400', async (t) => {
  const nginx = w().nginx
  await refused(t, nginx, '/v1/orders/7', { 'x-original-url': 'http://api.example.com/public/x' }, 401, 'missing_credentials')
  const { seen } = await passes(t, nginx, '/v1/orders/7', { 'x-api-key': alice.key, 'x-original-url': 'http://api.example.com/v1/admin/x' })
  t.is(seenHeader(seen, 'x-original-url'), '', 'the snippet clears it for the upstream')
  // X-Rewrite-URL reaches authgate with the client's other headers: 400, as in proxy mode.
  await refused(t, nginx, '/v1/orders/7', { 'x-api-key': alice.key, 'x-rewrite-url': '/v1/admin/x' }, 400, 'bad_request')
})

test('caddy: refusals pass through with authgate\'s own problem body and error code', async (t) => {
  const caddy = w().caddy
  const { body } = await refused(t, caddy, '/v1/orders/1', {}, 401, 'missing_credentials')
  t.is(body.error, 'missing_credentials', 'Caddy passes authgate\'s body on as it is')
  t.is(body.detail, 'API key required')
  const scope = await refused(t, caddy, '/v1/admin/users', { 'x-api-key': alice.key }, 403, 'insufficient_scope')
  t.is(scope.body.error, 'insufficient_scope')
})
