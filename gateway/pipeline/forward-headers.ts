import type { ChainResult } from './chain.js'
import { addIdentity, connectionTokens, HOP_BY_HOP } from '../identity.js'
import type { CompiledRoute, Generation } from '../generation.js'
import type { RequestView } from './request-view.js'

/**
 * Headers that name the client's address or scheme as some proxy saw it. Read only from a trusted proxy; from
 * anyone else they are removed before any policy runs and replaced when forwarding (with `X-Forwarded-*`, matched
 * by prefix).
 */
export const UNTRUSTED_FORWARDING = [
  'forwarded', 'x-real-ip', 'x-client-ip', 'true-client-ip', 'x-original-forwarded-for', 'cf-connecting-ip',
  'fastly-client-ip', 'x-cluster-client-ip', 'client-ip',
]

/**
 * Headers a `Connection` token may never remove: what the route was chosen on (Host), what frames the body, and every
 * credential or signed header. Honouring `Connection: Host` would let the upstream see another authority than the one
 * the route was matched on. The route's own credential and identifying headers are added per route.
 */
const NEVER_HOP_BY_HOP = new Set([
  'host', 'content-length', 'transfer-encoding', 'content-type', 'content-encoding', 'content-digest', 'repr-digest',
  'digest', 'date', 'authorization', 'cookie', 'x-api-key', 'signature', 'signature-input',
])

/** A Cookie header without the named cookies (each `name=value` pair whose name is listed is dropped). */
export function withoutCookies (cookie: string, names: readonly string[]): string {
  return cookie.split(';').map((pair) => pair.trim()).filter((pair) => {
    if (pair.length === 0) return false
    const eq = pair.indexOf('=')
    return !names.includes((eq < 0 ? pair : pair.slice(0, eq)).trim())
  }).join('; ')
}

/** The path and query sent upstream: the normalized path (less `stripPrefix`), the query exactly as received. */
export function forwardTarget (route: CompiledRoute, path: string, rawQuery: string): string {
  let forwardedPath = path
  if (route.stripPrefix !== undefined && path.startsWith(route.stripPrefix)) {
    forwardedPath = path.slice(route.stripPrefix.length)
    if (!forwardedPath.startsWith('/')) forwardedPath = '/' + forwardedPath
  }
  return rawQuery.length > 0 ? `${forwardedPath}?${rawQuery}` : forwardedPath
}

export interface ForwardPeer {
  readonly peerAddress: string
  readonly scheme: 'http' | 'https'
  readonly authority: string
  readonly trustedPeer: boolean
}

/**
 * The upstream's request headers: the client's (gateway-owned ones were removed at the edge), less hop-by-hop and
 * consumed credentials, with the gateway's `X-Forwarded-*` and the verified identity.
 */
export function upstreamHeaders (generation: Generation, route: CompiledRoute, req: RequestView, peer: ForwardPeer,
  result: ChainResult | undefined): Record<string, string | string[]> {
  const tokens = connectionTokens(req.headers.connection)
  const headers: Record<string, string | string[]> = {}
  const inbound = req.headers
  const trustedPeer = peer.trustedPeer
  for (const name in inbound) {
    if (HOP_BY_HOP.has(name) || route.consumed.has(name)) continue
    // From an untrusted peer no X-Forwarded-* is read (Ssl, Port, Prefix... too): the gateway sets its own below.
    if (!trustedPeer && name.startsWith('x-forwarded-')) continue
    // RFC 9110 §7.6.1 makes the fields named in Connection hop-by-hop, but never those the decision rests on.
    if (tokens !== undefined && tokens.has(name) && !NEVER_HOP_BY_HOP.has(name) && !route.connectionProtected.has(name)) continue
    const value = inbound[name]
    if (value !== undefined) headers[name] = value
  }
  if (trustedPeer) {
    const prior = inbound['x-forwarded-for']
    headers['x-forwarded-for'] = prior ? `${prior}, ${peer.peerAddress}` : peer.peerAddress
    headers['x-forwarded-proto'] ??= peer.scheme
    headers['x-forwarded-host'] ??= peer.authority
  } else {
    headers['x-forwarded-for'] = peer.peerAddress
    headers['x-forwarded-proto'] = peer.scheme
    if (peer.authority) headers['x-forwarded-host'] = peer.authority
  }
  if (generation.ownedCookies.length > 0 && typeof headers.cookie === 'string') {
    const kept = withoutCookies(headers.cookie, generation.ownedCookies)
    if (kept === '') delete headers.cookie
    else headers.cookie = kept
  }
  if (!route.upstream.preserveHost && route.upstream.host) headers.host = route.upstream.host
  if (result) {
    Object.assign(headers, result.upstreamHeaders)
    addIdentity(headers, result.identity, generation.identity)
  }
  return headers
}
