import type { ServerResponse } from 'node:http'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { resolve } from 'node:path'
import type { Readable } from 'node:stream'
import { Client, Pool, type Dispatcher } from 'undici'
import { BodyStalledError, BodyTooLargeError, readBody } from './body.js'
import { GatewayError } from './errors.js'
import { connectionTokens, HOP_BY_HOP } from './identity.js'
import { parseDuration } from './config/units.js'
import type { UpstreamConfig } from './config/types.js'

export interface Upstream {
  readonly name: string
  readonly echo: boolean
  /** An HTTP/1.1 keep-alive Pool, or one multiplexed HTTP/2 Client (h2, h2c). */
  readonly pool: Dispatcher | undefined
  readonly protocol: 'http1' | 'h2' | 'h2c'
  /**
   * TLS server name of an https upstream: its URL's host name, whatever Host is forwarded. undici would take it from
   * the request's Host header (preserveHost: the client's), verify the upstream against it and reconnect whenever it
   * changes; undefined for http upstreams and IP addresses.
   */
  readonly servername: string | undefined
  /** Path prefix of the upstream URL ('' when none), prepended to forwarded paths. */
  readonly basePath: string
  /** The upstream's own host:port, for Host when preserveHost is false. */
  readonly host: string
  readonly preserveHost: boolean
  readonly url: string | undefined
  /** The CA bundle (PEM) an https upstream is verified against, when the configuration names one. */
  readonly ca: Buffer | undefined
  readonly connectTimeoutMs: number
  /** How long the upstream may take to answer (headers, then between body chunks). */
  readonly timeoutMs: number
}

/**
 * What a route that only serves decisions has for an upstream: nothing to connect to. Its name is the route's, as the
 * signed identity's audience (decide.md); the loader refuses such a route on a listener that forwards.
 */
export function decisionOnlyUpstream (routeName: string): Upstream {
  return { name: routeName, echo: false, pool: undefined, protocol: 'http1', servername: undefined, basePath: '', host: '', preserveHost: true, url: undefined, ca: undefined, connectTimeoutMs: 0, timeoutMs: 0 }
}

/** Streams in flight at once on an HTTP/2 upstream connection. */
const H2_STREAMS = 100

/** Keep-alive pools, one per upstream, built once per configuration generation. */
export function createUpstreams (configs: Record<string, UpstreamConfig>, baseDir: string): Map<string, Upstream> {
  const upstreams = new Map<string, Upstream>()
  for (const [name, config] of Object.entries(configs)) {
    if (config.echo === true) {
      upstreams.set(name, { name, echo: true, pool: undefined, protocol: 'http1', servername: undefined, basePath: '', host: '', preserveHost: true, url: undefined, ca: undefined, connectTimeoutMs: 0, timeoutMs: 0 })
      continue
    }
    const url = new URL(config.url!)
    const timeoutMs = parseDuration(config.timeout)
    const connectTimeoutMs = parseDuration(config.connectTimeout)
    const ca = config.ca ? readFileSync(resolve(baseDir, config.ca)) : undefined
    const protocol = config.protocol ?? 'http1'
    const connect = { timeout: connectTimeoutMs, ...(ca ? { ca } : {}) }
    // The protocol is always the configuration's: allowH2 is set either way (undici 8 turns it on by default). HTTP/2
    // upstreams get one connection, its streams multiplexed; undici opens a new one after a GOAWAY.
    const pool: Dispatcher = protocol === 'http1'
      ? new Pool(url.origin, {
        connections: config.connections,
        pipelining: config.pipelining,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        keepAliveTimeout: 4_000,
        allowH2: false,
        connect,
      })
      : new Client(url.origin, {
        allowH2: true,
        ...(protocol === 'h2c' ? { useH2c: true } : {}),
        pipelining: H2_STREAMS,
        maxConcurrentStreams: H2_STREAMS,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        keepAliveTimeout: 60_000,
        connect,
      })
    upstreams.set(name, {
      name,
      echo: false,
      pool,
      protocol,
      servername: url.protocol === 'https:' && isIP(url.hostname.replace(/^\[|\]$/g, '')) === 0 ? url.hostname : undefined,
      basePath: url.pathname === '/' ? '' : url.pathname.replace(/\/$/, ''),
      host: url.host,
      preserveHost: config.preserveHost,
      url: url.origin,
      ca,
      connectTimeoutMs,
      timeoutMs,
    })
  }
  return upstreams
}

export async function closeUpstreams (upstreams: Map<string, Upstream>): Promise<void> {
  await Promise.all([...upstreams.values()].map((u) => u.pool?.close().catch(() => {})))
}

/** The client went away before its response was finished: nothing to answer, nothing more to forward. */
export class ClientGoneError extends Error {
  constructor () { super('the client closed the connection') }
}

/**
 * Dispatch options of a request to an HTTP/2 upstream. undici 7 holds a request it deems non-idempotent (any POST)
 * until nothing else runs on the connection, as HTTP/1.1 pipelining must; on one multiplexed connection that queued
 * every gRPC call behind the one before. Nothing is retried on this basis over HTTP/2.
 */
