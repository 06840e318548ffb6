import { randomUUID } from 'node:crypto'
import http2, { type Http2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { Readable } from 'node:stream'
import { BodyAbortedError, BodyStalledError, BodyTooLargeError, forwardBodyOf, readBody, streamBody } from '../body.js'
import { GatewayError, Rejection } from '../errors.js'
import type { RequestHandler } from '../handler.js'
import { connectionTokens, HOP_BY_HOP, methodsValue } from '../identity.js'
import { formatChallenge } from '../pipeline/chain.js'
import { decide, type BodyWaiter, type ListenerRef } from '../pipeline/decide.js'
import { describeCause, faultProblem, problemBody, type Problem } from '../problem.js'
import type { CompiledRoute, Generation } from '../generation.js'
import { abortSoon, bodyFor, ClientGoneError, endBody, MULTIPLEXED, type ForwardRequest, type Upstream } from '../upstream.js'
import { encodeGrpcMessage, grpcStatusFor, grpcTimeoutMs, isGrpc } from './grpc.js'
import { readStreamHead, type Http2RequestView } from './view.js'
import { loginRedirect, reservedClient, respondReserved } from '../reserved.js'
import { RESERVED_PREFIX } from '../../policies/types.js'

const {
  NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_INTERNAL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_FLAG_END_STREAM,
} = http2.constants

/** The listener an HTTP/2 stream arrived on, with its per-connection bound on client resets. */
export interface Http2ListenerRef extends ListenerRef {
  readonly maxResetsPerSecond: number
}

/** One HTTP/2 request: what it decided and how it ends, read by the access line when the stream closes. */
class StreamExchange implements BodyWaiter {
  route: CompiledRoute | undefined = undefined
  code = 'ok'
  subject: string | undefined = undefined
  methods: string | undefined = undefined
  /** The status the access line reports: the one sent, or the HTTP status a gRPC refusal stands for. */
  status = 0
  grpc = false
  /** The client sent `TE: trailers` (every gRPC client does): the upstream's trailers are relayed. */
  wantsTrailers = false
  /** Expect: 100-continue not answered yet. */
  awaitingContinue = false
  /** The gateway reset the stream itself (not counted as a client reset). */
  resetByUs = false
  /** Trailers to send once the last DATA frame is out ('wantTrailers'). */
  trailers: OutgoingHttpHeaders | undefined = undefined
  upstream: H2UpstreamExchange | undefined = undefined
  deadline: NodeJS.Timeout | undefined = undefined
  upstreamStarted = 0

  constructor (
    readonly front: Http2Front,
    readonly listener: Http2ListenerRef,
    /** Kept: a destroyed stream forgets its session. */
    readonly session: Http2Session,
    readonly stream: ServerHttp2Stream,
    readonly method: string,
    readonly target: string,
    readonly requestId: string,
    readonly started: number,
    readonly remote: string | undefined,
  ) {}

  bodyWanted (): void {
    if (this.awaitingContinue && !this.stream.headersSent && !this.stream.destroyed) this.stream.additionalHeaders({ ':status': 100 })
    this.awaitingContinue = false
  }
}

const kExchange = Symbol('h2exchange')
type TrackedStream = ServerHttp2Stream & { [kExchange]?: StreamExchange }

/** Resets a session sent within the current one-second window. */
const kResets = Symbol('h2resets')
type CountedSession = Http2Session & { [kResets]?: { start: number, count: number } }

/**
 * Rapid reset (CVE-2023-44487): a client that resets more streams per second than the listener allows loses its
 * connection, with GOAWAY ENHANCE_YOUR_CALM. Counted per session; the window is a timestamp, no timer.
 */
function countReset (session: Http2Session, limit: number): void {
  if (session.destroyed) return
  const counted = session as CountedSession
  const now = performance.now()
  let state = counted[kResets]
  if (state === undefined || now - state.start >= 1_000) state = counted[kResets] = { start: now, count: 0 }
  if (++state.count !== limit + 1) return
  // GOAWAY first, then the connection goes a moment later: closed at once, with the client's frames still unread,
  // the kernel would answer with a TCP reset that can destroy the GOAWAY before the client reads it.
  session.goaway(NGHTTP2_ENHANCE_YOUR_CALM)
  setTimeout(destroySession, GOAWAY_LINGER_MS, session).unref()
}

/** How long a session told GOAWAY for abuse is kept (reading, refusing new streams) before it is destroyed. */
const GOAWAY_LINGER_MS = 100

function destroySession (session: Http2Session): void {
  if (!session.destroyed) session.destroy()
}

function onStreamClose (this: TrackedStream): void {
  const exchange = this[kExchange]
  if (exchange === undefined) return
  if (exchange.deadline !== undefined) clearTimeout(exchange.deadline)
  // Gone before the answer was finished: the upstream request stops (an HTTP/2 upstream stream is reset).
  if (!this.writableFinished || this.rstCode !== NGHTTP2_NO_ERROR) exchange.upstream?.clientGone()
  if (this.rstCode !== NGHTTP2_NO_ERROR && !exchange.resetByUs) countReset(exchange.session, exchange.listener.maxResetsPerSecond)
  exchange.front.logStream(exchange)
}

/** The answer's last DATA frame is out: its trailers end the stream (an empty trailer section when there are none). */
function onWantTrailers (this: TrackedStream): void {
  this.sendTrailers(this[kExchange]?.trailers ?? NO_TRAILERS)
}

const NO_TRAILERS: OutgoingHttpHeaders = Object.freeze({}) as OutgoingHttpHeaders

/** Stream errors surface as 'close' with an rstCode; an 'error' without a listener would end the process. */
function ignoreError (): void {}

function onDeadline (exchange: StreamExchange): void {
  exchange.deadline = undefined
  const error = new GatewayError(504, 'upstream_timeout', 'the gRPC deadline passed')
  if (exchange.upstream !== undefined) exchange.upstream.abortWith(error)
  else exchange.front.fail(error, exchange)
}

const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>

/**
 * The HTTP/2 front door: one stream is one request, through the same decide() as HTTP/1.1, then forwarded or
 * answered on the stream (problem+json, or a trailers-only gRPC status for gRPC). Built on the core stream API:
 * no compatibility request/response objects.
 */
export class Http2Front {
  constructor (readonly handler: RequestHandler) {}

  handleStream (listener: Http2ListenerRef, session: Http2Session, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
    // Reset (or the connection gone) before its turn came: a reset all the same, and nothing to answer.
    if (stream.destroyed || stream.closed) {
      if (stream.rstCode !== NGHTTP2_NO_ERROR) countReset(session, listener.maxResetsPerSecond)
      return
    }
    const exchange = new StreamExchange(this, listener, session, stream, String(headers[':method'] ?? ''), String(headers[':path'] ?? ''),
      randomUUID(), performance.now(), session.socket?.remoteAddress)
    ;(stream as TrackedStream)[kExchange] = exchange
    stream.on('close', onStreamClose)
    stream.on('error', ignoreError)
    const head = readStreamHead(stream, rawHeaders, (flags & NGHTTP2_FLAG_END_STREAM) !== 0)
    if (!head.ok) {
      exchange.code = 'bad_request'
      exchange.status = 400
      if (head.reset) { exchange.resetByUs = true; stream.close(NGHTTP2_PROTOCOL_ERROR); return }
      exchange.grpc = isGrpc(headers['content-type'])
      this.answer(exchange, Rejection.badRequest(head.detail))
      return
    }
    const view = head.view
    exchange.grpc = isGrpc(view.headers['content-type'])
    exchange.wantsTrailers = exchange.grpc || view.headers.te !== undefined
    if (exchange.wantsTrailers) stream.on('wantTrailers', onWantTrailers)
    const expect = view.headers.expect
    if (expect !== undefined) exchange.awaitingContinue = view.hasBody && expect.toLowerCase() === '100-continue'
    void runStream(this, this.handler.runtime, exchange, view)
  }

  /** @internal (runStream) */
  async process (runtime: Generation, exchange: StreamExchange, view: Http2RequestView): Promise<void> {
    const { listener, stream, requestId } = exchange
    let deadlineMs: number | undefined
    if (exchange.grpc) {
      deadlineMs = grpcTimeoutMs(view.headers['grpc-timeout'])
      if (Number.isNaN(deadlineMs)) return this.answer(exchange, Rejection.badRequest('malformed grpc-timeout'))
    }
    // The gateway's own endpoints (`/.authgate/login`...), as over HTTP/1.1.
    if (view.url.startsWith(RESERVED_PREFIX) && runtime.servesReserved && !exchange.grpc) {
      const answer = await runtime.serveReserved({
        requestId,
        method: view.method, target: view.url, scheme: listener.scheme, listener: listener.name,
        headers: view.headers, remoteAddress: reservedClient(runtime, view.socket?.remoteAddress, view.headers),
        body: (maxBytes) => { exchange.bodyWanted(); return readBody(stream, maxBytes) },
      }, this.handler.deps.now())
      if (answer !== undefined) {
        exchange.code = answer.code
        exchange.status = answer.status
        if (stream.destroyed || stream.closed) return
        respondReserved(stream, answer, requestId)
        stopReading(exchange)
        return
      }
    }
    const decision = await decide(runtime, listener, view, requestId, this.handler.hooks, exchange)
    exchange.route = decision.route
    if (!decision.allowed) {
      exchange.subject = decision.subject
      this.handler.requests.refused(decision)
      return this.answer(exchange, exchange.grpc ? decision.problem : loginRedirect(decision.problem, view.method))
    }
    const { route, result } = decision
    if (result !== undefined && result.identity.methods.length > 0) {
      exchange.subject = result.identity.subject
      exchange.methods = methodsValue(result.identity.methods)
    }
    const upstream = route.upstream
    if (exchange.grpc) {
      // http2.md: a gRPC call to an HTTP/1.1 upstream is refused like any other gRPC rejection (14 UNAVAILABLE).
      if (upstream.protocol === 'http1') {
        return this.answer(exchange, { status: 503, code: 'upstream_unavailable', detail: 'this upstream does not speak HTTP/2 (gRPC needs protocol: h2 or h2c)' })
      }
      // gRPC servers expect it, and it is hop-by-hop: set by the gateway, not passed through.
      decision.headers.te = 'trailers'
      if (deadlineMs !== undefined) exchange.deadline = setTimeout(onDeadline, deadlineMs, exchange)
    }
    exchange.bodyWanted()
    let body: Buffer | Readable | undefined = decision.body
    if (body === undefined && decision.hasBody) {
      // gRPC streams flow as they come (a message may wait for the answer to the one before): never buffered, and no
      // idle limit (the call's deadline is grpc-timeout). Other bodies as over HTTP/1.1.
      body = exchange.grpc ? streamBody(stream, route.maxBodyBytes, 0) : await forwardBodyOf(stream, view.headers, route)
      if (Buffer.isBuffer(body)) decision.headers['content-length'] = String(body.length)
    }
    if (stream.destroyed) throw new ClientGoneError()
    exchange.upstreamStarted = performance.now()
    const request: ForwardRequest = {
      method: decision.ctx.method,
      target: decision.target,
      headers: decision.headers,
      body,
      requestId,
      responseHeaders: result?.responseHeaders ?? NO_HEADERS,
    }
    try {
      if (upstream.echo) await echo(exchange, request)
      else await forwardStream(upstream, exchange, request)
    } finally {
      this.handler.deps.metrics.upstreamDuration.observe({ upstream: upstream.name }, (performance.now() - exchange.upstreamStarted) / 1000)
    }
  }

  /** An answer from the gateway itself: problem+json, or for gRPC a trailers-only status (http2.md's mapping). */
  answer (exchange: StreamExchange, problem: Problem): void {
    exchange.code = problem.code
    const stream = exchange.stream
    if (stream.destroyed || stream.closed) return
    if (exchange.grpc) return this.answerGrpc(exchange, problem)
    if (stream.headersSent) { exchange.resetByUs = true; stream.close(NGHTTP2_INTERNAL_ERROR); return }
    exchange.status = problem.status
    const body = problemBody(problem, exchange.requestId)
    const headers = answerHeaders(problem, exchange.requestId)
    headers[':status'] = problem.status
    headers['content-type'] = 'application/problem+json'
    headers['content-length'] = Buffer.byteLength(body)
    headers['cache-control'] = 'no-store'
    stream.respond(headers)
    stream.end(body)
    stopReading(exchange)
  }

  private answerGrpc (exchange: StreamExchange, problem: Problem): void {
    const stream = exchange.stream
    const status = String(grpcStatusFor(problem.status))
    const message = encodeGrpcMessage(problem.detail)
    if (!stream.headersSent) {
      // The access line says which refusal this was (401, 429...); the wire says 200 and grpc-status.
      exchange.status = problem.status
      const headers = answerHeaders(problem, exchange.requestId)
      headers[':status'] = 200
      headers['content-type'] = 'application/grpc'
      headers['grpc-status'] = status
      headers['grpc-message'] = message
      stream.respond(headers, { endStream: true })
      stopReading(exchange)
    } else if (exchange.wantsTrailers && !stream.writableEnded) {
      // The upstream's answer began: the status goes in the trailers.
      exchange.trailers = { 'grpc-status': status, 'grpc-message': message }
      stream.end()
    } else {
      exchange.resetByUs = true
      stream.close(NGHTTP2_INTERNAL_ERROR)
    }
  }

  /** @internal (runStream) */
  fail (error: unknown, exchange: StreamExchange): void {
    if (error instanceof ClientGoneError || error instanceof BodyAbortedError) { exchange.code = 'client_closed'; return }
    if (error instanceof BodyTooLargeError) return this.answer(exchange, Rejection.payloadTooLarge(error.limitBytes))
    if (error instanceof BodyStalledError) return this.answer(exchange, Rejection.requestTimeout())
    const problem = faultProblem(error)
    const log = this.handler.deps.log
    const level = problem.status >= 500 && problem.code === 'internal_error' ? 'error' : problem.status >= 500 ? 'warn' : 'info'
    log[level]({ requestId: exchange.requestId, code: problem.code, err: describeCause(error) },
      problem.code === 'internal_error' ? 'unexpected error while handling a request' : (error as Error).message)
    this.answer(exchange, problem)
  }

  logStream (exchange: StreamExchange): void {
    const sent = exchange.status !== 0
    this.handler.requests.finished({
      requestId: exchange.requestId,
      listener: exchange.listener.name,
      method: exchange.method,
      target: exchange.target,
      route: exchange.route?.name,
      status: sent ? exchange.status : 499,
      code: sent || exchange.code !== 'ok' ? exchange.code : 'client_closed',
      subject: exchange.subject,
      methods: exchange.methods,
      remote: exchange.remote,
      started: exchange.started,
      protocol: '2',
    })
  }
}

/** One stream's request from decide() to its answer; a module-level function spares a closure per request. */
async function runStream (front: Http2Front, runtime: Generation, exchange: StreamExchange, view: Http2RequestView): Promise<void> {
  try {
    await front.process(runtime, exchange, view)
  } catch (error) {
    front.fail(error, exchange)
  }
}

/** The problem's own headers (RateLimit...), its challenges and the request id, with HTTP/2's lower-case names. */
function answerHeaders (problem: Problem, requestId: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {}
  if (problem.headers) for (const name in problem.headers) headers[name.toLowerCase()] = problem.headers[name]
  if (problem.challenges && problem.challenges.length > 0) headers['www-authenticate'] = problem.challenges.map(formatChallenge)
  headers['x-request-id'] = requestId
  return headers
}

/**
 * An answer sent while the request body may still be coming: once it is out, RST_STREAM NO_ERROR tells the client to
 * stop sending (RFC 9113 §8.1); Node sends it after the last frame of the answer.
 */
function stopReading (exchange: StreamExchange): void {
  const stream = exchange.stream
  if (!stream.readableEnded && !stream.destroyed) { exchange.resetByUs = true; stream.close(NGHTTP2_NO_ERROR) }
}

/**
 * Streams the request to the upstream (undici: an HTTP/1.1 pool or one HTTP/2 connection) and the answer back onto
 * the client's stream, trailers included when the client asked for them.
 */
function forwardStream (upstream: Upstream, exchange: StreamExchange, request: ForwardRequest): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const handler = new H2UpstreamExchange(exchange, request, resolve, reject)
    exchange.upstream = handler
    upstream.pool!.dispatch({
      path: upstream.basePath + request.target,
      method: request.method,
      headers: request.headers,
      body: bodyFor(upstream, request.body),
      ...(upstream.protocol !== 'http1' ? MULTIPLEXED : {}),
      ...(upstream.servername !== undefined ? { servername: upstream.servername } : {}),
    }, handler)
  })
}

