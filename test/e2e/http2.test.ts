/**
 * HTTP/2 at the front door (issue 17, shared/design/http2.md): the same decide() over streams, on a TLS listener
 * (ALPN h2 next to HTTP/1.1) and a plain `prior-knowledge` one; the stream-level rules; rapid reset and CONTINUATION
 * floods. Clients: node:http2, curl --http2, and a raw frame writer for what no client library sends.
 */
import anyTest, { type TestFn } from 'ava'
import { execFile } from 'node:child_process'
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import { promisify } from 'node:util'
import { Agent } from 'undici'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { errorCode, FLAG, FRAME, frame, headerBlock, RawH2, rstStream } from '../helpers/h2frames.js'
import { mintPki, type Pki } from '../helpers/pki.js'
import type { Echo } from './support.js'

interface Context { gw: TestGateway, pki: Pki, key: string, sessions: ClientHttp2Session[] }
const test = anyTest as TestFn<Context>

test.before(async (t) => {
  const pki = await mintPki()
  const { id, key } = newApiKey()
  const gw = await startGateway({
    listeners: [
      { name: 'tls', address: '127.0.0.1:0', tls: { cert: 'pki/server.crt', key: 'pki/server.key', clientCA: 'pki/ca.crt', clientCert: 'optional' }, http2Limits: { maxConcurrentStreams: 100, maxResetsPerSecond: 50 } },
      { name: 'mesh', address: '127.0.0.1:0', http2: 'prior-knowledge' },
      { name: 'h1only', address: '127.0.0.1:0', tls: { cert: 'pki/server.crt', key: 'pki/server.key' }, http2: false },
    ],
    apiKeys: [{ id, hash: hashApiKey(key), client: 'key-client', scopes: ['read'] }],
    routes: [
      { name: 'open', match: { path: '/open/**' }, upstream: 'demo', public: true },
      { name: 'keyed', match: { path: '/v1/**' }, upstream: 'demo', policies: [{ apiKey: {} }] },
      { name: 'cert', match: { path: '/cert/**', listener: 'tls' }, upstream: 'demo', policies: [{ mtls: { subjectFrom: 'cn' } }] },
    ],
  }, { files: { 'pki/server.crt': pki.server.cert, 'pki/server.key': pki.server.key, 'pki/ca.crt': pki.ca.cert } })
  t.context = { gw, pki, key, sessions: [] }
})

test.after.always(async (t) => {
  for (const session of t.context.sessions ?? []) session.destroy()
  await t.context.gw?.close()
})

function connect (t: { context: Context }, listener: string, options: http2.SecureClientSessionOptions = {}): ClientHttp2Session {
  const url = t.context.gw.urls[listener]!
  const session = http2.connect(url, url.startsWith('https:') ? { ca: t.context.pki.ca.cert, servername: 'localhost', ...options } : options)
  session.on('error', () => {})
  t.context.sessions.push(session)
  return session
}

interface H2Response { status: number, headers: IncomingHttpHeaders, body: string, rstCode: number }

function request (session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined })
    let responseHeaders: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    stream.on('response', (h) => { responseHeaders = h })
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('error', () => {})
    stream.on('close', () => resolve({ status: Number(responseHeaders[':status'] ?? 0), headers: responseHeaders, body: Buffer.concat(chunks).toString('utf8'), rstCode: stream.rstCode ?? 0 }))
    stream.on('frameError', (type, code) => reject(new Error(`frame error ${type} ${code}`)))
    if (body !== undefined) stream.end(body)
  })
}

