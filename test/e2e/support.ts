/**
 * Small tools shared by the end-to-end tests: raw HTTP/1.1 exchanges over a socket (fetch would normalize the
 * very targets and headers these tests must send), a node:http upstream that records what it received, and
 * assertions on problem+json answers.
 */
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import tls from 'node:tls'
import type { ExecutionContext } from 'ava'

export interface RawResponse {
  status: number
  /** Lower-case names; every value of a repeated field. */
  headers: Record<string, string[]>
  body: string
  raw: string
}

/** First value of a header. */
export function header (res: RawResponse, name: string): string | undefined {
  return res.headers[name.toLowerCase()]?.[0]
}

/**
 * Sends `head` (a request head with CRLF line ends, without the final empty line) and `body` exactly as given on a
 * new connection, then reads until the server closes it. The head always gets `Connection: close` unless it has a
 * Connection field of its own, which should then include `close`.
 */
export function rawRequest (url: string, head: string, body: string | Buffer | Iterable<Buffer> = '', options: { tls?: tls.ConnectionOptions } = {}): Promise<RawResponse> {
  const { hostname, port, protocol } = new URL(url)
  const host = hostname.replace(/^\[|\]$/g, '')
  const lines = head.split('\r\n')
  if (!lines.some((l) => /^connection:/i.test(l))) lines.push('Connection: close')
  const text = `${lines.join('\r\n')}\r\n\r\n`
  return new Promise((resolve, reject) => {
    const socket = protocol === 'https:'
      ? tls.connect({ host, port: Number(port), ...options.tls })
      : net.connect({ host, port: Number(port) })
    const chunks: Buffer[] = []
    let failure: Error | undefined
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    // A server may answer early and close while the body is still being written (413): the answer counts.
    socket.on('error', (error) => { failure = error })
    socket.on('close', () => {
      try {
        resolve(parseResponse(Buffer.concat(chunks)))
      } catch (error) {
        reject(failure ?? error)
      }
    })
    socket.write(text)
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      if (body.length > 0) socket.write(body)
    } else {
      for (const chunk of body) if (!socket.destroyed) socket.write(chunk)
    }
  })
}

/** A GET with the given extra header lines. */
export function rawGet (url: string, target: string, headers: string[] = []): Promise<RawResponse> {
  const { host } = new URL(url)
  return rawRequest(url, [`GET ${target} HTTP/1.1`, `Host: ${host}`, ...headers].join('\r\n'))
}

