import net from 'node:net'
import tls from 'node:tls'
import anyTest, { type TestFn } from 'ava'
import { Agent } from 'undici'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { until } from '../helpers/until.js'
import { mintPki, type Pki } from '../helpers/pki.js'
import { assertProblem, assertRequestId, parseResponse, rawGet, rawRequest, type Echo } from './support.js'

const test = anyTest as TestFn<{ pki: Pki, gw: TestGateway, agents: Agent[] }>

const ADMIN_TOKEN = 'admin-token-for-tests-0123456789'

test.before(async (t) => {
  const pki = await mintPki()
  const server = { cert: pki.server.certPath, key: pki.server.keyPath }
  const gw = await startGateway({
    listeners: [
      { name: 'local', address: '127.0.0.1:0' },
      { name: 'tls', address: '127.0.0.1:0', tls: server },
      { name: 'mtls-required', address: '127.0.0.1:0', tls: { ...server, clientCA: pki.caPath, clientCert: 'required' } },
      { name: 'mtls-optional', address: '127.0.0.1:0', tls: { ...server, clientCA: pki.caPath, clientCert: 'optional' } },
    ],
    routes: [{ name: 'public', match: { path: '/public/**' }, upstream: 'demo', public: true }],
  }, { env: { AUTHGATE_ADMIN_TOKEN: ADMIN_TOKEN } })
  t.context = { pki, gw, agents: [] }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await Promise.all(t.context.agents?.map((a) => a.close()) ?? [])
})

/** An undici agent that trusts the test CA, optionally presenting a client certificate. */
function agent (t: { context: { pki: Pki, agents: Agent[] } }, client?: { cert: string, key: string }): Agent {
  const created = new Agent({ connect: { ca: t.context.pki.ca.cert, ...(client ? { cert: client.cert, key: client.key } : {}) } })
  t.context.agents.push(created)
  return created
}

test('an HTTPS listener serves with the configured certificate to a client that trusts the CA', async (t) => {
  const { gw } = t.context
  t.true(gw.urls.tls!.startsWith('https://127.0.0.1:'))
  const res = await gw.fetch('/public/x', { listener: 'tls', dispatcher: agent(t) })
  t.is(res.status, 200)
  assertRequestId(t, res)
  const echo = await res.json() as Echo
  t.is(echo.headers['x-forwarded-proto'], 'https')
  // The twin: a client that does not trust the CA refuses the certificate.
  await t.throwsAsync(gw.fetch('/public/x', { listener: 'tls', dispatcher: new Agent() }))
})

/** A raw TLS handshake against a listener; resolves with the negotiated protocol or the error code. */
function handshake (url: string, options: tls.ConnectionOptions): Promise<{ protocol?: string | null, error?: string }> {
  const { port } = new URL(url)
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), servername: 'localhost', ...options }, () => {
      const protocol = socket.getProtocol()
      socket.destroy()
      resolve({ protocol })
    })
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }))
  })
}

