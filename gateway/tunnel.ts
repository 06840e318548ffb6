import { randomUUID } from 'node:crypto'
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import httpProxy from 'http-proxy'
import { Rejection } from './errors.js'
import type { Logger } from './log.js'
import { decide, type DecideEnv, type ListenerRef } from './pipeline/decide.js'
import { describeCause, faultProblem, rawProblem, type Problem } from './problem.js'
import type { RequestEnd, RequestLog } from './request-log.js'
import type { Generation } from './generation.js'
import type { Upstream } from './upstream.js'

/** One upgrade request: what its access line says once the upstream answered or the tunnel failed. */
class Upgrade {
  route: string | undefined = undefined
  subject: string | undefined = undefined
  methods: string | undefined = undefined
  logged = false
  /** The upstream answered (101 or not): nothing more may be written to the client from here. */
  answered = false

  constructor (
    readonly listener: ListenerRef,
    readonly req: IncomingMessage,
    readonly socket: Duplex,
    readonly requestId: string,
    readonly started: number,
    readonly method: string,
    readonly target: string,
    readonly remote: string | undefined,
  ) {}

  end (status: number, code: string): RequestEnd {
    this.logged = true
    return {
      requestId: this.requestId,
      listener: this.listener.name,
      method: this.method,
      target: this.target,
      route: this.route,
      status,
      code,
      subject: this.subject,
      methods: this.methods,
      remote: this.remote,
      started: this.started,
    }
  }
}

/** Per-call options http-proxy hands back to its events: the upgrade and its upstream's limits. */
interface TunnelOptions extends httpProxy.ServerOptions {
  readonly upgrade: Upgrade
  readonly upstream: Upstream
}

/**
 * WebSocket (and other Upgrade) requests: the same decide() as every request, so a refusal has the same status,
 * challenges, access line and metrics; then a tunnel through http-proxy with the upstream's CA, connect timeout and
 * answer timeout. Upgrade requests carry no body: one would be checked by no signature and reach the upstream unseen.
 */
export class Tunnel {
  readonly #proxy = httpProxy.createProxyServer({ ws: true, xfwd: false, changeOrigin: false })

