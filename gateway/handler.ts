import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { BodyAbortedError, BodyTooLargeError } from './body.js'
import { Rejection } from './errors.js'
import type { Logger } from './log.js'
import type { Metrics } from './metrics.js'
import { decide, type BodyWaiter, type DecideEnv, type ListenerRef } from './pipeline/decide.js'
import { describeCause, faultProblem, sendProblem, type Problem } from './problem.js'
import { RequestLog } from './request-log.js'
import type { CompiledRoute, Runtime } from './runtime.js'
import { Tunnel } from './tunnel.js'
import { ClientGoneError, clientClosed, forward } from './upstream.js'

export type { ListenerRef } from './pipeline/decide.js'

/** What one request decided and how it ends: read by the access-log line when the response closes. */
class Exchange implements BodyWaiter {
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

  /** The client waits for 100 before sending the body: sent only once the body is wanted. */
  bodyWanted (): void {
    if (this.awaitingContinue && !this.res.headersSent) this.res.writeContinue()
    this.awaitingContinue = false
  }
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

/**
 * Proxy mode over HTTP/1.1: decide(), then forward or answer the problem. One instance per gateway; the runtime (the
 * compiled configuration) is swapped atomically on reload and each request keeps the one it started with.
 */
export class RequestHandler {
  runtime!: Runtime
  /** What decide() needs beyond the request; the gateway adds the signed-identity hook. */
  readonly hooks: DecideEnv
  readonly requests: RequestLog
  readonly #tunnel: Tunnel

  constructor (private readonly deps: { log: Logger, metrics: Metrics, now: () => number }) {
    this.hooks = { now: deps.now }
    this.requests = new RequestLog(deps.log, deps.metrics)
    this.#tunnel = new Tunnel(deps.log, this.requests, this.hooks)
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

  /** WebSocket upgrades: the same decision, then a tunnel (tunnel.ts). */
  handleUpgrade (listener: ListenerRef, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    return this.#tunnel.handle(this.runtime, listener, req, socket, head)
  }

  private async process (runtime: Runtime, exchange: Exchange): Promise<void> {
    const { listener, req, res, requestId } = exchange
    const expect = req.headers.expect
    if (expect !== undefined) exchange.awaitingContinue = expect.toLowerCase() === '100-continue' && declaresBody(req)
    const decision = await decide(runtime, listener, req, requestId, this.hooks, exchange)
    exchange.route = decision.route
    if (!decision.allowed) {
      exchange.subject = decision.subject
      this.requests.refused(decision)
      return this.answer(exchange, decision.problem)
    }
    const { route, result } = decision
    if (result !== undefined) {
      exchange.subject = result.identity.methods.length > 0 ? result.identity.subject : undefined
      exchange.methods = result.identity.methods.length > 0 ? result.identity.methods.join(',') : undefined
    }
    exchange.bodyWanted()
    const upstreamStarted = performance.now()
    try {
      await forward(route.upstream, req, res, {
        method: decision.ctx.method,
        target: decision.target,
        headers: decision.headers,
        body: decision.body,
        hasBody: decision.hasBody,
        maxBodyBytes: route.maxBodyBytes,
        requestId,
        responseHeaders: result?.responseHeaders ?? NO_HEADERS,
      })
    } finally {
      this.deps.metrics.upstreamDuration.observe({ upstream: route.upstream.name }, (performance.now() - upstreamStarted) / 1000)
    }
  }

  /**
   * An answer from the gateway itself. Expect: 100-continue (RFC 9110 §10.1.1): a refusal comes instead of the 100,
   * on a connection that then closes (the client may or may not send the body it held back).
   */
  private answer (exchange: Exchange, problem: Problem): void {
    exchange.code = problem.code
    const status = problem.status
    if (status === 400 || status === 413 || status === 431 || exchange.awaitingContinue) drainOrClose(exchange.req, exchange.res)
    sendProblem(exchange.res, problem, exchange.requestId)
  }

  private fail (error: unknown, exchange: Exchange): void {
    if (error instanceof ClientGoneError || error instanceof BodyAbortedError) {
      // Nobody to answer; the log line says 499 (no response sent) with this code.
      exchange.code = 'client_closed'
      return
    }
    if (error instanceof BodyTooLargeError) return this.answer(exchange, Rejection.payloadTooLarge(error.limitBytes))
    const problem = faultProblem(error)
    const level = problem.status >= 500 && problem.code === 'internal_error' ? 'error' : problem.status >= 500 ? 'warn' : 'info'
    this.deps.log[level]({ requestId: exchange.requestId, code: problem.code, err: describeCause(error) },
      problem.code === 'internal_error' ? 'unexpected error while handling a request' : (error as Error).message)
    exchange.code = problem.code
    sendProblem(exchange.res, problem, exchange.requestId)
  }

  logRequest (exchange: Exchange): void {
    const { req, res } = exchange
    const status = res.headersSent ? res.statusCode : 499
    // Closed before an answer was sent: the client left (an answer being built is dropped).
    const code = res.headersSent || exchange.code !== 'ok' ? exchange.code : 'client_closed'
    this.requests.finished({
      requestId: exchange.requestId,
      listener: exchange.listener.name,
      method: req.method ?? '',
      target: req.url ?? '',
      route: exchange.route?.name,
      status,
      code,
      subject: exchange.subject,
      methods: exchange.methods,
      remote: exchange.remote,
      started: exchange.started,
    })
  }
}

function declaresBody (req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
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
