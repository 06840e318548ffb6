import { METHODS, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import { isIP } from 'node:net'
import type { Readable } from 'node:stream'
import { Rejection } from '../errors.js'
import { unmapAddress } from '../net.js'
import type { PeerState, RequestView } from '../pipeline/request-view.js'
import { UNTRUSTED_FORWARDING } from '../pipeline/forward-headers.js'

/** The proxy family a decision request comes from: one endpoint each, no guessing between them (decide.md). */
export type Dialect = 'nginx' | 'forward' | 'envoy'

export interface Endpoint {
  readonly dialect: Dialect
  /** Envoy: the original path and query (what follows `/envoy`). */
  readonly target: string | undefined
}

/**
 * `/nginx`, `/forward`, `/envoy/<original path>`; anything else is no endpoint. A query on /nginx and /forward is
 * ignored: the original target comes from the headers, and Caddy's `forward_auth` appends the original query to
 * its `uri`.
 */
export function endpointOf (url: string): Endpoint | undefined {
  const path = url.startsWith('/envoy') ? url : url.split('?', 1)[0]
  if (path === '/nginx') return { dialect: 'nginx', target: undefined }
  if (path === '/forward') return { dialect: 'forward', target: undefined }
  // Envoy's ext_authz HTTP service sends `path_prefix` + the original :path, query included.
  if (url.startsWith('/envoy/') || url.startsWith('/envoy?')) return { dialect: 'envoy', target: url.slice('/envoy'.length) }
  return undefined
}

/** What the front door adds to the original request's description: its scheme, and a certificate the proxy forwarded. */
export interface Described {
  readonly view: OriginalRequest
  readonly scheme: 'http' | 'https'
}

/** Reads the client certificate a proxy forwarded in the decision request's headers, verified again. */
export type CertificateReader = (headers: IncomingHttpHeaders) => PeerState

/**
 * The original request as the proxy describes it: its method, target, host and scheme from the dialect's headers, its
 * other headers (the credentials) from the decision request itself, its client from the last X-Forwarded-For entry.
 * decide() reads it exactly as it reads a request it received. The headers that carry the description (and every
 * forwarding header) are not part of it: no policy or log sees X-Original-URL or X-Forwarded-Uri as the client's.
 */
export class OriginalRequest implements RequestView {
  readonly httpVersionMajor = 1
  readonly httpVersionMinor = 1
  #certificate: PeerState | undefined

  constructor (
    readonly method: string,
    readonly url: string,
    readonly headers: IncomingHttpHeaders,
    readonly rawHeaders: string[],
    readonly headersDistinct: NodeJS.Dict<string[]>,
    readonly socket: { readonly remoteAddress: string },
    readonly bodySource: Readable,
    /** The route may need a body the proxy did not send: `absent` (none), `partial` (Envoy cut it). */
    readonly bodyWithheld: 'absent' | 'partial' | undefined,
    private readonly decisionHeaders: IncomingHttpHeaders,
    private readonly certificates: CertificateReader,
  ) {}

  /** Verified only when a policy asks (mtls): a route that reads no certificate pays nothing for one. */
  get clientCertificate (): PeerState {
    this.#certificate ??= this.certificates(this.decisionHeaders)
    return this.#certificate
  }
}

/** Headers of a decision request that describe the original request or the path to authgate: never the client's. */
const DESCRIBING = new Set(['host', 'x-envoy-auth-partial-body', ...UNTRUSTED_FORWARDING])
/**
 * nginx's description headers. On /forward and /envoy they stay in the original request, where the edge checks
 * refuse X-Original-URL as in proxy mode: the proxy passes the client's header on to an upstream that may serve the
 * path it names (IIS, Symfony).
 */
const NGINX_DESCRIBING = new Set(['x-original-method', 'x-original-uri', 'x-original-url'])

/** Methods whose requests normally carry a body: given none, a body-reading route cannot decide (decide.md). */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH'])

/** Origin-form request target: `/`, then no whitespace, control character or fragment. */
const ORIGIN_FORM = /^\/[^\s#\u0000-\u001f\u007f]*$/
/** Absolute-form (X-Original-URL): scheme, authority, then an origin-form target or a query or nothing. */
const ABSOLUTE_FORM = /^(https?):\/\/([^/?#\s]+)([/?][^\s#\u0000-\u001f\u007f]*)?$/i

/**
 * Reconstructs the original request of a decision request from a trusted proxy. Anything missing, duplicated or
 * malformed is a 400: a decision on a request authgate cannot read is never 200.
 */
export function describeOriginal (endpoint: Endpoint, req: IncomingMessage, peerAddress: string, readCertificate: CertificateReader): Described | Rejection {
  const headers = req.headers
  const single = (name: string): string | undefined | Rejection => {
    const values = req.headersDistinct[name]
    if (values === undefined) return undefined
    if (values.length > 1) return Rejection.badRequest(`more than one ${name} header`)
    return values[0]
  }

  let method: string | undefined | Rejection
  let target: string | undefined
  let host: string | undefined | Rejection
  let urlScheme: string | undefined
  switch (endpoint.dialect) {
    case 'nginx': {
      method = single('x-original-method')
      const url = single('x-original-url')
      const uri = single('x-original-uri')
      if (url instanceof Rejection) return url
      if (uri instanceof Rejection) return uri
      if (url !== undefined) {
        const parts = ABSOLUTE_FORM.exec(url)
        if (parts === null) return Rejection.badRequest('X-Original-URL is not an absolute http(s) URL')
        urlScheme = parts[1]!.toLowerCase()
        host = parts[2]!
        target = parts[3] === undefined ? '/' : parts[3].startsWith('?') ? `/${parts[3]}` : parts[3]
        if (uri !== undefined && uri !== target) return Rejection.badRequest('X-Original-URL and X-Original-URI name different targets')
        // A client-sent X-Original-URL that the proxy let through must not pick another host than the one it saw.
        const forwardedHost = single('x-forwarded-host')
        if (forwardedHost instanceof Rejection) return forwardedHost
        if (forwardedHost !== undefined && forwardedHost.toLowerCase() !== host.toLowerCase()) {
          return Rejection.badRequest('X-Original-URL and X-Forwarded-Host name different hosts')
        }
      } else {
        if (uri === undefined) return Rejection.badRequest('X-Original-URI or X-Original-URL is required')
        target = uri
        host = single('x-forwarded-host')
      }
      break
    }
    case 'forward': {
      method = single('x-forwarded-method')
      const uri = single('x-forwarded-uri')
      if (uri instanceof Rejection) return uri
      if (uri === undefined) return Rejection.badRequest('X-Forwarded-Uri is required')
      target = uri
      host = single('x-forwarded-host')
      break
    }
    case 'envoy':
      method = req.method
      target = endpoint.target!
      host = headers.host
      break
  }
  if (method instanceof Rejection) return method
  if (method === undefined || !METHODS.includes(method)) return Rejection.badRequest('the original method is missing or is not an HTTP method')
  if (!ORIGIN_FORM.test(target)) return Rejection.badRequest('the original target must be a path with an optional query (no fragment, no spaces)')
  if (host instanceof Rejection) return host
  if (host === undefined || host === '') return Rejection.badRequest('the original host is missing (X-Forwarded-Host)')

  const proto = single('x-forwarded-proto')
  if (proto instanceof Rejection) return proto
  const forwardedScheme = proto === undefined ? undefined : proto.trim().toLowerCase()
  if (forwardedScheme !== undefined && forwardedScheme !== 'http' && forwardedScheme !== 'https') {
    return Rejection.badRequest('X-Forwarded-Proto must be http or https')
  }
  if (forwardedScheme !== undefined && urlScheme !== undefined && forwardedScheme !== urlScheme) {
    return Rejection.badRequest('X-Forwarded-Proto and X-Original-URL name different schemes')
  }
  const scheme = (forwardedScheme ?? urlScheme ?? 'http') as 'http' | 'https'

  const client = clientOf(req.headersDistinct['x-forwarded-for'], peerAddress)
  if (client instanceof Rejection) return client

  // The original's headers: the decision request's, less those that describe it, with the original Host.
  const rawHeaders: string[] = []
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase()
    if (DESCRIBING.has(lower) || lower.startsWith('x-forwarded-') || lower === 'x-ssl-client-cert') continue
    if (endpoint.dialect === 'nginx' && NGINX_DESCRIBING.has(lower)) continue
    rawHeaders.push(raw[i]!, raw[i + 1]!)
  }
  rawHeaders.push('Host', host)
  const view: IncomingHttpHeaders = {}
  const distinct: NodeJS.Dict<string[]> = {}
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i]!.toLowerCase()
    const value = rawHeaders[i + 1]!
    const list = distinct[lower]
    if (list === undefined) distinct[lower] = [value]
    else list.push(value)
    view[lower] = headers[lower] ?? value
  }
  view.host = host

  const declared = headers['content-length']
  const hasBody = headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0')
  const partial = endpoint.dialect === 'envoy' && headers['x-envoy-auth-partial-body'] === 'true'
  const withheld = partial ? 'partial' : !hasBody && BODY_METHODS.has(method) ? 'absent' : undefined

  return {
    view: new OriginalRequest(method, target, view, rawHeaders, distinct, { remoteAddress: client }, req, withheld, headers, readCertificate),
    scheme,
  }
}

/**
 * The original client: the last X-Forwarded-For entry, the one the trusted proxy appended (earlier entries are what
 * the client claimed). Without the header, the proxy itself: every client then shares its address (rate limits by ip
 * are stricter, never looser).
 */
export function clientOf (values: string[] | undefined, peerAddress: string): string | Rejection {
  if (values === undefined || values.length === 0) return peerAddress
  const list = values[values.length - 1]!
  const last = list.slice(list.lastIndexOf(',') + 1).trim()
  const bare = last.startsWith('[') && last.endsWith(']') ? last.slice(1, -1) : last
  if (isIP(bare) === 0) return Rejection.badRequest('the last X-Forwarded-For entry is not an IP address')
  return unmapAddress(bare)
}
