import anyTest, { type TestFn } from 'ava'
import { hashApiKey, newApiKey, newKeySecret } from '../../policies/api-key/format.js'
import { assertNotLogged, startGateway, type TestGateway } from '../helpers/gateway.js'
import {
  assertProblem, assertRequestId, header, probe, rawGet, rawRequest, recordingUpstream,
  type Echo, type RecordingUpstream, type Seen,
} from './support.js'

const test = anyTest as TestFn<{ gw: TestGateway, upstream: RecordingUpstream, key: string, wrongKey: string }>

const CHALLENGE = 'ApiKey realm="authgate", header="X-API-Key"'

test.before(async (t) => {
  const { id, key } = newApiKey()
  const upstream = await recordingUpstream()
  const gw = await startGateway({
    upstreams: { app: { url: upstream.url }, demo: { echo: true } },
    apiKeys: [{ id, hash: hashApiKey(key), client: 'client-one', scopes: ['read', 'write'], tier: 'gold' }],
    identity: { stripInbound: ['X-User-Id'] },
    routes: [
      { name: 'public', match: { path: '/public/**' }, upstream: 'app', public: true },
      { name: 'get-only', match: { path: '/get-only', methods: ['GET'] }, upstream: 'app', public: true },
      { name: 'echo', match: { path: '/echo/**' }, upstream: 'demo', public: true },
      { name: 'keyed', match: { path: '/v1/**' }, upstream: 'app', policies: [{ apiKey: {} }] },
    ],
  })
  // Same id, another secret: well-formed, so it reaches the constant-time comparison.
  t.context = { gw, upstream, key, wrongKey: `agk_${id}_${newKeySecret()}` }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.upstream?.close()
})

/** The one request the upstream saw with this probe (fails the test if it saw none or several). */
function only (t: { is: (a: unknown, b: unknown, m?: string) => void }, upstream: RecordingUpstream, id: string): Seen {
  const seen = upstream.withProbe(id)
  t.is(seen.length, 1, 'the upstream saw the request once')
  return seen[0]!
}

test('a public route is forwarded without credentials', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await gw.fetch('/public/hello?x=1', { headers: { 'x-probe': id } })
  t.is(res.status, 200)
  assertRequestId(t, res)
  t.is(only(t, upstream, id).url, '/public/hello?x=1')
})

test('a keyed route without a key is 401 missing_credentials with the ApiKey challenge, and is not forwarded', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await gw.fetch('/v1/data', { headers: { 'x-probe': id } })
  t.is(res.headers.get('www-authenticate'), CHALLENGE)
  await assertProblem(t, res, 401, 'missing_credentials')
  t.is(upstream.withProbe(id).length, 0)
})

test('a wrong key is 401 invalid_credentials, is not forwarded, and never appears in the logs', async (t) => {
  const { gw, upstream, wrongKey } = t.context
  const id = probe()
  const res = await gw.fetch('/v1/data', { headers: { 'x-probe': id, 'x-api-key': wrongKey } })
  t.is(res.headers.get('www-authenticate'), CHALLENGE)
  const body = await assertProblem(t, res, 401, 'invalid_credentials')
  t.false(JSON.stringify(body).includes(wrongKey))
  t.is(upstream.withProbe(id).length, 0)
  await assertNotLogged(t, gw, res.headers.get('x-request-id'), [wrongKey, wrongKey.slice(-43)], 'the wrong key')
})

test('a malformed key is 401 invalid_credentials too', async (t) => {
  const res = await t.context.gw.fetch('/v1/data', { headers: { 'x-api-key': 'not-a-key' } })
  t.is(res.headers.get('www-authenticate'), CHALLENGE)
  await assertProblem(t, res, 401, 'invalid_credentials')
})

test('the right key is 200; the upstream receives the verified identity and not the key', async (t) => {
  const { gw, upstream, key } = t.context
  const id = probe()
  const res = await gw.fetch('/v1/data', { headers: { 'x-probe': id, 'x-api-key': key } })
  t.is(res.status, 200)
  assertRequestId(t, res)
  const seen = only(t, upstream, id)
  t.is(seen.url, '/v1/data')
  t.is(seen.headers['x-auth-subject'], 'client-one')
  t.is(seen.headers['x-auth-client'], 'client-one')
  t.is(seen.headers['x-auth-methods'], 'apiKey')
  t.is(seen.headers['x-auth-scopes'], 'read write')
  t.is(seen.headers['x-auth-tier'], 'gold')
  t.is(seen.headers['x-api-key'], undefined)
  await assertNotLogged(t, gw, res.headers.get('x-request-id'), [key], 'the key')
})