const get = (path: string, extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => ({ ':method': 'GET', ':path': path, ...extra })

test('TLS listener: h2 through ALPN reaches the upstream with the gateway\'s forwarding headers; the access line says protocol 2', async (t) => {
  const session = connect(t, 'tls')
  const res = await request(session, get('/open/x?q=1', { 'x-auth-subject': 'forged', 'x-forwarded-for': '203.0.113.9' }))
  t.is(res.status, 200, res.body)
  const echo = JSON.parse(res.body) as Echo
  t.is(echo.path, '/open/x')
  t.is(echo.query, 'q=1')
  t.is(echo.headers['x-auth-subject'], undefined, 'identity headers from the client are stripped')
  t.is(echo.headers['x-forwarded-for'], '127.0.0.1')
  t.is(echo.headers['x-forwarded-proto'], 'https')
  t.regex(String(echo.headers.host), /^localhost:\d+$/, ':authority is the host')
  const line = await t.context.gw.logLine(res.headers['x-request-id'] as string)
  t.like(line, { protocol: '2', status: 200, route: 'open', method: 'GET', path: '/open/x?q=1', listener: 'tls' })
})

test('HTTP/1.1 clients keep working on the same TLS port (protocol 1.1), and on an http2: false listener', async (t) => {
  for (const listener of ['tls', 'h1only']) {
    const agent = new Agent({ connect: { ca: t.context.pki.ca.cert, servername: 'localhost' } })
    const res = await t.context.gw.fetch('/open/h1', { listener, dispatcher: agent as never })
    t.is(res.status, 200)
    const line = await t.context.gw.logLine(res.headers.get('x-request-id'))
    t.is(line.protocol, '1.1')
    await agent.close()
  }
})

test('an http2: false TLS listener does not offer h2 in ALPN', async (t) => {
  const session = connect(t, 'h1only')
  const error = await new Promise<Error>((resolve) => { session.once('error', resolve); session.once('connect', () => resolve(new Error('connected'))) })
  t.not(error.message, 'connected')
})

test('API key over h2: none is 401 problem+json with a challenge; the key is 200 with the identity upstream', async (t) => {
  const session = connect(t, 'tls')
  const refused = await request(session, get('/v1/orders'))
  t.is(refused.status, 401)
  t.is(refused.headers['content-type'], 'application/problem+json')
  t.truthy(refused.headers['www-authenticate'])
  const problem = JSON.parse(refused.body) as Record<string, unknown>
  t.is(problem.error, 'missing_credentials')
  t.is(problem.requestId, refused.headers['x-request-id'])
  const line = await t.context.gw.logLine(refused.headers['x-request-id'] as string)
  t.like(line, { protocol: '2', status: 401, code: 'missing_credentials' })

  const ok = await request(session, get('/v1/orders', { 'x-api-key': t.context.key }))
  t.is(ok.status, 200, ok.body)
  const echo = JSON.parse(ok.body) as Echo
  t.is(echo.headers['x-auth-client'], 'key-client')
  t.is(echo.headers['x-api-key'], undefined, 'the consumed credential is not forwarded')
  t.false(t.context.gw.rawLogs().includes(t.context.key))
})

test('a request body over h2 (no content-length) is forwarded', async (t) => {
  const session = connect(t, 'tls')
  const res = await request(session, { ':method': 'POST', ':path': '/v1/orders', 'x-api-key': t.context.key, 'content-type': 'text/plain' }, 'hello over h2')
  t.is(res.status, 200, res.body)
  t.is((JSON.parse(res.body) as Echo).body, 'hello over h2')
})

test('mtls over h2 reads the certificate of the TLS session; without one it is 401', async (t) => {
  const withCert = connect(t, 'tls', { cert: t.context.pki.client.cert, key: t.context.pki.client.key })
  const ok = await request(withCert, get('/cert/x'))
  t.is(ok.status, 200, ok.body)
  t.truthy((JSON.parse(ok.body) as Echo).headers['x-auth-subject'])
  const without = connect(t, 'tls')
  const refused = await request(without, get('/cert/x'))
  t.is(refused.status, 401)
  t.is((JSON.parse(refused.body) as { error: string }).error, 'client_certificate_required')
})

test(':authority and a Host that disagrees is 400 problem+json; a Host that agrees is fine', async (t) => {
  const session = connect(t, 'tls')
  const port = new URL(t.context.gw.urls.tls!).port
  const refused = await request(session, get('/open/x', { ':authority': `localhost:${port}`, host: 'evil.example' }))
  t.is(refused.status, 400)
  t.is(refused.headers['content-type'], 'application/problem+json')
  t.is((JSON.parse(refused.body) as { error: string }).error, 'bad_request')
  const ok = await request(session, get('/open/x', { ':authority': `localhost:${port}`, host: `LOCALHOST:${port}` }))
  t.is(ok.status, 200)
})

test('connection-specific header fields are a stream error (RST_STREAM PROTOCOL_ERROR); the connection goes on', async (t) => {
  const raw = await RawH2.connect(t.context.gw.urls.tls!, t.context.pki.ca.cert)
  const port = new URL(t.context.gw.urls.tls!).port
  const base: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'https'], [':authority', `localhost:${port}`], [':path', '/open/x']]
  const cases: Array<[string, string]> = [['connection', 'keep-alive'], ['keep-alive', 'timeout=5'], ['transfer-encoding', 'chunked'], ['upgrade', 'websocket'], ['te', 'gzip'], ['proxy-connection', 'keep-alive']]
  let id = 1
  for (const field of cases) {
    raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([...base, field])))
    const reset = await raw.waitFor((f) => f.stream === id && (f.type === FRAME.RST_STREAM || f.type === FRAME.HEADERS))
    t.is(reset.type, FRAME.RST_STREAM, field[0])
    t.is(errorCode(reset), 1, `${field[0]}: PROTOCOL_ERROR`)
    id += 2
  }
  // te: trailers is allowed, and the connection still serves.
  raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([...base, ['te', 'trailers']])))
  const answer = await raw.waitFor((f) => f.stream === id && (f.type === FRAME.RST_STREAM || f.type === FRAME.HEADERS))
  t.is(answer.type, FRAME.HEADERS)
  raw.close()
})