  constructor (private readonly log: Logger, private readonly requests: RequestLog, private readonly env: DecideEnv) {
    // Every ws() call passes its own callback (failed below), which http-proxy calls instead of emitting 'error' with
    // no way back to the request: this listener only keeps an unexpected emit from throwing.
    this.#proxy.on('error', (error, _req, target) => {
      this.log.warn({ err: describeCause(error) }, 'websocket upstream error')
      const socket = target as Duplex | undefined
      if (socket && 'destroy' in socket) socket.destroy()
    })
    this.#proxy.on('proxyReqWs', (proxyReq: ClientRequest, _req, socket: Duplex, options) => {
      const { upgrade, upstream } = options as unknown as TunnelOptions
      watchUpstream(proxyReq, upstream)
      // An upstream that answers without 101 gets its answer piped back, then nothing reads the client socket
      // again (bytes pipelined after the upgrade request sit unread), so it would never see EOF and would stay open
      // forever, blocking shutdown: close it once that answer is written.
      proxyReq.on('response', (res) => {
        upgrade.answered = true
        // Runs before http-proxy writes this head to the client: every answer carries the request id.
        res.headers['x-request-id'] = upgrade.requestId
        this.requests.finished(upgrade.end(res.statusCode ?? 502, 'ok'))
        res.once('end', () => {
          const client = socket as Duplex & { destroySoon?: () => void }
          if (client.destroySoon) client.destroySoon()
          else client.destroy()
        })
      })
      // A tunnel whose client side is cut (shutdown deadline, reset) ends its upstream side too: the pipe only
      // forwards a clean end, so the upstream connection would otherwise stay open.
      proxyReq.on('upgrade', (res, proxySocket) => {
        upgrade.answered = true
        res.headers['x-request-id'] = upgrade.requestId
        this.requests.finished(upgrade.end(101, 'ok'))
        socket.once('close', () => proxySocket.destroy())
      })
    })
  }

  async handle (generation: Generation, listener: ListenerRef, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const upgrade = new Upgrade(listener, req, socket, randomUUID(), performance.now(), req.method ?? '', req.url ?? '',
      req.socket?.remoteAddress)
    socket.on('error', () => socket.destroy())
    try {
      if (carriesBody(req)) return this.deny(upgrade, Rejection.badRequest('an upgrade request carries no body'))
      // http-proxy tunnels only these, and would close any other upgrade without an answer or an access line.
      if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
        return this.deny(upgrade, Rejection.badRequest('only WebSocket upgrades (GET, Upgrade: websocket) are tunneled'))
      }
      const decision = await decide(generation, listener, req, upgrade.requestId, this.env)
      upgrade.route = decision.route?.name
      if (!decision.allowed) {
        upgrade.subject = decision.subject
        this.requests.refused(decision)
        return this.deny(upgrade, decision.problem)
      }
      const { route, result } = decision
      if (result !== undefined && result.identity.methods.length > 0) {
        upgrade.subject = result.identity.subject
        upgrade.methods = result.identity.methods.join(',')
      }
      const upstream = route.upstream
      if (upstream.echo || !upstream.url) {
        return this.deny(upgrade, { status: 502, code: 'upstream_unavailable', detail: 'this upstream does not accept WebSocket connections' })
      }
      const headers = decision.headers
      headers.connection = 'Upgrade'
      headers.upgrade = req.headers.upgrade ?? 'websocket'
      req.headers = headers as IncomingMessage['headers']
      req.url = upstream.basePath + decision.target
      const url = new URL(upstream.url)
      const options: TunnelOptions = {
        target: { protocol: url.protocol, host: url.hostname, port: url.port || (url.protocol === 'https:' ? 443 : 80), ...(upstream.ca ? { ca: upstream.ca } : {}) } as httpProxy.ServerOptions['target'],
        ignorePath: false,
        prependPath: false,
        upgrade,
        upstream,
      }
      this.#proxy.ws(req, socket, head, options, (error: Error) => this.failed(upgrade, error))
    } catch (error) {
      this.log.warn({ requestId: upgrade.requestId, err: describeCause(error) }, 'websocket upgrade failed')
      this.deny(upgrade, faultProblem(error))
    }
  }

  /** The upstream side failed: before its answer, a 502 or 504 problem (on timeouts); after it, the tunnel closes. */
  private failed (upgrade: Upgrade, error: Error): void {
    const code = (error as NodeJS.ErrnoException).code === 'ETIMEDOUT' ? 'upstream_timeout' : 'upstream_unavailable'
    if (upgrade.answered) {
      this.log.debug({ requestId: upgrade.requestId, err: describeCause(error) }, 'websocket tunnel closed by an upstream error')
      upgrade.socket.destroy()
      return
    }
    this.log.warn({ requestId: upgrade.requestId, err: describeCause(error) }, 'websocket upstream error')
    this.deny(upgrade, code === 'upstream_timeout'
      ? { status: 504, code, detail: 'the upstream did not answer in time' }
      : { status: 502, code, detail: 'the upstream is unavailable' })
  }

  /** A refusal on a socket that has no ServerResponse: the same problem answer, then the connection closes. */
  private deny (upgrade: Upgrade, problem: Problem): void {
    const socket = upgrade.socket
    if (!upgrade.logged) this.requests.finished(upgrade.end(problem.status, problem.code))
    if (socket.destroyed) return
    socket.end(rawProblem(problem, upgrade.requestId))
    // Nothing reads an upgrade socket after this: drain what the client still sends (pipelined bytes) so its close
    // is seen and the socket ends, and bound the wait; else it stays half-open forever.
    socket.resume()
    ;(socket as Duplex & { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(5_000, () => socket.destroy())
  }
}

function carriesBody (req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/**
 * The upstream's limits on the upgrade request, which http-proxy does not apply: the TCP (and TLS) connection must be
 * up within connectTimeout, and the answer (101 or not) must come within the upstream's timeout.
 */
function watchUpstream (proxyReq: ClientRequest, upstream: Upstream): void {
  const timeout = (message: string) => {
    const error = Object.assign(new Error(message), { code: 'ETIMEDOUT' })
    proxyReq.destroy(error)
  }
  const connectTimer = setTimeout(() => timeout('upstream connection not established in time'), upstream.connectTimeoutMs)
  proxyReq.once('socket', (socket) => {
    if (!socket.connecting) { clearTimeout(connectTimer); return }
    socket.once('connect', () => clearTimeout(connectTimer))
  })
  const answerTimer = setTimeout(() => timeout('upstream did not answer the upgrade in time'), upstream.timeoutMs)
  const settle = () => { clearTimeout(connectTimer); clearTimeout(answerTimer) }
  proxyReq.once('response', settle)
  proxyReq.once('upgrade', settle)
  proxyReq.once('close', settle)
}
