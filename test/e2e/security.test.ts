/**
 * Attacks on the gateway, each paired with the request it must still let through. Tests named after a finding
 * failed before its fix; the others document a protection that held when it was attacked.
 */
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import net from 'node:net'
import { join } from 'node:path'
import tls from 'node:tls'
import anyTest, { type TestFn } from 'ava'
import { createCRL, type PemPair } from '../../certs/pki.js'
import { checkConfig } from '../../gateway/config/load.js'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { passwordChecks, scryptHash } from '../../policies/basic/users.js'
import { sign } from '../../policies/jwt/fixtures/keys.js'
import { assertNotLogged, startGateway, type TestGateway } from '../helpers/gateway.js'
import { mintPki, type Pki } from '../helpers/pki.js'
import { assertProblem, header, probe, rawGet, rawRequest, recordingUpstream, type RecordingUpstream, type Seen } from './support.js'

interface Context {
  gw: TestGateway
  upstream: RecordingUpstream
  key: string
  secret: Buffer
  adminToken: string
}
const test = anyTest as TestFn<Context>

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

test.before(async (t) => {
  const upstream = await recordingUpstream((req, res, seen) => {
    req.on('end', () => {
      const text = JSON.stringify({ url: seen.url, headers: seen.headers, trailers: req.trailers, body: seen.body.toString('utf8') })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    })
  })
  // Upgrades: a WebSocket handshake is accepted; anything else (h2c) would be too, to see whether it gets here.
  upstream.server.removeAllListeners('upgrade')
  upstream.server.on('upgrade', (req, socket: net.Socket) => {
    upstream.seen.push({ method: req.method ?? '', url: `UPGRADE ${req.headers.upgrade ?? ''} ${req.url ?? ''}`, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, body: Buffer.alloc(0), complete: true, settled: Promise.resolve() })
    socket.on('error', () => socket.destroy())
    if (String(req.headers.upgrade).toLowerCase() === 'websocket') {
      const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}${WS_GUID}`).digest('base64')
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
    } else {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${String(req.headers.upgrade)}\r\nConnection: Upgrade\r\n\r\n`)
    }
    socket.end()
  })
  const { id, key } = newApiKey()
  const secret = randomBytes(32)
  const adminToken = randomBytes(24).toString('base64url')
  const gw = await startGateway({
    upstreams: { app: { url: upstream.url } },
    apiKeys: [{ id, hash: hashApiKey(key), client: 'key-client', scopes: ['read'] }],
    jwtProviders: {
      idp: { secret: '${env:JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'aud-a' },
    },
    routes: [
      { name: 'public-host', match: { host: 'public.test', path: '/**' }, upstream: 'app', public: true },
      { name: 'admin-host', match: { host: 'admin.test', path: '/open/**' }, upstream: 'app', policies: [{ apiKey: {} }] },
      { name: 'open', match: { path: '/open/**' }, upstream: 'app', public: true },
      { name: 'aud-a', match: { path: '/a/**' }, upstream: 'app', policies: [{ jwt: { provider: 'idp' } }] },
      { name: 'aud-b', match: { path: '/b/**' }, upstream: 'app', policies: [{ jwt: { provider: 'idp', audience: 'aud-b' } }] },
      { name: 'pass', match: { path: '/pass/**' }, upstream: 'app', policies: [{ jwt: { provider: 'idp', passthrough: true } }] },
      { name: 'either', match: { path: '/either/**' }, upstream: 'app', policies: [{ anyOf: [{ jwt: { provider: 'idp' } }, { apiKey: {} }] }] },
      { name: 'rl-ip', match: { path: '/rl-ip/**' }, upstream: 'app', public: true, policies: [{ rateLimit: { by: 'ip', limit: '2/min' } }] },
      { name: 'rl-tenant', match: { path: '/rl-tenant/**' }, upstream: 'app', public: true, policies: [{ rateLimit: { by: 'header:X-Tenant', limit: '2/min' } }] },
      { name: 'orders-create', match: { path: '/orders/**', methods: ['POST'] }, upstream: 'app', policies: [{ apiKey: {} }, { scopes: ['read'] }] },
      { name: 'orders-delete', match: { path: '/orders/**', methods: ['DELETE'] }, upstream: 'app', policies: [{ apiKey: {} }, { scopes: ['admin'] }] },
      { name: 'keyed', match: { path: '/**' }, upstream: 'app', policies: [{ apiKey: {} }] },
    ],
  }, { env: { JWT_SECRET: secret.toString('base64'), AUTHGATE_ADMIN_TOKEN: adminToken } })
  t.context = { gw, upstream, key, secret, adminToken }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.upstream?.close()
})

function hostOf (gw: TestGateway): string {
  return new URL(gw.url).host
}

function seenWith (upstream: RecordingUpstream, id: string): Seen[] {
  return upstream.withProbe(id)
}

async function jwt (t: { context: Context }, claims: Record<string, unknown>): Promise<string> {
  return await sign(t.context.secret, { sub: 'user-1', aud: 'aud-a', ...claims }, Date.now())
}

