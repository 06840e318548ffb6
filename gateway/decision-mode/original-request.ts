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
 *
 * The decision request is authgate's own to change: its headers become the original's in place (the describing and
 * forwarding ones removed, Host set to the original host) rather than copied. Duplicates need no count: Node joins
 * a repeated X-Original-* / X-Forwarded-* header with ", ", which no valid method, target, host or scheme contains.
 */
export function describeOriginal (endpoint: Endpoint, req: IncomingMessage, peerAddress: string, readCertificate: CertificateReader): Described | Rejection {
  const headers = req.headers
  const single = (name: string): string | undefined => headers[name] as string | undefined

  let method: string | undefined
  let target: string | undefined
  let host: string | undefined
  let urlScheme: string | undefined
  switch (endpoint.dialect) {
    case 'nginx': {
      method = single('x-original-method')
      const url = single('x-original-url')
      const uri = single('x-original-uri')
      if (url !== undefined) {
        const parts = ABSOLUTE_FORM.exec(url)
        if (parts === null) return Rejection.badRequest('X-Original-URL is not an absolute http(s) URL')
        urlScheme = parts[1]!.toLowerCase()
        host = parts[2]!
        target = parts[3] === undefined ? '/' : parts[3].startsWith('?') ? `/${parts[3]}` : parts[3]
        if (uri !== undefined && uri !== target) return Rejection.badRequest('X-Original-URL and X-Original-URI name different targets')
        // A client-sent X-Original-URL that the proxy let through must not pick another host than the one it saw.
        const forwardedHost = single('x-forwarded-host')
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
  if (method === undefined || !METHODS.includes(method)) return Rejection.badRequest('the original method is missing or is not an HTTP method')
  if (!ORIGIN_FORM.test(target)) return Rejection.badRequest('the original target must be one path with an optional query (no fragment, no spaces)')
  if (host === undefined || host === '') return Rejection.badRequest('the original host is missing (X-Forwarded-Host)')

  const proto = single('x-forwarded-proto')
  const forwardedScheme = proto === undefined ? undefined : proto.trim().toLowerCase()
  if (forwardedScheme !== undefined && forwardedScheme !== 'http' && forwardedScheme !== 'https') {
    return Rejection.badRequest('X-Forwarded-Proto must be http or https')
  }
  if (forwardedScheme !== undefined && urlScheme !== undefined && forwardedScheme !== urlScheme) {
    return Rejection.badRequest('X-Forwarded-Proto and X-Original-URL name different schemes')
  }
  const scheme = (forwardedScheme ?? urlScheme ?? 'http') as 'http' | 'https'

  const client = clientOf(single('x-forwarded-for'), peerAddress)
  if (client instanceof Rejection) return client

  const declared = headers['content-length']
  const hasBody = headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0')
  const partial = endpoint.dialect === 'envoy' && headers['x-envoy-auth-partial-body'] === 'true'
  const withheld = partial ? 'partial' : !hasBody && BODY_METHODS.has(method) ? 'absent' : undefined
  const certificates = forwardedCertificateHeaders(headers)

  // The original's headers: the decision request's, less those that describe it, with the original Host.
  const nginx = endpoint.dialect === 'nginx'
  for (const name in headers) {
    if (DESCRIBING.has(name) || name.startsWith('x-forwarded-') || name === 'x-ssl-client-cert' || (nginx && NGINX_DESCRIBING.has(name))) delete headers[name]
  }
  headers.host = host

  return {
    view: new OriginalRequest(method, target, headers, req.rawHeaders, req.headersDistinct, { remoteAddress: client }, req, withheld, certificates, readCertificate),
    scheme,
  }
}

const NO_CERTIFICATE_HEADERS: IncomingHttpHeaders = Object.freeze({})

/** The headers a certificate reader looks at, kept before the view drops them (read only if a policy asks). */
function forwardedCertificateHeaders (headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const xfcc = headers['x-forwarded-client-cert']
  const nginx = headers['x-ssl-client-cert']
  const traefik = headers['x-forwarded-tls-client-cert']
  if (xfcc === undefined && nginx === undefined && traefik === undefined) return NO_CERTIFICATE_HEADERS
  return { 'x-forwarded-client-cert': xfcc, 'x-ssl-client-cert': nginx, 'x-forwarded-tls-client-cert': traefik }
}

/**
 * The original client: the last X-Forwarded-For entry, the one the trusted proxy appended (earlier entries are what
 * the client claimed). Without the header, the proxy itself: every client then shares its address (rate limits by ip
 * are stricter, never looser).
 */
export function clientOf (forwardedFor: string | undefined, peerAddress: string): string | Rejection {
  if (forwardedFor === undefined) return peerAddress
  const last = forwardedFor.slice(forwardedFor.lastIndexOf(',') + 1).trim()
  const bare = last.startsWith('[') && last.endsWith(']') ? last.slice(1, -1) : last
  if (isIP(bare) === 0) return Rejection.badRequest('the last X-Forwarded-For entry is not an IP address')
  return unmapAddress(bare)
}