export function parseResponse (data: Buffer): RawResponse {
  const raw = data.toString('latin1')
  const end = raw.indexOf('\r\n\r\n')
  if (end === -1) throw new Error(`no complete response head in ${JSON.stringify(raw.slice(0, 200))}`)
  const [statusLine, ...fields] = raw.slice(0, end).split('\r\n')
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')
  if (!match) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`)
  const headers: Record<string, string[]> = {}
  for (const field of fields) {
    const colon = field.indexOf(':')
    const name = field.slice(0, colon).trim().toLowerCase()
    ;(headers[name] ??= []).push(field.slice(colon + 1).trim())
  }
  let body = data.subarray(Buffer.byteLength(raw.slice(0, end + 4), 'latin1'))
  if (headers['transfer-encoding']?.some((v) => /chunked/i.test(v))) body = dechunk(body)
  return { status: Number(match[1]), headers, body: body.toString('utf8'), raw }
}

function dechunk (data: Buffer): Buffer {
  const out: Buffer[] = []
  let at = 0
  for (;;) {
    const eol = data.indexOf('\r\n', at)
    if (eol === -1) break
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16)
    if (!(size > 0)) break
    out.push(data.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
  return Buffer.concat(out)
}

/** Asserts a problem+json answer: status, code, the RFC 9457 members, and X-Request-Id equal to requestId. */
export async function assertProblem (t: ExecutionContext, res: Response | RawResponse, status: number, code: string): Promise<Record<string, unknown>> {
  const isRaw = !('clone' in res)
  const get = (name: string) => isRaw ? header(res as RawResponse, name) : (res as Response).headers.get(name) ?? undefined
  const text = isRaw ? (res as RawResponse).body : await (res as Response).text()
  t.is(res.status, status, text)
  t.is(get('content-type'), 'application/problem+json')
  const body = JSON.parse(text) as Record<string, unknown>
  t.is(body.status, status)
  t.is(body.error, code)
  t.is(typeof body.title, 'string')
  t.true((body.title as string).length > 0)
  t.is(typeof body.detail, 'string')
  t.regex(String(body.requestId), /^[0-9a-f-]{36}$/)
  t.is(get('x-request-id'), body.requestId as string)
  return body
}

/** Every answer carries a request id. */
export function assertRequestId (t: ExecutionContext, res: Response | RawResponse): void {
  const value = 'clone' in res ? res.headers.get('x-request-id') : header(res, 'x-request-id')
  t.regex(value ?? '', /^[0-9a-f-]{36}$/, 'X-Request-Id')
}

/** What the echo upstream answers: the request it received. */
export interface Echo {
  method: string
  path: string
  query: string
  headers: Record<string, string | string[] | undefined>
  body: string
}

export interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  /** Bytes of body received so far. */
  bodyBytes: number
  body: Buffer
  /** True once the whole body arrived ('end'); false if the connection died first. */
  complete: boolean
  /** Resolves when the request ended or was aborted. */
  settled: Promise<void>
}

export interface RecordingUpstream {
  url: string
  port: number
  seen: Seen[]
  /** Requests that carried `X-Probe: probe`. */
  withProbe (probe: string): Seen[]
  /** Resolves with the next request carrying that probe, as soon as its head arrives. */
  arrival (probe: string): Promise<Seen>
  server: http.Server
  close (): Promise<void>
}

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen) => void

/** A node:http upstream on 127.0.0.1:0 recording every request (head and body); answers 200 JSON unless `handler` does. */
export async function recordingUpstream (handler?: UpstreamHandler): Promise<RecordingUpstream> {
  const seen: Seen[] = []
  const waiters = new Map<string, (s: Seen) => void>()
  const server = http.createServer((req, res) => {
    let settle!: () => void
    const entry: Seen = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodyBytes: 0,
      body: Buffer.alloc(0),
      complete: false,
      settled: new Promise((resolve) => { settle = resolve }),
    }
    const chunks: Buffer[] = []
    seen.push(entry)
    req.on('data', (chunk: Buffer) => { entry.bodyBytes += chunk.length; chunks.push(chunk) })
    req.on('end', () => { entry.complete = true; entry.body = Buffer.concat(chunks); settle() })
    req.on('close', () => settle())
    const probe = req.headers['x-probe']
    if (typeof probe === 'string') { waiters.get(probe)?.(entry); waiters.delete(probe) }
    if (handler) { handler(req, res, entry); return }
    req.on('end', () => {
      const text = JSON.stringify({ method: entry.method, url: entry.url, headers: entry.headers, bodyBytes: entry.bodyBytes })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    })
  })
  server.on('upgrade', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    server,
    withProbe: (probe) => seen.filter((s) => s.headers['x-probe'] === probe),
    arrival (probe) {
      const already = seen.find((s) => s.headers['x-probe'] === probe)
      if (already) return Promise.resolve(already)
      return new Promise((resolve) => waiters.set(probe, resolve))
    },
    async close () {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/**
 * Sends a GET over a raw socket and resolves with the socket once `minBytes` of the answer arrived (0: at once), for
 * tests of clients that leave early. `received` counts the bytes of the answer so far.
 */
export async function openGet (url: string, path: string, minBytes: number, headers: string[] = []): Promise<{ socket: net.Socket, received: () => number }> {
  const { hostname, port } = new URL(url)
  const socket = net.connect(Number(port), hostname)
  let bytes = 0
  socket.on('data', (chunk: Buffer) => { bytes += chunk.length })
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  socket.write([`GET ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, ...headers, '', ''].join('\r\n'))
  if (bytes < minBytes) {
    // Event-driven: resolve on the data that makes up minBytes, on close, or after 5 s (the caller asserts on `received`).
    await new Promise<void>((resolve) => {
      const done = () => { clearTimeout(timer); socket.off('data', onData); socket.off('close', done); resolve() }
      const onData = () => { if (bytes >= minBytes) done() }
      const timer = setTimeout(done, 5_000)
      socket.on('data', onData)
      socket.once('close', done)
    })
  }
  return { socket, received: () => bytes }
}

