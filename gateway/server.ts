import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import httpProxy from 'http-proxy'
import { GatewayError, Rejection } from './errors.js'
import { parseDuration } from './config/units.js'
import { runChain, challengesFor, type ChainResult } from './chain.js'
import { HttpRequestContext, PayloadTooLargeError } from './context.js'
import { addIdentity, connectionTokens, HOP_BY_HOP } from './identity.js'
import { AccessLog } from './access-log.js'
import { escapeControl, redactTarget, type Logger } from './log.js'
import type { Metrics } from './metrics.js'
import { isTrusted, unmapAddress } from './net.js'
import { ClientGoneError, clientClosed, forward, RejectedError } from './proxy.js'
import { rawProblem, sendProblem, type Problem } from './respond.js'
import { normalizePath } from './router/index.js'
import type { CompiledRoute, Runtime } from './runtime.js'

export interface ListenerRef {
  readonly name: string
  readonly scheme: 'http' | 'https'
}

/** Hooks that later layers add to the forwarding step (signed identity). */
export interface ForwardHooks {
  upstreamIdentity? (result: ChainResult, route: CompiledRoute, headers: Record<string, string | string[]>): Promise<void> | void
}

/** What one request decided and how it ends: read by the access-log line when the response closes. */
class Exchange {
  route: CompiledRoute | undefined = undefined
  code = 'ok'
  subject: string | undefined = undefined
  methods: string | undefined = undefined
  /** Expect: 100-continue not answered yet. */
  awaitingContinue = false

  constructor (
    readonly handler: RequestHandler,
    readonly listener: ListenerRef,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly requestId: string,
    readonly started: number,
    /** Taken at the start: Node detaches the socket from the request before 'close' in some paths (early answers). */
    readonly remote: string | undefined,
  ) {}
}

const kExchange = Symbol('exchange')
type TrackedResponse = ServerResponse & { [kExchange]?: Exchange }

/** 'close' is emitted once per response; a module-level listener spares a closure per request. */
function onResponseClose (this: TrackedResponse): void {
  clientClosed(this)
  const exchange = this[kExchange]
  if (exchange) exchange.handler.logRequest(exchange)
}

/** Response headers of a request that passed no step (public route): read-only, shared. */
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>

/** Credential header names whose `Connection` listing is ignored (never honoured as hop-by-hop). */
const ALWAYS_CREDENTIALS = ['authorization', 'cookie', 'x-api-key']

/**
 * listener -> normalize -> route -> policy chain -> forward. One instance per gateway; the runtime (the
 * compiled configuration) is swapped atomically on reload and each request keeps the one it started with.
 */
export class RequestHandler {
  runtime!: Runtime
  hooks: ForwardHooks = {}
  private readonly wsProxy = httpProxy.createProxyServer({ ws: true, xfwd: false, changeOrigin: false })
  /** The per-request line: same destination and format as deps.log, serialized by hand (access-log.ts). */
  private readonly accessLog: AccessLog

  constructor (private readonly deps: { log: Logger, metrics: Metrics, now: () => number }) {
    this.accessLog = new AccessLog(deps.log)
    this.wsProxy.on('error', (error, _req, target) => {
      this.deps.log.warn({ err: { message: error.message, code: (error as NodeJS.ErrnoException).code } }, 'websocket proxy error')
      const socket = target as Duplex | undefined
      if (socket && 'destroy' in socket) socket.destroy()
    })
    // An upstream that answers an upgrade without 101 gets its answer piped back, then nothing reads the client
    // socket again (bytes pipelined after the upgrade request sit unread), so it would never see EOF and would stay
    // open forever, blocking shutdown: close it once that answer is written.
    this.wsProxy.on('proxyReqWs', (proxyReq, _req, socket, options) => {
      // Until the upstream answers (101 or not), its timeout applies; http-proxy sets none on upgrades.
      const timeoutMs = (options as { upstreamTimeoutMs?: number }).upstreamTimeoutMs
      if (timeoutMs) proxyReq.setTimeout(timeoutMs, () => proxyReq.destroy(new Error('upstream did not answer the upgrade in time')))
      proxyReq.on('response', (res) => {
        res.once('end', () => {
          const client = socket as Duplex & { destroySoon?: () => void }
          if (client.destroySoon) client.destroySoon()
          else client.destroy()
        })
      })
      // A tunnel whose client side is cut (shutdown deadline, reset) ends its upstream side too: the pipe only
      // forwards a clean end, so the upstream connection would otherwise stay open.
      proxyReq.on('upgrade', (_res, proxySocket) => { socket.once('close', () => proxySocket.destroy()) })
    })
  }

