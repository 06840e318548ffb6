/**
 * Slow request bodies hold no upstream connection (DESIGN "Slow bodies hold no upstream connection"): a body up to
 * `bufferBodyBytes` is read before an upstream connection is taken, and a body that stalls for `bodyIdleTimeout` is
 * 408 `request_timeout`, so clients that declare a large body and send one byte cannot exhaust an upstream's pool.
 */
import net from 'node:net'
import anyTest, { type TestFn } from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { assertProblem, header, parseResponse, probe, pushBody, recordingUpstream, type RawResponse, type RecordingUpstream } from '../e2e/support.js'

interface Context { gw: TestGateway, upstream: RecordingUpstream }
const test = anyTest as TestFn<Context>

const key = newApiKey()
const POOL = 2
const IDLE_MS = 300
/** The route whose slow clients must not hold the GET up: long enough that a GET answered after them shows. */
const BUFFERED_IDLE_MS = 2000
/** Scheduling slack on a loaded machine: the point is that the 408 comes, not its exact moment. */
const SLACK_MS = 3000

test.before(async (t) => {
  const upstream = await recordingUpstream()
  const gw = await startGateway({
    apiKeys: [{ id: key.id, hash: hashApiKey(key.key), client: 'slow-app', scopes: [] }],
    upstreams: { up: { url: upstream.url, connections: POOL, timeout: '20s' } },
    // requestTimeout stays far above the idle timeout: the 408s below are the idle timeout's, not requestTimeout's.
    limits: { bodyIdleTimeout: `${IDLE_MS}ms`, requestTimeout: '30s' },
    routes: [
      { name: 'upload', match: { path: '/upload/**' }, upstream: 'up', public: true, limits: { bufferBodyBytes: '128KiB', bodyIdleTimeout: `${BUFFERED_IDLE_MS}ms` } },
      { name: 'stream', match: { path: '/stream/**' }, upstream: 'up', public: true, limits: { bufferBodyBytes: '1KiB' } },
      { name: 'keyed', match: { path: '/keyed/**' }, upstream: 'up', policies: [{ apiKey: {} }] },
    ],
  })
  t.context = { gw, upstream }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.upstream?.close()
})

interface Slow { response: RawResponse | undefined, answeredMs: number | undefined, closedMs: number | undefined }

/** A client that declares `length` bytes of body, sends `sent` of them, and then nothing. */
function stalledUpload (gw: TestGateway, path: string, length: number, sent: string, id: string, headWritten?: () => Promise<void>): Promise<Slow> {
  return pushBody(gw.url, [`POST ${path} HTTP/1.1`, `Host: ${new URL(gw.url).host}`, `Content-Length: ${length}`, `X-Probe: ${id}`, '', ''].join('\r\n'),
    { chunk: sent, totalBytes: sent.length, maxMs: 20_000, ...(headWritten ? { beforeBody: headWritten } : {}) })
}

test('clients that declare 100000 bytes and send one hold no upstream connection: a keyed GET is answered meanwhile, they get 408', async (t) => {
  const { gw, upstream } = t.context
  const ids = Array.from({ length: POOL * 3 }, () => probe())
  // The GET goes out once every slow client has written its head: they are ahead of it in the gateway.
  let heads = 0
  let allIn!: () => void
  const allWritten = new Promise<void>((resolve) => { allIn = resolve })
  const headWritten = async () => { if (++heads === ids.length) allIn() }
  const started = performance.now()
  let firstAnswer = Infinity
  const slow = ids.map((id) => stalledUpload(gw, '/upload/file', 100_000, 'x', id, headWritten).then((result) => {
    firstAnswer = Math.min(firstAnswer, performance.now())
    return result
  }))
  await allWritten
  const res = await gw.fetch('/keyed/get', { headers: { 'x-api-key': key.key }, signal: AbortSignal.timeout(15_000) })
  const getDone = performance.now()
  t.is(res.status, 200)
  const results = await Promise.all(slow)
  t.true(getDone < firstAnswer, `the GET was answered after ${Math.round(getDone - started)} ms, the first slow client after ${Math.round(firstAnswer - started)} ms`)
  for (const result of results) {
    t.truthy(result.response, 'no answer to a stalled upload')
    if (!result.response) continue
    await assertProblem(t, result.response, 408, 'request_timeout')
    t.regex(header(result.response, 'connection') ?? '', /close/i)
    t.true(result.answeredMs! >= BUFFERED_IDLE_MS - 50 && result.answeredMs! < BUFFERED_IDLE_MS + SLACK_MS, `408 after ${Math.round(result.answeredMs!)} ms`)
    t.not(result.closedMs, undefined, 'the connection closes after the 408')
  }
  for (const id of ids) t.is(upstream.withProbe(id).length, 0, 'a stalled body under bufferBodyBytes never reached the upstream')
})