/** A fresh marker for one request, so concurrent tests can find what the upstream saw for it. */
export function probe (): string {
  return randomUUID()
}

/** A loopback port that was free a moment ago (bound, then released). */
/**
 * A port for a server a test starts later (a listener added by a reload, a child process). Taken below the kernel's
 * ephemeral range (32768-60999): a port the OS hands out for `listen(0)` and that is then released can be taken
 * again at once as the local port of any outgoing connection of a test running beside this one (EADDRINUSE later).
 */
export async function freePort (): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const server = net.createServer()
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false))
      server.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve(true))
    })
    if (!bound) continue
    await new Promise((resolve) => server.close(resolve))
    return port
  }
}

export interface Pushed {
  /** Every byte the server sent. */
  received: Buffer
  /** The response, once its head and Content-Length body had all arrived. */
  response: RawResponse | undefined
  /** ms from connect until the whole response had arrived / until the server closed; undefined if it never did. */
  answeredMs: number | undefined
  closedMs: number | undefined
  /** Body bytes the client managed to hand to its socket. */
  sentBytes: number
}

export interface PushOptions {
  chunk: Buffer | string
  totalBytes?: number
  everyMs?: number
  maxMs: number
  /** Frames each chunk (chunked coding). */
  frame?: (chunk: Buffer) => Buffer
  /** Awaited between the head and the body (the client starts its upload late). */
  beforeBody?: () => Promise<unknown>
  /** Read nothing until the whole body is written, as a blocking client (Python's http.client) does. */
  readAfterBody?: boolean
}

/**
 * A client that sends `head` (with its final empty line) and then keeps writing `chunk` (as fast as the socket takes
 * it, or one every `everyMs`) until `totalBytes` are written, the server closes, or `maxMs` passes. It reads the
 * server's answer all along (or once the body is written) and ignores write errors (EPIPE, ECONNRESET): what counts
 * is what it received.
 */
export function pushBody (url: string, head: string, options: PushOptions): Promise<Pushed> {
  const { hostname, port } = new URL(url)
  const chunk = Buffer.from(options.chunk)
  const frame = options.frame ?? ((c: Buffer) => c)
  return new Promise((resolve) => {
    const started = performance.now()
    const socket = net.connect(Number(port), hostname)
    const chunks: Buffer[] = []
    const result: Pushed = { received: Buffer.alloc(0), response: undefined, answeredMs: undefined, closedMs: undefined, sentBytes: 0 }
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(guard)
      socket.destroy()
      result.received = Buffer.concat(chunks)
      resolve(result)
    }
    const guard = setTimeout(finish, options.maxMs)
    socket.on('data', (data: Buffer) => {
      chunks.push(data)
      if (result.response !== undefined) return
      try {
        const all = Buffer.concat(chunks)
        const response = parseResponse(all)
        const length = Number(header(response, 'content-length') ?? NaN)
        if (Buffer.byteLength(response.body) >= length) { result.response = response; result.answeredMs = performance.now() - started }
      } catch {}
    })
    socket.on('error', () => {})
    socket.on('close', () => { result.closedMs = performance.now() - started; finish() })
    const write = () => {
      while (!socket.destroyed && !finished && (options.totalBytes === undefined || result.sentBytes < options.totalBytes)) {
        const piece = options.totalBytes === undefined ? chunk : chunk.subarray(0, Math.min(chunk.length, options.totalBytes - result.sentBytes))
        result.sentBytes += piece.length
        const more = socket.write(frame(piece))
        if (options.everyMs !== undefined) { setTimeout(write, options.everyMs); return }
        if (!more) { socket.once('drain', write); return }
      }
      if (options.readAfterBody) socket.resume()
    }
    socket.once('connect', () => {
      if (options.readAfterBody) socket.pause()
      socket.write(head)
      if (options.beforeBody) void options.beforeBody().then(write)
      else write()
    })
  })
}