test('TLS 1.1 is refused by the listener; TLS 1.2 and 1.3 are accepted', async (t) => {
  const { gw, pki } = t.context
  // SECLEVEL=0 lets this client offer TLS 1.1 at all, so the refusal seen is the server's alert.
  const old = await handshake(gw.urls.tls!, { ca: pki.ca.cert, minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })
  t.is(old.error, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION')
  t.is((await handshake(gw.urls.tls!, { ca: pki.ca.cert, maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2')
  t.is((await handshake(gw.urls.tls!, { ca: pki.ca.cert, minVersion: 'TLSv1.3' })).protocol, 'TLSv1.3')
})

test('clientCert: required refuses a connection without a client certificate and serves one with a good certificate', async (t) => {
  const { gw, pki } = t.context
  await t.throwsAsync(gw.fetch('/public/x', { listener: 'mtls-required', dispatcher: agent(t) }))
  await t.throwsAsync(gw.fetch('/public/x', { listener: 'mtls-required', dispatcher: agent(t, pki.untrusted) }))
  await t.throwsAsync(gw.fetch('/public/x', { listener: 'mtls-required', dispatcher: agent(t, pki.expired) }))
  const res = await gw.fetch('/public/x', { listener: 'mtls-required', dispatcher: agent(t, pki.client) })
  t.is(res.status, 200)
  assertRequestId(t, res)
})

test('clientCert: optional serves a public route to a client without a certificate, and to one with a certificate', async (t) => {
  const { gw, pki } = t.context
  const res = await gw.fetch('/public/x', { listener: 'mtls-optional', dispatcher: agent(t) })
  t.is(res.status, 200)
  const withCert = await gw.fetch('/public/x', { listener: 'mtls-optional', dispatcher: agent(t, pki.client) })
  t.is(withCert.status, 200)
  // The gateway owns X-Forwarded-Client-Cert: a client cannot send one, with or without a certificate.
  const spoofed = await gw.fetch('/public/x', { listener: 'mtls-optional', dispatcher: agent(t), headers: { 'x-forwarded-client-cert': 'By=spiffe://evil' } })
  t.is(((await spoofed.json()) as Echo).headers['x-forwarded-client-cert'], undefined)
})

test('admin /healthz and /readyz answer 200 with the memory store', async (t) => {
  const { gw } = t.context
  const health = await fetch(`${gw.adminUrl}/healthz`)
  t.is(health.status, 200)
  assertRequestId(t, health)
  const ready = await fetch(`${gw.adminUrl}/readyz`)
  t.is(ready.status, 200)
  t.like(await ready.json(), { status: 'ready', store: 'memory' })
})

test('admin /admin/* is 401 problem+json without the token, wrong token too; the right token passes', async (t) => {
  const { gw } = t.context
  const none = await fetch(`${gw.adminUrl}/admin/anything`)
  t.regex(none.headers.get('www-authenticate') ?? '', /^Bearer realm="/)
  await assertProblem(t, none, 401, 'invalid_credentials')
  const wrong = await fetch(`${gw.adminUrl}/admin/anything`, { headers: { authorization: 'Bearer not-the-token' } })
  await assertProblem(t, wrong, 401, 'invalid_credentials')
  // The twin: authenticated, and there is simply no such endpoint.
  const right = await fetch(`${gw.adminUrl}/admin/anything`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  await assertProblem(t, right, 404, 'no_route')
  t.false(gw.rawLogs().includes(ADMIN_TOKEN))
})

test('oversized request headers are 431 headers_too_large as problem+json, not a bare reply; smaller ones pass', async (t) => {
  const gw = await startGateway({
    limits: { maxHeaderBytes: '1KiB', maxHeaderCount: 30 },
    routes: [
      { name: 'tight', match: { path: '/tight/**' }, upstream: 'demo', public: true, limits: { maxHeaderBytes: '512' } },
      { name: 'public', match: { path: '/**' }, upstream: 'demo', public: true },
    ],
  })
  try {
    const filler = (bytes: number) => Array.from({ length: Math.ceil(bytes / 100) }, (_, i) => `X-Filler-${i}: ${'a'.repeat(86)}`)
    // Past the listener's limit: refused by the HTTP parser, answered by the gateway.
    const big = await rawGet(gw.url, '/x', filler(4096).slice(0, 25))
    await assertProblem(t, big, 431, 'headers_too_large')
    // Under the global limit but over the route's.
    const route = await rawGet(gw.url, '/tight/x', filler(700))
    await assertProblem(t, route, 431, 'headers_too_large')
    // Too many fields.
    const many = await rawGet(gw.url, '/x', Array.from({ length: 40 }, (_, i) => `X-${i}: 1`))
    await assertProblem(t, many, 431, 'headers_too_large')

    const ok = await rawGet(gw.url, '/x', filler(500))
    t.is(ok.status, 200)
    t.is((await rawGet(gw.url, '/tight/x', filler(200))).status, 200)
  } finally {
    await gw.close()
  }
})

test('a client that sends half a request head is answered or cut off soon after headersTimeout', async (t) => {
  const gw = await startGateway({
    limits: { headersTimeout: '1s', requestTimeout: '3s' },
    routes: [{ name: 'public', match: { path: '/**' }, upstream: 'demo', public: true }],
  })
  try {
    const { port } = new URL(gw.url)
    const started = performance.now()
    const { data, elapsed } = await new Promise<{ data: Buffer, elapsed: number }>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: Number(port) })
      const chunks: Buffer[] = []
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      socket.on('error', () => {})
      socket.on('close', () => resolve({ data: Buffer.concat(chunks), elapsed: performance.now() - started }))
      socket.write(`GET /x HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `)
    })
    t.true(elapsed >= 900, `closed after ${Math.round(elapsed)} ms`)
    t.true(elapsed < 6000, `closed after ${Math.round(elapsed)} ms`)
    if (data.length > 0) {
      const res = parseResponse(data)
      t.is(res.status, 408)
      t.is(res.headers['content-type']?.[0], 'application/problem+json')
      assertRequestId(t, res)
    }
    // The twin: a complete request on the same listener is served.
    t.is((await rawRequest(gw.url, `GET /x HTTP/1.1\r\nHost: 127.0.0.1:${port}`)).status, 200)
  } finally {
    await gw.close()
  }
})

test('/readyz is 503 while the Redis store is down and 200 again when it is back', async (t) => {
  const gw = await startGateway({
    routes: [{ name: 'public', match: { path: '/**' }, upstream: 'demo', public: true }],
  }, { redis: true })
  try {
    const readyz = async () => (await fetch(`${gw.adminUrl}/readyz`)).status
    // The store notices a dead connection by itself; poll its report with a generous deadline.
    const readyzIs = (status: number) => until(async () => await readyz() === status, { timeoutMs: 15_000, intervalMs: 100, message: `/readyz ${status}` }).catch(() => false)
    t.true(await readyzIs(200), '/readyz 200 with Redis up')
    const up = await fetch(`${gw.adminUrl}/readyz`)
    t.like(await up.json(), { status: 'ready', store: 'redis' })

    await gw.redis!.kill()
    t.true(await readyzIs(503), '/readyz 503 with Redis down')
    const down = await fetch(`${gw.adminUrl}/readyz`)
    t.like(await down.json(), { status: 'store_unavailable' })
    // Routes that do not need the store keep serving.
    t.is((await gw.fetch('/x')).status, 200)
    t.is((await fetch(`${gw.adminUrl}/healthz`)).status, 200)

    await gw.redis!.restart()
    t.true(await readyzIs(200), '/readyz 200 after Redis is back')
  } finally {
    await gw.close()
  }
})
