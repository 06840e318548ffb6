import type { BlockList } from 'node:net'
import type { ListenerConfig } from '../config/types.js'
import { parseCidrs } from '../net.js'
import { CERTIFICATE_HEADERS, type CertificateReader } from './original-request.js'

/** Who may ask a decision listener when its `trustProxies` is not set: this machine only. */
export const DEFAULT_DECISION_TRUST: readonly string[] = ['127.0.0.0/8', '::1/128']

/** What a decision listener trusts: the proxies that may ask, and how a certificate they forward is verified. */
export interface DecisionTrust {
  readonly proxies: BlockList
  readonly certificates: CertificateReader
}

const NO_CERTIFICATE = { cert: undefined, rejected: false } as const
const REFUSED_CERTIFICATE = { cert: undefined, rejected: true } as const

/** Built with each configuration generation, one per decision listener. */
export function decisionTrust (listener: ListenerConfig, _baseDir: string): DecisionTrust {
  const proxies = parseCidrs(listener.trustProxies ?? DEFAULT_DECISION_TRUST).list
  // Until forwarded certificates are verified again here, any certificate a proxy forwards counts as refused.
  const certificates: CertificateReader = (headers) => {
    for (const name of CERTIFICATE_HEADERS) {
      const value = headers[name]
      if (value !== undefined && value !== '') return REFUSED_CERTIFICATE
    }
    return NO_CERTIFICATE
  }
  return { proxies, certificates }
}
