import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { DetailedPeerCertificate } from 'node:tls'

/** The client certificate as the front door established it. */
export interface PeerState {
  readonly cert: DetailedPeerCertificate | undefined
  /** A certificate was presented but did not verify. */
  readonly rejected: boolean
}

/**
 * What decide() reads of a request. An HTTP/1.1 IncomingMessage is one as it is (no copy on the hot path); decision
 * mode (the original request a proxy describes) and HTTP/2 streams build their own.
 */
export interface RequestView {
  readonly method?: string
  readonly url?: string
  /** Lower-case names; decide() deletes gateway-owned ones from it before any policy reads it. */
  readonly headers: IncomingHttpHeaders
  readonly rawHeaders: readonly string[]
  readonly headersDistinct: NodeJS.Dict<string[]>
  readonly httpVersionMajor: number
  readonly httpVersionMinor: number
  /** The connection: its remote address, and the TLS client certificate unless `clientCertificate` says otherwise. */
  readonly socket: { readonly remoteAddress?: string } | null
  /** Where the body is read from; an IncomingMessage is its own body. */
  readonly bodySource?: Readable
  /**
   * Whether a body follows, when the protocol says so without Content-Length or Transfer-Encoding (an HTTP/2 stream
   * not ended with its headers); undefined: read from those headers.
   */
  readonly hasBody?: boolean
  /** Set when the client certificate does not come from `socket` (decision mode: forwarded by a proxy, verified again). */
  readonly clientCertificate?: PeerState
  /** Decision mode: the route may need a body the proxy did not send (`absent`) or sent only in part (`partial`). */
  readonly bodyWithheld?: 'absent' | 'partial'
}
