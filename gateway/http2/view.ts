import type { IncomingHttpHeaders } from 'node:http'
import type { ServerHttp2Stream } from 'node:http2'
import type { RequestView } from '../pipeline/request-view.js'

/**
 * Fields an HTTP/1.1 IncomingMessage keeps only the first of (Node's matchKnownFields): the same here, so a policy
 * reads the same `headers` over both protocols and sees every value in `headersDistinct`.
 */
const FIRST_WINS = new Set([
  'content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization', 'proxy-authorization',
  'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag',
  'last-modified', 'server', 'age', 'expires',
])

/**
 * An HTTP/2 stream's request as decide() reads it: no synthetic IncomingMessage. `:authority` becomes the Host
 * (http2.md: the host is `:authority`); pseudo-header fields are not headers. The socket is the session's, so the
 * mtls policy reads the TLS session's client certificate.
 */
export class Http2RequestView implements RequestView {
  readonly httpVersionMajor = 2
  readonly httpVersionMinor = 0
  #distinct: NodeJS.Dict<string[]> | undefined

  constructor (
    readonly method: string,
    readonly url: string,
    readonly headers: IncomingHttpHeaders,
    /** Name, value, name, value... lower-case names, pseudo-headers left out, Host first when it came as :authority. */
    readonly rawHeaders: readonly string[],
    readonly socket: { readonly remoteAddress?: string } | null,
    readonly bodySource: ServerHttp2Stream,
    readonly hasBody: boolean,
  ) {}

  /** Built on first use (policies that read every value of a field); most requests never ask. */
  get headersDistinct (): NodeJS.Dict<string[]> {
    if (this.#distinct !== undefined) return this.#distinct
    const distinct: NodeJS.Dict<string[]> = Object.create(null) as NodeJS.Dict<string[]>
    const raw = this.rawHeaders
    for (let i = 0; i < raw.length; i += 2) (distinct[raw[i]!] ??= []).push(raw[i + 1]!)
    this.#distinct = distinct
    return distinct
  }
}

/** What the stream's header block says before decide(): its view, or why it is malformed. */
export type StreamHead =
  | { readonly ok: true, readonly view: Http2RequestView }
  | { readonly ok: false, readonly reset: boolean, readonly detail: string }

/**
 * RFC 9113 §8.2.2: connection-specific fields make a request malformed (a stream error; nghttp2 resets most of these
 * itself, this is the gateway's own word on it). `TE` is allowed with `trailers` only.
 */
function connectionSpecific (name: string, value: string): boolean {
  switch (name) {
    case 'connection': case 'keep-alive': case 'proxy-connection': case 'transfer-encoding': case 'upgrade': return true
    case 'te': return value.trim().toLowerCase() !== 'trailers'
    default: return false
  }
}

/**
 * Reads the header block of a new stream (`rawHeaders` as the 'stream' event gives them: lower-case names, pseudo-
 * headers included). Malformed: connection-specific fields (reset), a Host that disagrees with :authority (400).
 */
export function readStreamHead (stream: ServerHttp2Stream, rawHeaders: readonly string[], endStream: boolean): StreamHead {
  let method = ''
  let path = ''
  let authority: string | undefined
  const headers: IncomingHttpHeaders = {}
  const raw: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    const value = rawHeaders[i + 1]!
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':method') method = value
      else if (name === ':path') path = value
      else if (name === ':authority') authority = value
      continue
    }
    if (connectionSpecific(name, value)) return { ok: false, reset: true, detail: `connection-specific header field "${name}"` }
    raw.push(name, value)
    const prior = headers[name]
    if (prior === undefined) {
      headers[name] = name === 'set-cookie' ? [value] : value
    } else if (name === 'set-cookie') {
      (prior as string[]).push(value)
    } else if (name === 'cookie') {
      // RFC 9113 §8.2.3: cookie crumbs are joined with "; ".
      headers.cookie = `${prior as string}; ${value}`
    } else if (!FIRST_WINS.has(name)) {
      headers[name] = `${prior as string}, ${value}`
    }
  }
  if (authority !== undefined) {
    const host = headers.host
    // RFC 9113 §8.3.1: a Host that differs from :authority is malformed; one that agrees is the same field.
    if (host !== undefined) {
      if (host.toLowerCase() !== authority.toLowerCase()) return { ok: false, reset: false, detail: 'the Host header and :authority disagree' }
    } else {
      headers.host = authority
      raw.unshift('host', authority)
    }
  }
  // A body of unknown length (no Content-Length, stream not ended with the headers) is described to policies as
  // HTTP/1.1 describes one: chunked. The signature schemes decide from these headers whether a body is covered, so
  // an HTTP/2 body can never pass as an empty one. Transfer-Encoding is hop-by-hop: never forwarded.
  if (!endStream && headers['content-length'] === undefined) headers['transfer-encoding'] = 'chunked'
  const socket = stream.session?.socket ?? null
  return { ok: true, view: new Http2RequestView(method, path, headers, raw, socket, stream, !endStream) }
}