function headerText (value: Buffer | string): string {
  return typeof value === 'string' ? value : value.toString('latin1')
}

/** One upstream request as undici's dispatch handler, writing into the client's HTTP/2 stream (see upstream.ts). */
class H2UpstreamExchange {
  status = 0
  #abort: ((reason?: Error) => void) | undefined
  #gone = false
  #settled = false
  #resume: (() => void) | undefined

  constructor (
    private readonly exchange: StreamExchange,
    private readonly request: ForwardRequest,
    private readonly resolve: (status: number) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  clientGone (): void {
    if (this.#settled) return
    this.#gone = true
    if (this.#abort !== undefined) abortSoon(this.#abort, new ClientGoneError())
  }

  abortWith (error: Error): void {
    if (this.#abort !== undefined) abortSoon(this.#abort, error)
    else this.fail(error)
  }

  onConnect (abort: (reason?: Error) => void): void {
    this.#abort = abort
    if (this.#gone) abort(new ClientGoneError())
  }

  onHeaders (statusCode: number, rawHeaders: Array<Buffer | string>, resume: () => void): boolean {
    if (statusCode < 200) return true
    const stream = this.exchange.stream
    if (stream.destroyed) { this.clientGone(); return false }
    this.status = statusCode
    this.#resume = resume
    let named: ReadonlySet<string> | undefined
    for (let i = 0; i < rawHeaders.length; i += 2) {
      if (rawHeaders[i]!.length === 10 && headerText(rawHeaders[i]!).toLowerCase() === 'connection') named = connectionTokens(headerText(rawHeaders[i + 1]!))
    }
    const added = this.request.responseHeaders
    const headers: OutgoingHttpHeaders = { ':status': statusCode }
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const lower = headerText(rawHeaders[i]!).toLowerCase()
      if (lower.charCodeAt(0) === 58 || HOP_BY_HOP.has(lower) || lower === 'x-request-id' || named?.has(lower) || added[lower] !== undefined || hasName(added, lower)) continue
      const value = headerText(rawHeaders[i + 1]!)
      const prior = headers[lower]
      if (prior === undefined) headers[lower] = value
      else if (Array.isArray(prior)) prior.push(value)
      else headers[lower] = [prior as string, value]
    }
    for (const name in added) headers[name.toLowerCase()] = added[name]
    headers['x-request-id'] = this.request.requestId
    try {
      stream.respond(headers, { waitForTrailers: this.exchange.wantsTrailers })
    } catch (error) {
      this.fail(new GatewayError(502, 'upstream_unavailable', 'upstream sent an invalid response header', { cause: error }))
      return false
    }
    this.exchange.status = statusCode
    return true
  }

  onData (chunk: Buffer): boolean {
    const stream = this.exchange.stream
    if (stream.destroyed) { this.clientGone(); return false }
    if (stream.write(chunk)) return true
    stream.once('drain', this.#resume!)
    return false
  }

  onComplete (trailers: unknown): void {
    if (this.#settled) return
    this.#settled = true
    const exchange = this.exchange
    if (exchange.wantsTrailers) exchange.trailers = relayedTrailers(trailers)
    if (!exchange.stream.destroyed) exchange.stream.end()
    this.resolve(this.status)
  }

  onError (error: Error): void {
    this.fail(upstreamError(error))
  }

  private fail (error: Error): void {
    if (this.#settled) return
    this.#settled = true
    if (this.#abort !== undefined) abortSoon(this.#abort, error)
    endBody(this.request.body)
    this.reject(error)
  }
}

function hasName (added: Record<string, string>, lower: string): boolean {
  for (const name in added) if (name.length === lower.length && name.toLowerCase() === lower) return true
  return false
}

/** Trailers as undici hands them: a raw list (HTTP/1.1) or an object (HTTP/2); hop-by-hop ones dropped. */
function relayedTrailers (trailers: unknown): OutgoingHttpHeaders | undefined {
  if (trailers === null || trailers === undefined) return undefined
  const out: OutgoingHttpHeaders = {}
  let any = false
  const add = (name: string, value: string | string[] | undefined) => {
    const lower = name.toLowerCase()
    if (value === undefined || lower.charCodeAt(0) === 58 || HOP_BY_HOP.has(lower) || lower === 'content-length') return
    out[lower] = value
    any = true
  }
  if (Array.isArray(trailers)) {
    for (let i = 0; i < trailers.length; i += 2) add(headerText(trailers[i] as Buffer | string), headerText(trailers[i + 1] as Buffer | string))
  } else if (typeof trailers === 'object') {
    for (const name of Object.keys(trailers)) add(name, (trailers as Record<string, string | string[] | undefined>)[name])
  }
  return any ? out : undefined
}

function upstreamError (error: unknown): Error {
  if (error instanceof ClientGoneError || error instanceof BodyTooLargeError || error instanceof BodyStalledError || error instanceof GatewayError) return error
  const cause = error as { code?: string, cause?: unknown }
  if (cause.cause instanceof BodyTooLargeError || cause.cause instanceof BodyStalledError) return cause.cause
  const code = cause.code ?? ''
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new GatewayError(504, 'upstream_timeout', 'upstream did not answer in time', { cause: error })
  }
  return new GatewayError(502, 'upstream_unavailable', 'upstream unavailable', { cause: error })
}

/** The built-in `echo: true` upstream over HTTP/2: the request it would have received, as JSON. */
async function echo (exchange: StreamExchange, request: ForwardRequest): Promise<number> {
  const body = request.body === undefined || Buffer.isBuffer(request.body) ? request.body : await readBody(request.body, Infinity).catch((error: unknown) => { throw upstreamError(error) })
  const stream = exchange.stream
  if (stream.destroyed) throw new ClientGoneError()
  const q = request.target.indexOf('?')
  const payload = JSON.stringify({
    method: request.method,
    path: q === -1 ? request.target : request.target.slice(0, q),
    query: q === -1 ? '' : request.target.slice(q + 1),
    headers: request.headers,
    body: body === undefined ? '' : body.toString('utf8'),
  })
  const headers: OutgoingHttpHeaders = { ':status': 200 }
  for (const name in request.responseHeaders) headers[name.toLowerCase()] = request.responseHeaders[name]
  headers['x-request-id'] = request.requestId
  headers['content-type'] = 'application/json'
  headers['content-length'] = Buffer.byteLength(payload)
  stream.respond(headers, { waitForTrailers: exchange.wantsTrailers })
  exchange.status = 200
  stream.end(payload)
  return 200
}
