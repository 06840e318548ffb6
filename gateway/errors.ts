/**
 * Rejections are values (an expected "no"); faults are exceptions (something broke).
 * The codes are DESIGN.md's table: stable, logged, asserted in tests.
 */

export type RejectionCode =
  | 'bad_request'
  | 'missing_credentials' | 'invalid_credentials' | 'invalid_token' | 'invalid_signature'
  | 'replayed_request' | 'client_certificate_required'
  | 'insufficient_scope' | 'forbidden'
  | 'no_route'
  | 'payload_too_large' | 'headers_too_large'
  | 'request_timeout'
  | 'rate_limited'

export type FaultCode = 'upstream_unavailable' | 'store_unavailable' | 'upstream_timeout' | 'internal_error'

export type ErrorCode = RejectionCode | FaultCode

export type RejectionStatus = 400 | 401 | 403 | 404 | 408 | 413 | 429 | 431

/** One `WWW-Authenticate` challenge (RFC 9110 §11.6.1). Parameters are written as quoted-strings. */
export interface Challenge {
  readonly scheme: string
  readonly params: Readonly<Record<string, string>>
}

export class Rejection {
  readonly status: RejectionStatus
  readonly code: RejectionCode
  /** Client-visible; never echoes a credential or other input. */
  readonly detail: string
  /** The challenge of the method that rejected, possibly with error params (RFC 6750 §3.1). */
  readonly challenge: Challenge | undefined
  /** Extra response headers (Retry-After, RateLimit, Accept-Signature...). */
  readonly headers: Readonly<Record<string, string>>

  private constructor (status: RejectionStatus, code: RejectionCode, detail: string,
    challenge?: Challenge, headers: Record<string, string> = {}) {
    this.status = status
    this.code = code
    this.detail = detail
    this.challenge = challenge
    this.headers = headers
  }

  /** The request itself is malformed or ambiguous. */
  static badRequest (detail: string) {
    return new Rejection(400, 'bad_request', detail)
  }

  /** Who you are is unknown. RFC 9110 §15.5.2: a 401 must carry a challenge. */
  static unauthenticated (code: RejectionCode, detail: string, challenge: Challenge, headers?: Record<string, string>) {
    return new Rejection(401, code, detail, challenge, headers)
  }

  /** We know who you are, and the answer is no (insufficient_scope may add a challenge). */
  static forbidden (code: 'insufficient_scope' | 'forbidden', detail: string, challenge?: Challenge) {
    return new Rejection(403, code, detail, challenge)
  }

  static tooManyRequests (detail: string, headers: Record<string, string>) {
    return new Rejection(429, 'rate_limited', detail, undefined, headers)
  }

  static noRoute () {
    return new Rejection(404, 'no_route', 'no route matches this request')
  }

  static payloadTooLarge (limitBytes: number) {
    return new Rejection(413, 'payload_too_large', `request body exceeds ${limitBytes} bytes`)
  }

  /** The request body stalled for the route's bodyIdleTimeout. */
  static requestTimeout () {
    return new Rejection(408, 'request_timeout', 'request body not received in time')
  }

  static headersTooLarge () {
    return new Rejection(431, 'headers_too_large', 'request headers are too large')
  }
}

export function isRejection (value: unknown): value is Rejection {
  return value instanceof Rejection
}

/** A fault: status and code from the same table; the cause is logged, the client sees only the code. */
export class GatewayError extends Error {
  readonly status: number
  readonly code: FaultCode
  constructor (status: number, code: FaultCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.status = status
    this.code = code
  }
}

/** The store (Redis) failed or timed out. */
export class StoreUnavailableError extends GatewayError {
  constructor (message: string, options?: ErrorOptions) {
    super(503, 'store_unavailable', message, options)
  }
}

/** One problem found in a configuration, positioned when the loader can map it to YAML. */
export interface ConfigIssue {
  readonly severity: 'error' | 'warning'
  /** Path inside the document, e.g. ['routes', 2, 'policies', 0, 'jwt', 'provider']. */
  readonly path: ReadonlyArray<string | number>
  readonly message: string
  readonly fix?: string
  readonly file?: string
  readonly line?: number
  readonly col?: number
}

export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[]
  constructor (issues: readonly ConfigIssue[], options?: ErrorOptions) {
    super(formatIssues(issues), options)
    this.name = 'ConfigError'
    this.issues = issues
  }
}

export function formatPath (path: ReadonlyArray<string | number>): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out === '' ? part : `.${part}`
  }
  return out
}

/** `FILE:LINE:COL: error: PATH: MESSAGE` and an indented `fix:` line, as `authgate check` prints. */
export function formatIssues (issues: readonly ConfigIssue[]): string {
  return issues.map((issue) => {
    const where = issue.file ? `${issue.file}:${issue.line ?? 1}:${issue.col ?? 1}: ` : ''
    const path = issue.path.length > 0 ? `${formatPath(issue.path)}: ` : ''
    const fix = issue.fix ? `\n    fix: ${issue.fix}` : ''
    return `${where}${issue.severity}: ${path}${issue.message}${fix}`
  }).join('\n')
}
