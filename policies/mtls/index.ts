import { isIP } from 'node:net'
import type { PolicyDefinition } from '../types.js'
import { ConfigError, Rejection, type ConfigIssue } from '../../gateway/errors.js'
import { CertificateCache, canonicalIp, type CertificateFacts, type SanType } from './certificate.js'
import { DnSyntaxError, dnKey, parseDn } from './dn.js'
import { schema, type MtlsConfig } from './schema.js'

export { schema } from './schema.js'
export type { MtlsConfig } from './schema.js'

export const mtls: PolicyDefinition<MtlsConfig> = {
  key: 'mtls',
  schema,
  authenticates: true,

  check (config, env) {
    const issues: ConfigIssue[] = []
    const without = env.route.listeners.filter((listener) => !listener.clientCA)
    if (without.length > 0) {
      const names = without.map((listener) => `"${listener.name}"`).join(', ')
      issues.push({
        severity: 'error',
        path: [],
        message: `route "${env.route.name}" uses mtls but is reachable on listener${without.length > 1 ? 's' : ''} ` +
          `${names} without tls.clientCA, where no client certificate can be verified`,
        fix: `add tls.clientCA (and clientCert: optional or required) to ${names}, or limit the route with ` +
          'match.listener to listeners that have one',
      })
    }
    issues.push(...allowListIssues(config))
    return issues
  },

  create (config, deps) {
    const issues = allowListIssues(config).filter((issue) => issue.severity === 'error')
    if (issues.length > 0) throw new ConfigError(issues)

    const challenge = { scheme: 'ClientCert', params: { realm: deps.realm } }
    const certificates = deps.shared('mtls.certificates', () => new CertificateCache())
    const subjects = config.subjects && new Set(config.subjects.map((subject) => dnKey(parseDn(subject))))
    const sans = config.sans && new Set(config.sans.flatMap(sanPatternKeys))
    const fingerprints = config.fingerprints && new Set(config.fingerprints.map(normalizeFingerprint))
    const restricted = subjects !== undefined || sans !== undefined || fingerprints !== undefined
    const isAllowed = (cert: CertificateFacts) =>
      subjects?.has(cert.dnKey) === true ||
      (sans !== undefined && cert.sans.some((san) => sans.has(sanKey(san.type, san.value)))) ||
      fingerprints?.has(cert.fingerprint) === true

    return {
      challenge,
      evaluate (ctx) {
        const peer = ctx.peerCert
        if (peer === undefined || !Buffer.isBuffer(peer.raw) || peer.raw.length === 0) {
          return Rejection.unauthenticated('client_certificate_required', ctx.peerCertRejected
            ? 'client certificate not accepted: not issued by a trusted CA, expired or revoked'
            : 'client certificate required', challenge)
        }
        let cert: CertificateFacts
        try {
          cert = certificates.get(peer.raw)
        } catch {
          return Rejection.unauthenticated('client_certificate_required', 'client certificate could not be read', challenge)
        }
        if (restricted && !isAllowed(cert)) {
          return Rejection.forbidden('forbidden', 'client certificate is not allowed on this route')
        }
        const subject = subjectOf(cert, config.subjectFrom)
        if (subject === undefined) {
          return Rejection.forbidden('forbidden', config.subjectFrom === 'cn'
            ? 'client certificate has no subject CN'
            : config.subjectFrom === 'uri' ? 'client certificate has no URI SAN' : 'client certificate names no subject')
        }
        const uri = cert.spiffeId ?? cert.uri
        return {
          identity: {
            subject,
            client: cert.commonName ?? subject,
            cert: {
              subject: cert.subject,
              fingerprint: cert.fingerprint,
              sans: cert.sans.map((san) => `${san.type}:${san.value}`),
              ...(uri !== undefined ? { uri } : {}),
            },
          },
          upstreamHeaders: { 'x-forwarded-client-cert': cert.xfcc },
        }
      },
    }
  },
}

// DESIGN.md Identity values: SPIFFE URI if any, else the subject CN. Certificates with neither fall back to any URI
// SAN, then to the whole subject DN, so that `auto` names every certificate that names anything.
function subjectOf (cert: CertificateFacts, from: MtlsConfig['subjectFrom']): string | undefined {
  if (from === 'cn') return nonEmpty(cert.commonName)
  if (from === 'uri') return cert.spiffeId ?? cert.uri
  return cert.spiffeId ?? nonEmpty(cert.commonName) ?? cert.uri ?? nonEmpty(cert.subject)
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

const SAN_PREFIX = /^(DNS|URI|IP|IP Address|email):(.*)$/is
const PREFIX_TYPES: Record<string, SanType> = { dns: 'DNS', uri: 'URI', ip: 'IP', 'ip address': 'IP', email: 'email' }

/** The lookup keys a configured SAN entry stands for: one per SAN type it may match. */
function sanPatternKeys (entry: string): string[] {
  const prefixed = SAN_PREFIX.exec(entry)
  if (prefixed) return [sanKey(PREFIX_TYPES[prefixed[1]!.toLowerCase()]!, prefixed[2]!)]
  const keys = [sanKey('DNS', entry), sanKey('URI', entry), sanKey('email', entry)]
  if (isIP(entry) !== 0) keys.push(sanKey('IP', entry))
  return keys
}

function sanKey (type: SanType, value: string): string {
  const normalized = type === 'DNS' ? value.toLowerCase().replace(/\.$/, '') : type === 'IP' ? canonicalIp(value) : value
  return `${type}:${normalized}`
}

function normalizeFingerprint (fingerprint: string): string {
  return fingerprint.replace(/:/g, '').toLowerCase()
}

function allowListIssues (config: MtlsConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  config.subjects?.forEach((subject, i) => {
    try {
      if (parseDn(subject).length === 0) throw new DnSyntaxError('it is empty')
    } catch (error) {
      issues.push({
        severity: 'error',
        path: ['subjects', i],
        message: `"${subject}" is not an RFC 4514 distinguished name: ${(error as Error).message}`,
        fix: 'write the whole subject, most specific first, e.g. "CN=billing-service,O=Acme"; escape , + " \\ ; < > ' +
          'in values with a backslash',
      })
    }
  })
  config.sans?.forEach((entry, i) => {
    const prefixed = SAN_PREFIX.exec(entry)
    const type = prefixed ? PREFIX_TYPES[prefixed[1]!.toLowerCase()] : undefined
    const value = prefixed ? prefixed[2]! : entry
    let problem: string | undefined
    if (value === '') problem = 'the value is empty'
    else if (type === 'IP' && isIP(value) === 0) problem = 'not an IP address'
    else if (type === 'URI' && !/^[a-z][a-z0-9+.-]*:/i.test(value)) problem = 'a URI needs a scheme (spiffe://...)'
    if (problem !== undefined) {
      issues.push({
        severity: 'error',
        path: ['sans', i],
        message: `"${entry}": ${problem}`,
        fix: 'write URI:spiffe://trust.domain/path, DNS:name, IP:address or email:address',
      })
    }
  })
  const lists = [config.subjects, config.sans, config.fingerprints].filter((list) => list !== undefined)
  if (lists.length > 0 && lists.every((list) => list.length === 0)) {
    issues.push({
      severity: 'warning',
      path: [],
      message: 'the allow-lists are all empty, so every client certificate gets 403',
      fix: 'list the allowed subjects, sans or fingerprints, or remove the empty lists to accept any verified certificate',
    })
  }
  return issues
}
