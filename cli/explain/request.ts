/** The request explain asks about: as the HTTP parser and the TLS layer would have made it, without a socket. */
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { resolve } from 'node:path'
import type { ListenerConfig } from '../../gateway/config/types.js'
import { parseAddress } from '../../gateway/net.js'

/** A mistake in what explain was asked (no such listener, unreadable URL). */
export class ExplainInputError extends Error {}

export interface SplitUrl { scheme?: 'http' | 'https', authority?: string, target: string }

/** Keeps the target exactly as typed: `new URL` would resolve dot segments that the gateway must refuse. */
export function splitUrl (url: string): SplitUrl {
  const absolute = /^(https?):\/\/([^/?#]*)(.*)$/i.exec(url)
  if (absolute) {
    const rest = absolute[3]!
    return { scheme: absolute[1]!.toLowerCase() as 'http' | 'https', authority: absolute[2]!, target: rest === '' || rest.startsWith('?') ? `/${rest}` : rest }
  }
  if (!url.startsWith('/')) throw new ExplainInputError(`URL must be /path or http(s)://host/path, got "${url.slice(0, 60)}"`)
  return { target: url }
}

export function pickListener (listeners: readonly ListenerConfig[], url: SplitUrl, name: string | undefined): ListenerConfig {
  if (name !== undefined) {
    const found = listeners.find((l) => l.name === name)
    if (!found) throw new ExplainInputError(`no listener "${name}" (listeners: ${listeners.map((l) => l.name).join(', ')})`)
    return found
  }
  const port = url.authority !== undefined ? /:(\d+)$/.exec(url.authority)?.[1] : undefined
  const ofScheme = url.scheme === undefined ? listeners : listeners.filter((l) => (l.tls !== undefined) === (url.scheme === 'https'))
  const byPort = port === undefined ? undefined : ofScheme.find((l) => String(parseAddress(l.address).port) === port)
  return byPort ?? ofScheme[0] ?? listeners[0]!
}

/** An IncomingMessage as the HTTP parser would make it, on an unconnected socket; the body, if any, is queued. */
export function syntheticRequest (method: string, target: string, rawHeaders: string[], remoteAddress: string, body: Buffer | undefined): IncomingMessage {
  const socket = new Socket()
  Object.defineProperty(socket, 'remoteAddress', { value: remoteAddress })
  const req = new IncomingMessage(socket)
  req.method = method
  req.url = target
  req.httpVersion = '1.1'
  // What the HTTP parser calls: headers and headersDistinct are then computed from rawHeaders on first read.
  ;(req as unknown as { _addHeaderLines (headers: string[], n: number): void })._addHeaderLines(rawHeaders, rawHeaders.length)
  if (body !== undefined && body.length > 0) req.push(body)
  req.push(null)
  req.complete = true
  return req
}

/** Verifies the certificate against the listener's clientCA, as the TLS layer would, and attaches it to the socket. */
export function presentCertificate (req: IncomingMessage, listener: ListenerConfig, baseDir: string, file: string, notes: string[]): void {
  if (listener.tls?.clientCA === undefined) {
    notes.push(`listener "${listener.name}" does not ask for client certificates (no tls.clientCA): --cert is ignored`)
    return
  }
  let cert: X509Certificate
  let cas: X509Certificate[]
  try {
    cert = new X509Certificate(readFileSync(file))
    cas = splitPem(readFileSync(resolve(baseDir, listener.tls.clientCA), 'utf8')).map((pem) => new X509Certificate(pem))
  } catch (error) {
    throw new ExplainInputError(`cannot read the certificate or the listener's clientCA: ${(error as Error).message}`)
  }
  const now = Date.now()
  const current = Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo)
  const issued = cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))
  const authorized = current && issued
  if (!authorized) notes.push(`the certificate ${!issued ? 'is not issued by the listener\'s clientCA' : 'is expired or not yet valid'}: the TLS layer would not verify it`)
  const socket = req.socket as Socket & { authorized?: boolean, getPeerCertificate?: (detailed?: boolean) => object }
  socket.authorized = authorized
  socket.getPeerCertificate = () => ({ raw: cert.raw, subject: {}, issuer: {}, fingerprint256: cert.fingerprint256, valid_from: cert.validFrom, valid_to: cert.validTo })
}

function splitPem (text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
}
