import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex, Readable } from 'node:stream'
import { BodyAbortedError, BodyStalledError, BodyTooLargeError, forwardBody, readBody } from './body.js'
import { Rejection } from './errors.js'
import type { Logger } from './log.js'
import { methodsValue } from './identity.js'
import type { Metrics } from './metrics.js'
import { decide, type BodyWaiter, type DecideEnv, type ListenerRef } from './pipeline/decide.js'
import { describeCause, faultProblem, sendProblem, type Problem } from './problem.js'
import { RequestLog } from './request-log.js'
import { loginRedirect, reservedClient, writeReserved } from './reserved.js'
import type { CompiledRoute, Generation } from './generation.js'
import { Tunnel } from './tunnel.js'
import { RESERVED_PREFIX, type ReservedAnswer } from '../policies/types.js'
import { DecisionHandler } from './decision-mode/handler.js'
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
  runtime!: Generation
  /** What decide() needs beyond the request; the gateway adds the signed-identity hook. */
  readonly hooks: DecideEnv
  readonly requests: RequestLog
  readonly #tunnel: Tunnel
  readonly #decisions: DecisionHandler

  constructor (readonly deps: { log: Logger, metrics: Metrics, now: () => number }) {
    this.hooks = { now: deps.now }
    this.requests = new RequestLog(deps.log, deps.metrics)
    this.#tunnel = new Tunnel(deps.log, this.requests, this.hooks)
    this.#decisions = new DecisionHandler(deps.log, this.requests, this.hooks)
  }

  /** A decision listener's request (decide.md): answered, never forwarded. */
  handleDecision (listener: ListenerRef, req: IncomingMessage, res: ServerResponse): Promise<void> {
    return this.#decisions.handle(this.runtime, listener, req, res)
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

  private async process (runtime: Generation, exchange: Exchange): Promise<void> {
    const { listener, req, res, requestId } = exchange
    const expect = req.headers.expect
    if (expect !== undefined) exchange.awaitingContinue = expect.toLowerCase() === '100-continue' && declaresBody(req)
    if (req.url !== undefined && req.url.startsWith(RESERVED_PREFIX) && runtime.servesReserved) {
      const answer = await runtime.serveReserved({
        requestId,
        method: req.method ?? 'GET', target: req.url, scheme: listener.scheme, listener: listener.name,
        headers: req.headers, remoteAddress: reservedClient(runtime, req.socket?.remoteAddress, req.headers),
        body: (maxBytes) => { exchange.bodyWanted(); return readBody(req, maxBytes) },
      }, this.deps.now())
      if (answer !== undefined) return sendReserved(exchange, answer)
    }
    const decision = await decide(runtime, listener, req, requestId, this.hooks, exchange)
    exchange.route = decision.route
    if (!decision.allowed) {
      exchange.subject = decision.subject
      this.requests.refused(decision)
      return this.answer(exchange, loginRedirect(decision.problem, req.method))
    }
    const { route, result } = decision
    if (result !== undefined) {
      exchange.subject = result.identity.methods.length > 0 ? result.identity.subject : undefined
      exchange.methods = result.identity.methods.length > 0 ? methodsValue(result.identity.methods) : undefined
    }
    exchange.bodyWanted()
    let body: Buffer | Readable | undefined = decision.body
    if (body === undefined && decision.hasBody) {
      // Read before an upstream connection is taken (up to bufferBodyBytes): a slow client then holds none.
      const read = await forwardBody(req, route)
      if (Buffer.isBuffer(read)) decision.headers['content-length'] = String(read.length)
      body = read
    }
    const upstreamStarted = performance.now()
    try {
      await forward(route.upstream, res, {
        method: decision.ctx.method,
        target: decision.target,
        headers: decision.headers,
        body,
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
    // The decision can come while Node is still parsing the packet that carried the head: a body in that same packet
    // is whole one turn later, and then the connection may stay open (closeAfterAnswer). A refused Expect closes
    // anyway, and at once: what follows the head on that connection must never be parsed as a request.
    if (!exchange.req.complete && !exchange.res.headersSent && !exchange.awaitingContinue) setImmediate(sendAnswer, exchange, problem)
    else sendAnswer(exchange, problem)
  }

  private fail (error: unknown, exchange: Exchange): void {
    if (error instanceof ClientGoneError || error instanceof BodyAbortedError) {
      // Nobody to answer; the log line says 499 (no response sent) with this code.
      exchange.code = 'client_closed'
      return
    }
    if (error instanceof BodyTooLargeError) return this.answer(exchange, Rejection.payloadTooLarge(error.limitBytes))
    // A stalled body: 408 if nothing was answered yet; after the upstream's answer began, the connection is cut.
    if (error instanceof BodyStalledError) return this.answer(exchange, Rejection.requestTimeout())
    const problem = faultProblem(error)
    const level = problem.status >= 500 && problem.code === 'internal_error' ? 'error' : problem.status >= 500 ? 'warn' : 'info'
    this.deps.log[level]({ requestId: exchange.requestId, code: problem.code, err: describeCause(error) },
      problem.code === 'internal_error' ? 'unexpected error while handling a request' : (error as Error).message)
    this.answer(exchange, problem)
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

function sendAnswer (exchange: Exchange, problem: Problem): void {
  // Expect: 100-continue refused: the client may or may not send the body it held back, so no later byte on this
  // connection can be read as a request (RFC 9110 §10.1.1).
  if (!exchange.res.headersSent) closeAfterAnswer(exchange.req, exchange.res, exchange.awaitingContinue)
  sendProblem(exchange.res, problem, exchange.requestId)
}

/** A reserved endpoint's whole answer (`/.authgate/login`...). */
function sendReserved (exchange: Exchange, answer: ReservedAnswer): void {
  exchange.code = answer.code
  if (!exchange.req.complete && !exchange.res.headersSent) closeAfterAnswer(exchange.req, exchange.res, exchange.awaitingContinue)
  writeReserved(exchange.res, answer, exchange.requestId)
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

/** Lingering close (RFC 9112 §9.6): how much of an unread body is read and discarded after an early answer, and for how long. */
const LINGER_BYTES = 1024 * 1024
const LINGER_MS = 2_000

/**
 * Before an answer sent while the request body is still arriving (a refusal, 408, 413...): the answer says
 * `Connection: close`, and the connection is never used again (closingSockets), so nothing in that body can be read
 * as a request. Closing at once would reset a connection with unread bytes, and the client could lose the answer:
 * the body is read and discarded for up to LINGER_BYTES or LINGER_MS, then the connection closes. A body that
 * already arrived whole needs none of this: Node discards it and the connection stays open.
 */
function closeAfterAnswer (req: IncomingMessage, res: ServerResponse, always: boolean): void {
  const socket = req.socket as Socket | null
  if ((req.complete && !always) || socket === null) return
  closingSockets.add(socket)
  res.shouldKeepAlive = false
  let bytes = 0
  let answered = false
  let done = false
  const close = () => {
    if (done) return
    done = true
    clearTimeout(timer)
    req.off('data', onData)
    // Node's own close: end, then destroy once the answer is flushed.
    delete (socket as Partial<Socket>).destroySoon
    if (answered) socket.destroySoon()
  }
  const onData = (chunk: Buffer) => {
    bytes += chunk.length
    if (bytes > LINGER_BYTES) close()
  }
  // The bound on time: whatever the client does, the connection goes.
  const timer = setTimeout(() => { close(); socket.destroy() }, LINGER_MS)
  timer.unref()
  req.on('data', onData)
  req.once('end', close)
  req.once('close', close)
  req.resume()
  // Node calls destroySoon() once the last response is written: send FIN, keep reading until close().
  socket.destroySoon = function lingeringClose (this: Socket) {
    answered = true
    if (this.writable) this.end()
    if (done) Object.getPrototypeOf(this).destroySoon.call(this)
  }
}