test('an API key in the query string is 400 bad_request; the same request with the key in the header is 200', async (t) => {
  const { gw, upstream, key } = t.context
  for (const name of ['api_key', 'apikey', 'x-api-key', 'X-API-Key']) {
    const id = probe()
    const res = await gw.fetch(`/v1/data?${name}=${encodeURIComponent(key)}`, { headers: { 'x-probe': id, 'x-api-key': key } })
    const body = await assertProblem(t, res, 400, 'bad_request')
    t.regex(String(body.detail), /header/, name)
    t.false(String(body.detail).includes(key))
    t.is(upstream.withProbe(id).length, 0, name)
    await assertNotLogged(t, gw, res.headers.get('x-request-id'), [key], `the key in ${name}`)
  }
  // A name that is not a key parameter, with a value that is not a key: refused only for the name.
  const named = await gw.fetch('/v1/data?api_key=nothing', { headers: { 'x-api-key': key } })
  await assertProblem(t, named, 400, 'bad_request')

  const id = probe()
  const ok = await gw.fetch('/v1/data?page=2', { headers: { 'x-probe': id, 'x-api-key': key } })
  t.is(ok.status, 200)
  t.is(only(t, upstream, id).url, '/v1/data?page=2')
  await assertNotLogged(t, gw, ok.headers.get('x-request-id'), [key], 'the key')
})

test('a query value starting agk_ is 400 on a public route too; other values pass', async (t) => {
  const { gw, upstream, key } = t.context
  const id = probe()
  const res = await gw.fetch(`/public/search?q=${key}`, { headers: { 'x-probe': id } })
  await assertProblem(t, res, 400, 'bad_request')
  t.is(upstream.withProbe(id).length, 0)
  await assertNotLogged(t, gw, res.headers.get('x-request-id'), [key], 'the key')

  const twin = probe()
  const ok = await gw.fetch('/public/search?q=agenda', { headers: { 'x-probe': twin } })
  t.is(ok.status, 200)
  t.is(only(t, upstream, twin).url, '/public/search?q=agenda')
})

test('two X-API-Key headers are 400 bad_request, never "first one wins"; one is 200', async (t) => {
  const { gw, upstream, key, wrongKey } = t.context
  for (const pair of [[key, wrongKey], [wrongKey, key], [key, key]]) {
    const id = probe()
    const res = await rawGet(gw.url, '/v1/data', [`X-Probe: ${id}`, `X-API-Key: ${pair[0]}`, `x-api-key: ${pair[1]}`])
    await assertProblem(t, res, 400, 'bad_request')
    t.is(upstream.withProbe(id).length, 0)
  }
  const id = probe()
  const res = await rawGet(gw.url, '/v1/data', [`X-Probe: ${id}`, `X-API-Key: ${key}`])
  t.is(res.status, 200)
  assertRequestId(t, res)
  t.is(only(t, upstream, id).headers['x-auth-subject'], 'client-one')
})

test('an unmatched path is 404 no_route and is never forwarded', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  // Matching is case-sensitive and the trailing slash is significant.
  for (const path of ['/nothing-here', '/V1/data', '/Public/x', '/get-only/', '/']) {
    const res = await gw.fetch(path, { headers: { 'x-probe': id } })
    await assertProblem(t, res, 404, 'no_route')
  }
  t.is(upstream.withProbe(id).length, 0)
  // The twin: `/x/**` matches the base itself (DESIGN.md, Patterns).
  const twin = probe()
  t.is((await gw.fetch('/public', { headers: { 'x-probe': twin } })).status, 200)
  t.is(only(t, upstream, twin).url, '/public')
})

test('a path that matches with a method that does not is 404 no_route; the matching method is forwarded', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  for (const method of ['POST', 'DELETE', 'OPTIONS']) {
    const res = await gw.fetch('/get-only', { method, headers: { 'x-probe': id } })
    await assertProblem(t, res, 404, 'no_route')
  }
  t.is(upstream.withProbe(id).length, 0)
  const twin = probe()
  const ok = await gw.fetch('/get-only', { headers: { 'x-probe': twin } })
  t.is(ok.status, 200)
  t.is(only(t, upstream, twin).method, 'GET')
})

