/**
 * Slow clients are cut off by the limits, and do not starve anyone else:
 * - slowloris: a request head dribbled one byte at a time, each byte well inside any idle timeout but the whole head
 *   slower than `headersTimeout`, is answered 408 (or cut) soon after headersTimeout;
 * - a body dribbled slower than `requestTimeout` is cut soon after requestTimeout, and the upstream never sees a
 *   complete request;
 * - fifty slowloris connections at once leave normal requests fast.
 */
import type { IncomingMessage } from 'node:http'
import net from 'node:net'
import anyTest, { type TestFn } from 'ava'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { exchange, portOf, recordingUpstream, type Recorder } from '../fuzz/support.js'

interface Context { gw: TestGateway, upstream: Recorder, port: number }
const test = anyTest as TestFn<Context>

const HEADERS_TIMEOUT_MS = 1000
const REQUEST_TIMEOUT_MS = 2000
/** Scheduling slack on a busy CI machine: the point is that the cut comes, not its exact moment. */
const SLACK_MS = 3000

test.before(async (t) => {
  const upstream = await recordingUpstream()
  const gw = await startGateway({
    upstreams: { up: { url: upstream.url, timeout: '10s' } },
    limits: { headersTimeout: `${HEADERS_TIMEOUT_MS}ms`, requestTimeout: `${REQUEST_TIMEOUT_MS}ms` },
    routes: [{ name: 'public', match: { path: '/**' }, upstream: 'up', public: true }],
  })
  t.context = { gw, upstream, port: portOf(gw.url) }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.upstream?.close()
})

interface Dribble { elapsedMs: number, received: string, sentBytes: number }

/** Sends `head` at once, then `slow` one byte every `everyMs`, until the server closes or `maxMs` passes. */
function dribble (port: number, head: string, slow: string, everyMs: number, maxMs: number): Promise<Dribble> {
  return new Promise((resolve) => {
    const started = performance.now()
    const socket = net.connect({ host: '127.0.0.1', port })
    const chunks: Buffer[] = []
    let sent = 0
    let timer: NodeJS.Timeout | undefined
    const done = () => {
      clearInterval(timer)
      clearTimeout(guard)
      socket.destroy()
      resolve({ elapsedMs: performance.now() - started, received: Buffer.concat(chunks).toString('latin1'), sentBytes: sent })
    }
    const guard = setTimeout(done, maxMs)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.on('close', done)
    socket.on('connect', () => {
      socket.write(head)
      timer = setInterval(() => {
        if (sent >= slow.length || socket.destroyed) return
        socket.write(slow[sent++]!)
      }, everyMs)
    })
  })
}

test('slowloris: a head dribbled a byte every 100 ms is cut soon after headersTimeout, with a 408 if anything', async (t) => {
  const { port } = t.context
  const filler = 'X-Filler: ' + 'a'.repeat(200) + '\r\n'
  const result = await dribble(port, 'GET /x HTTP/1.1\r\n', `Host: 127.0.0.1:${port}\r\n${filler}\r\n`, 100, 10_000)
  t.true(result.elapsedMs >= HEADERS_TIMEOUT_MS - 50, `cut after ${Math.round(result.elapsedMs)} ms`)
  t.true(result.elapsedMs < HEADERS_TIMEOUT_MS + SLACK_MS, `cut after ${Math.round(result.elapsedMs)} ms (${result.sentBytes} bytes sent)`)
  if (result.received.length > 0) t.regex(result.received, /^HTTP\/1\.1 408 /)
  // The twin: the same head sent at once is served.
  const fast = await exchange(port, `GET /x HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${filler}Connection: close\r\n\r\n`)
  t.is(fast.responses[0]?.status, 200)
})

test('a body dribbled slower than requestTimeout is cut soon after it, and the upstream never gets the whole body', async (t) => {
  const { port, upstream } = t.context
  const before = upstream.seen.length
  // If the gateway forwards the head at once, the upstream request ends (closes) when the gateway gives up on it.
  const forwarded: Array<Promise<unknown>> = []
  const onRequest = (req: IncomingMessage) => {
    if (req.headers['x-probe'] === 'slow-body') forwarded.push(new Promise((resolve) => { if (req.closed) resolve(undefined); else req.once('close', resolve) }))
  }
  upstream.server.on('request', onRequest)
  t.teardown(() => { upstream.server.off('request', onRequest) })
  const head = `POST /upload HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 1000\r\nX-Probe: slow-body\r\n\r\n`
  const result = await dribble(port, head, 'b'.repeat(1000), 100, 15_000)
  t.true(result.elapsedMs >= REQUEST_TIMEOUT_MS - 50, `cut after ${Math.round(result.elapsedMs)} ms`)
  t.true(result.elapsedMs < REQUEST_TIMEOUT_MS + SLACK_MS, `cut after ${Math.round(result.elapsedMs)} ms (${result.sentBytes} bytes sent)`)
  t.false(/^HTTP\/1\.1 200 /.test(result.received), 'a 200 for a body that never arrived')
  await Promise.race([Promise.all(forwarded), new Promise((_resolve, reject) => setTimeout(() => reject(new Error('the upstream request is still open after the client was cut')), SLACK_MS).unref())])
  for (const seen of upstream.seen.slice(before)) t.true(seen.bodyBytes < 1000, `the upstream saw ${seen.bodyBytes} of 1000 bytes`)
  // The twin: the same upload sent at once is forwarded whole.
  const fast = await exchange(port, `${head.replace('slow-body', 'fast-body')}${'b'.repeat(1000)}`)
  t.is(fast.responses[0]?.status, 200)
  t.is(upstream.seen.find((s) => s.headers['x-probe'] === 'fast-body')?.bodyBytes, 1000)
})

test('fifty slowloris connections at once leave normal requests answered quickly, and are all cut', async (t) => {
  const { port } = t.context
  const slow = Array.from({ length: 50 }, () => dribble(port, 'GET /x HTTP/1.1\r\n', `Host: 127.0.0.1:${port}\r\n${'X-A: b\r\n'.repeat(100)}\r\n`, 150, 10_000))
  await new Promise((resolve) => setTimeout(resolve, 300))
  const latencies: number[] = []
  for (let i = 0; i < 20; i++) {
    const res = await exchange(port, `GET /x?i=${i} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`)
    t.is(res.responses[0]?.status, 200)
    latencies.push(res.elapsedMs)
  }
  const results = await Promise.all(slow)
  t.true(Math.max(...latencies) < 1500, `slowest normal request ${Math.round(Math.max(...latencies))} ms`)
  t.true(results.every((r) => r.elapsedMs < HEADERS_TIMEOUT_MS + SLACK_MS), `slowest cut ${Math.round(Math.max(...results.map((r) => r.elapsedMs)))} ms`)
})