/**
 * Writes `payload` on one connection and returns everything the gateway answered: the connection is half-closed once
 * `answers` final responses (not 100) have arrived, or after 3 s.
 */
function conversation (url: string, payload: string, answers = 1): Promise<string> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname)
    let data = ''
    const timer = setTimeout(() => socket.end(), 3000)
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1')
      if ((data.match(/HTTP\/1\.1 [2-5]\d\d/g) ?? []).length >= answers) { clearTimeout(timer); socket.end() }
    })
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve(data) })
    socket.write(payload)
  })
}

// Findings

test('an API key in the query string, percent-encoded or as a parameter name, is refused and never written to the log', async (t) => {
  const { gw, key } = t.context
  const secretPart = key.slice(-43)
  const queries = [`q=agk%5F${key.slice(4)}`, `q=%61gk_${key.slice(4)}`, `q=%61%67%6B%5F${key.slice(4)}`, key, `${key}=1`, `a=1&%61gk_${key.slice(4)}`]
  for (const query of queries) {
    const res = await rawGet(gw.url, `/open/search?${query}`)
    const body = await assertProblem(t, res, 400, 'bad_request')
    t.false(JSON.stringify(body).includes(secretPart))
    await assertNotLogged(t, gw, header(res, 'x-request-id'), [secretPart], `the key secret (${query.slice(0, 12)}...)`)
  }
  t.false(gw.rawLogs().includes(secretPart), 'the key secret is in the log')
  // The twin: an ordinary query value passes and is logged as sent.
  const res = await rawGet(gw.url, '/open/search?q=agenda%5Fitems')
  t.is(res.status, 200)
  t.is((await gw.logLine(header(res, 'x-request-id'))).path, '/open/search?q=agenda%5Fitems')
  t.true(gw.rawLogs().includes('/open/search?q=agenda%5Fitems'))
})

test('a Host header with userinfo, a path or whitespace is 400 and never forwarded; host and port are routed', async (t) => {
  const { gw, upstream } = t.context
  // `public.test` is a public host; an upstream that parses Host as a URL authority would read these as admin.test.
  for (const host of ['public.test:80@admin.test', 'public.test:80/admin', 'public.test\tadmin.test', 'public.test:80 admin.test', 'public.test:x']) {
    const id = probe()
    const res = await rawRequest(gw.url, [`GET /open/x HTTP/1.1`, `Host: ${host}`, `X-Probe: ${id}`].join('\r\n'))
    await assertProblem(t, res, 400, 'bad_request')
    t.is(seenWith(upstream, id).length, 0, host)
  }
  for (const host of ['public.test', 'public.test:8080', 'PUBLIC.test.', '[::1]:8080', '127.0.0.1']) {
    const id = probe()
    const res = await rawRequest(gw.url, [`GET /open/x HTTP/1.1`, `Host: ${host}`, `X-Probe: ${id}`].join('\r\n'))
    t.is(res.status, 200, host)
    t.is(seenWith(upstream, id)[0]?.headers.host, host)
  }
})

test('an identity that a header cannot carry is refused with 401, never answered 502 as if the upstream failed', async (t) => {
  const { gw, upstream } = t.context
  for (const sub of ['日本', 'line\u2028separator']) {
    const id = probe()
    const res = await gw.fetch('/a/x', { headers: { authorization: `Bearer ${await jwt(t, { sub })}`, 'x-probe': id } })
    await assertProblem(t, res, 401, 'invalid_credentials')
    t.is(seenWith(upstream, id).length, 0)
  }
  const id = probe()
  const res = await gw.fetch('/a/x', { headers: { authorization: `Bearer ${await jwt(t, { sub: 'user-ascii' })}`, 'x-probe': id } })
  t.is(res.status, 200)
  t.is(seenWith(upstream, id)[0]?.headers['x-auth-subject'], 'user-ascii')
})

test('a JWT scope containing a space is not forwarded as two scopes; separate scopes are', async (t) => {
  const { gw } = t.context
  const smuggled = await gw.fetch('/a/x', { headers: { authorization: `Bearer ${await jwt(t, { scp: ['read admin'] })}` } })
  t.is(smuggled.status, 200)
  const seen = (await smuggled.json() as { headers: Record<string, string> }).headers
  t.false(seen['x-auth-scopes']!.split(' ').includes('admin'), `X-Auth-Scopes: ${seen['x-auth-scopes']}`)
  const twin = await gw.fetch('/a/x', { headers: { authorization: `Bearer ${await jwt(t, { scp: ['read', 'admin'] })}` } })
  t.is((await twin.json() as { headers: Record<string, string> }).headers['x-auth-scopes'], 'read admin')
})