test('a streamed body that stalls is 408 after bodyIdleTimeout and its upstream request is aborted; the pool serves again', async (t) => {
  const { gw, upstream } = t.context
  const ids = Array.from({ length: POOL * 2 }, () => probe())
  // More than bufferBodyBytes (1 KiB on this route): streamed, so each takes an upstream connection for a while.
  const results = await Promise.all(ids.map((id) => stalledUpload(gw, '/stream/file', 100_000, 'y'.repeat(2048), id)))
  for (const result of results) {
    t.truthy(result.response, 'no answer to a stalled upload')
    if (!result.response) continue
    await assertProblem(t, result.response, 408, 'request_timeout')
    // Each waited at most for a connection (others' idle timeouts) and then its own idle timeout.
    t.true(result.answeredMs! < IDLE_MS * (ids.length / POOL + 1) + SLACK_MS, `408 after ${Math.round(result.answeredMs!)} ms`)
  }
  for (const id of ids) {
    const seen = upstream.withProbe(id)
    if (seen.length === 0) continue
    await seen[0]!.settled
    t.false(seen[0]!.complete, 'the upstream request of a stalled body was aborted, not completed')
  }
  const res = await gw.fetch('/keyed/after', { headers: { 'x-api-key': key.key }, signal: AbortSignal.timeout(10_000) })
  t.is(res.status, 200)
})

test('a body that arrives slowly but steadily is forwarded whole, buffered (under bufferBodyBytes) or streamed', async (t) => {
  const { gw, upstream } = t.context
  for (const route of ['/stream/steady', '/upload/steady']) {
    const id = probe()
    // 40 pieces of 100 bytes, one every 50 ms: 2 s in all, each pause well inside the 300 ms idle timeout.
    const result = await pushBody(gw.url, [`POST ${route} HTTP/1.1`, `Host: ${new URL(gw.url).host}`, 'Content-Length: 4000', `X-Probe: ${id}`, 'Connection: close', '', ''].join('\r\n'),
      { chunk: 'z'.repeat(100), totalBytes: 4000, everyMs: 50, maxMs: 20_000 })
    t.is(result.response?.status, 200, route)
    const seen = upstream.withProbe(id)[0]
    t.is(seen?.bodyBytes, 4000, route)
    t.true(seen?.complete, route)
  }
})

test('a chunked body larger than bufferBodyBytes is forwarded whole: the buffered part, then the rest', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const body = Buffer.alloc(300 * 1024)
  for (let i = 0; i < body.length; i++) body[i] = 97 + (i % 26)
  const res = await gw.fetch('/upload/chunked', {
    method: 'POST',
    headers: { 'x-probe': id },
    // A stream: fetch sends it chunked.
    body: new ReadableStream({ start (controller) { for (let i = 0; i < body.length; i += 10_000) controller.enqueue(body.subarray(i, i + 10_000)); controller.close() } }),
    duplex: 'half',
  } as RequestInit)
  t.is(res.status, 200)
  const seen = upstream.withProbe(id)[0]!
  await seen.settled
  t.true(seen.body.equals(body), `the upstream got ${seen.bodyBytes} of ${body.length} bytes`)
  // The twin under the limit arrives with a Content-Length (read whole before forwarding).
  const small = probe()
  const twin = await gw.fetch('/upload/chunked', { method: 'POST', headers: { 'x-probe': small }, body: new ReadableStream({ start (c) { c.enqueue(Buffer.from('hello')); c.close() } }), duplex: 'half' } as RequestInit)
  t.is(twin.status, 200)
  t.is(upstream.withProbe(small)[0]!.headers['content-length'], '5')
})

test('Expect: 100-continue on a public route: the 100 comes, then the buffered body is forwarded', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const { port } = new URL(gw.url)
  const socket = net.connect(Number(port), '127.0.0.1')
  let received = ''
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1')
    if (received.startsWith('HTTP/1.1 100') && !socket.destroyed && received.indexOf('\r\n\r\n') === received.length - 4) socket.write('hello')
  })
  socket.on('error', () => {})
  const closed = new Promise((resolve) => socket.once('close', resolve))
  socket.write(['POST /upload/continue HTTP/1.1', `Host: ${new URL(gw.url).host}`, 'Content-Length: 5', 'Expect: 100-continue', `X-Probe: ${id}`, 'Connection: close', '', ''].join('\r\n'))
  await closed
  t.regex(received, /^HTTP\/1\.1 100 Continue\r\n\r\n/)
  t.is(parseResponse(Buffer.from(received.slice(received.indexOf('\r\n\r\n') + 4), 'latin1')).status, 200)
  t.is(upstream.withProbe(id)[0]?.body.toString(), 'hello')
})
