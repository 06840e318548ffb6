import { createHash, randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import anyTest, { type TestFn } from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { until } from '../helpers/until.js'
import {
  assertProblem, assertRequestId, freePort, header, openGet, parseResponse, probe, rawGet, rawRequest, recordingUpstream,
  type RawResponse, type RecordingUpstream, type Seen, type UpstreamHandler,
} from './support.js'

const test = anyTest as TestFn<{ gw: TestGateway, upstream: RecordingUpstream, key: string, upgrades: Array<{ url: string, headers: IncomingHttpHeaders }> }>

const MiB = 1024 * 1024
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

/** Probe ids of /endless and /held requests whose upstream connection the gateway closed. */
const upstreamClosed = new Set<string>()

/** The upstream: behaviour chosen by path. */
const handler: UpstreamHandler = (req, res, seen) => {
  const path = (req.url ?? '').split('?')[0]!
  if (path.endsWith('/download')) {
    // 5 MiB in 64 KiB chunks, deterministic, chunked (no Content-Length).
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    let sent = 0
    const pump = () => {
      while (sent < 5 * MiB) {
        const chunk = Buffer.alloc(64 * 1024, sent / (64 * 1024) % 251)
        sent += chunk.length
        if (!res.write(chunk)) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
    return
  }
  if (path.startsWith('/status/')) {
    req.resume()
    const status = Number(path.slice('/status/'.length))
    res.writeHead(status, [
      ['Content-Type', 'text/plain'],
      ['X-Custom', 'yes'],
      ['Set-Cookie', 'a=1; Path=/'],
      ['Set-Cookie', 'b=2; Path=/'],
      ['Keep-Alive', 'timeout=99'],
      ['Proxy-Authenticate', 'Basic realm="upstream"'],
      ['Connection', 'X-Hop'],
      ['X-Hop', 'secret-hop'],
      ['Upgrade', 'h2c'],
    ].flat())
    res.end(`upstream says ${status}`)
    return
  }
  if (path === '/slow') return // never answers: the gateway's timeout must
  if (path.startsWith('/limited/')) {
    req.resume()
    res.writeHead(200, [['RateLimit', '"upstream";r=1;t=1'], ['ratelimit-policy', '"upstream";q=1;w=1'], ['X-Request-Id', 'upstream-id'], ['X-Custom', 'kept']].flat())
    res.end('limited')
    return
  }
  if (path === '/endless' || path === '/held') {
    // /endless streams a chunk every 20 ms, /held never answers; both until the gateway closes the connection.
    const id = new URL(req.url ?? '', 'http://x').searchParams.get('id') ?? ''
    res.on('close', () => upstreamClosed.add(id))
    if (path === '/held') return
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const timer = setInterval(() => res.write(Buffer.alloc(1024, 0x62)), 20)
    res.on('close', () => clearInterval(timer))
    return
  }
  if (path === '/reset') {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(100_000) })
    res.write(Buffer.alloc(1000, 1), () => setImmediate(() => res.socket?.destroy()))
    return
  }
  req.on('end', () => {
    const body = JSON.stringify({ url: seen.url, bytes: seen.bodyBytes, sha256: sha256(seen.body) })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
}

test.before(async (t) => {
  const { id, key } = newApiKey()
  const upstream = await recordingUpstream(handler)
  const upgrades: Array<{ url: string, headers: IncomingHttpHeaders }> = []
  // A minimal WebSocket echo server (RFC 6455 §4.2.2 handshake), echoing raw bytes after the 101.
  upstream.server.removeAllListeners('upgrade')
  upstream.server.on('upgrade', (req, socket: net.Socket, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers })
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}${WS_GUID}`).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
    if (head.length > 0) socket.write(head)
    socket.on('error', () => socket.destroy())
    socket.pipe(socket)
  })
  const closedPort = await freePort()
  const gw = await startGateway({
    upstreams: {
      app: { url: upstream.url },
      slow: { url: upstream.url, timeout: '200ms' },
      prefixed: { url: `${upstream.url}/base/` },
      down: { url: `http://127.0.0.1:${closedPort}`, connectTimeout: '2s' },
    },
    apiKeys: [{ id, hash: hashApiKey(key), client: 'ws-client', scopes: ['chat'] }],
    limits: { maxBodyBytes: '2KiB' },
    routes: [
      { name: 'big', match: { path: '/big/**' }, upstream: 'app', public: true, limits: { maxBodyBytes: '10MiB' } },
      // bufferBodyBytes 0: bodies are streamed from their first bytes, so a limit can be passed after forwarding began.
      { name: 'small', match: { path: '/small/**' }, upstream: 'app', public: true, limits: { maxBodyBytes: '1KiB', bufferBodyBytes: 0 } },
      { name: 'slow', match: { path: '/slow' }, upstream: 'slow', public: true },
      { name: 'down', match: { path: '/down' }, upstream: 'down', public: true },
      { name: 'prefixed', match: { path: '/pre/**' }, upstream: 'prefixed', public: true },
      { name: 'strip', match: { path: '/strip/**' }, upstream: 'app', public: true, stripPrefix: '/strip' },
      { name: 'ws', match: { path: '/ws/**' }, upstream: 'app', policies: [{ apiKey: {} }] },
      { name: 'limited', match: { path: '/limited/**' }, upstream: 'app', public: true, policies: [{ rateLimit: { by: 'ip', limit: '1000/min' } }] },
      { name: 'app', match: { path: '/**' }, upstream: 'app', public: true },
    ],
  })
  t.context = { gw, upstream, key, upgrades }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.upstream?.close()
})