test('a preflight OPTIONS request is authenticated like any other method', async (t) => {
  const { gw, upstream, key } = t.context
  const id = probe()
  const res = await gw.fetch('/v1/data', { method: 'OPTIONS', headers: { 'x-probe': id, origin: 'https://app.example', 'access-control-request-method': 'GET' } })
  t.is(res.headers.get('www-authenticate'), CHALLENGE)
  await assertProblem(t, res, 401, 'missing_credentials')
  t.is(upstream.withProbe(id).length, 0)
  const twin = probe()
  const ok = await gw.fetch('/v1/data', { method: 'OPTIONS', headers: { 'x-probe': twin, 'x-api-key': key } })
  t.is(ok.status, 200)
  t.is(only(t, upstream, twin).method, 'OPTIONS')
})

test('dot segments, encoded separators, semicolons, NUL, backslashes and fragments are 400 and never forwarded', async (t) => {
  const { gw, upstream, key } = t.context
  const targets = [
    '/public/../v1/data', '/public/%2e%2e/v1/data', '/public/%2E%2E/v1/data', '/public/.%2e/v1/data',
    '/public/./data', '/public/%2e/data', '/public/..', '/v1%2fdata', '/v1%2Fdata', '/public/a%2fb', '/public/a%5cb',
    '/public/a%3bb', '/a;b', '/public/a;b', '/a%00', '/public/a%00b', '/a\\b', '/public/a\\b', '/public/x#frag',
    '/public/%0d%0aX-Injected:%201',
  ]
  for (const target of targets) {
    const id = probe()
    // With a valid key too: these are refused before any route or policy is consulted.
    for (const extra of [[], [`X-API-Key: ${key}`]]) {
      const res = await rawGet(gw.url, target, [`X-Probe: ${id}`, ...extra])
      const body = await assertProblem(t, res, 400, 'bad_request')
      t.false(String(body.detail).includes(target), target)
    }
    t.is(upstream.withProbe(id).length, 0, target)
  }
})

test('/public/../v1/data never reaches the keyed route without a key', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await rawGet(gw.url, '/public/../v1/data', [`X-Probe: ${id}`])
  await assertProblem(t, res, 400, 'bad_request')
  t.is(upstream.withProbe(id).length, 0)
  // The twin: the path the client meant, asked for directly, is the keyed route and wants a key.
  const direct = await rawGet(gw.url, '/v1/data', [`X-Probe: ${id}`])
  t.is(header(direct, 'www-authenticate'), CHALLENGE)
  await assertProblem(t, direct, 401, 'missing_credentials')
})

test('an unreserved percent-escape is decoded before matching: /%761/orders is routed and forwarded as /v1/orders', async (t) => {
  const { gw, upstream, key } = t.context
  const id = probe()
  const denied = await rawGet(gw.url, '/%761/orders', [`X-Probe: ${id}`])
  await assertProblem(t, denied, 401, 'missing_credentials')
  const res = await rawGet(gw.url, '/%761/ord%65rs?a=%76', [`X-Probe: ${id}`, `X-API-Key: ${key}`])
  t.is(res.status, 200)
  // The query is forwarded exactly as sent.
  t.is(only(t, upstream, id).url, '/v1/orders?a=%76')
})

test('runs of slashes are merged: //v1//x is matched and forwarded as /v1/x', async (t) => {
  const { gw, upstream, key } = t.context
  const id = probe()
  const res = await rawGet(gw.url, '//v1//x///y', [`X-Probe: ${id}`, `X-API-Key: ${key}`])
  t.is(res.status, 200)
  t.is(only(t, upstream, id).url, '/v1/x/y')
})

test('a request header name containing _ is 400 bad_request; the same name with - is forwarded', async (t) => {
  const { gw, upstream } = t.context
  for (const name of ['X_Auth_Subject', 'x_custom']) {
    const id = probe()
    const res = await rawGet(gw.url, '/public/x', [`X-Probe: ${id}`, `${name}: admin`])
    await assertProblem(t, res, 400, 'bad_request')
    t.is(upstream.withProbe(id).length, 0)
  }
  const id = probe()
  const ok = await rawGet(gw.url, '/public/x', [`X-Probe: ${id}`, 'X-Custom: hello'])
  t.is(ok.status, 200)
  t.is(only(t, upstream, id).headers['x-custom'], 'hello')
})