test('the admin listener answers a malformed request target or key id with a 4xx problem, never 500', async (t) => {
  const { gw, adminToken } = t.context
  const auth = `Authorization: Bearer ${adminToken}`
  const target = await rawRequest(gw.adminUrl, ['GET http://[ HTTP/1.1', 'Host: admin'].join('\r\n'))
  await assertProblem(t, target, 400, 'bad_request')
  for (const [method, path] of [['DELETE', '/admin/keys/%E0%A4%A'], ['POST', '/admin/keys/%ZZ/rotate']] as const) {
    const res = await rawRequest(gw.adminUrl, [`${method} ${path} HTTP/1.1`, 'Host: admin', auth, 'Content-Length: 0'].join('\r\n'))
    t.true(res.status >= 400 && res.status < 500, `${method} ${path}: ${res.status}`)
    t.is(header(res, 'content-type'), 'application/problem+json')
  }
  // The twin: a well-formed unknown id is 404 not_found.
  const unknown = await rawRequest(gw.adminUrl, ['DELETE /admin/keys/abcdefgh12345678 HTTP/1.1', 'Host: admin', auth].join('\r\n'))
  await assertProblem(t, unknown, 404, 'not_found')
})

test('a method override that differs from the request method is 400, so a POST route cannot reach a DELETE handler', async (t) => {
  const { gw, upstream, key } = t.context
  const overrides = ['X-HTTP-Method-Override: DELETE', 'X-HTTP-Method: delete', 'X-Method-Override: DELETE']
  for (const override of overrides) {
    const id = probe()
    const res = await rawRequest(gw.url, ['POST /orders/1 HTTP/1.1', `Host: ${hostOf(gw)}`, `X-API-Key: ${key}`, `X-Probe: ${id}`, override, 'Content-Length: 0'].join('\r\n'))
    await assertProblem(t, res, 400, 'bad_request')
    t.is(seenWith(upstream, id).length, 0, override)
  }
  const query = probe()
  const res = await rawRequest(gw.url, ['POST /orders/1?_method=DELETE HTTP/1.1', `Host: ${hostOf(gw)}`, `X-API-Key: ${key}`, `X-Probe: ${query}`, 'Content-Length: 0'].join('\r\n'))
  await assertProblem(t, res, 400, 'bad_request')
  t.is(seenWith(upstream, query).length, 0)
  // The twins: the plain POST passes, an override naming the method itself is harmless, and DELETE needs its scope.
  for (const extra of [[], ['X-HTTP-Method-Override: POST']]) {
    const ok = await rawRequest(gw.url, ['POST /orders/1 HTTP/1.1', `Host: ${hostOf(gw)}`, `X-API-Key: ${key}`, ...extra, 'Content-Length: 0'].join('\r\n'))
    t.is(ok.status, 200)
  }
  await assertProblem(t, await gw.fetch('/orders/1', { method: 'DELETE', headers: { 'x-api-key': key } }), 403, 'insufficient_scope')
})

test('every X-Forwarded-* header from an untrusted peer is dropped, not only For, Proto and Host', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const spoofed = ['X-Forwarded-Ssl: on', 'X-Forwarded-Port: 443', 'X-Forwarded-Prefix: /admin', 'X-Forwarded-Scheme: https', 'X-Forwarded-Server: trusted.internal']
  const res = await rawGet(gw.url, '/open/fwd', [`X-Probe: ${id}`, ...spoofed])
  t.is(res.status, 200)
  const seen = seenWith(upstream, id)[0]!.headers
  for (const name of ['x-forwarded-ssl', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-scheme', 'x-forwarded-server']) t.is(seen[name], undefined, name)
  // The twin: the gateway's own forwarded headers are there.
  t.is(seen['x-forwarded-for'], '127.0.0.1')
  t.is(seen['x-forwarded-proto'], 'http')
  t.is(seen['x-forwarded-host'], hostOf(gw))
})

test('X-Original-URL and X-Rewrite-URL are 400, so an upstream cannot be told to serve another path than the one authorized', async (t) => {
  const { gw, upstream } = t.context
  for (const override of ['X-Original-URL: /keyed/admin', 'X-Rewrite-URL: /keyed/admin']) {
    const id = probe()
    const res = await rawGet(gw.url, '/open/x', [`X-Probe: ${id}`, override])
    await assertProblem(t, res, 400, 'bad_request')
    t.is(seenWith(upstream, id).length, 0, override)
  }
  t.is((await rawGet(gw.url, '/open/x', ['X-Original-Agent: fine'])).status, 200)
})

// Attacks that held: request smuggling and parsing

test('chunked trailers never reach the upstream, so they cannot carry an identity or a credential', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await rawRequest(gw.url, [`POST /open/t HTTP/1.1`, `Host: ${hostOf(gw)}`, `X-Probe: ${id}`, 'Transfer-Encoding: chunked', 'Trailer: X-Auth-Subject'].join('\r\n'),
    '3\r\nabc\r\n0\r\nX-Auth-Subject: admin\r\nX-Auth-Methods: apiKey\r\n\r\n')
  t.is(res.status, 200)
  const seen = JSON.parse(res.body) as { headers: Record<string, string | undefined>, trailers: Record<string, string>, body: string }
  t.is(seen.body, 'abc')
  t.deepEqual(seen.trailers, {})
  t.is(seen.headers['x-auth-subject'], undefined)
  t.is(seenWith(upstream, id).length, 1)
})