test('prior-knowledge plain listener: h2c and HTTP/1.1 on one port', async (t) => {
  const session = connect(t, 'mesh')
  const res = await request(session, get('/v1/x', { 'x-api-key': t.context.key }))
  t.is(res.status, 200, res.body)
  t.is((JSON.parse(res.body) as Echo).headers['x-forwarded-proto'], 'http')
  const line = await t.context.gw.logLine(res.headers['x-request-id'] as string)
  t.is(line.protocol, '2')
  const h1 = await t.context.gw.fetch('/open/x', { listener: 'mesh' })
  t.is(h1.status, 200)
  t.is((await t.context.gw.logLine(h1.headers.get('x-request-id'))).protocol, '1.1')
})

const execFileAsync = promisify(execFile)

test('curl --http2: 401 without the key, 200 with it, identity upstream', async (t) => {
  const { gw, pki, key } = t.context
  const { writeFile } = await import('node:fs/promises')
  const { join } = await import('node:path')
  const caFile = join(gw.dir, 'curl-ca.crt')
  await writeFile(caFile, pki.ca.cert)
  const port = new URL(gw.urls.tls!).port
  const run = async (...args: string[]) => (await execFileAsync('curl', ['-s', '--http2', '--cacert', caFile, '--resolve', `localhost:${port}:127.0.0.1`,
    '-w', '\n%{http_code} %{http_version}', ...args, `https://localhost:${port}/v1/curl`])).stdout
  const refused = await run()
  t.regex(refused, /\n401 2$/)
  t.true(refused.includes('"missing_credentials"'))
  const ok = await run('-H', `X-API-Key: ${key}`)
  t.regex(ok, /\n200 2$/)
  t.true(ok.includes('"x-auth-client":"key-client"'))
  const mesh = (await execFileAsync('curl', ['-s', '--http2-prior-knowledge', '-w', '\n%{http_code} %{http_version}', '-H', `X-API-Key: ${key}`, `${gw.urls.mesh}/v1/curl`])).stdout
  t.regex(mesh, /\n200 2$/)
})

/** Requests on a fresh session, one after another, while `busy()` holds; each must answer within `maxMs`. */
async function keepsAnswering (t: { context: Context }, busy: () => boolean, maxMs: number): Promise<number[]> {
  const session = connect(t, 'tls')
  await request(session, get('/open/warm'))
  const times: number[] = []
  while (busy() || times.length < 5) {
    const started = performance.now()
    const res = await request(session, get('/open/parallel'))
    if (res.status !== 200) throw new Error(`parallel client got ${res.status}`)
    times.push(performance.now() - started)
    if (times.length > 2_000) break
  }
  return times
}

