import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Rejection } from '../errors.js'
import type { Generation } from '../generation.js'
import type { Logger } from '../log.js'
import { isTrusted, unmapAddress } from '../net.js'
import { decide, type DecideEnv, type Decision, type ListenerRef } from '../pipeline/decide.js'
import { describeCause, faultProblem, sendProblem, type Problem } from '../problem.js'
import type { RequestLog } from '../request-log.js'
import { readBody } from '../body.js'
import { writeReserved } from '../reserved.js'
import { RESERVED_PREFIX } from '../../policies/types.js'
import { clientOf, describeOriginal, endpointOf, type Dialect } from './original-request.js'
import type { DecisionTrust } from './trust.js'

/** What one decision request decided: read by its access line when the response closes. */
class Asked {
  dialect: Dialect | undefined = undefined
  route: string | undefined = undefined
  /** The real status: on /nginx, what the proxy maps X-Authgate-Status back to. */
  status = 0
  code = 'ok'
  subject: string | undefined = undefined
  methods: string | undefined = undefined
  /** The original request's method and target once known; until then the decision request's own. */
  method: string
  target: string
  remote: string | undefined

  constructor (readonly requests: RequestLog, readonly listener: string, readonly requestId: string, readonly started: number, req: IncomingMessage) {
    this.method = req.method ?? ''
    this.target = req.url ?? ''
    this.remote = req.socket?.remoteAddress
  }
}

interface Peer { readonly trust: DecisionTrust, readonly address: string, readonly trusted: boolean }

/**
 * The proxy at the other end of a connection, and whether this generation's trust list has it: asked once per
 * connection (BlockList.check builds a SocketAddress per call, 7% of a decision), again after a reload.
 */
const peers = new WeakMap<object, Peer>()

function peerOf (req: IncomingMessage, trust: DecisionTrust): Peer {
  const socket = req.socket
  const cached = socket === null ? undefined : peers.get(socket)
  if (cached !== undefined && cached.trust === trust) return cached
  const address = unmapAddress(socket?.remoteAddress ?? '')
  const peer = { trust, address, trusted: isTrusted(trust.proxies, address) }
  if (socket !== null) peers.set(socket, peer)
  return peer
}

const kAsked = Symbol('asked')
type AskedResponse = ServerResponse & { [kAsked]?: Asked }

function onAnswerClose (this: AskedResponse): void {
  const asked = this[kAsked]!
  asked.requests.finished({
    requestId: asked.requestId,
    listener: asked.listener,
    method: asked.method,
    target: asked.target,
    route: asked.route,
    status: this.headersSent ? asked.status : 499,
    code: this.headersSent ? asked.code : 'client_closed',
    subject: asked.subject,
    methods: asked.methods,
    remote: asked.remote,
    started: asked.started,
    dialect: asked.dialect,
  })
}

/**
 * Decision mode (decide.md): another proxy asks whether a request may pass and as whom. The same decide() as proxy
 * mode runs on the original request the proxy describes; the answer is 200 with the identity headers, or the same
 * problem as proxy mode (on /nginx: only 200, 401 or 403, with X-Authgate-Status). Nothing is forwarded.
 */
export class DecisionHandler {
  readonly #env: DecideEnv

