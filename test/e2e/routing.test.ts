/**
 * Issue 14 against a real gateway: a method a route refuses never falls through to a later, weaker route; HEAD gets
 * the GET route and its chain; double-encoded and full-width path syntax never reaches an upstream.
 */
import anyTest, { type TestFn } from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { assertProblem, header, probe, rawRequest, recordingUpstream, type RecordingUpstream } from './support.js'

const test = anyTest as TestFn<{ gw: TestGateway, upstream: RecordingUpstream, key: string }>

test.before(async (t) => {
  const { id, key } = newApiKey()
  const upstream = await recordingUpstream()
  const gw = await startGateway({
    upstreams: { app: { url: upstream.url } },
    apiKeys: [{ id, hash: hashApiKey(key), client: 'orders-client', scopes: ['read'] }],
    routes: [
      { name: 'orders-read', match: { path: '/v1/orders/**', methods: ['GET'] }, upstream: 'app', policies: [{ apiKey: {} }] },
      { name: 'orders-write', match: { path: '/v1/orders/**', methods: ['POST'] }, upstream: 'app', policies: [{ apiKey: {} }] },
      { name: 'public', match: { path: '/v1/**' }, upstream: 'app', public: true },
    ],
  })
  t.context = { gw, upstream, key }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.upstream?.close()
})

/** A raw exchange (HEAD answers are read off the wire, where a body would show). */
function send (t: { context: { gw: TestGateway } }, method: string, target: string, headers: string[] = [], body = '') {
  const { gw } = t.context
  return rawRequest(gw.url, [`${method} ${target} HTTP/1.1`, `Host: ${new URL(gw.url).host}`, ...headers].join('\r\n'), body)
}

test('DELETE and other methods on a GET+apiKey path are 404 no_route, never the later public route, key or not', async (t) => {
  const { upstream, key } = t.context
  const id = probe()
  for (const method of ['DELETE', 'PUT', 'PATCH', 'OPTIONS']) {
    await assertProblem(t, await send(t, method, '/v1/orders/42', [`X-Probe: ${id}`, 'Content-Length: 0']), 404, 'no_route')
    await assertProblem(t, await send(t, method, '/v1/orders/42', [`X-Probe: ${id}`, `X-API-Key: ${key}`, 'Content-Length: 0']), 404, 'no_route')
  }
  t.is(upstream.withProbe(id).length, 0, 'nothing reached the upstream')
  // The twin: the public route still takes every method on its other paths.
  const twin = probe()
  t.is((await send(t, 'DELETE', '/v1/customers/42', [`X-Probe: ${twin}`, 'Content-Length: 0'])).status, 200)
  t.deepEqual(upstream.withProbe(twin).map((s) => s.method), ['DELETE'])
})

test('GET on the GET+apiKey route needs the key: 401 without it, 200 with it', async (t) => {
  const { upstream, key } = t.context
  const id = probe()
  const denied = await send(t, 'GET', '/v1/orders/42', [`X-Probe: ${id}`])
  await assertProblem(t, denied, 401, 'missing_credentials')
  t.is(upstream.withProbe(id).length, 0)
  const ok = probe()
  t.is((await send(t, 'GET', '/v1/orders/42', [`X-Probe: ${ok}`, `X-API-Key: ${key}`])).status, 200)
  t.is(upstream.withProbe(ok)[0]?.headers['x-auth-client'], 'orders-client')
})

test('HEAD takes the GET route and its chain: 401 without the key and never forwarded, 200 without a body with it', async (t) => {
  const { upstream, key } = t.context
  const id = probe()
  const denied = await send(t, 'HEAD', '/v1/orders/42', [`X-Probe: ${id}`])
  t.is(denied.status, 401)
  t.is(header(denied, 'www-authenticate'), 'ApiKey realm="authgate", header="X-API-Key"')
  t.is(denied.body, '')
  t.is(upstream.withProbe(id).length, 0, 'HEAD without a key never reached the upstream')

  const ok = probe()
  const res = await send(t, 'HEAD', '/v1/orders/42', [`X-Probe: ${ok}`, `X-API-Key: ${key}`])
  t.is(res.status, 200)
  t.is(res.body, '', 'no body on the wire')
  const seen = upstream.withProbe(ok)
  t.deepEqual(seen.map((s) => s.method), ['HEAD'])
  t.is(seen[0]!.headers['x-auth-client'], 'orders-client', 'the GET route\'s chain ran')
  t.is(seen[0]!.headers['x-api-key'], undefined)
})

test('a GET route and a POST route on the same path each take their method', async (t) => {
  const { upstream, key } = t.context
  const get = probe()
  const post = probe()
  t.is((await send(t, 'GET', '/v1/orders', [`X-Probe: ${get}`, `X-API-Key: ${key}`])).status, 200)
  t.is((await send(t, 'POST', '/v1/orders', [`X-Probe: ${post}`, `X-API-Key: ${key}`, 'Content-Length: 2'], '{}')).status, 200)
  t.deepEqual(upstream.withProbe(get).map((s) => s.method), ['GET'])
  t.deepEqual(upstream.withProbe(post).map((s) => [s.method, s.body.toString()]), [['POST', '{}']])
  // POST needs the key like GET does: the write route's chain, not the public route.
  await assertProblem(t, await send(t, 'POST', '/v1/orders', ['Content-Length: 0']), 401, 'missing_credentials')
})

test('double-encoded and full-width dots and slashes are 400 and never forwarded; an escaped % is forwarded as sent', async (t) => {
  const { upstream } = t.context
  const id = probe()
  for (const target of ['/v1/%252e%252e/orders/42', '/v1/x%252fx', '/v1/x%255cx', '/v1/%25%32%65%25%32%65/orders', '/v1/%EF%BC%8E%EF%BC%8E/orders/42', '/v1/x%EF%BC%8Fx']) {
    const res = await send(t, 'GET', target, [`X-Probe: ${id}`])
    await assertProblem(t, res, 400, 'bad_request')
  }
  // Raw UTF-8 full-width dots (the head is written as UTF-8): Node's parser refuses non-ASCII in the request line.
  await assertProblem(t, await send(t, 'GET', '/v1/\uff0e\uff0e/orders', [`X-Probe: ${id}`]), 400, 'bad_request')
  t.is(upstream.withProbe(id).length, 0)
  const twin = probe()
  t.is((await send(t, 'GET', '/v1/files/100%25', [`X-Probe: ${twin}`])).status, 200)
  t.deepEqual(upstream.withProbe(twin).map((s) => s.url), ['/v1/files/100%25'])
})