test('Transfer-Encoding with Content-Length, obs-fold, a space before the colon and lower-case methods are 400 before routing', async (t) => {
  const { gw, upstream } = t.context
  const host = `Host: ${hostOf(gw)}`
  const attacks: Array<[string, string]> = [
    [['POST /open/x HTTP/1.1', host, 'X-Probe: te-cl', 'Transfer-Encoding: chunked', 'Content-Length: 3'].join('\r\n'), '3\r\nabc\r\n0\r\n\r\n'],
    [['POST /open/x HTTP/1.1', host, 'X-Probe: te-list', 'Transfer-Encoding: chunked, identity'].join('\r\n'), '3\r\nabc\r\n0\r\n\r\n'],
    [['POST /open/x HTTP/1.1', host, 'X-Probe: cl-cl', 'Content-Length: 3', 'Content-Length: 4'].join('\r\n'), 'abcd'],
    [['GET /open/x HTTP/1.1', host, 'X-Probe: fold', 'X-Foo: a', ' X-Auth-Subject: admin'].join('\r\n'), ''],
    [['GET /open/x HTTP/1.1', host, 'X-Probe: space', 'X-Auth-Subject : admin'].join('\r\n'), ''],
    [['get /x HTTP/1.1', host, 'X-Probe: lower'].join('\r\n'), ''],
  ]
  for (const [head, body] of attacks) {
    const res = await rawRequest(gw.url, head, body)
    await assertProblem(t, res, 400, 'bad_request')
  }
  for (const name of ['te-cl', 'te-list', 'cl-cl', 'fold', 'space', 'lower']) t.is(seenWith(upstream, name).length, 0, name)
  const twin = await rawRequest(gw.url, ['POST /open/x HTTP/1.1', host, 'Transfer-Encoding: chunked'].join('\r\n'), '3\r\nabc\r\n0\r\n\r\n')
  t.is(twin.status, 200)
})