function only (t: { is: (a: unknown, b: unknown, m?: string) => void }, upstream: RecordingUpstream, id: string): Seen {
  const seen = upstream.withProbe(id)
  t.is(seen.length, 1, 'the upstream saw the request once')
  return seen[0]!
}

/** `size` bytes as HTTP/1.1 chunked encoding, in chunks of `chunk` bytes. */
function chunked (size: number, chunk = 256): Buffer[] {
  const out: Buffer[] = []
  for (let sent = 0; sent < size; sent += chunk) {
    const n = Math.min(chunk, size - sent)
    out.push(Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), Buffer.alloc(n, 0x61), Buffer.from('\r\n')]))
  }
  out.push(Buffer.from('0\r\n\r\n'))
  return out
}

function postHead (gw: TestGateway, path: string, lines: string[]): string {
  return [`POST ${path} HTTP/1.1`, `Host: ${new URL(gw.url).host}`, ...lines].join('\r\n')
}

test('a 5 MiB request body arrives at the upstream intact (Content-Length and chunked)', async (t) => {
  const { gw, upstream } = t.context
  const data = randomBytes(5 * MiB)
  const id = probe()
  const res = await gw.fetch('/big/upload', { method: 'POST', body: data, headers: { 'x-probe': id, 'content-type': 'application/octet-stream' } })
  t.is(res.status, 200)
  t.like(await res.json(), { bytes: data.length, sha256: sha256(data) })
  const seen = only(t, upstream, id)
  t.true(seen.complete)
  t.is(seen.headers['content-length'], String(data.length))

  // A streamed (chunked) body of the same size.
  const streamed = probe()
  const stream = new ReadableStream<Uint8Array>({
    start (controller) {
      for (let at = 0; at < data.length; at += 256 * 1024) controller.enqueue(data.subarray(at, at + 256 * 1024))
      controller.close()
    },
  })
  const res2 = await gw.fetch('/big/upload', { method: 'POST', body: stream, headers: { 'x-probe': streamed }, duplex: 'half' } as RequestInit)
  t.is(res2.status, 200)
  t.like(await res2.json(), { bytes: data.length, sha256: sha256(data) })
  t.true(only(t, upstream, streamed).complete)
})

test('a 5 MiB response body streams back to the client intact', async (t) => {
  const res = await t.context.gw.fetch('/big/download')
  t.is(res.status, 200)
  assertRequestId(t, res)
  const body = Buffer.from(await res.arrayBuffer())
  t.is(body.length, 5 * MiB)
  const expected = Buffer.concat(Array.from({ length: 80 }, (_, i) => Buffer.alloc(64 * 1024, i % 251)))
  t.is(sha256(body), sha256(expected))
})