  constructor (private readonly log: Logger, private readonly requests: RequestLog, hooks: DecideEnv) {
    // The signed-identity hook is read through `hooks` at each decision: the gateway sets it after a reload.
    this.#env = {
      now: hooks.now,
      answerOnly: true,
      upstreamIdentity: (result, route, headers) => hooks.upstreamIdentity?.(result, route, headers),
    }
  }

  async handle (runtime: Generation, listener: ListenerRef, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const asked = new Asked(this.requests, listener.name, randomUUID(), performance.now(), req)
    ;(res as AskedResponse)[kAsked] = asked
    res.on('close', onAnswerClose)
    try {
      const trust = runtime.decisionListeners.get(listener.name)
      const known = trust === undefined ? undefined : peerOf(req, trust)
      const peer = known?.address ?? unmapAddress(req.socket?.remoteAddress ?? '')
      // Nothing of a request from anyone but a trusted proxy is read: its headers would name any identity it likes.
      if (known === undefined || !known.trusted) {
        return this.refuse(res, asked, Rejection.forbidden('forbidden', 'only a trusted proxy may ask for decisions'))
      }
      // The gateway's own endpoints (`/.authgate/login`...), which the proxy passes through to this listener: answered
      // as in proxy mode, for the scheme the trusted proxy names (X-Forwarded-Proto).
      if (req.url !== undefined && req.url.startsWith(RESERVED_PREFIX) && runtime.servesReserved) {
        const proto = req.headers['x-forwarded-proto']
        // The browser behind the proxy: the last X-Forwarded-For entry, as for decisions (a malformed one: the proxy).
        const client = clientOf(req.headers['x-forwarded-for'] as string | undefined, peer)
        const answer = await runtime.serveReserved({
          requestId: asked.requestId, method: req.method ?? 'GET', target: req.url,
          scheme: typeof proto === 'string' && proto.trim().toLowerCase() === 'https' ? 'https' : 'http',
          listener: listener.name, headers: req.headers, remoteAddress: typeof client === 'string' ? client : peer,
          body: (maxBytes) => readBody(req, maxBytes),
        }, this.#env.now())
        if (answer !== undefined) {
          asked.status = answer.status
          asked.code = answer.code
          return writeReserved(res, answer, asked.requestId)
        }
      }
      const endpoint = endpointOf(req.url ?? '')
      if (endpoint === undefined) {
        return this.refuse(res, asked, { status: 404, code: 'no_route', detail: 'decision endpoints are /nginx, /forward and /envoy/<path>' })
      }
      asked.dialect = endpoint.dialect
      const described = describeOriginal(endpoint, req, peer, known.trust.certificates)
      if (described instanceof Rejection) return this.refuse(res, asked, described)
      const original = described.view
      asked.method = original.method
      asked.target = original.url
      asked.remote = original.socket.remoteAddress
      const decision = await decide(runtime, { name: listener.name, scheme: described.scheme }, original, asked.requestId, this.#env)
      this.answer(res, asked, decision)
    } catch (error) {
      const problem = faultProblem(error)
      const level = problem.code === 'internal_error' ? 'error' : problem.status >= 500 ? 'warn' : 'info'
      this.log[level]({ requestId: asked.requestId, code: problem.code, err: describeCause(error) },
        problem.code === 'internal_error' ? 'unexpected error while deciding a request' : (error as Error).message)
      this.refuse(res, asked, problem)
    }
  }

  private answer (res: ServerResponse, asked: Asked, decision: Decision): void {
    asked.route = decision.route?.name
    if (!decision.allowed) {
      asked.subject = decision.subject
      this.requests.refused(decision)
      return this.refuse(res, asked, decision.problem)
    }
    const identity = decision.result?.identity
    if (identity !== undefined && identity.methods.length > 0) {
      asked.subject = identity.subject
      asked.methods = identity.methods.join(',')
    }
    asked.status = 200
    const headers = decision.headers
    const answerHeaders = decision.result?.responseHeaders
    if (answerHeaders !== undefined) for (const name in answerHeaders) headers[name] = answerHeaders[name]!
    // Envoy removes these from the request it forwards (x-envoy-auth-headers-to-remove): the credentials the chain
    // consumed reach the upstream no more than in proxy mode. Other proxies drop them in their configuration.
    if (asked.dialect === 'envoy' && decision.route.consumed.size > 0) headers['x-envoy-auth-headers-to-remove'] = decision.route.consumedList
    headers['cache-control'] = 'no-store'
    headers['content-length'] = '0'
    res.writeHead(200, headers)
    res.end()
  }

  /**
   * The refusal as proxy mode answers it. nginx's auth_request passes 401 and 403 and turns anything else into a
   * 500: there every other status is sent as 403 and the real one rides in X-Authgate-Status (on every non-200 answer,
   * so the proxy's mapping never has to guess).
   */
  private refuse (res: ServerResponse, asked: Asked, problem: Problem): void {
    asked.status = problem.status
    asked.code = problem.code
    if (asked.dialect === 'nginx') {
      // nginx passes no body of an auth_request answer on: the snippet builds the client's from these two.
      res.setHeader('X-Authgate-Status', String(problem.status))
      res.setHeader('X-Authgate-Error', problem.code)
      if (problem.status !== 401 && problem.status !== 403) return sendProblem(res, problem, asked.requestId, 403)
    }
    sendProblem(res, problem, asked.requestId)
  }
}
