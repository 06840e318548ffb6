import type { ServerResponse } from 'node:http'
import { STATUS_CODES } from 'node:http'
import type { Challenge } from './errors.js'
import { formatChallenge } from './chain.js'

export interface Problem {
  readonly status: number
  readonly code: string
  readonly detail: string
  readonly challenges?: readonly Challenge[]
  readonly headers?: Readonly<Record<string, string>>
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

export function sendProblem (res: ServerResponse, problem: Problem, requestId: string): void {
  if (res.headersSent) { res.destroy(); return }
  const body = problemBody(problem, requestId)
  if (problem.headers) for (const [name, value] of Object.entries(problem.headers)) res.setHeader(name, value)
  if (problem.challenges && problem.challenges.length > 0) res.setHeader('WWW-Authenticate', problem.challenges.map(formatChallenge))
  res.setHeader('Content-Type', 'application/problem+json')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.setHeader('Cache-Control', 'no-store')
  res.setHeader('X-Request-Id', requestId)
  res.statusCode = problem.status
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