test('Content-Length over maxBodyBytes is 413 payload_too_large before forwarding; under it is forwarded', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await rawRequest(gw.url, postHead(gw, '/small/x', [`X-Probe: ${id}`, 'Content-Length: 2048']), Buffer.alloc(2048, 0x61))
  await assertProblem(t, res, 413, 'payload_too_large')
  t.is(upstream.withProbe(id).length, 0)
  // Declared, not sent: still refused on the declaration alone.
  const declared = probe()
  const res2 = await rawRequest(gw.url, postHead(gw, '/small/x', [`X-Probe: ${declared}`, `Content-Length: ${100 * MiB}`]))
  await assertProblem(t, res2, 413, 'payload_too_large')
  t.is(upstream.withProbe(declared).length, 0)

  const twin = probe()
  const ok = await rawRequest(gw.url, postHead(gw, '/small/x', [`X-Probe: ${twin}`, 'Content-Length: 1024']), Buffer.alloc(1024, 0x61))
  t.is(ok.status, 200)
  const seen = only(t, upstream, twin)
  t.true(seen.complete)
  t.is(seen.bodyBytes, 1024)
})

test('the global maxBodyBytes applies to a route that does not set its own', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await rawRequest(gw.url, postHead(gw, '/anything', [`X-Probe: ${id}`, 'Content-Length: 3000']), Buffer.alloc(3000, 0x61))
  await assertProblem(t, res, 413, 'payload_too_large')
  t.is(upstream.withProbe(id).length, 0)
  const twin = probe()
  const ok = await rawRequest(gw.url, postHead(gw, '/anything', [`X-Probe: ${twin}`, 'Content-Length: 2048']), Buffer.alloc(2048, 0x61))
  t.is(ok.status, 200)
  t.is(only(t, upstream, twin).bodyBytes, 2048)
})

test('a chunked body over maxBodyBytes is refused or aborted, never fully forwarded; under it is forwarded', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  let status: number | undefined
  try {
    const res = await rawRequest(gw.url, postHead(gw, '/small/x', [`X-Probe: ${id}`, 'Transfer-Encoding: chunked']), chunked(64 * 1024))
    status = res.status
    if (res.status === 413) await assertProblem(t, res, 413, 'payload_too_large')
  } catch {
    // The connection was cut while the body was still being sent: also acceptable.
  }
  t.true(status === undefined || status === 413, `status ${String(status)}`)
  // Whatever part of it reached the upstream was cut short: wait until the upstream knows.
  for (const seen of upstream.withProbe(id)) {
    await seen.settled
    t.false(seen.complete)
    t.true(seen.bodyBytes <= 64 * 1024)
  }

  const twin = probe()
  const ok = await rawRequest(gw.url, postHead(gw, '/small/x', [`X-Probe: ${twin}`, 'Transfer-Encoding: chunked']), chunked(1000))
  t.is(ok.status, 200)
  const seen = only(t, upstream, twin)
  t.true(seen.complete)
  t.is(seen.bodyBytes, 1000)
})

test('a chunked body that passes maxBodyBytes after forwarding began is cut off at the upstream and answered 413', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const { port } = new URL(gw.url)
  const socket = net.connect({ host: '127.0.0.1', port: Number(port) })
  const answer = new Promise<RawResponse | undefined>((resolve) => {
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      try { resolve(parseResponse(Buffer.concat(chunks))) } catch { resolve(undefined) }
    })
  })
  const [first, ...rest] = chunked(8 * 1024, 512)
  socket.write(`${postHead(gw, '/small/x', [`X-Probe: ${id}`, 'Transfer-Encoding: chunked', 'Connection: close'])}\r\n\r\n`)
  socket.write(first!)
  // The upstream has the request head and is reading the body: now send more than the limit.
  const seen = await upstream.arrival(id)
  for (const chunk of rest) if (!socket.destroyed) socket.write(chunk)
  await seen.settled
  t.false(seen.complete)
  t.true(seen.bodyBytes <= 2 * 1024, `${seen.bodyBytes} bytes reached the upstream`)
  const res = await answer
  if (res) await assertProblem(t, res, 413, 'payload_too_large')
  t.true(res === undefined || res.status === 413, `status ${String(res?.status)}`)
})

test('an upstream that refuses connections is 502 upstream_unavailable', async (t) => {
  const res = await t.context.gw.fetch('/down')
  const body = await assertProblem(t, res, 502, 'upstream_unavailable')
  t.false(String(body.detail).includes('127.0.0.1'))
  // The twin: a live upstream on the same gateway answers.
  t.is((await t.context.gw.fetch('/anything')).status, 200)
})

