/**
 * HTTP/2 behind the gateway (issue 17): `protocol: h2` (TLS) and `h2c` upstreams, one multiplexed connection per
 * upstream, a new one after the upstream's GOAWAY; HTTP/1.1 and HTTP/2 clients both reach them.
 */
import anyTest, { type TestFn } from 'ava'
import http2, { type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { Agent } from 'undici'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { mintPki, type Pki } from '../helpers/pki.js'
import { until } from '../helpers/until.js'

interface H2Upstream {
  url: string
  sessions: Http2Session[]
  seen: Array<{ headers: IncomingHttpHeaders, body: string }>
  close (): Promise<void>
}

/** A node:http2 upstream (h2c, or h2 over TLS) that records each request and answers with a trailer. */
async function h2Upstream (tlsPair?: { cert: string, key: string }): Promise<H2Upstream> {
  const server = tlsPair ? http2.createSecureServer({ cert: tlsPair.cert, key: tlsPair.key }) : http2.createServer()
  const sessions: Http2Session[] = []
  const seen: H2Upstream['seen'] = []
  server.on('session', (session) => sessions.push(session))
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const chunks: Buffer[] = []
    // A request the gateway cancels ends in RST_STREAM.
    stream.on('error', () => {})
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('end', () => {
      // Node ends the readable side of a stream the gateway reset too: that request was cancelled, not received.
      if (stream.aborted || stream.closed) return
      seen.push({ headers, body: Buffer.concat(chunks).toString('utf8') })
      stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-upstream': 'h2' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc' }))
      stream.end(`upstream saw ${String(headers[':method'])} ${String(headers[':path'])}`)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `${tlsPair ? 'https' : 'http'}://${tlsPair ? 'localhost' : '127.0.0.1'}:${port}`,
    sessions,
    seen,
    close: () => new Promise((resolve) => { for (const s of sessions) s.destroy(); server.close(() => resolve()) }),
  }
}

interface Context { gw: TestGateway, pki: Pki, key: string, plain: H2Upstream, secure: H2Upstream }
const test = anyTest as TestFn<Context>

test.before(async (t) => {
  const pki = await mintPki()
  const plain = await h2Upstream()
  const secure = await h2Upstream(pki.server)
  const { id, key } = newApiKey()
  const gw = await startGateway({
    listeners: [{ name: 'tls', address: '127.0.0.1:0', tls: { cert: 'pki/server.crt', key: 'pki/server.key' } }],
    apiKeys: [{ id, hash: hashApiKey(key), client: 'key-client', scopes: [] }],
    upstreams: {
      plain: { url: plain.url, protocol: 'h2c' },
      secure: { url: secure.url, protocol: 'h2', ca: 'pki/ca.crt' },
    },
    routes: [
      { name: 'plain', match: { path: '/plain/**' }, upstream: 'plain', policies: [{ apiKey: {} }] },
      { name: 'secure', match: { path: '/secure/**' }, upstream: 'secure', policies: [{ apiKey: {} }] },
    ],
  }, { files: { 'pki/server.crt': pki.server.cert, 'pki/server.key': pki.server.key, 'pki/ca.crt': pki.ca.cert } })
  t.context = { gw, pki, key, plain, secure }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.plain?.close()
  await t.context.secure?.close()
})

function h2get (t: { context: Context }, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string, trailers: IncomingHttpHeaders, headers: IncomingHttpHeaders }> {
  const session = http2.connect(t.context.gw.url, { ca: t.context.pki.ca.cert, servername: 'localhost' })
  session.on('error', () => {})
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, 'te': 'trailers', ...headers })
    let head: IncomingHttpHeaders = {}
    let trailers: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    stream.on('response', (h) => { head = h })
    stream.on('trailers', (h) => { trailers = h })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('error', reject)
    stream.on('close', () => { session.close(); resolve({ status: Number(head[':status']), body: Buffer.concat(chunks).toString(), trailers, headers: head }) })
  })
}

for (const [kind, name] of [['h2c', 'plain'], ['h2 over TLS', 'secure']] as const) {
  test.serial(`${kind} upstream: HTTP/1.1 and HTTP/2 clients reach it over one HTTP/2 connection, with the identity`, async (t) => {
    const upstream = t.context[name]
    const before = upstream.seen.length
    const agent = new Agent({ connect: { ca: t.context.pki.ca.cert, servername: 'localhost' } })
    const h1 = await Promise.all([1, 2, 3].map(async (i) => await t.context.gw.fetch(`/${name}/h1/${i}`, { dispatcher: agent as never, headers: { 'x-api-key': t.context.key } })))
    for (const res of h1) t.is(res.status, 200)
    t.is(await h1[0]!.text(), `upstream saw GET /${name}/h1/1`)
    t.is(h1[0]!.headers.get('x-upstream'), 'h2')
    await agent.close()
    const h2 = await h2get(t, `/${name}/h2`, { 'x-api-key': t.context.key })
    t.is(h2.status, 200)
    t.is(h2.body, `upstream saw GET /${name}/h2`)
    t.is(h2.trailers['x-checksum'], 'abc', 'the upstream\'s trailers reach an HTTP/2 client that asked for them')
    t.is(upstream.seen.length, before + 4)
    const last = upstream.seen.at(-1)!
    t.is(last.headers['x-auth-client'], 'key-client')
    t.is(last.headers['x-api-key'], undefined)
    t.is(upstream.sessions.length, 1, 'one multiplexed connection per upstream')

    const refused = await h2get(t, `/${name}/h2`)
    t.is(refused.status, 401)
    t.is(upstream.seen.length, before + 4, 'a refused request never reaches the upstream')
  })
}

