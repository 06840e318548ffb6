import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { resolve } from 'node:path'
import type { SecureContextOptions, TLSSocket } from 'node:tls'
import type { Duplex } from 'node:stream'
import type { ListenerConfig, TlsConfig } from './config/types.js'
import type { Logger } from './log.js'
import { parseAddress } from './net.js'
import { rawProblem } from './problem.js'
import type { RequestHandler } from './handler.js'
import { randomUUID } from 'node:crypto'
import { attachHttp2, http2Mode } from './http2/server.js'

export interface ListenerLimits {
  readonly maxHeaderBytes: number
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
}

export interface Listener {
  readonly name: string
  readonly config: ListenerConfig
  readonly server: http.Server
  /** `http://127.0.0.1:PORT` or `https://...` as bound (port 0 resolved). */
  readonly url: string
  /** Re-reads certificate, key, CA and CRL; a broken file keeps the old context (throws, caller logs). */
  reloadTls (baseDir: string): void
  close (deadlineMs: number): Promise<void>
}

/** TLS 1.2 minimum; client certificates requested when clientCA is set; 0-RTT never enabled (Node has none). */
export function tlsOptions (tls: TlsConfig, baseDir: string): SecureContextOptions & { requestCert: boolean, rejectUnauthorized: boolean } {
  const read = (file: string) => readFileSync(resolve(baseDir, file))
  const clientCA = tls.clientCA !== undefined
  return {
    cert: read(tls.cert),
    key: read(tls.key),
    ...(clientCA ? { ca: read(tls.clientCA!) } : {}),
    ...(tls.crl !== undefined ? { crl: pemBlocks(read(tls.crl)) } : {}),
    minVersion: tls.minVersion ?? 'TLSv1.2',
    requestCert: clientCA,
    rejectUnauthorized: clientCA && tls.clientCert === 'required',
  }
}

/**
 * The PEM blocks of a file, one string each: given one string, Node reads only the first CRL of a bundle, and a chain
 * whose intermediate has its CRL second in the file would then fail every handshake (UNABLE_TO_GET_CRL).
 */
function pemBlocks (text: Buffer): string[] {
  const blocks = text.toString('utf8').match(/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?-----END [A-Z0-9 ]+-----/g)
  return blocks ?? [text.toString('utf8')]
}

export async function openListener (config: ListenerConfig, baseDir: string, handler: RequestHandler,
  limits: ListenerLimits, log: Logger): Promise<Listener> {
  const scheme = config.tls ? 'https' : 'http'
  const ref = { name: config.name, scheme } as const
  const serverOptions: http.ServerOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: 5_000,
    insecureHTTPParser: false,
    // Node checks the two timeouts above only this often (default 30 s): check often enough that they hold.
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
  }
  const deciding = config.mode === 'decide'
  const onRequest = deciding
    ? (req: http.IncomingMessage, res: http.ServerResponse) => { void handler.handleDecision(ref, req, res) }
    : (req: http.IncomingMessage, res: http.ServerResponse) => { void handler.handle(ref, req, res) }
  // HTTP/2 (http2/server.ts): ALPN offers h2 first; h2 connections are handed to the HTTP/2 front door.
  const alpn = http2Mode(config) === 'alpn' ? { ALPNProtocols: ['h2', 'http/1.1'] } : {}
  const server: http.Server = config.tls
    ? https.createServer({ ...serverOptions, ...tlsOptions(config.tls, baseDir), ...alpn }, onRequest)
    : http.createServer(serverOptions, onRequest)

  // Upgraded sockets (WebSocket tunnels) leave the server's connection list: closeAllConnections() would not end
  // them, and a tunnel open at shutdown would hold close() forever. Kept here to be cut at the deadline.
  const upgraded = new Set<Duplex>()
  const h2 = attachHttp2(server, config, handler, ref, limits.maxHeaderBytes, upgraded)
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // A decision listener forwards nothing, tunnels included: a proxy asks about an upgrade with an ordinary request.
    if (deciding) {
      socket.end(rawProblem({ status: 400, code: 'bad_request', detail: 'a decision listener does not upgrade connections' }, randomUUID()))
      return
    }
    upgraded.add(socket)
    socket.once('close', () => upgraded.delete(socket))
    void handler.handleUpgrade(ref, req, socket, head)
  }
  server.on('upgrade', onUpgrade)
  // CONNECT (authority-form target) takes the same way: decide() refuses its target with a 400 problem and an access
  // line, where Node alone would close the socket without a word or a trace.
  server.on('connect', onUpgrade)
  // Without this Node answers 100 Continue before authentication; the handler sends it once the body is wanted.
  if (!deciding) server.on('checkContinue', onRequest)
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || error.code === 'ECONNRESET') { socket.destroy(); return }
    const requestId = randomUUID()
    if (error.code === 'HPE_HEADER_OVERFLOW') {
      socket.end(rawProblem({ status: 431, code: 'headers_too_large', detail: 'request headers are too large' }, requestId))
    } else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      socket.end(rawProblem({ status: 408, code: 'bad_request', detail: 'request not received in time' }, requestId))
    } else {
      socket.end(rawProblem({ status: 400, code: 'bad_request', detail: 'malformed HTTP request' }, requestId))
    }
    log.info({ requestId, listener: config.name, code: error.code, remote: socket.remoteAddress }, 'client error')
  })
  server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => {
    log.debug({ listener: config.name, code: error.code, remote: socket.remoteAddress }, 'TLS handshake failed')
  })

  const { host, port } = parseAddress(config.address)
  await new Promise<void>((resolvePromise, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolvePromise() })
  })
  const bound = server.address() as AddressInfo
  const shownHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address
  const url = `${scheme}://${shownHost}:${bound.port}`

  return {
    name: config.name,
    config,
    server,
    url,
    reloadTls (dir: string) {
      if (!config.tls) return
      ;(server as https.Server).setSecureContext(tlsOptions(config.tls, dir))
    },
    close: (deadlineMs: number) => { h2.drain(); return closeServer(server, deadlineMs, upgraded) },
  }
}

/** Stop accepting, let in-flight requests (and `upgraded` tunnels) finish until the deadline, then cut what is left. */
export function closeServer (server: http.Server, deadlineMs: number, upgraded: ReadonlySet<Duplex> = new Set()): Promise<void> {
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => {
      server.closeAllConnections()
      for (const socket of upgraded) socket.destroy()
    }, deadlineMs)
    timer.unref()
    // Keep-alive connections become idle as their last response ends: close them as they do.
    const sweep = setInterval(() => server.closeIdleConnections(), 50)
    sweep.unref()
    server.close(() => { clearTimeout(timer); clearInterval(sweep); resolvePromise() })
    server.closeIdleConnections()
  })
}