test('an upstream slower than its timeout is 504 upstream_timeout', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const started = performance.now()
  const res = await gw.fetch('/slow', { headers: { 'x-probe': id } })
  const elapsed = performance.now() - started
  await assertProblem(t, res, 504, 'upstream_timeout')
  t.true(elapsed >= 150, `answered after ${Math.round(elapsed)} ms`)
  t.true(elapsed < 5000, `answered after ${Math.round(elapsed)} ms`)
  // The upstream did get the request, and the gateway gave up on it.
  const seen = only(t, upstream, id)
  await seen.settled
})

test('an upstream that resets mid-response makes the client connection fail instead of hang', async (t) => {
  const outcome = await Promise.race([
    (async () => {
      const res = await t.context.gw.fetch('/reset')
      await res.arrayBuffer()
      return 'completed'
    })().catch(() => 'failed'),
    new Promise((resolve) => setTimeout(() => resolve('hung'), 10_000).unref()),
  ])
  t.is(outcome, 'failed')
  // The twin: the gateway still serves.
  t.is((await t.context.gw.fetch('/after-reset')).status, 200)
})

test('a client that goes away mid-response stops the upstream request; one that stays keeps receiving', async (t) => {
  const { gw } = t.context
  const leaving = probe()
  const staying = probe()
  const gone = await openGet(gw.url, `/endless?id=${leaving}`, 2048)
  const stays = await openGet(gw.url, `/endless?id=${staying}`, 2048)
  t.true(gone.received() >= 2048, 'the streamed answer started')
  gone.socket.destroy()
  t.true(await until(() => upstreamClosed.has(leaving), { timeoutMs: 3_000, intervalMs: 50, message: 'the upstream request was closed when its client left' }).catch(() => false), 'the upstream request was closed when its client left')
  // The twin: the client that stays is still being streamed to, and its upstream request is still open.
  const before = stays.received()
  t.true(await until(() => stays.received() > before + 4096, { timeoutMs: 3_000, intervalMs: 50, message: 'the staying client keeps receiving' }).catch(() => false), 'the staying client keeps receiving')
  t.false(upstreamClosed.has(staying))
  stays.socket.destroy()
  t.true(await until(() => upstreamClosed.has(staying), { timeoutMs: 3_000, intervalMs: 50, message: 'the upstream request to close' }).catch(() => false))
})

test('a client that goes away before the upstream answered stops the upstream request', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const held = await openGet(gw.url, `/held?id=${id}`, 0)
  t.true(await until(() => upstream.seen.some((s) => s.url.includes(id)), { timeoutMs: 3_000, intervalMs: 50, message: 'the request reached the upstream' }).catch(() => false), 'the request reached the upstream')
  t.false(upstreamClosed.has(id), 'the upstream request stays open while its client waits')
  held.socket.destroy()
  t.true(await until(() => upstreamClosed.has(id), { timeoutMs: 3_000, intervalMs: 50, message: 'the upstream request was closed when its client left' }).catch(() => false), 'the upstream request was closed when its client left')
})

test('headers the gateway sets (RateLimit, X-Request-Id) replace the upstream\'s of the same name, whatever its case; others pass', async (t) => {
  const res = await rawGet(t.context.gw.url, '/limited/x')
  t.is(res.status, 200)
  t.is(res.body, 'limited')
  t.is(header(res, 'x-custom'), 'kept')
  const raw = res.raw.split('\r\n\r\n')[0]!.split('\r\n')
  const named = (name: string) => raw.filter((line) => line.toLowerCase().startsWith(`${name}:`))
  t.is(named('ratelimit').length, 1)
  t.regex(named('ratelimit')[0]!, /^RateLimit: "limited-ip";r=\d+;t=\d+$/)
  t.is(named('ratelimit-policy').length, 1)
  t.regex(named('ratelimit-policy')[0]!, /"limited-ip";q=1000;w=60/)
  t.is(named('x-request-id').length, 1)
  assertRequestId(t, res)
  t.not(header(res, 'x-request-id'), 'upstream-id')
})

test('upstream status codes and headers are passed through; its hop-by-hop headers are not', async (t) => {
  const { gw } = t.context
  for (const status of [201, 404, 503]) {
    const res = await rawGet(gw.url, `/status/${status}`)
    t.is(res.status, status)
    t.is(res.body, `upstream says ${status}`)
    t.is(header(res, 'content-type'), 'text/plain')
    t.is(header(res, 'x-custom'), 'yes')
    t.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'])
    assertRequestId(t, res)
    for (const name of ['keep-alive', 'proxy-authenticate', 'x-hop', 'upgrade']) t.is(header(res, name), undefined, name)
    t.not(header(res, 'connection'), 'X-Hop')
  }
})

