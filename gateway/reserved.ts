import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { ServerHttp2Stream } from 'node:http2'
import type { ReservedAnswer } from '../policies/types.js'
import type { Generation } from './generation.js'
import { isTrusted, unmapAddress } from './net.js'
import { clientAddress } from './pipeline/client-address.js'
import type { Problem } from './problem.js'

/** A reserved endpoint's whole answer (`/.authgate/login`...), on any front door. */
export function writeReserved (res: ServerResponse, answer: ReservedAnswer, requestId: string): void {
  if (res.headersSent) { res.destroy(); return }
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value)
  res.setHeader('Content-Length', Buffer.byteLength(answer.body))
  res.setHeader('X-Request-Id', requestId)
  res.statusCode = answer.status
  res.end(answer.body)
}

/** The same answer on an HTTP/2 stream (header names lower-case, as HTTP/2 requires). */
export function respondReserved (stream: ServerHttp2Stream, answer: ReservedAnswer, requestId: string): void {
  const headers: OutgoingHttpHeaders = { ':status': answer.status }
  for (const [name, value] of Object.entries(answer.headers)) headers[name.toLowerCase()] = value as string | string[]
  headers['content-length'] = Buffer.byteLength(answer.body)
  headers['x-request-id'] = requestId
  stream.respond(headers)
  stream.end(answer.body)
}

/**
 * A 401 that carries `Location` (a browser navigation without a session): in proxy mode the browser is sent there
 * (302), over HTTP/1.1 and HTTP/2 alike; decision mode answers the 401 itself and its proxy redirects.
 */
export function loginRedirect (problem: Problem, method: string | undefined): Problem {
  if (problem.status !== 401 || problem.headers?.Location === undefined || (method !== 'GET' && method !== 'HEAD')) return problem
  return { ...problem, status: 302, challenges: undefined }
}

/** The client of a request to the gateway's own endpoints, as decide() finds it: X-Forwarded-For from trusted proxies only. */
export function reservedClient (runtime: Generation, remoteAddress: string | undefined, headers: IncomingHttpHeaders): string {
  const peer = unmapAddress(remoteAddress ?? '')
  if (!runtime.trustsAnyProxy || !isTrusted(runtime.trustProxies, peer)) return peer
  return clientAddress(runtime.trustProxies, peer, headers['x-forwarded-for'] as string | undefined)
}