  async handle (listener: ListenerRef, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.socket !== null && closingSockets.has(req.socket)) { req.socket.destroy(); return }
    const exchange = new Exchange(this, listener, req, res, randomUUID(), performance.now(), req.socket?.remoteAddress)
    ;(res as TrackedResponse)[kExchange] = exchange
    res.on('close', onResponseClose)
    try {
      await this.process(this.runtime, exchange)
    } catch (error) {
      this.fail(error, exchange)
    }
  }

  /**
   * An answer from the gateway itself. Expect: 100-continue (RFC 9110 §10.1.1): a refusal comes instead of the 100,
   * on a connection that then closes (the client may or may not send the body it held back).
   */
  private reject (exchange: Exchange, problem: Problem): void {
    exchange.code = problem.code
    if (problem.status === 400 || problem.status === 413 || problem.status === 431 || exchange.awaitingContinue) drainOrClose(exchange.req, exchange.res)
    sendProblem(exchange.res, problem, exchange.requestId)
  }

  /** The client waits for 100 before sending the body: sent only once the body is wanted. */
  private sendContinue (exchange: Exchange): void {
    if (exchange.awaitingContinue && !exchange.res.headersSent) exchange.res.writeContinue()
    exchange.awaitingContinue = false
  }

  private async process (runtime: Runtime, exchange: Exchange): Promise<void> {
    const { listener, req, res, requestId } = exchange
    const prepared = prepare(runtime, listener, req, requestId, this.deps.now)
    if (prepared instanceof Rejection) return this.reject(exchange, prepared)
    const { route, ctx, hasBody } = prepared
    exchange.route = route

    const declaredLength = Number(req.headers['content-length'] ?? 0)
    if (declaredLength > route.maxBodyBytes) return this.reject(exchange, Rejection.payloadTooLarge(route.maxBodyBytes))

    exchange.awaitingContinue = hasBody && typeof req.headers.expect === 'string' && req.headers.expect.toLowerCase() === '100-continue'

    let result: ChainResult | undefined
    const skipChain = route.public || (route.preflightPublic && req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined)
    if (!skipChain) {
      if (route.readsBody && hasBody) { this.sendContinue(exchange); await ctx.body() }
      const outcome = await runChain(route.steps, ctx)
      if ('rejection' in outcome) {
        const { rejection } = outcome
        if (rejection.status === 401 || rejection.status === 403) this.deps.metrics.authFailures.inc({ method: outcome.byKey ?? 'chain', code: rejection.code })
        if (rejection.status === 429) this.deps.metrics.rateLimited.inc({ route: route.name })
        exchange.subject = outcome.identity.subject || undefined
        return this.reject(exchange, {
          status: rejection.status,
          code: rejection.code,
          detail: rejection.detail,
          headers: { ...outcome.responseHeaders, ...rejection.headers },
          ...(rejection.status === 401 ? { challenges: challengesFor(route.steps, outcome) } : {}),
          ...(rejection.status === 403 && rejection.challenge ? { challenges: [rejection.challenge] } : {}),
        })
      }
      result = outcome
      exchange.subject = outcome.identity.subject
      exchange.methods = outcome.identity.methods.join(',')
    } else if (route.steps.length > 0 && route.public) {
      // Public routes may carry non-authenticating steps (rateLimit).
      const outcome = await runChain(route.steps, ctx)
      if ('rejection' in outcome) {
        if (outcome.rejection.status === 429) this.deps.metrics.rateLimited.inc({ route: route.name })
        return this.reject(exchange, { status: outcome.rejection.status, code: outcome.rejection.code, detail: outcome.rejection.detail, headers: { ...outcome.responseHeaders, ...outcome.rejection.headers } })
      }
      result = outcome
    }

    this.sendContinue(exchange)
    const headers = upstreamHeaders(runtime, route, req, ctx, result)
    headers['x-request-id'] = requestId
    // Awaited only when a hook is set: `await undefined` would still cost a turn of the microtask queue.
    if (result && result.identity.methods.length > 0 && this.hooks.upstreamIdentity) await this.hooks.upstreamIdentity(result, route, headers)
    const buffered = ctx.bufferedBody ? await ctx.bufferedBody : undefined
    if (buffered) headers['content-length'] = String(buffered.length)
    const upstreamStarted = performance.now()
    try {
      await forward(route.upstream, req, res, {
        method: ctx.method,
        target: forwardTarget(route, ctx.path, ctx.rawQuery),
        headers,
        body: buffered,
        hasBody,
        maxBodyBytes: route.maxBodyBytes,
        requestId,
        responseHeaders: result?.responseHeaders ?? NO_HEADERS,
      })
    } finally {
      this.deps.metrics.upstreamDuration.observe({ upstream: route.upstream.name }, (performance.now() - upstreamStarted) / 1000)
    }
  }

  private fail (error: unknown, exchange: Exchange): void {
    const { res, req, requestId } = exchange
    if (error instanceof ClientGoneError) {
      // Nobody to answer; the log line says 499 (no response sent) with this code.
      exchange.code = 'client_closed'
      return
    }
    if (error instanceof PayloadTooLargeError) {
      exchange.code = 'payload_too_large'
      drainOrClose(req, res)
      sendProblem(res, Rejection.payloadTooLarge(error.limitBytes), requestId)
      return
    }
    if (error instanceof RejectedError) {
      exchange.code = error.rejection.code
      drainOrClose(req, res)
      sendProblem(res, error.rejection, requestId)
      return
    }
    if (error instanceof GatewayError) {
      exchange.code = error.code
      const level = error.status >= 500 ? 'warn' : 'info'
      this.deps.log[level]({ requestId, code: error.code, err: describeCause(error) }, error.message)
      sendProblem(res, { status: error.status, code: error.code, detail: publicDetail(error) }, requestId)
      return
    }
    exchange.code = 'internal_error'
    this.deps.log.error({ requestId, err: describeCause(error) }, 'unexpected error while handling a request')
    sendProblem(res, { status: 500, code: 'internal_error', detail: 'internal error' }, requestId)
  }

  /** WebSocket upgrades pass the same chain, then are tunneled with identity headers added and credentials removed. */
  async handleUpgrade (listener: ListenerRef, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const runtime = this.runtime
    const requestId = randomUUID()
    const deny = (problem: Problem) => {
      socket.end(rawProblem(problem, requestId))
      // Nothing reads an upgrade socket after this: drain what the client still sends (a body, pipelined bytes) so
      // its close is seen and the socket ends, and bound the wait; else it stays half-open forever.
      socket.resume()
      ;(socket as Duplex & { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(5_000, () => socket.destroy())
    }
    socket.on('error', () => socket.destroy())
    try {
      const prepared = prepare(runtime, listener, req, requestId, this.deps.now)
      if (prepared instanceof Rejection) return deny(prepared)
      const { route, ctx } = prepared
      let result: ChainResult | undefined
      if (route.steps.length > 0) {
        const outcome = await runChain(route.steps, ctx)
        if ('rejection' in outcome) {
          const r = outcome.rejection
          return deny({ status: r.status, code: r.code, detail: r.detail, headers: { ...outcome.responseHeaders, ...r.headers }, ...(r.status === 401 ? { challenges: challengesFor(route.steps, outcome) } : {}) })
        }
        result = outcome
      }
      if (route.upstream.echo || !route.upstream.url) {
        return deny({ status: 502, code: 'upstream_unavailable', detail: 'this upstream does not accept WebSocket connections' })
      }
      const headers = upstreamHeaders(runtime, route, req, ctx, result)
      if (result && result.identity.methods.length > 0) await this.hooks.upstreamIdentity?.(result, route, headers)
      headers.connection = 'Upgrade'
      headers.upgrade = req.headers.upgrade ?? 'websocket'
      req.headers = headers as IncomingMessage['headers']
      req.url = route.upstream.basePath + forwardTarget(route, ctx.path, ctx.rawQuery)
      this.deps.log.info({ requestId, listener: listener.name, route: route.name, method: 'GET', upgrade: true, subject: result?.identity.subject }, 'websocket')
      const upstreamTimeoutMs = parseDuration(runtime.config.doc.upstreams[route.upstream.name]?.timeout ?? '30s')
      this.wsProxy.ws(req, socket, head, { target: route.upstream.url, ignorePath: false, prependPath: false, upstreamTimeoutMs } as httpProxy.ServerOptions)
    } catch (error) {
      const status = error instanceof GatewayError ? error.status : 500
      const code = error instanceof GatewayError ? error.code : 'internal_error'
      this.deps.log.warn({ requestId, err: describeCause(error) }, 'websocket upgrade failed')
      deny({ status, code, detail: error instanceof GatewayError ? publicDetail(error) : 'internal error' })
    }
  }

  logRequest (exchange: Exchange): void {
    const { req, res } = exchange
    const durationMs = performance.now() - exchange.started
    const routeName = exchange.route?.name ?? '(none)'
    const status = res.headersSent ? res.statusCode : 499
    // Closed before an answer was sent: the client left (an answer being built is dropped).
    const code = res.headersSent || exchange.code !== 'ok' ? exchange.code : 'client_closed'
    this.deps.metrics.requests.inc({ route: routeName, status, code })
    this.deps.metrics.duration.observe({ route: routeName }, durationMs / 1000)
    this.accessLog.write({
      requestId: exchange.requestId,
      listener: exchange.listener.name,
      method: escapeControl(req.method ?? ''),
      path: redactTarget(req.url ?? ''),
      route: routeName,
      status,
      code,
      subject: exchange.subject !== undefined ? escapeControl(exchange.subject) : undefined,
      methods: exchange.methods,
      remote: exchange.remote,
      durationMs: Math.round(durationMs * 1000) / 1000,
    })
  }
}

export interface Prepared { route: CompiledRoute, ctx: HttpRequestContext, hasBody: boolean }

/** Edge checks, normalization, routing: everything decided before the chain. */
export function prepare (runtime: Runtime, listener: ListenerRef, req: IncomingMessage, requestId: string,
  now: () => number = Date.now): Prepared | Rejection {
  const raw = req.rawHeaders
  let hostCount = 0
  let headerBytes = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    // `X_Auth_Subject` would reach some upstreams as X-Auth-Subject (CGI, nginx): refuse the ambiguity.
    if (name.includes('_')) return Rejection.badRequest('header names containing "_" are refused')
    headerBytes += name.length + raw[i + 1]!.length + 4
    if (name.length === 4 && name.toLowerCase() === 'host') hostCount++
  }
  if (hostCount > 1) return Rejection.badRequest('more than one Host header')

  const target = normalizePath(req.url ?? '')
  if (!target.ok) return Rejection.badRequest(target.reason)
  const hostHeader = req.headers.host ?? ''
  // host[:port] only: userinfo, a path or spaces would be read as another host by URL parsers behind us.
  if (!HOST.test(hostHeader)) return Rejection.badRequest('the Host header must be a host name with an optional port')
  if (target.authority !== undefined && target.authority.toLowerCase() !== hostHeader.toLowerCase()) {
    return Rejection.badRequest('the absolute-form target and the Host header disagree')
  }
  if (target.rawQuery.length > 0 && hasKeyInQuery(target.rawQuery)) {
    return Rejection.badRequest('API keys belong in the X-API-Key header, not in the query string')
  }
  const method = req.method ?? 'GET'
  if (overridesMethod(req, target.rawQuery, method)) {
    return Rejection.badRequest('method overrides (X-HTTP-Method-Override, _method) are refused: send the method itself')
  }
  // IIS and some frameworks serve the path these name instead of the request's: the one path string would split.
  if (req.headers['x-original-url'] !== undefined || req.headers['x-rewrite-url'] !== undefined) {
    return Rejection.badRequest('X-Original-URL and X-Rewrite-URL are refused: the request target is the path')
  }
  const match = runtime.table.match({ host: hostHeader, path: target.path, method, listener: listener.name })
  if (!match.route) return Rejection.noRoute()
  const route = match.route
  if (raw.length / 2 > route.maxHeaderCount || headerBytes > route.maxHeaderBytes) return Rejection.headersTooLarge()

  const peerAddress = unmapAddress(req.socket.remoteAddress ?? '')
  const remoteAddress = runtime.trustsAnyProxy ? clientAddress(runtime, peerAddress, req.headers['x-forwarded-for'] as string | undefined) : peerAddress
  const rawTarget = req.url ?? ''
  const ctx = new HttpRequestContext(req, requestId, method, target.path, rawTarget, target.rawQuery, listener.scheme,
    hostHeader, remoteAddress, peerAddress, listener.name, route.name, route.upstream.name, route.maxBodyBytes, now)
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0')
  return { route, ctx, hasBody }
}

