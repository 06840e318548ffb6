import { Rejection } from '../errors.js'
import { normalizePath } from '../router/index.js'
import type { RequestView } from './request-view.js'

/** What the edge checks established about a request, before routing. */
export interface Edge {
  readonly method: string
  /** Normalized path: the one matched and forwarded. */
  readonly path: string
  /** Query without `?`, exactly as sent. */
  readonly rawQuery: string
  readonly host: string
  readonly headerBytes: number
  readonly headerCount: number
  /** Some `X-Forwarded-*` header was sent (removed later unless the peer is a trusted proxy). */
  readonly forwardedFamily: boolean
}

/**
 * Checks every request gets before routing, whatever front door it came through: header names, one Host, the
 * target's normalization, API keys in the query, method overrides. Each refusal is 400 bad_request.
 */
export function checkEdge (req: RequestView): Edge | Rejection {
  const raw = req.rawHeaders
  let hostCount = 0
  let headerBytes = 0
  let forwardedFamily = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    // `X_Auth_Subject` would reach some upstreams as X-Auth-Subject (CGI, nginx): refuse the ambiguity.
    if (name.includes('_')) return Rejection.badRequest('header names containing "_" are refused')
    headerBytes += name.length + raw[i + 1]!.length + 4
    if (name.length === 4 && name.toLowerCase() === 'host') hostCount++
    else if (name.length > 12 && (name.charCodeAt(0) | 32) === 120 && name.slice(0, 12).toLowerCase() === 'x-forwarded-') forwardedFamily = true
  }
  if (hostCount > 1) return Rejection.badRequest('more than one Host header')
  // Node removes `chunked` and leaves any other transfer coding (`gzip, chunked`) undone: the upstream would get gzip
  // bytes with no header left to say so (Transfer-Encoding is hop-by-hop), and a signature would cover other bytes.
  const coding = req.headers['transfer-encoding']
  if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') return Rejection.badRequest('transfer codings other than chunked are refused')

  const target = normalizePath(req.url ?? '')
  if (!target.ok) return Rejection.badRequest(target.reason)
  // RFC 9112 §3.2: HTTP/1.1 needs a Host. Node refuses such requests itself, but hands upgrades over without it.
  if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
    return Rejection.badRequest('an HTTP/1.1 request needs a Host header')
  }
  const host = req.headers.host ?? ''
  // host[:port] only: userinfo, a path or spaces would be read as another host by URL parsers behind us.
  if (!HOST.test(host)) return Rejection.badRequest('the Host header must be a host name with an optional port')
  if (target.authority !== undefined && target.authority.toLowerCase() !== host.toLowerCase()) {
    return Rejection.badRequest('the absolute-form target and the Host header disagree')
  }
  if (target.rawQuery.length > 0 && hasKeyInQuery(target.rawQuery)) {
    return Rejection.badRequest('API keys belong in the X-API-Key header, not in the query string')
  }
  const method = req.method ?? 'GET'
  if (overridesMethod(req, target.rawQuery, method)) {
    return Rejection.badRequest('method overrides (X-HTTP-Method-Override, _method) are refused: send the method itself')
  }
  // IIS and some frameworks serve the path these name instead of the request's: the one path string would split.
  if (req.headers['x-original-url'] !== undefined || req.headers['x-rewrite-url'] !== undefined) {
    return Rejection.badRequest('X-Original-URL and X-Rewrite-URL are refused: the request target is the path')
  }
  return { method, path: target.path, rawQuery: target.rawQuery, host, headerBytes, headerCount: raw.length / 2, forwardedFamily }
}

/** A Host value: reg-name (unreserved characters), IPv4 or [IPv6], optional port; empty for HTTP/1.0. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]*)(?::\d{0,5})?$/

const METHOD_OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override']

/**
 * Frameworks behind us may honour a method override (Express method-override, Symfony/Laravel/Rails `_method`): a
 * request authorized as POST would run as DELETE. One that names another method than the request's is refused. The
 * parameter's name is compared after percent-decoding (`_%6Dethod`), case-insensitively, with `;` as a separator
 * too, and as PHP mangles it (`.method`), since that is how the frameworks behind us may read it.
 */
export function overridesMethod (req: RequestView, rawQuery: string, method: string): boolean {
  for (const name of METHOD_OVERRIDE_HEADERS) {
    const value = req.headers[name]
    if (value !== undefined && String(value).trim().toUpperCase() !== method) return true
  }
  if (rawQuery.length === 0 || !MAY_NAME_METHOD.test(rawQuery)) return false
  for (const pair of rawQuery.split(/[&;]/)) {
    const eq = pair.indexOf('=')
    const name = decodeComponent(eq === -1 ? pair : pair.slice(0, eq))
    if (name.trim().toLowerCase() !== '_method' && phpName(name).toLowerCase() !== '_method') continue
    const value = eq === -1 ? '' : decodeComponent(pair.slice(eq + 1))
    if (value.trim().toUpperCase() !== method) return true
  }
  return false
}
/** `method` raw (`_method`, PHP's `.method`), or any percent-escape that could spell it. */
const MAY_NAME_METHOD = /method|%/i

/**
 * A parameter name as PHP registers it (Laravel and Symfony read `_method` from there): cut at NUL, leading spaces
 * dropped, then spaces and dots become `_`, so `.method` and `%2Emethod` arrive as `_method`.
 */
function phpName (name: string): string {
  const nul = name.indexOf('\0')
  return (nul === -1 ? name : name.slice(0, nul)).replace(/^ +/, '').replace(/[ .]/g, '_')
}

/** Percent-decoding as form parsers do (`+` is a space); a malformed escape keeps the text as it is. */
function decodeComponent (text: string): string {
  const plus = text.replace(/\+/g, ' ')
  try { return decodeURIComponent(plus) } catch { return plus }
}

/** Any query value that looks like an API key is refused on every route: keys in URLs end up in logs. */
function hasKeyInQuery (rawQuery: string): boolean {
  if (!/agk|%61|%67|%6b|%5f/i.test(rawQuery)) return false
  // A key sent as a bare parameter (`?agk_...`) is a name, not a value: refused too. So is one behind an encoded
  // `=` or `&` (`?apikey%3Dagk_...`): an upstream that decodes before it splits reads it as a key parameter.
  for (const [name, value] of new URLSearchParams(rawQuery)) {
    if (KEY_IN_QUERY_TEXT.test(value) || KEY_IN_QUERY_TEXT.test(name)) return true
  }
  return false
}
const KEY_IN_QUERY_TEXT = /(?:^|[=&;,\s])agk_/
