import { AccessLog } from './access-log.js'
import { escapeControl, redactTarget, type Logger } from './log.js'
import type { Metrics } from './metrics.js'
import type { Refusal } from './pipeline/decide.js'

/** How one request ended, whatever front door it came through. */
export interface RequestEnd {
  readonly requestId: string
  readonly listener: string
  readonly method: string
  /** The request target as sent (redacted here). */
  readonly target: string
  readonly route: string | undefined
  readonly status: number
  readonly code: string
  readonly subject: string | undefined
  readonly methods: string | undefined
  readonly remote: string | undefined
  /** performance.now() when the request arrived. */
  readonly started: number
  /** Decision mode: the endpoint's proxy family (the access line and metrics then say mode "decide"). */
  readonly dialect?: string
  /** HTTP version of the front door: '1.1' unless said ('2' for an HTTP/2 stream). */
  readonly protocol?: '1.1' | '2'
}

/** The request's metrics and its one access-log line: the same for a proxied request and a WebSocket upgrade. */
export class RequestLog {
  readonly #accessLog: AccessLog
  readonly #metrics: Metrics

  constructor (log: Logger, metrics: Metrics) {
    this.#accessLog = new AccessLog(log)
    this.#metrics = metrics
  }

  /** Counts a refusal by its kind: credentials refused (401/403) by policy, rate limits by route. */
  refused (refusal: Refusal): void {
    const { status, code } = refusal.problem
    if (refusal.refusedBy !== undefined && (status === 401 || status === 403)) this.#metrics.authFailures.inc({ method: refusal.refusedBy, code })
    if (status === 429 && refusal.route) this.#metrics.rateLimited.inc({ route: refusal.route.name })
  }

  finished (end: RequestEnd): void {
    const durationMs = performance.now() - end.started
    const route = end.route ?? '(none)'
    if (end.dialect === undefined) this.#metrics.requests.inc({ route, status: end.status, code: end.code })
    else this.#metrics.requests.inc({ route, status: end.status, code: end.code, mode: 'decide', dialect: end.dialect })
    this.#metrics.duration.observe({ route }, durationMs / 1000)
    this.#accessLog.write({
      requestId: end.requestId,
      listener: end.listener,
      method: escapeControl(end.method),
      path: redactTarget(end.target),
      route,
      status: end.status,
      code: end.code,
      subject: end.subject !== undefined ? escapeControl(end.subject) : undefined,
      methods: end.methods,
      remote: end.remote,
      dialect: end.dialect,
      durationMs: Math.round(durationMs * 1000) / 1000,
      protocol: end.protocol ?? '1.1',
    })
  }
}
