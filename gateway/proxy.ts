import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { Readable } from 'node:stream'
import { Pool } from 'undici'
import { GatewayError, Rejection } from './errors.js'
import { connectionTokens, HOP_BY_HOP } from './identity.js'
import { parseDuration } from './config/units.js'
import type { UpstreamConfig } from './config/types.js'

export interface Upstream {
  readonly name: string
  readonly echo: boolean
  readonly pool: Pool | undefined
  /** Path prefix of the upstream URL ('' when none), prepended to forwarded paths. */
  readonly basePath: string
  /** The upstream's own host:port, for Host when preserveHost is false. */
  readonly host: string
  readonly preserveHost: boolean
  readonly url: string | undefined
}

/** Keep-alive pools, one per upstream, built once per configuration generation. */
export function createUpstreams (configs: Record<string, UpstreamConfig>, baseDir: string): Map<string, Upstream> {
  const upstreams = new Map<string, Upstream>()
  for (const [name, config] of Object.entries(configs)) {
    if (config.echo === true) {
      upstreams.set(name, { name, echo: true, pool: undefined, basePath: '', host: '', preserveHost: true, url: undefined })
      continue
    }
    const url = new URL(config.url!)
    const timeoutMs = parseDuration(config.timeout)
    const pool = new Pool(url.origin, {
      connections: config.connections,
      pipelining: config.pipelining,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      keepAliveTimeout: 4_000,
      connect: {
        timeout: parseDuration(config.connectTimeout),
        ...(config.ca ? { ca: readFileSync(resolve(baseDir, config.ca)) } : {}),
      },
    })
    upstreams.set(name, {
      name,
      echo: false,
      pool,
      basePath: url.pathname === '/' ? '' : url.pathname.replace(/\/$/, ''),
      host: url.host,
      preserveHost: config.preserveHost,
      url: url.origin,
    })
  }
  return upstreams
}

export async function closeUpstreams (upstreams: Map<string, Upstream>): Promise<void> {
  await Promise.all([...upstreams.values()].map((u) => u.pool?.close().catch(() => {})))
}

/** Thrown by the body stream when a chunked body passes maxBodyBytes. */
export class BodyTooLargeError extends Error {
  constructor (readonly limitBytes: number) { super('request body too large') }
}

/**
 * The client's body as undici reads it. With a Content-Length within the limit (Node's parser never delivers
 * more than it says), the request stream itself; a chunked body is counted as it streams and cut at the limit.
 */
function requestBody (req: IncomingMessage, maxBytes: number): Readable {
  const length = req.headers['content-length']
  if (length !== undefined && req.headers['transfer-encoding'] === undefined && Number(length) <= maxBytes) return req
  return Readable.from(limitedBody(req, maxBytes), { objectMode: false })
}

/**
 * The signal that aborts the upstream request when the client goes away. undici accepts an EventEmitter as
 * `signal`: a fraction of the cost of an AbortController and its EventTarget listeners (bench/micro). The reason
 * is the one AbortController.abort() gives.
 */
class ClientGone extends EventEmitter {
  aborted = false
  reason: unknown = undefined

  abort (): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = new DOMException('This operation was aborted', 'AbortError')
    this.emit('abort')
  }
}

async function * limitedBody (req: IncomingMessage, maxBytes: number): AsyncGenerator<Buffer> {
  let total = 0
  for await (const chunk of req) {
    total += (chunk as Buffer).length
    if (total > maxBytes) throw new BodyTooLargeError(maxBytes)
    yield chunk as Buffer
  }
}

export interface ForwardRequest {
  readonly method: string
  /** Path and query as forwarded (normalized path). */
  readonly target: string
  readonly headers: Record<string, string | string[]>
  /** Buffered body (a policy read it), or undefined to stream the client's body. */
  readonly body: Buffer | undefined
  readonly hasBody: boolean
  readonly maxBodyBytes: number
  /** Added to the client response (X-Request-Id, RateLimit...). */
  readonly responseHeaders: Record<string, string>
}

/**
 * Streams the request to the upstream and the answer back. Resolves when the response is finished;
 * rejects with a GatewayError (502/504) or a 413 Rejection wrapped in RejectedError when nothing was sent yet.
 */
export async function forward (upstream: Upstream, req: IncomingMessage, res: ServerResponse, request: ForwardRequest): Promise<number> {
  if (upstream.echo) return echo(req, res, request)
  const pool = upstream.pool!
  const gone = new ClientGone()
  const onClose = () => { if (!res.writableFinished) gone.abort() }
  res.on('close', onClose)
  let status = 0
  try {
    await pool.stream({
      path: upstream.basePath + request.target,
      method: request.method,
      headers: request.headers,
      body: request.body ?? (request.hasBody ? requestBody(req, request.maxBodyBytes) : null),
      signal: gone,
      opaque: res,
    }, ({ statusCode, headers }) => {
      status = statusCode
      res.statusCode = statusCode
      // RFC 9110 §7.6.1: the fields the upstream names in Connection are hop-by-hop too.
      const connection = headers.connection
      const named = connectionTokens(Array.isArray(connection) ? connection.join(',') : connection)
      for (const name in headers) {
        const value = headers[name]
        // X-Request-Id is the gateway's: one id per request, whatever the upstream says.
        if (value === undefined || HOP_BY_HOP.has(name) || named?.has(name) || name === 'x-request-id') continue
        res.setHeader(name, value)
      }
      const added = request.responseHeaders
      for (const name in added) res.setHeader(name, added[name]!)
      return res
    })
    return status
  } catch (error) {
    throw upstreamError(error)
  } finally {
    res.off('close', onClose)
  }
}

/** Carries a Rejection (413) out of the forwarding path. */
export class RejectedError extends Error {
  constructor (readonly rejection: Rejection) { super(rejection.detail) }
}

function upstreamError (error: unknown): Error {
  if (error instanceof BodyTooLargeError) return new RejectedError(Rejection.payloadTooLarge(error.limitBytes))
  const cause = error as { code?: string, name?: string, cause?: unknown }
  if (cause.cause instanceof BodyTooLargeError) return new RejectedError(Rejection.payloadTooLarge(cause.cause.limitBytes))
  const code = cause.code ?? ''
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new GatewayError(504, 'upstream_timeout', 'upstream did not answer in time', { cause: error })
  }
  return new GatewayError(502, 'upstream_unavailable', 'upstream unavailable', { cause: error })
}

/** The built-in `echo: true` upstream: answers with the request it would have received, as JSON. */
async function echo (req: IncomingMessage, res: ServerResponse, request: ForwardRequest): Promise<number> {
  let body = request.body
  if (body === undefined && request.hasBody) {
    const chunks: Buffer[] = []
    try {
      for await (const chunk of limitedBody(req, request.maxBodyBytes)) chunks.push(chunk)
    } catch (error) {
      throw upstreamError(error)
    }
    body = Buffer.concat(chunks)
  }
  const q = request.target.indexOf('?')
  const payload = JSON.stringify({
    method: request.method,
    path: q === -1 ? request.target : request.target.slice(0, q),
    query: q === -1 ? '' : request.target.slice(q + 1),
    headers: request.headers,
    body: body === undefined ? '' : body.toString('utf8'),
  })
  res.statusCode = 200
  for (const [name, value] of Object.entries(request.responseHeaders)) res.setHeader(name, value)
  res.setHeader('Content-Type', 'application/json')
  res.setHeader('Content-Length', Buffer.byteLength(payload))
  res.end(payload)
  return 200
}