test('a body sent to a 401 route cannot smuggle a second request on a keep-alive connection', async (t) => {
  const { gw, upstream } = t.context
  const host = hostOf(gw)
  const hidden = probe()
  const smuggled = `GET /open/smuggled HTTP/1.1\r\nHost: ${host}\r\nX-Probe: ${hidden}\r\n\r\n`
  const chunked = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`
  const framings = [
    [`Content-Length: ${smuggled.length}`, smuggled],
    ['Transfer-Encoding: chunked', chunked],
    [`Expect: 100-continue\r\nContent-Length: ${smuggled.length}`, smuggled],
  ] as const
  for (const [framing, body] of framings) {
    const next = probe()
    const answer = await conversation(gw.url,
      `POST /keyed HTTP/1.1\r\nHost: ${host}\r\n${framing}\r\n\r\n${body}GET /open/next HTTP/1.1\r\nHost: ${host}\r\nX-Probe: ${next}\r\n\r\n`, 2)
    const statuses = (answer.match(/HTTP\/1\.1 \d{3}/g) ?? [])
    if (framing.startsWith('Expect')) {
      // No 100 Continue before authentication: the 401 comes instead, and the connection closes, so whatever
      // the client sends after it (the held-back body, a next request) is never read as a request.
      t.deepEqual(statuses, ['HTTP/1.1 401'], framing)
      t.regex(answer, /connection: close/i)
      t.is(seenWith(upstream, next).length, 0, 'nothing after a refused Expect request is read from that connection')
      continue
    }
    t.deepEqual(statuses, ['HTTP/1.1 401', 'HTTP/1.1 200'], framing)
    t.is(seenWith(upstream, next).length, 1, 'the real second request is forwarded')
  }
  t.is(seenWith(upstream, hidden).length, 0, 'the request hidden in a body never reaches the upstream')
})

test('an h2c upgrade is never tunneled to the upstream; a WebSocket upgrade on the same route is', async (t) => {
  const { gw, upstream } = t.context
  const host = hostOf(gw)
  const h2c = await conversation(gw.url, `GET /open/h2c HTTP/1.1\r\nHost: ${host}\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /keyed/secret HTTP/1.1\r\nHost: x\r\n\r\n`)
  t.false(h2c.includes('101 Switching Protocols'))
  t.false(upstream.seen.some((s) => s.url.includes('/open/h2c')), 'the h2c upgrade reached the upstream')
  const ws = await conversation(gw.url, `GET /open/ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`)
  t.true(ws.startsWith('HTTP/1.1 101'), ws.slice(0, 40))
  t.true(upstream.seen.some((s) => s.url === 'UPGRADE websocket /open/ws'))
})

test('CONNECT is never forwarded or tunneled to an upstream; an ordinary GET is', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const answer = await conversation(gw.url, `CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nHost: 127.0.0.1:${upstream.port}\r\nX-Probe: ${id}\r\n\r\nGET /open/tunneled HTTP/1.1\r\nHost: x\r\nX-Probe: ${id}\r\n\r\n`)
  t.false(answer.includes(' 200 '))
  t.is(seenWith(upstream, id).length, 0)
  const twin = await rawGet(gw.url, '/open/connect-twin')
  t.is(twin.status, 200)
})

// Attacks that held: routing

test('upper-case hosts and a trailing dot select the protected host route, never the weaker catch-all', async (t) => {
  const { gw, key } = t.context
  for (const host of ['ADMIN.TEST', 'admin.test.', 'Admin.Test.:8443']) {
    const direct = await rawRequest(gw.url, ['GET /open/x HTTP/1.1', `Host: ${host}`].join('\r\n'))
    await assertProblem(t, direct, 401, 'missing_credentials')
    const keyed = await rawRequest(gw.url, ['GET /open/x HTTP/1.1', `Host: ${host}`, `X-API-Key: ${key}`].join('\r\n'))
    t.is(keyed.status, 200, host)
  }
  const other = await rawRequest(gw.url, ['GET /open/x HTTP/1.1', 'Host: other.test'].join('\r\n'))
  t.is(other.status, 200)
})

test('an absolute-form target must agree with Host and carries no userinfo; it is forwarded in origin form', async (t) => {
  const { gw, upstream } = t.context
  for (const [target, host] of [['http://admin.test/open/x', 'public.test'], ['http://user@public.test/open/x', 'public.test'], ['http://public.test\\@admin.test/open/x', 'public.test']]) {
    const res = await rawRequest(gw.url, [`GET ${target!} HTTP/1.1`, `Host: ${host!}`].join('\r\n'))
    await assertProblem(t, res, 400, 'bad_request')
  }
  const id = probe()
  const res = await rawRequest(gw.url, ['GET http://public.test/open/x?y=1 HTTP/1.1', 'Host: public.test', `X-Probe: ${id}`].join('\r\n'))
  t.is(res.status, 200)
  t.is(seenWith(upstream, id)[0]?.url, '/open/x?y=1')
})

test('an encoded ? in the path stays encoded when forwarded, so it cannot start a query at the upstream', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await rawGet(gw.url, '/open/a%3Fadmin=1', [`X-Probe: ${id}`])
  t.is(res.status, 200)
  t.is(seenWith(upstream, id)[0]?.url, '/open/a%3Fadmin=1')
  const twin = probe()
  t.is((await rawGet(gw.url, '/open/a?admin=1', [`X-Probe: ${twin}`])).status, 200)
  t.is(seenWith(upstream, twin)[0]?.url, '/open/a?admin=1')
})

// Attacks that held: credentials

test('in anyOf an invalid bearer token or a duplicated Authorization is refused even with a valid API key', async (t) => {
  const { gw, key } = t.context
  const bad = await gw.fetch('/either/x', { headers: { authorization: `Bearer ${await jwt(t, { aud: 'elsewhere' })}`, 'x-api-key': key } })
  await assertProblem(t, bad, 401, 'invalid_token')
  const twice = await rawGet(gw.url, '/either/x', [`Authorization: Bearer ${await jwt(t, {})}`, 'Authorization: Basic YTpi', `X-API-Key: ${key}`])
  await assertProblem(t, twice, 400, 'bad_request')
  const twin = await gw.fetch('/either/x', { headers: { 'x-api-key': key } })
  t.is(twin.status, 200)
  const seen = await twin.json() as { headers: Record<string, string | undefined> }
  t.is(seen.headers['x-api-key'], undefined)
  t.is(seen.headers['x-auth-methods'], 'apiKey')
})

test('passthrough on one route does not forward the Authorization header on another route of the same provider', async (t) => {
  const { gw } = t.context
  const token = await jwt(t, {})
  const passed = await gw.fetch('/pass/x', { headers: { authorization: `Bearer ${token}` } })
  t.is((await passed.json() as { headers: Record<string, string> }).headers.authorization, `Bearer ${token}`)
  const consumed = await gw.fetch('/a/x', { headers: { authorization: `Bearer ${token}` } })
  t.is(consumed.status, 200)
  t.is((await consumed.json() as { headers: Record<string, string | undefined> }).headers.authorization, undefined)
})

test('a JWT verified and cached on one route is refused on a route that expects another audience', async (t) => {
  const { gw } = t.context
  const token = await jwt(t, { aud: 'aud-a' })
  t.is((await gw.fetch('/a/x', { headers: { authorization: `Bearer ${token}` } })).status, 200)
  t.is((await gw.fetch('/a/x', { headers: { authorization: `Bearer ${token}` } })).status, 200)
  const other = await gw.fetch('/b/x', { headers: { authorization: `Bearer ${token}` } })
  const body = await assertProblem(t, other, 401, 'invalid_token')
  t.is(body.detail, 'wrong audience')
  const twin = await gw.fetch('/b/x', { headers: { authorization: `Bearer ${await jwt(t, { aud: 'aud-b' })}` } })
  t.is(twin.status, 200)
})

test('an API key revoked through the admin API is refused at once although it was verified and cached', async (t) => {
  const { gw, adminToken } = t.context
  const admin = async (method: string, path: string, body?: unknown) => await fetch(gw.adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  })
  const created = await (await admin('POST', '/admin/keys', { client: 'to-revoke', scopes: ['read'] })).json() as { id: string, key: string }
  t.is((await gw.fetch('/keyed/x', { headers: { 'x-api-key': created.key } })).status, 200)
  t.is((await gw.fetch('/keyed/x', { headers: { 'x-api-key': created.key } })).status, 200)
  t.is((await admin('DELETE', `/admin/keys/${created.id}`)).status, 204)
  const refused = await gw.fetch('/keyed/x', { headers: { 'x-api-key': created.key } })
  await assertProblem(t, refused, 401, 'invalid_credentials')
})

test('credentials of rejected requests reach neither the log nor the problem detail', async (t) => {
  const { gw, key } = t.context
  const wrongKey = `${key.slice(0, -43)}${'Z'.repeat(43)}`
  const forged = `${(await jwt(t, {})).slice(0, -10)}AAAAAAAAAA`
  const expired = await sign(t.context.secret, { sub: 'user-1', aud: 'aud-a', exp: Math.floor(Date.now() / 1000) - 3600 }, Date.now() - 7200_000)
  const answers = [
    await gw.fetch('/keyed/x', { headers: { 'x-api-key': wrongKey } }),
    await gw.fetch('/a/x', { headers: { authorization: `Bearer ${forged}` } }),
    await gw.fetch('/a/x', { headers: { authorization: `Bearer ${expired}` } }),
    await gw.fetch('/a/x?access_token=' + forged),
  ]
  for (const res of answers) {
    const text = await res.text()
    t.true(res.status === 400 || res.status === 401, text)
    for (const secret of [wrongKey.slice(-43), forged.slice(-30), expired.slice(-30)]) t.false(text.includes(secret))
  }
  const secrets = [wrongKey.slice(-43), forged.split('.')[2]!, expired.split('.')[2]!]
  for (const res of answers) await assertNotLogged(t, gw, res.headers.get('x-request-id'), secrets, 'a credential')
  const logs = gw.rawLogs()
  for (const secret of secrets) t.false(logs.includes(secret))
  // The twin: the right key passes.
  t.is((await gw.fetch('/keyed/x', { headers: { 'x-api-key': key } })).status, 200)
})

// Attacks that held: rate limits

test('X-Forwarded-For from an untrusted peer cannot move a client to another by-ip rate-limit counter', async (t) => {
  const { gw } = t.context
  t.is((await rawGet(gw.url, '/rl-ip/x', ['X-Forwarded-For: 198.51.100.1'])).status, 200)
  t.is((await rawGet(gw.url, '/rl-ip/x', ['X-Forwarded-For: 198.51.100.2'])).status, 200)
  for (const spoof of ['X-Forwarded-For: 198.51.100.3', 'Forwarded: for=198.51.100.4', 'X-Real-IP: 198.51.100.5']) {
    const res = await rawGet(gw.url, '/rl-ip/x', [spoof])
    await assertProblem(t, res, 429, 'rate_limited')
  }
})

test('the case of a by-header name and spaces around its value do not open another counter; another value does', async (t) => {
  const { gw } = t.context
  t.is((await rawGet(gw.url, '/rl-tenant/x', ['X-TENANT: acme'])).status, 200)
  t.is((await rawGet(gw.url, '/rl-tenant/x', ['x-tenant: acme'])).status, 200)
  // Surrounding whitespace is not part of the value (RFC 9110 §5.5): the same counter.
  await assertProblem(t, await rawGet(gw.url, '/rl-tenant/x', ['X-Tenant: \t acme  ']), 429, 'rate_limited')
  t.is((await rawGet(gw.url, '/rl-tenant/x', ['X-Tenant: globex'])).status, 200)
})

// Attacks that held: admin

test('admin endpoints need the token, answer problem+json, and refuse a body over 64 KiB', async (t) => {
  const { gw, adminToken } = t.context
  for (const [method, path] of [['GET', '/admin/keys'], ['POST', '/admin/keys'], ['DELETE', '/admin/keys/abcdefgh'], ['GET', '/admin']] as const) {
    const res = await fetch(gw.adminUrl + path, { method })
    await assertProblem(t, res, 401, 'invalid_credentials')
    const wrong = await fetch(gw.adminUrl + path, { method, headers: { authorization: `Bearer ${adminToken}x` } })
    await assertProblem(t, wrong, 401, 'invalid_credentials')
  }
  const big = await fetch(gw.adminUrl + '/admin/keys', {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ client: 'x'.repeat(70 * 1024) }),
  })
  await assertProblem(t, big, 400, 'bad_request')
  const twin = await fetch(gw.adminUrl + '/admin/keys', { headers: { authorization: `Bearer ${adminToken}` } })
  t.is(twin.status, 200)
})

// Separate gateways: mTLS, reload, config

function tlsRequest (url: string, pki: Pki, client: PemPair, options: { session?: Buffer, maxVersion?: tls.SecureVersion, headers?: string[] } = {}): Promise<{ status: number, session: Buffer | undefined, reused: boolean }> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    let session: Buffer | undefined
    let reused = false
    let data = ''
    const socket = tls.connect({
      host: '127.0.0.1', port: Number(port), servername: 'localhost', ca: pki.ca.cert, cert: client.cert, key: client.key,
      ...(options.session ? { session: options.session } : {}), maxVersion: options.maxVersion ?? 'TLSv1.3',
    })
    socket.on('session', (s: Buffer) => { session = s })
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused()
      socket.write(['GET /x HTTP/1.1', 'Host: localhost', 'Connection: close', ...(options.headers ?? []), '', ''].join('\r\n'))
    })
    socket.on('data', (chunk) => { data += chunk.toString('latin1') })
    socket.on('error', reject)
    socket.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0), session, reused }))
  })
}

function mtlsListener (name: string, clientCA: string, crl?: string) {
  return { name, address: '127.0.0.1:0', tls: { cert: 'pki/server.crt', key: 'pki/server.key', clientCA, ...(crl ? { crl } : {}), clientCert: 'optional' } }
}

test('in anyOf a missing client certificate is skipped for the next member; an untrusted one is still refused', async (t) => {
  const pki = await mintPki()
  const { id, key } = newApiKey()
  const gw = await startGateway({
    listeners: [mtlsListener('mtls', 'pki/ca.crt')],
    apiKeys: [{ id, hash: hashApiKey(key), client: 'key-client' }],
    routes: [{ name: 'either', match: { path: '/**' }, upstream: 'demo', policies: [{ anyOf: [{ mtls: {} }, { apiKey: {} }] }] }],
  }, { files: { 'pki/server.crt': pki.server.cert, 'pki/server.key': pki.server.key, 'pki/ca.crt': pki.ca.cert } })
  t.teardown(async () => await gw.close())
  const noCert = (headers: string[]) => rawRequest(gw.url, ['GET /x HTTP/1.1', 'Host: localhost', ...headers].join('\r\n'), '', { tls: { ca: pki.ca.cert, servername: 'localhost' } })
  const withKey = await noCert([`X-API-Key: ${key}`])
  t.is(withKey.status, 200, withKey.body)
  t.is((JSON.parse(withKey.body) as { headers: Record<string, string> }).headers['x-auth-methods'], 'apiKey')
  await assertProblem(t, await noCert([]), 401, 'missing_credentials')
  // Present but not trusted: refused at once, the API key is not tried.
  t.is((await tlsRequest(gw.url, pki, pki.untrusted, { headers: [`X-API-Key: ${key}`] })).status, 401)
  t.is((await tlsRequest(gw.url, pki, pki.client)).status, 200)
})

test('a revoked client certificate cannot come back by resuming a TLS session after a CRL reload', async (t) => {
  const pki = await mintPki()
  const emptyCrl = await createCRL(pki.ca, [])
  const gw = await startGateway({
    listeners: [mtlsListener('mtls', 'pki/ca.crt', 'pki/ca.crl')],
    routes: [{ name: 'any', match: { path: '/**' }, upstream: 'demo', policies: [{ mtls: {} }] }],
  }, { files: { 'pki/server.crt': pki.server.cert, 'pki/server.key': pki.server.key, 'pki/ca.crt': pki.ca.cert, 'pki/ca.crl': emptyCrl } })
  t.teardown(async () => await gw.close())
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    await writeFile(join(gw.dir, 'pki/ca.crl'), emptyCrl)
    t.true((await gw.reload()).ok)
    const first = await tlsRequest(gw.url, pki, pki.revoked, { maxVersion })
    t.is(first.status, 200)
    // Resumption works at all: the control.
    const control = await tlsRequest(gw.url, pki, pki.revoked, { maxVersion, session: first.session })
    t.true(control.reused, `${maxVersion}: the session was not resumed`)
    t.is(control.status, 200)
    await writeFile(join(gw.dir, 'pki/ca.crl'), pki.crl)
    t.true((await gw.reload()).ok)
    const resumed = await tlsRequest(gw.url, pki, pki.revoked, { maxVersion, session: first.session })
    t.is(resumed.status, 401, maxVersion)
    t.is((await tlsRequest(gw.url, pki, pki.client, { maxVersion })).status, 200)
  }
})

test('a TLS session from a listener with another client CA does not carry a verified certificate', async (t) => {
  const pki = await mintPki()
  const gw = await startGateway({
    listeners: [mtlsListener('rogue', 'pki/rogue.crt'), mtlsListener('real', 'pki/ca.crt')],
    routes: [{ name: 'any', match: { path: '/**' }, upstream: 'demo', policies: [{ mtls: {} }] }],
  }, { files: { 'pki/server.crt': pki.server.cert, 'pki/server.key': pki.server.key, 'pki/ca.crt': pki.ca.cert, 'pki/rogue.crt': pki.rogueCa.cert } })
  t.teardown(async () => await gw.close())
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const onRogue = await tlsRequest(gw.urls.rogue!, pki, pki.untrusted, { maxVersion })
    t.is(onRogue.status, 200)
    const resumedThere = await tlsRequest(gw.urls.rogue!, pki, pki.untrusted, { maxVersion, session: onRogue.session })
    t.true(resumedThere.reused)
    const onReal = await tlsRequest(gw.urls.real!, pki, pki.untrusted, { maxVersion, session: onRogue.session })
    t.false(onReal.reused)
    t.is(onReal.status, 401)
    t.is((await tlsRequest(gw.urls.real!, pki, pki.client, { maxVersion })).status, 200)
  }
})

test.serial('a Basic password changed by a reload is refused at once although its success was cached', async (t) => {
  const fast = { N: 1024, r: 8, p: 1 }
  const config = async (password: string) => ({
    users: { inline: [{ username: 'alice', hash: await scryptHash(password, fast) }] },
    routes: [{ name: 'basic', match: { path: '/**' }, upstream: 'demo', policies: [{ basic: { allowInsecure: true } }] }],
  })
  const gw = await startGateway(await config('old-password-1'))
  t.teardown(async () => await gw.close())
  const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`alice:${password}`).toString('base64')}` })
  t.is((await gw.fetch('/x', { headers: basic('old-password-1') })).status, 200)
  const checks = passwordChecks.count
  t.is((await gw.fetch('/x', { headers: basic('old-password-1') })).status, 200)
  t.is(passwordChecks.count, checks, 'the second success came from the cache')
  t.true((await gw.reload(await config('new-password-2'))).ok)
  await assertProblem(t, await gw.fetch('/x', { headers: basic('old-password-1') }), 401, 'invalid_credentials')
  t.is((await gw.fetch('/x', { headers: basic('new-password-2') })).status, 200)
})