export const MULTIPLEXED = { idempotent: true } as const

/**
 * Aborts an upstream request that undici has already begun, one event-loop turn later, once its HEADERS frame is on
 * the wire: the abort is then an ordinary RST_STREAM, never nghttp2 cancelling a request it has not sent. With a body
 * handed to undici as a stream, an abort in that first turn sent Node 20's http2 into an endless loop of empty DATA
 * frames; bodies go as iterables now (bodyFor), which alone prevents the loop, and this keeps the ordering besides.
 * On HTTP/1.1 it only delays closing a connection whose client is gone.
 */
export function abortSoon (abort: (reason?: Error) => void, reason: Error): void {
  setImmediate(abort, reason)
}

/**
 * The body as undici takes it. To an HTTP/2 upstream a streamed body goes as a plain iterable of promised chunks,
 * which undici's `for await` reads one after the other:
 * - not a stream: undici pipes a stream into its HTTP/2 stream and destroys that stream at once when the body fails or
 *   the request is aborted; Node 20 then drops the RST_STREAM it had queued behind a write in progress and sends empty
 *   DATA frames forever (100% CPU: every request of the process stalls). An iterable undici only stops reading, and
 *   the stream ends through its RST_STREAM;
 * - not an async iterable: undici 7 starts a request whose body is a stream or an async iterable only when nothing else
 *   runs on the connection (client-h2.js `busy()`), so one open gRPC stream held every other call to that upstream.
 * undici never destroys an iterable: the exchanges end the body when the request ends early (endBody).
 */
export function bodyFor (upstream: Upstream, body: Buffer | Readable | undefined): Buffer | Readable | null {
  if (body === undefined) return null
  if (upstream.protocol === 'http1' || Buffer.isBuffer(body)) return body
  // undici's request takes iterables (core/request.js); its dispatch types leave them out.
  return promisedChunks(body) as unknown as Readable
}

const NO_BYTES = Buffer.alloc(0)

/** `body` as an iterable of promised chunks; the last promise gives an empty chunk, and the iteration then ends. */
function promisedChunks (body: Readable): Iterable<Promise<Buffer>> {
  const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let ended = false
  const next = (result: IteratorResult<Buffer>): Buffer => {
    if (result.done === true) { ended = true; return NO_BYTES }
    return result.value
  }
  return {
    [Symbol.iterator]: () => ({
      next: (): IteratorResult<Promise<Buffer>> => ended ? { done: true, value: undefined } : { done: false, value: chunks.next().then(next) },
    }),
  }
}

/** Stops a streamed body that undici will read no more (its request failed or was aborted). */
export function endBody (body: Buffer | Readable | undefined): void {
  if (body !== undefined && !Buffer.isBuffer(body) && !body.destroyed) body.destroy()
}

export interface ForwardRequest {
  readonly method: string
  /** Path and query as forwarded (normalized path). */
  readonly target: string
  readonly headers: Record<string, string | string[]>
  /** The body: read whole (a Buffer), streamed (body.ts forwardBody, which enforces the limits), or none. */
  readonly body: Buffer | Readable | undefined
  /** Sent back as X-Request-Id. */
  readonly requestId: string
  /** Added to the client response (X-Request-Id, RateLimit...). */
  readonly responseHeaders: Record<string, string>
}

/**
 * Streams the request to the upstream and the answer back. Resolves with the upstream's status when the response is
 * finished; rejects with a GatewayError (502/504), BodyTooLargeError (413) or BodyStalledError (408) of a streamed body.
 */
export function forward (upstream: Upstream, res: ServerResponse, request: ForwardRequest): Promise<number> {
  if (upstream.echo) return echo(res, request)
  // Gone while the chain ran: no 'close' event will come again to stop the upstream request, so none is sent.
  if (res.destroyed) return Promise.reject(new ClientGoneError())
  return new Promise<number>((resolve, reject) => {
    const exchange = new UpstreamExchange(res, request, resolve, reject)
    ;(res as ResponseWithExchange)[kExchange] = exchange
    upstream.pool!.dispatch({
      path: upstream.basePath + request.target,
      method: request.method,
      headers: request.headers,
      body: bodyFor(upstream, request.body),
      ...(upstream.protocol !== 'http1' ? MULTIPLEXED : {}),
      ...(upstream.servername !== undefined ? { servername: upstream.servername } : {}),
    }, exchange)
  })
}

const kExchange = Symbol('upstreamExchange')

type ResponseWithExchange = ServerResponse & { [kExchange]?: UpstreamExchange }

/** Whether the gateway adds this (lower-case) header itself; the few added names are compared without a Set per request. */
function addsHeader (added: Record<string, string>, lower: string): boolean {
  for (const name in added) if (name.length === lower.length && name.toLowerCase() === lower) return true
  return false
}

/**
 * For the response's 'close' listener (handler.ts, one listener per response for this and the access log): the
 * client went away before its response was finished, so the upstream request stops and frees its connection.
 */
export function clientClosed (res: ServerResponse): void {
  if (!res.writableFinished) (res as ResponseWithExchange)[kExchange]?.clientGone()
}