/** A Host value: reg-name (unreserved characters), IPv4 or [IPv6], optional port; empty for HTTP/1.0. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]*)(?::\d{0,5})?$/

const METHOD_OVERRIDES = ['x-http-method-override', 'x-http-method', 'x-method-override']

/**
 * Frameworks behind us may honour a method override (Express method-override, Symfony/Laravel `_method`): a request
 * authorized as POST would run as DELETE. One that names another method than the request's is refused.
 */
function overridesMethod (req: IncomingMessage, rawQuery: string, method: string): boolean {
  for (const name of METHOD_OVERRIDES) {
    const value = req.headers[name]
    if (value !== undefined && String(value).toUpperCase() !== method) return true
  }
  if (!/_method|%5fmethod/i.test(rawQuery)) return false
  return new URLSearchParams(rawQuery).getAll('_method').some((value) => value.toUpperCase() !== method)
}

/** Any query value that looks like an API key is refused on every route: keys in URLs end up in logs. */
function hasKeyInQuery (rawQuery: string): boolean {
  if (!/agk|%61|%67|%6b|%5f/i.test(rawQuery)) return false
  // A key sent as a bare parameter (`?agk_...`) is a name, not a value: refused too. So is one behind an encoded
  // `=` or `&` (`?apikey%3Dagk_...`): an upstream that decodes before it splits reads it as a key parameter.
  for (const [name, value] of new URLSearchParams(rawQuery)) {
    if (KEY_IN_QUERY_TEXT.test(value) || KEY_IN_QUERY_TEXT.test(name)) return true
  }
  return false
}
const KEY_IN_QUERY_TEXT = /(?:^|[=&;,\s])agk_/

