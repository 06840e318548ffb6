import { Rejection, type Challenge } from '../../gateway/errors.js'
import type { RequestContext } from '../types.js'

/** RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/** `Bearer realm="..."`: the bare challenge, for a request that sent no token (RFC 6750 §3.1). */
export function bearerChallenge (realm: string): Challenge {
  return { scheme: 'Bearer', params: { realm } }
}

/** 401 `invalid_token` with `error="invalid_token", error_description="<detail>"`. The detail never holds the token. */
export function invalidToken (realm: string, detail: string): Rejection {
  return Rejection.unauthenticated('invalid_token', detail, {
    scheme: 'Bearer', params: { realm, error: 'invalid_token', error_description: detail },
  })
}

/**
 * The bearer token of a request, or the rejection:
 * - two Authorization headers, or an `access_token` query parameter: 400 `bad_request`;
 * - no Authorization header, or another scheme (Basic...): 401 `missing_credentials` with the bare
 *   challenge, so that `anyOf` can try its other members;
 * - `Bearer` with no token, a tab, or anything but one b64token after it: 401 `invalid_token` "malformed token".
 * The scheme is case-insensitive (RFC 9110 §11.1); one or more spaces may follow it (RFC 6750 §2.1: 1*SP).
 */
export function readBearer (ctx: RequestContext, realm: string): string | Rejection {
  const values = ctx.headerValues('authorization')
  if (values.length > 1) return Rejection.badRequest('only one Authorization header is allowed')
  if (ctx.rawQuery !== '' && ctx.query.has('access_token')) return Rejection.badRequest('tokens belong in the Authorization header')
  const header = values[0] ?? ctx.headers.authorization
  if (header === undefined || header === '') {
    return Rejection.unauthenticated('missing_credentials', 'bearer token required', bearerChallenge(realm))
  }
  let end = 0
  while (end < header.length && header[end] !== ' ' && header[end] !== '\t') end++
  if (end !== 6 || header.slice(0, 6).toLowerCase() !== 'bearer') {
    return Rejection.unauthenticated('missing_credentials', 'bearer token required', bearerChallenge(realm))
  }
  if (header[end] !== ' ') return invalidToken(realm, 'malformed token')
  let start = end
  while (header[start] === ' ') start++
  const token = header.slice(start)
  if (!B64TOKEN.test(token)) return invalidToken(realm, 'malformed token')
  return token
}
