/**
 * gRPC over the HTTP/2 front door (shared/design/http2.md "gRPC"): detection, the status a refusal becomes, and the
 * deadline a call carries. A refusal is a gRPC answer, never problem+json: HTTP 200, trailers-only.
 */

/** A request whose content-type starts with `application/grpc` is gRPC (`application/grpc+proto`, `+json`...). */
export function isGrpc (contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && contentType.length >= 16 && contentType.slice(0, 16).toLowerCase() === 'application/grpc'
}

/** gRPC status codes used here (grpc/doc/statuscodes.md). */
export const GrpcStatus = {
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const

/**
 * http2.md's mapping: 400 -> 3, 401 -> 16, 403 -> 7, 404 -> 12, 413/429 -> 8, 502/503 -> 14, 504 -> 4. Beyond it
 * (the spec is silent): 431 -> 8 like 413, 408 (the body stalled) -> 4, 500 -> 13, anything else -> 2.
 */
export function grpcStatusFor (httpStatus: number): number {
  switch (httpStatus) {
    case 400: return GrpcStatus.INVALID_ARGUMENT
    case 401: return GrpcStatus.UNAUTHENTICATED
    case 403: return GrpcStatus.PERMISSION_DENIED
    case 404: return GrpcStatus.UNIMPLEMENTED
    case 413: case 429: case 431: return GrpcStatus.RESOURCE_EXHAUSTED
    case 502: case 503: return GrpcStatus.UNAVAILABLE
    case 504: case 408: return GrpcStatus.DEADLINE_EXCEEDED
    case 500: return GrpcStatus.INTERNAL
    default: return GrpcStatus.UNKNOWN
  }
}

/** grpc-message is percent-encoded: every byte outside printable ASCII, and `%` itself (PROTOCOL-HTTP2.md). */
export function encodeGrpcMessage (text: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(text)) return text
  let out = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  }
  return out
}

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 }

/**
 * The call's deadline from `grpc-timeout` (1 to 8 digits and a unit: H M S m u n), in ms; undefined when absent;
 * NaN when malformed (refused as INVALID_ARGUMENT).
 */
export function grpcTimeoutMs (value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string') return NaN
  const match = /^(\d{1,8})([HMSmun])$/.exec(value)
  if (match === null) return NaN
  return Number(match[1]) * UNIT_MS[match[2]!]!
}
