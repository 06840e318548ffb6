import { readFileSync } from 'node:fs'
import type { BlockList } from 'node:net'
import { resolve } from 'node:path'
import type { DetailedPeerCertificate } from 'node:tls'
import type { ListenerConfig } from '../config/types.js'
import { parseCidrs } from '../net.js'
import type { PeerState } from '../pipeline/request-view.js'
import { forwardedCertificate, loadClientCertTrust } from './forwarded-cert.js'
import type { CertificateReader } from './original-request.js'

/** Who may ask a decision listener when its `trustProxies` is not set: this machine only. */
export const DEFAULT_DECISION_TRUST: readonly string[] = ['127.0.0.0/8', '::1/128']

/** What a decision listener trusts: the proxies that may ask, and how a certificate they forward is verified. */
export interface DecisionTrust {
  readonly proxies: BlockList
  readonly certificates: CertificateReader
}

const NO_CERTIFICATE: PeerState = { cert: undefined, rejected: false }
const REFUSED_CERTIFICATE: PeerState = { cert: undefined, rejected: true }

/**
 * Built with each configuration generation, one per decision listener. A forwarded certificate is verified again
 * against the listener's own clientCA and crl (never the proxy's word); without a clientCA every forwarded
 * certificate is refused. One that cannot be read, or two proxies' headers at once, counts as refused too: the mtls
 * policy then answers 401, and a route without mtls is not refused for a header it does not read.
 */
export function decisionTrust (listener: ListenerConfig, baseDir: string, now: () => number): DecisionTrust {
  const proxies = parseCidrs(listener.trustProxies ?? DEFAULT_DECISION_TRUST).list
  const read = (file: string) => readFileSync(resolve(baseDir, file))
  const trust = listener.clientCA === undefined ? undefined
    : loadClientCertTrust(read(listener.clientCA), listener.crl === undefined ? undefined : read(listener.crl))
  const certificates: CertificateReader = (headers) => {
    const forwarded = forwardedCertificate(headers, trust, now())
    switch (forwarded.kind) {
      case 'none': return NO_CERTIFICATE
      // The mtls policy reads the DER (`raw`) and parses it itself.
      case 'verified': return { cert: { raw: forwarded.raw } as DetailedPeerCertificate, rejected: false }
      default: return REFUSED_CERTIFICATE
    }
  }
  return { proxies, certificates }
}