test.serial('an unknown Basic user costs a password hash like a known user with a wrong password', async (t) => {
  const gw = await startGateway({
    users: { inline: [{ username: 'alice', hash: await scryptHash('right-password', { N: 1024, r: 8, p: 1 }) }] },
    routes: [{ name: 'basic', match: { path: '/**' }, upstream: 'demo', policies: [{ basic: { allowInsecure: true } }] }],
  })
  t.teardown(async () => await gw.close())
  const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` })
  let before = passwordChecks.count
  await assertProblem(t, await gw.fetch('/x', { headers: basic('mallory', 'guess') }), 401, 'invalid_credentials')
  t.is(passwordChecks.count - before, 1)
  before = passwordChecks.count
  await assertProblem(t, await gw.fetch('/x', { headers: basic('alice', 'guess') }), 401, 'invalid_credentials')
  t.is(passwordChecks.count - before, 1)
  t.is((await gw.fetch('/x', { headers: basic('alice', 'right-password') })).status, 200)
})

const ROUTES = 'routes: [{ name: r, match: { path: /x }, upstream: demo, public: true }]'

test('a config error about a secret placed where a number, size, duration, rate or choice belongs never prints it', (t) => {
  const secret = `s3cr3t-${randomBytes(8).toString('hex')}`
  const placements = [
    'upstreams: { demo: { echo: true }, o: { url: "http://127.0.0.1:1", connections: "${env:SECRET}" } }',
    'limits: { maxBodyBytes: "${env:SECRET}" }',
    'limits: { headersTimeout: "${env:SECRET}" }',
    'rateLimitTiers: { free: "${env:SECRET}" }',
    'store: { onError: "${env:SECRET}" }',
    'admin: { address: "${env:SECRET}" }',
    'trustProxies: ["${env:SECRET}"]',
    'apiKeys: [{ id: abcdefgh, hash: "${env:SECRET}", client: c }]',
    'users: { inline: [{ username: bob, hash: "${env:SECRET}" }] }',
  ]
  for (const placement of placements) {
    const text = ['version: 1', 'listeners: [{ name: local, address: 127.0.0.1:0 }]', placement.startsWith('upstreams') ? '' : 'upstreams: { demo: { echo: true } }', placement, ROUTES].join('\n')
    const { issues } = checkConfig('/nonexistent/gateway.yaml', { text, env: { SECRET: secret } })
    t.true(issues.some((i) => i.severity === 'error'), placement)
    t.false(JSON.stringify(issues).includes(secret), placement)
  }
  // The twin: the same document with sensible values has no error.
  const fine = checkConfig('/nonexistent/gateway.yaml', { text: 'version: 1\nlisteners: [{ name: local, address: 127.0.0.1:0 }]\nupstreams: { demo: { echo: true } }\nlimits: { maxBodyBytes: "${env:SECRET}" }\n' + ROUTES, env: { SECRET: '1MiB' } })
  t.false(fine.issues.some((i) => i.severity === 'error'))
})

// A finding that needs its own gateway (Redis, killed)

test('a WebSocket upgrade refused for a store failure gets the same public detail as any request, not the store\'s error', async (t) => {
  const upstream = await recordingUpstream()
  const gw = await startGateway({
    upstreams: { app: { url: upstream.url } },
    routes: [{ name: 'limited', match: { path: '/**' }, upstream: 'app', public: true, policies: [{ rateLimit: { by: 'ip', limit: '100/min' } }] }],
  }, { redis: true })
  t.teardown(async () => { await gw.close(); await upstream.close() })
  await gw.redis!.kill()
  const http = await rawGet(gw.url, '/x')
  const expected = await assertProblem(t, http, 503, 'store_unavailable')
  const upgrade = await conversation(gw.url, `GET /x HTTP/1.1\r\nHost: ${hostOf(gw)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`)
  t.true(upgrade.startsWith('HTTP/1.1 503'), upgrade.slice(0, 40))
  const body = JSON.parse(upgrade.slice(upgrade.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
  t.is(body.error, 'store_unavailable')
  t.is(body.detail, expected.detail)
})