const SPOOFED = [
  'X-Auth-Subject', 'X-Auth-Client', 'X-Auth-Methods', 'X-Auth-Scopes', 'X-Auth-Tier', 'X-Auth-Identity',
  'X-Forwarded-Client-Cert', 'X-User-Id',
]
const CASES = [(n: string) => n, (n: string) => n.toLowerCase(), (n: string) => n.toUpperCase()]

test('spoofed identity headers, in any case, never reach the upstream of a public route', async (t) => {
  const { gw, upstream } = t.context
  for (const spell of CASES) {
    const id = probe()
    const res = await rawGet(gw.url, '/public/x', [`X-Probe: ${id}`, ...SPOOFED.map((n) => `${spell(n)}: admin`)])
    t.is(res.status, 200)
    const seen = only(t, upstream, id)
    for (const name of SPOOFED) t.is(seen.headers[name.toLowerCase()], undefined, spell(name))
    t.false(seen.rawHeaders.some((v) => v === 'admin'))
  }
})

test('spoofed identity headers never reach the upstream of a keyed route: the verified identity replaces them', async (t) => {
  const { gw, upstream, key } = t.context
  for (const spell of CASES) {
    const id = probe()
    const res = await rawGet(gw.url, '/v1/data', [`X-Probe: ${id}`, `X-API-Key: ${key}`, ...SPOOFED.map((n) => `${spell(n)}: admin`)])
    t.is(res.status, 200)
    const seen = only(t, upstream, id)
    t.is(seen.headers['x-auth-subject'], 'client-one')
    t.is(seen.headers['x-auth-client'], 'client-one')
    t.is(seen.headers['x-auth-methods'], 'apiKey')
    t.is(seen.headers['x-auth-scopes'], 'read write')
    t.is(seen.headers['x-auth-tier'], 'gold')
    for (const name of ['x-auth-identity', 'x-forwarded-client-cert', 'x-user-id']) t.is(seen.headers[name], undefined)
    t.false(seen.rawHeaders.some((v) => v === 'admin'))
  }
})

test('spoofed identity headers are not forwarded when the client lists them in Connection, and the verified ones still arrive', async (t) => {
  const { gw, upstream, key } = t.context
  const connection = `Connection: close, ${SPOOFED.join(', ')}`
  const pub = probe()
  const res = await rawGet(gw.url, '/public/x', [`X-Probe: ${pub}`, connection, ...SPOOFED.map((n) => `${n}: admin`)])
  t.is(res.status, 200)
  const seenPublic = only(t, upstream, pub)
  for (const name of SPOOFED) t.is(seenPublic.headers[name.toLowerCase()], undefined, name)

  const keyed = probe()
  const res2 = await rawGet(gw.url, '/v1/data', [`X-Probe: ${keyed}`, `X-API-Key: ${key}`, connection, ...SPOOFED.map((n) => `${n}: admin`)])
  t.is(res2.status, 200)
  const seen = only(t, upstream, keyed)
  // Connection may not remove what the gateway adds.
  t.is(seen.headers['x-auth-subject'], 'client-one')
  t.is(seen.headers['x-auth-client'], 'client-one')
  t.is(seen.headers['x-auth-methods'], 'apiKey')
  t.false(seen.rawHeaders.some((v) => v === 'admin'))
})

test('Connection: X-API-Key does not make the key disappear before the policy', async (t) => {
  const { gw, upstream, key } = t.context
  const id = probe()
  const res = await rawGet(gw.url, '/v1/data', [`X-Probe: ${id}`, 'Connection: close, X-API-Key', `X-API-Key: ${key}`])
  t.is(res.status, 200)
  const seen = only(t, upstream, id)
  t.is(seen.headers['x-auth-subject'], 'client-one')
  t.is(seen.headers['x-api-key'], undefined)
  // The twin: without a key, listing it changes nothing either.
  const none = await rawGet(gw.url, '/v1/data', ['Connection: close, X-API-Key'])
  await assertProblem(t, none, 401, 'missing_credentials')
})

test('a header the client names in Connection is not forwarded; the same header unnamed is', async (t) => {
  const { gw, upstream } = t.context
  const named = probe()
  t.is((await rawGet(gw.url, '/public/x', [`X-Probe: ${named}`, 'Connection: close, foo', 'Foo: bar'])).status, 200)
  t.is(only(t, upstream, named).headers.foo, undefined)
  const unnamed = probe()
  t.is((await rawGet(gw.url, '/public/x', [`X-Probe: ${unnamed}`, 'Foo: bar'])).status, 200)
  t.is(only(t, upstream, unnamed).headers.foo, 'bar')
})

