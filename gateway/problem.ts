import type { ServerResponse } from 'node:http'
import { STATUS_CODES } from 'node:http'
import { GatewayError, type Challenge } from './errors.js'
import { challengesFor, formatChallenge, type ChainRejection, type Step } from './pipeline/chain.js'

export interface Problem {
  readonly status: number
  readonly code: string
  readonly detail: string
  readonly challenges?: readonly Challenge[]
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * The one place a refusal becomes an answer: a 401 carries one challenge per method the route accepts (the refusing
 * method's own, with its error parameters, in its place); a 403 the refusing step's challenge (insufficient_scope);
 * the response headers the chain gathered (RateLimit...) go on every answer.
 */
export function chainProblem (steps: readonly Step[], refused: ChainRejection): Problem {
  const rejection = refused.rejection
  const problem: { -readonly [K in keyof Problem]: Problem[K] } = {
    status: rejection.status,
    code: rejection.code,
    detail: rejection.detail,
    headers: { ...refused.responseHeaders, ...rejection.headers },
  }
  if (rejection.status === 401) problem.challenges = challengesFor(steps, refused)
  else if (rejection.status === 403 && rejection.challenge) problem.challenges = [rejection.challenge]
  return problem
}

/** A fault (store down, upstream gone, a bug): the client sees the code and a fixed text, never the cause. */
export function faultProblem (error: unknown): Problem {
  if (error instanceof GatewayError) return { status: error.status, code: error.code, detail: publicDetail(error) }
  return { status: 500, code: 'internal_error', detail: 'internal error' }
}

function publicDetail (error: GatewayError): string {
  switch (error.code) {
    case 'store_unavailable': return 'the credential store is unavailable'
    case 'upstream_timeout': return 'the upstream did not answer in time'
    case 'upstream_unavailable': return 'the upstream is unavailable'
    default: return 'internal error'
  }
}

/** What a fault's log line says about it: message and code of the error and its cause, no stack. */
export function describeCause (error: unknown): Record<string, unknown> {
  const e = error as { message?: string, code?: string, cause?: { message?: string, code?: string } }
  return { message: e?.message, code: e?.code, cause: e?.cause ? { message: e.cause.message, code: e.cause.code } : undefined }
}

/** RFC 9457 problem body: status, title, error (the stable code), detail, requestId. */
export function problemBody (problem: Problem, requestId: string): string {
  return JSON.stringify({
    status: problem.status,
    title: STATUS_CODES[problem.status] ?? 'Error',
    error: problem.code,
    detail: problem.detail,
    requestId,
  })
}

/** `status`: what the response says when it differs from the problem's (decision mode's /nginx sends 403 for all). */
export function sendProblem (res: ServerResponse, problem: Problem, requestId: string, status = problem.status): void {
  if (res.headersSent) { res.destroy(); return }
  const body = problemBody(problem, requestId)
  if (problem.headers) for (const [name, value] of Object.entries(problem.headers)) res.setHeader(name, value)
  if (problem.challenges && problem.challenges.length > 0) res.setHeader('WWW-Authenticate', problem.challenges.map(formatChallenge))
  res.setHeader('Content-Type', 'application/problem+json')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.setHeader('Cache-Control', 'no-store')
  res.setHeader('X-Request-Id', requestId)
  res.statusCode = status
  res.end(body)
}

/** For sockets without a ServerResponse (parse errors, 431, rejected WebSocket upgrades). */
export function rawProblem (problem: Problem, requestId: string, close = true): string {
  const body = problemBody(problem, requestId)
  const lines = [
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? 'Error'}`,
    'Content-Type: application/problem+json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    `X-Request-Id: ${requestId}`,
  ]
  for (const challenge of problem.challenges ?? []) lines.push(`WWW-Authenticate: ${formatChallenge(challenge)}`)
  for (const [name, value] of Object.entries(problem.headers ?? {})) lines.push(`${name}: ${value}`)
  if (close) lines.push('Connection: close')
  return `${lines.join('\r\n')}\r\n\r\n${body}`
}