test('rapid reset (CVE-2023-44487): the session is closed with GOAWAY ENHANCE_YOUR_CALM; a parallel client keeps getting answers within 100 ms', async (t) => {
  const raw = await RawH2.connect(t.context.gw.urls.tls!, t.context.pki.ca.cert)
  const port = new URL(t.context.gw.urls.tls!).port
  const block = headerBlock([[':method', 'GET'], [':scheme', 'https'], [':authority', `localhost:${port}`], [':path', '/open/reset']])
  let attacking = true
  const parallel = keepsAnswering(t, () => attacking, 100)
  let id = 1
  while (!raw.closed && !raw.frames.some((f) => f.type === FRAME.GOAWAY) && id < 20_000) {
    const batch: Buffer[] = []
    for (let i = 0; i < 50; i++, id += 2) batch.push(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, block), rstStream(id))
    raw.write(Buffer.concat(batch))
    await new Promise((resolve) => setImmediate(resolve))
  }
  const goaway = await raw.waitFor((f) => f.type === FRAME.GOAWAY).catch(() => undefined)
  await raw.closedPromise
  attacking = false
  const times = await parallel
  t.truthy(goaway, 'a GOAWAY frame before the connection closed')
  if (goaway) t.is(errorCode(goaway), 11, 'ENHANCE_YOUR_CALM')
  t.true(id < 20_000, `closed after ${(id - 1) / 2} streams`)
  t.true(Math.max(...times) < 100, `slowest parallel answer ${Math.max(...times).toFixed(1)} ms`)
})

test('CONTINUATION flood (CVE-2024-27983): the session is closed (GOAWAY INTERNAL_ERROR from nghttp2); a parallel client keeps getting answers within 100 ms', async (t) => {
  const raw = await RawH2.connect(t.context.gw.urls.tls!, t.context.pki.ca.cert)
  const port = new URL(t.context.gw.urls.tls!).port
  let attacking = true
  const parallel = keepsAnswering(t, () => attacking, 100)
  raw.write(frame(FRAME.HEADERS, 0, 1, headerBlock([[':method', 'GET'], [':scheme', 'https'], [':authority', `localhost:${port}`], [':path', '/open/flood']])))
  let sent = 0
  while (!raw.closed && !raw.frames.some((f) => f.type === FRAME.GOAWAY) && sent < 100_000) {
    const batch: Buffer[] = []
    for (let i = 0; i < 100; i++, sent++) batch.push(frame(FRAME.CONTINUATION, 0, 1, headerBlock([[`x-flood-${sent}`, 'a'.repeat(64)]])))
    raw.write(Buffer.concat(batch))
    await new Promise((resolve) => setImmediate(resolve))
  }
  const goaway = await raw.waitFor((f) => f.type === FRAME.GOAWAY).catch(() => undefined)
  await raw.closedPromise
  attacking = false
  const times = await parallel
  // nghttp2 (Node's HTTP/2) sends GOAWAY and closes; with the flood still arriving the client's kernel may drop the
  // GOAWAY on the TCP reset that follows, so only the close is certain.
  t.log(goaway ? `GOAWAY code ${errorCode(goaway)}` : `closed without a GOAWAY read (${raw.socketError?.message ?? 'no error'})`)
  t.true(raw.closed)
  t.true(sent < 100_000, `closed after ${sent} CONTINUATION frames`)
  t.true(Math.max(...times) < 100, `slowest parallel answer ${Math.max(...times).toFixed(1)} ms`)
})

test('TE: trailers on an answer without trailers ends the stream cleanly with END_STREAM, not with a reset', async (t) => {
  const raw = await RawH2.connect(t.context.gw.urls.tls!, t.context.pki.ca.cert)
  const port = new URL(t.context.gw.urls.tls!).port
  raw.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([[':method', 'GET'], [':scheme', 'https'], [':authority', `localhost:${port}`], [':path', '/open/te'], ['te', 'trailers']])))
  const end = await raw.waitFor((f) => f.stream === 1 && (f.type === FRAME.RST_STREAM || ((f.type === FRAME.HEADERS || f.type === FRAME.DATA) && (f.flags & FLAG.END_STREAM) !== 0)))
  t.not(end.type, FRAME.RST_STREAM, 'END_STREAM (Node sends an empty trailer section as an empty DATA frame)')
  t.false(raw.frames.some((f) => f.stream === 1 && f.type === FRAME.RST_STREAM))
  raw.close()
})