test('an upstream URL with a path prefix has it prepended to the forwarded path', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await gw.fetch('/pre/items?x=1', { headers: { 'x-probe': id } })
  t.is(res.status, 200)
  t.is(only(t, upstream, id).url, '/base/pre/items?x=1')
})

test('stripPrefix removes the prefix from the forwarded path after matching', async (t) => {
  const { gw, upstream } = t.context
  for (const [path, forwarded] of [['/strip/a/b?c=d', '/a/b?c=d'], ['/strip', '/'], ['/strip/', '/']] as const) {
    const id = probe()
    const res = await gw.fetch(path, { headers: { 'x-probe': id } })
    t.is(res.status, 200, path)
    t.is(only(t, upstream, id).url, forwarded)
  }
})

interface Opened { response: RawResponse, socket: net.Socket, rest: Buffer }

/** Sends a WebSocket opening handshake; resolves with the answer head and the socket (left open on 101). */
function openWebSocket (url: string, path: string, extra: string[]): Promise<Opened & { key: string }> {
  const { hostname, port, host } = new URL(url)
  const key = randomBytes(16).toString('base64')
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) })
    let data = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      data = Buffer.concat([data, chunk])
      const end = data.indexOf('\r\n\r\n')
      if (end === -1) return
      const response = parseResponse(data)
      if (response.status !== 101) return // wait for the close: the problem body follows
      socket.off('data', onData)
      resolve({ response, socket, rest: data.subarray(end + 4), key })
    }
    socket.on('data', onData)
    socket.on('error', reject)
    socket.on('close', () => {
      try {
        resolve({ response: parseResponse(data), socket, rest: Buffer.alloc(0), key })
      } catch (error) {
        reject(error)
      }
    })
    socket.write([
      `GET ${path} HTTP/1.1`, `Host: ${host}`, 'Upgrade: websocket', 'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13', ...extra, '', '',
    ].join('\r\n'))
  })
}

test('a WebSocket upgrade without a key is 401 with the challenge and never reaches the upstream', async (t) => {
  const { gw, upgrades } = t.context
  const id = probe()
  const { response, socket } = await openWebSocket(gw.url, '/ws/chat', [`X-Probe: ${id}`])
  socket.destroy()
  t.is(header(response, 'www-authenticate'), 'ApiKey realm="authgate", header="X-API-Key"')
  await assertProblem(t, response, 401, 'missing_credentials')
  t.false(upgrades.some((u) => u.headers['x-probe'] === id))
})

test('a WebSocket upgrade with a key is tunneled with the identity headers and without the key', async (t) => {
  const { gw, upgrades, key } = t.context
  const id = probe()
  const { response, socket, rest, key: wsKey } = await openWebSocket(gw.url, '/ws/chat?room=1', [
    `X-Probe: ${id}`, `X-API-Key: ${key}`, 'X-Auth-Subject: admin', 'X-Forwarded-Client-Cert: spoofed',
  ])
  try {
    t.is(response.status, 101)
    t.is(header(response, 'sec-websocket-accept'), createHash('sha1').update(`${wsKey}${WS_GUID}`).digest('base64'))
    // Bytes flow both ways through the tunnel.
    const message = randomBytes(32)
    const echoed = new Promise<Buffer>((resolve) => {
      let got = rest
      if (got.length >= message.length) { resolve(got); return }
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk])
        if (got.length >= message.length) resolve(got)
      })
    })
    socket.write(message)
    t.true((await echoed).equals(message))
  } finally {
    socket.destroy()
  }
  const seen = upgrades.filter((u) => u.headers['x-probe'] === id)
  t.is(seen.length, 1)
  const up = seen[0]!
  t.is(up.url, '/ws/chat?room=1')
  t.is(up.headers['x-auth-subject'], 'ws-client')
  t.is(up.headers['x-auth-client'], 'ws-client')
  t.is(up.headers['x-auth-methods'], 'apiKey')
  t.is(up.headers['x-auth-scopes'], 'chat')
  t.is(up.headers['x-api-key'], undefined)
  t.is(up.headers['x-forwarded-client-cert'], undefined)
  t.is(up.headers['x-forwarded-for'], '127.0.0.1')
  t.false(gw.rawLogs().includes(key))
})