/**
 * One upstream request, as undici's dispatch handler: the upstream's answer is written straight into the client's
 * response (no intermediate stream, no per-request closures), headers as one flat list so that Node serializes them
 * without building its own header map. undici's raw-header callbacks (onHeaders with Buffers) spare it parsing the
 * headers into an object that would be walked again here.
 */
class UpstreamExchange {
  status = 0
  #abort: ((reason?: Error) => void) | undefined
  #gone = false
  #settled = false
  #resume: (() => void) | undefined

  constructor (
    private readonly res: ServerResponse,
    private readonly request: ForwardRequest,
    private readonly resolve: (status: number) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  clientGone (): void {
    this.#gone = true
    if (this.#abort !== undefined) abortSoon(this.#abort, new ClientGoneError())
  }

  onConnect (abort: (reason?: Error) => void): void {
    this.#abort = abort
    if (this.#gone) abort(new ClientGoneError())
  }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // 1xx interim answers (other than 101, which undici handles as an upgrade) are not relayed.
    if (statusCode < 200) return true
    if (this.res.destroyed) { this.clientGone(); return false }
    this.status = statusCode
    this.#resume = resume
    const res = this.res
    const headers: string[] = []
    let named: ReadonlySet<string> | undefined
    for (let i = 0; i < rawHeaders.length; i += 2) {
      // RFC 9110 §7.6.1: the fields the upstream names in Connection are hop-by-hop too.
      if (rawHeaders[i]!.length === 10 && rawHeaders[i]!.toString('latin1').toLowerCase() === 'connection') {
        named = connectionTokens(rawHeaders[i + 1]!.toString('latin1'))
      }
    }
    const added = this.request.responseHeaders
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!.toString('latin1')
      const lower = name.toLowerCase()
      // X-Request-Id is the gateway's: one id per request, whatever the upstream says. So are the headers the
      // chain adds (RateLimit...): they replace the upstream's.
      if (HOP_BY_HOP.has(lower) || lower === 'x-request-id' || named?.has(lower) || addsHeader(added, lower)) continue
      headers.push(name, rawHeaders[i + 1]!.toString('latin1'))
    }
    for (const name in added) headers.push(name, added[name]!)
    headers.push('X-Request-Id', this.request.requestId)
    try {
      res.writeHead(statusCode, headers)
    } catch (error) {
      // A header Node refuses to send (invalid characters): nothing was written, the client gets a 502.
      this.fail(new GatewayError(502, 'upstream_unavailable', 'upstream sent an invalid response header', { cause: error }))
      return false
    }
    return true
  }

  onData (chunk: Buffer): boolean {
    // A destroyed response never drains: pausing would hold the upstream connection forever.
    if (this.res.destroyed) { this.clientGone(); return false }
    if (this.res.write(chunk)) return true
    // Backpressure: undici stops reading the upstream until the client's socket drains.
    this.res.once('drain', this.#resume!)
    return false
  }

  onComplete (): void {
    if (this.#settled) return
    this.#settled = true
    this.res.end()
    this.resolve(this.status)
  }

  onError (error: Error): void {
    this.fail(upstreamError(error))
  }

  private fail (error: Error): void {
    if (this.#settled) return
    this.#settled = true
    if (!this.res.headersSent && this.#abort !== undefined) abortSoon(this.#abort, error)
    endBody(this.request.body)
    this.reject(error)
  }
}

function upstreamError (error: unknown): Error {
  if (error instanceof ClientGoneError || error instanceof BodyTooLargeError || error instanceof BodyStalledError) return error
  const cause = error as { code?: string, name?: string, cause?: unknown }
  if (cause.cause instanceof BodyTooLargeError || cause.cause instanceof BodyStalledError) return cause.cause
  const code = cause.code ?? ''
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new GatewayError(504, 'upstream_timeout', 'upstream did not answer in time', { cause: error })
  }
  return new GatewayError(502, 'upstream_unavailable', 'upstream unavailable', { cause: error })
}

/** The built-in `echo: true` upstream: answers with the request it would have received, as JSON. */
async function echo (res: ServerResponse, request: ForwardRequest): Promise<number> {
  let body: Buffer | undefined
  try {
    body = request.body === undefined || Buffer.isBuffer(request.body) ? request.body : await readBody(request.body, Infinity)
  } catch (error) {
    throw upstreamError(error)
  }
  const q = request.target.indexOf('?')
  const payload = JSON.stringify({
    method: request.method,
    path: q === -1 ? request.target : request.target.slice(0, q),
    query: q === -1 ? '' : request.target.slice(q + 1),
    headers: request.headers,
    body: body === undefined ? '' : body.toString('utf8'),
  })
  res.statusCode = 200
  for (const [name, value] of Object.entries(request.responseHeaders)) res.setHeader(name, value)
  res.setHeader('X-Request-Id', request.requestId)
  res.setHeader('Content-Type', 'application/json')
  res.setHeader('Content-Length', Buffer.byteLength(payload))
  res.end(payload)
  return 200
}