test('hop-by-hop request headers are removed before forwarding', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await rawGet(gw.url, '/public/x', [
    `X-Probe: ${id}`, 'Connection: close', 'Keep-Alive: timeout=99', 'TE: trailers', 'Trailer: X-Checksum',
    'Proxy-Connection: keep-alive', 'Proxy-Authorization: Basic dXNlcjpwYXNz', 'X-Kept: yes',
  ])
  t.is(res.status, 200)
  const seen = only(t, upstream, id)
  for (const name of ['keep-alive', 'te', 'trailer', 'proxy-connection', 'proxy-authorization']) t.is(seen.headers[name], undefined, name)
  t.not(seen.headers.connection, 'close') // the pool's own connection management, not the client's
  t.is(seen.headers['x-kept'], 'yes')
  await assertNotLogged(t, gw, header(res, 'x-request-id'), ['dXNlcjpwYXNz'], 'the proxy credentials')
})

test('X-Forwarded-* and Forwarded from an untrusted peer are replaced, never read', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const host = new URL(gw.url).host
  const res = await rawGet(gw.url, '/public/x', [
    `X-Probe: ${id}`, 'X-Forwarded-For: 203.0.113.9', 'X-Forwarded-Proto: https', 'X-Forwarded-Host: evil.example',
    'Forwarded: for=203.0.113.9;proto=https', 'X-Real-IP: 203.0.113.9',
  ])
  t.is(res.status, 200)
  const seen = only(t, upstream, id)
  t.is(seen.headers['x-forwarded-for'], '127.0.0.1')
  t.is(seen.headers['x-forwarded-proto'], 'http')
  t.is(seen.headers['x-forwarded-host'], host)
  t.is(seen.headers.forwarded, undefined)
  t.is(seen.headers['x-real-ip'], undefined)
})

test('X-Forwarded-For from a trusted proxy is appended to', async (t) => {
  const upstream = await recordingUpstream()
  const gw = await startGateway({
    trustProxies: ['127.0.0.1/32'],
    upstreams: { app: { url: upstream.url } },
    routes: [{ name: 'public', match: { path: '/**' }, upstream: 'app', public: true }],
  })
  try {
    const id = probe()
    const res = await gw.fetch('/x', { headers: { 'x-probe': id, 'x-forwarded-for': '203.0.113.9, 198.51.100.1' } })
    t.is(res.status, 200)
    const seen = only(t, upstream, id)
    t.is(seen.headers['x-forwarded-for'], '203.0.113.9, 198.51.100.1, 127.0.0.1')
    // The twin: no X-Forwarded-For at all from the trusted peer starts the list with it.
    const bare = probe()
    await gw.fetch('/x', { headers: { 'x-probe': bare } })
    t.is(only(t, upstream, bare).headers['x-forwarded-for'], '127.0.0.1')
  } finally {
    await gw.close()
    await upstream.close()
  }
})

test('the echo upstream answers with the request it received, as JSON', async (t) => {
  const res = await rawRequest(t.context.gw.url, [
    'POST /echo/a?b=c HTTP/1.1', `Host: ${new URL(t.context.gw.url).host}`, 'X-Auth-Subject: admin',
    'Content-Type: text/plain', 'Content-Length: 5',
  ].join('\r\n'), 'hello')
  t.is(res.status, 200)
  assertRequestId(t, res)
  const echo = JSON.parse(res.body) as Echo
  t.is(echo.method, 'POST')
  t.is(echo.path, '/echo/a')
  t.is(echo.query, 'b=c')
  t.is(echo.body, 'hello')
  t.is(echo.headers['content-type'], 'text/plain')
  t.is(echo.headers['x-auth-subject'], undefined)
  t.is(echo.headers['x-forwarded-for'], '127.0.0.1')
})

test('every request gets one access log line with its request id, route, status and decision code', async (t) => {
  const { gw } = t.context
  const res = await gw.fetch('/v1/logged')
  const body = await assertProblem(t, res, 401, 'missing_credentials')
  t.is((await gw.logLine(String(body.requestId))).requestId, String(body.requestId)) // written by now
  const lines = gw.rawLogs().split('\n').filter((l) => l.includes(String(body.requestId)))
  const access = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request')
  t.is(access.length, 1)
  t.like(access[0], { method: 'GET', route: 'keyed', status: 401, code: 'missing_credentials', path: '/v1/logged' })
  t.is(typeof access[0]!.durationMs, 'number')
})
