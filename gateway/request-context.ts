import type { Readable } from 'node:stream'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'
import type { Identity } from '../policies/types.js'
import type { ChainContext } from './pipeline/chain.js'
import { readBody } from './body.js'
import type { PeerState, RequestView } from './pipeline/request-view.js'

const NO_VALUES: readonly string[] = Object.freeze([])

/** The per-request view policies read. Query and body are computed only when asked for. */
export class HttpRequestContext implements ChainContext {
  identity: Partial<Identity> = {}
  private queryCache: URLSearchParams | undefined
  private bodyPromise: Promise<Buffer> | undefined
  private peer: PeerState | undefined

  constructor (
    private readonly req: RequestView,
    readonly requestId: string,
    readonly method: string,
    readonly path: string,
    readonly rawTarget: string,
    readonly rawQuery: string,
    readonly scheme: 'http' | 'https',
    readonly authority: string,
    readonly remoteAddress: string,
    readonly peerAddress: string,
    readonly listener: string,
    readonly route: string,
    readonly upstream: string,
    private readonly maxBodyBytes: number,
    readonly now: () => number,
  ) {}

  get headers (): Readonly<Record<string, string | undefined>> {
    return this.req.headers as Record<string, string | undefined>
  }

  headerValues (name: string): readonly string[] {
    // A header the edge removed (gateway-owned, untrusted forwarding) is gone from this view too.
    if (this.req.headers[name] === undefined) return NO_VALUES
    return this.req.headersDistinct[name] ?? NO_VALUES
  }

  get query (): URLSearchParams {
    this.queryCache ??= new URLSearchParams(this.rawQuery)
    return this.queryCache
  }

  get peerCert (): DetailedPeerCertificate | undefined { return this.peerState().cert }
  get peerCertRejected (): boolean { return this.peerState().rejected }

  private peerState () {
    if (this.peer) return this.peer
    if (this.req.clientCertificate !== undefined) return (this.peer = this.req.clientCertificate)
    const socket = this.req.socket as TLSSocket
    if (typeof socket.getPeerCertificate !== 'function') {
      this.peer = { cert: undefined, rejected: false }
    } else if (socket.encrypted === true) {
      this.peer = connectionPeer(socket)
    } else {
      this.peer = readPeer(socket)
    }
    return this.peer
  }

  body (): Promise<Buffer> {
    this.bodyPromise ??= readBody(this.req.bodySource ?? (this.req as unknown as Readable), this.maxBodyBytes)
    return this.bodyPromise
  }

  /** The buffered body if a policy read it. */
  get bufferedBody (): Promise<Buffer> | undefined { return this.bodyPromise }
}


function readPeer (socket: TLSSocket): PeerState {
  const cert = socket.getPeerCertificate(true)
  const presented = cert !== null && Object.keys(cert).length > 0
  return socket.authorized && presented ? { cert, rejected: false } : { cert: undefined, rejected: presented }
}

/**
 * The peer certificate of a TLS connection, read once per connection rather than once per request:
 * getPeerCertificate(true) builds the whole chain as objects, which made it most of an mTLS request's CPU time on a
 * keep-alive connection. Only a new handshake (TLS 1.2 renegotiation) can change it; it emits 'secure', which
 * drops the entry.
 */
const peerByConnection = new WeakMap<TLSSocket, PeerState>()

function connectionPeer (socket: TLSSocket): PeerState {
  let state = peerByConnection.get(socket)
  if (state === undefined) {
    state = readPeer(socket)
    peerByConnection.set(socket, state)
    socket.once('secure', () => peerByConnection.delete(socket))
  }
  return state
}
