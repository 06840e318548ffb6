import http2, { type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { Server, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import type { ListenerConfig } from '../config/types.js'
import type { RequestHandler } from '../handler.js'
import { parseSize } from '../config/units.js'
import { Http2Front, type Http2ListenerRef } from './front.js'

/** Whether a listener speaks HTTP/2, and how: ALPN on TLS (default on), prior knowledge on plain (default off). */
export function http2Mode (config: ListenerConfig): 'alpn' | 'prior-knowledge' | false {
  // A decision listener answers the proxies' HTTP/1.1 subrequests only.
  if (config.mode === 'decide') return false
  if (config.tls) return config.http2 === false ? false : 'alpn'
  return config.http2 === 'prior-knowledge' ? 'prior-knowledge' : false
}

/** The HTTP/2 side of a listener: sessions handed over by the listener's own server, never listening itself. */
export interface Http2Side {
  /** GOAWAY to every session: no new streams, the open ones finish. */
  drain (): void
}

const kFront = Symbol('h2front')
type FrontSession = Http2Session & { [kFront]?: { front: Http2Front, ref: Http2ListenerRef } }

/** Each session's 'stream' event, with the session as `this` (a destroyed stream no longer knows it). */
function onSessionStream (this: FrontSession, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
  const bound = this[kFront]!
  bound.front.handleStream(bound.ref, this, stream, headers, flags, rawHeaders)
}

const fronts = new WeakMap<RequestHandler, Http2Front>()

/** Most header fields per request accepted by HTTP/2's decoder (the route's maxHeaderCount still applies). */
const MAX_HEADER_PAIRS = 256
/** Idle HTTP/2 connections (no frames at all) are closed after this long. */
const SESSION_IDLE_MS = 120_000

/**
 * Takes over the connections of `server` (the listener's http or https server) that speak HTTP/2: on TLS those whose
 * ALPN chose h2, on a plain `prior-knowledge` listener those that open with the HTTP/2 preface. Every other
 * connection reaches the HTTP/1.1 server exactly as before, so HTTP/1.1 clients pay nothing for it. Sockets handed
 * over are added to `sockets`, which the listener cuts at its drain deadline.
 */
export function attachHttp2 (server: Server, config: ListenerConfig, handler: RequestHandler, ref: { name: string, scheme: 'http' | 'https' },
  maxHeaderBytes: number, sockets: Set<Duplex>): Http2Side {
  const mode = http2Mode(config)
  if (mode === false) return { drain () {} }
  let front = fronts.get(handler)
  if (front === undefined) { front = new Http2Front(handler); fronts.set(handler, front) }
  const limits = config.http2Limits
  const h2ref: Http2ListenerRef = { name: ref.name, scheme: ref.scheme, maxResetsPerSecond: limits?.maxResetsPerSecond ?? 100 }
  const h2: Http2Server = http2.createServer({
    settings: {
      maxConcurrentStreams: limits?.maxConcurrentStreams ?? 100,
      maxHeaderListSize: limits?.maxHeaderListBytes !== undefined ? parseSize(limits.maxHeaderListBytes) : maxHeaderBytes,
      enablePush: false,
    },
    maxHeaderListPairs: MAX_HEADER_PAIRS,
    // A client that sends invalid frames, or opens streams past maxConcurrentStreams, loses the connection sooner
    // than Node's defaults (1000, 100).
    maxSessionInvalidFrames: 100,
    maxSessionRejectedStreams: 100,
  })
  h2.setTimeout(SESSION_IDLE_MS)
  const sessions = new Set<Http2Session>()
  h2.on('session', (session: Http2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
    ;(session as FrontSession)[kFront] = { front: front!, ref: h2ref }
    session.on('stream', onSessionStream)
  })
  // Session errors (a peer's protocol error, a reset connection) end that session only.
  h2.on('sessionError', () => {})

  const handOver = (socket: Duplex) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    h2.emit('connection', socket)
  }
  if (mode === 'alpn') {
    const http1 = server.listeners('secureConnection') as Array<(socket: TLSSocket) => void>
    server.removeAllListeners('secureConnection')
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'h2') handOver(socket)
      else for (const listener of http1) listener.call(server, socket)
    })
  } else {
    const http1 = server.listeners('connection') as Array<(socket: Duplex) => void>
    server.removeAllListeners('connection')
    server.on('connection', (socket: Duplex) => sniffPreface(socket, () => handOver(socket), () => {
      for (const listener of http1) listener.call(server, socket)
      // The bytes read to sniff wait in the socket's buffer: flowing again hands them to the HTTP/1.1 parser.
      socket.resume()
    }))
  }
  return {
    drain () { for (const session of sessions) session.close() },
  }
}

const SNIFF_TIMEOUT_MS = 10_000
function destroySocket (this: Socket): void { this.destroy() }

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n')

/**
 * Reads the first bytes of a plain connection: the HTTP/2 connection preface goes to HTTP/2, anything else to
 * HTTP/1.1; the bytes read are put back first. A connection that sends nothing is left to the HTTP/1.1 timeouts.
 */
function sniffPreface (socket: Duplex, onHttp2: () => void, onHttp1: () => void): void {
  let seen: Buffer = Buffer.alloc(0)
  const onData = (chunk: Buffer) => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk])
    const n = Math.min(seen.length, PREFACE.length)
    const matches = seen.subarray(0, n).equals(PREFACE.subarray(0, n))
    if (matches && n < PREFACE.length) return
    socket.off('data', onData)
    socket.off('close', onClose)
    ;(socket as Socket).setTimeout(0)
    ;(socket as Socket).off('timeout', destroySocket)
    socket.pause()
    socket.unshift(seen)
    if (matches) onHttp2()
    else onHttp1()
  }
  const onClose = () => socket.off('data', onData)
  socket.on('data', onData)
  socket.once('close', onClose)
  // Until it says which protocol, a connection is held for no longer than this.
  ;(socket as Socket).setTimeout(SNIFF_TIMEOUT_MS, destroySocket)
}