/** X-Forwarded-For is read only from trusted proxies: the client is the rightmost address that is not one. */
function clientAddress (runtime: Runtime, peer: string, forwardedFor: string | undefined): string {
  if (!forwardedFor || !isTrusted(runtime.trustProxies, peer)) return peer
  const hops = forwardedFor.split(',').map((h) => h.trim()).filter(Boolean)
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!isTrusted(runtime.trustProxies, hops[i]!)) return unmapAddress(hops[i]!)
  }
  return hops[0] ?? peer
}

export function forwardTarget (route: CompiledRoute, path: string, rawQuery: string): string {
  let forwardedPath = path
  if (route.stripPrefix !== undefined && path.startsWith(route.stripPrefix)) {
    forwardedPath = path.slice(route.stripPrefix.length)
    if (!forwardedPath.startsWith('/')) forwardedPath = '/' + forwardedPath
  }
  return rawQuery.length > 0 ? `${forwardedPath}?${rawQuery}` : forwardedPath
}

/** Inbound identity headers stripped, hop-by-hop removed, consumed credentials removed, identity set. */
export function upstreamHeaders (runtime: Runtime, route: CompiledRoute, req: IncomingMessage, ctx: HttpRequestContext,
  result: ChainResult | undefined): Record<string, string | string[]> {
  const strip = runtime.identity.strip
  const tokens = connectionTokens(req.headers.connection)
  const headers: Record<string, string | string[]> = {}
  const inbound = req.headers
  const trustedPeer = runtime.trustsAnyProxy && isTrusted(runtime.trustProxies, ctx.peerAddress)
  for (const name in inbound) {
    if (HOP_BY_HOP.has(name) || strip.has(name) || route.consumed.has(name)) continue
    // From an untrusted peer no X-Forwarded-* is read (Ssl, Port, Prefix... too): the gateway sets its own below.
    if (!trustedPeer && name.startsWith('x-forwarded-')) continue
    // Connection may not remove a credential or gateway-owned header: such tokens are ignored.
    if (tokens !== undefined && tokens.has(name) && !ALWAYS_CREDENTIALS.includes(name)) continue
    const value = inbound[name]
    if (value !== undefined) headers[name] = value
  }
  if (trustedPeer) {
    const prior = inbound['x-forwarded-for']
    headers['x-forwarded-for'] = prior ? `${prior}, ${ctx.peerAddress}` : ctx.peerAddress
    headers['x-forwarded-proto'] ??= ctx.scheme
    headers['x-forwarded-host'] ??= ctx.authority
  } else {
    delete headers.forwarded
    delete headers['x-real-ip']
    headers['x-forwarded-for'] = ctx.peerAddress
    headers['x-forwarded-proto'] = ctx.scheme
    if (ctx.authority) headers['x-forwarded-host'] = ctx.authority
    else delete headers['x-forwarded-host']
  }
  if (!route.upstream.preserveHost && route.upstream.host) headers.host = route.upstream.host
  if (result) {
    Object.assign(headers, result.upstreamHeaders)
    addIdentity(headers, result.identity, runtime.identity)
  }
  return headers
}

/**
 * Connections answered with `Connection: close`: requests the client pipelined behind are never processed
 * (RFC 9112 §9.6), even when Node has already parsed them from the same packet.
 */
const closingSockets = new WeakSet<object>()

/**
 * Before an early answer: a request body the client is still sending is not read, so the answer says
 * `Connection: close` and the connection ends after it. The socket is taken now: Node detaches it from the
 * request once the response has finished.
 */
function drainOrClose (req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return
  const socket = req.socket
  if (socket) closingSockets.add(socket)
  res.shouldKeepAlive = false
  res.once('finish', () => socket?.destroySoon?.())
}

function publicDetail (error: GatewayError): string {
  switch (error.code) {
    case 'store_unavailable': return 'the credential store is unavailable'
    case 'upstream_timeout': return 'the upstream did not answer in time'
    case 'upstream_unavailable': return 'the upstream is unavailable'
    default: return 'internal error'
  }
}

function describeCause (error: unknown): Record<string, unknown> {
  const e = error as { message?: string, code?: string, cause?: { message?: string, code?: string }, stack?: string }
  return { message: e?.message, code: e?.code, cause: e?.cause ? { message: e.cause.message, code: e.cause.code } : undefined }
}