test.serial('after the upstream\'s GOAWAY the next request opens a new connection', async (t) => {
  const upstream = t.context.plain
  const first = await h2get(t, '/plain/before', { 'x-api-key': t.context.key })
  t.is(first.status, 200)
  const sessions = upstream.sessions.length
  upstream.sessions.at(-1)!.close()
  await until(() => upstream.sessions.at(-1)!.closed, { timeoutMs: 5_000, message: 'the upstream session to close' })
  const next = await h2get(t, '/plain/after', { 'x-api-key': t.context.key })
  t.is(next.status, 200, next.body)
  t.is(upstream.sessions.length, sessions + 1)
})

test.serial('HTTP/1.1 clients that leave while their streamed body goes to an h2c upstream do not stall the gateway', async (t) => {
  // Each sends its headers and the first 64 KiB of a larger body, then closes: the gateway has begun streaming the
  // body upstream (a body past bufferBodyBytes is not buffered) when it learns the client is gone. Aborting the
  // upstream stream in that same turn used to loop Node's http2 forever (see upstream.ts abortSoon).
  const request = Buffer.from(`POST /plain/leaving HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${t.context.key}\r\ncontent-length: 1000000\r\n\r\n`)
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  const left = Array.from({ length: 40 }, () => new Promise<void>((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(new URL(t.context.gw.url).port), ca: t.context.pki.ca.cert, servername: 'localhost' }, () => {
      socket.write(request)
      socket.write(chunk, () => socket.destroy())
    })
    socket.on('error', () => {})
    socket.on('close', () => resolve())
  }))
  await Promise.all(left)
  t.false(t.context.plain.seen.some((request) => request.headers[':path'] === '/plain/leaving'), 'no cut-short body reached the upstream as a whole request')
  const after = await h2get(t, '/plain/after-leaving', { 'x-api-key': t.context.key })
  t.is(after.status, 200)
  t.is(after.body, 'upstream saw GET /plain/after-leaving')
})

test('configuration: h2 needs an https URL, h2c an http one; prior-knowledge is for plain listeners, http2: true for TLS ones', async (t) => {
  const route = { name: 'r', match: { path: '/**' }, upstream: 'u', public: true }
  const refused = async (config: Record<string, unknown>, message: RegExp) => {
    const error = await t.throwsAsync(startGateway({ routes: [route], ...config }))
    t.regex(error?.message ?? '', message)
  }
  await refused({ upstreams: { u: { url: 'http://127.0.0.1:9', protocol: 'h2' } } }, /h2 is HTTP\/2 over TLS: it needs an https URL/)
  await refused({ upstreams: { u: { url: 'https://127.0.0.1:9', protocol: 'h2c' } } }, /h2c is HTTP\/2 without TLS: it needs an http URL/)
  await refused({ upstreams: { u: { url: 'http://127.0.0.1:9', protocol: 'h3' } } }, /protocol/)
  await refused({ upstreams: { u: { echo: true } }, listeners: [{ name: 'p', address: '127.0.0.1:0', http2: true }] }, /plain listener speaks HTTP\/2 only with prior knowledge/)
  await refused({ upstreams: { u: { echo: true } }, listeners: [{ name: 'p', address: '127.0.0.1:0', tls: { cert: 'a.crt', key: 'a.key' }, http2: 'prior-knowledge' }] }, /prior-knowledge is for plain listeners/)
  const ok = await startGateway({ routes: [route], upstreams: { u: { url: 'http://127.0.0.1:9', protocol: 'h2c' } } })
  await ok.close()
  t.pass()
})

test('shutdown: an HTTP/2 client gets GOAWAY, its open stream finishes, and close() resolves', async (t) => {
  const upstream = await h2Upstream()
  const gw = await startGateway({
    listeners: [{ name: 'mesh', address: '127.0.0.1:0', http2: 'prior-knowledge' }],
    upstreams: { slow: { url: upstream.url, protocol: 'h2c' } },
    routes: [{ name: 'slow', match: { path: '/**' }, upstream: 'slow', public: true }],
  })
  t.teardown(() => upstream.close())
  const session = http2.connect(gw.url)
  session.on('error', () => {})
  const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()))
  // The request body is still open when close() starts: the stream is in flight (a body larger than
  // bufferBodyBytes is streamed to the upstream from its first byte).
  const stream = session.request({ ':method': 'POST', ':path': '/drain', 'content-length': '100000' })
  const answer = new Promise<{ status: number, body: string }>((resolve) => {
    let status = 0
    const chunks: Buffer[] = []
    stream.on('response', (h) => { status = Number(h[':status']) })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('error', () => {})
    stream.on('close', () => resolve({ status, body: Buffer.concat(chunks).toString() }))
  })
  stream.write(Buffer.alloc(50_000))
  await until(() => upstream.sessions.length > 0, { timeoutMs: 5_000, message: 'the upstream to see the stream' })
  const closed = gw.close()
  await goaway
  stream.end(Buffer.alloc(50_000))
  t.deepEqual(await answer, { status: 200, body: 'upstream saw POST /drain' })
  await closed
  session.destroy()
})
