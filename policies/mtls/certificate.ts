/**
 * What the mtls policy reads from a verified client certificate, parsed from its DER (`peerCert.raw`).
 *
 * Names come from the DER rather than from Node's `subject` object and `subjectaltname` string: those lose the RDN
 * structure, and the SAN string's quoting of values with `,` or `"` has changed between Node versions
 * (CVE-2021-44532). Parsing is done once per certificate and cached by fingerprint.
 */
import { createHash } from 'node:crypto'
import { readCertificateNames, type San } from './der.js'
import { dnKey, formatDn, type Dn } from './dn.js'

export type { San, SanType } from './der.js'

export interface CertificateFacts {
  /** SHA-256 of the DER certificate, lower-case hex. */
  readonly fingerprint: string
  readonly dn: Dn
  /** RFC 4514, most specific RDN first: `CN=billing-service,O=Acme`. */
  readonly subject: string
  readonly dnKey: string
  /** The most specific CN (the first in RFC 4514 order). */
  readonly commonName: string | undefined
  readonly sans: readonly San[]
  /** The first `spiffe://` URI SAN. */
  readonly spiffeId: string | undefined
  /** The first URI SAN of any scheme. */
  readonly uri: string | undefined
  /** `Hash=...;Subject="...";URI=...;DNS=...`: Envoy's X-Forwarded-Client-Cert element for this certificate. */
  readonly xfcc: string
}

const CN_OID = '2.5.4.3'

export function fingerprintOf (raw: Buffer): string {
  return createHash('sha256').update(raw).digest('hex')
}

/** Parses a DER certificate; throws when it cannot (the caller fails closed). */
export function describeCertificate (raw: Buffer, fingerprint = fingerprintOf(raw)): CertificateFacts {
  const { subject: dn, sans } = readCertificateNames(raw)
  const commonName = dn.flat().find((a) => a.type === CN_OID && a.hex !== true)?.value
  const uris = sans.filter((san) => san.type === 'URI').map((san) => san.value)
  const facts = {
    fingerprint,
    dn,
    subject: formatDn(dn),
    dnKey: dnKey(dn),
    commonName,
    sans,
    spiffeId: uris.find((uri) => /^spiffe:\/\//i.test(uri)),
    uri: uris[0],
  }
  return { ...facts, xfcc: formatXfcc(facts) }
}

/**
 * Envoy's X-Forwarded-Client-Cert element: `Hash=<hex sha256>;Subject="<RFC 4514>";URI=<uri>;DNS=<dns>`, one `URI=`
 * per URI SAN and one `DNS=` per DNS SAN. Values with `,` `;` `=` or `"` are quoted, `"` escaped as `\"` (Envoy's
 * rule). The subject is written with `"`, `\` and non-ASCII as RFC 4514 hex escapes, so it never needs escaping here.
 */
function formatXfcc (facts: { fingerprint: string, dn: Dn, sans: readonly San[] }): string {
  const parts = [`Hash=${facts.fingerprint}`, `Subject="${formatDn(facts.dn, { ascii: true })}"`]
  for (const san of facts.sans) {
    if (san.type === 'URI' || san.type === 'DNS') parts.push(`${san.type}=${xfccValue(headerSafe(san.value))}`)
  }
  return parts.join(';')
}

function xfccValue (value: string): string {
  return /[,;="]/.test(value) ? `"${value.replace(/"/g, '\\"')}"` : value
}

// SAN strings are IA5 and may hold control bytes; a header value may not. Percent-encode anything outside printable ASCII.
function headerSafe (value: string): string {
  return value.replace(/[^\x20-\x7e]/gu, (char) =>
    [...Buffer.from(char, 'utf8')].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join(''))
}

/** IPv4 dotted quad or RFC 5952 IPv6 (compressed, lower-case): the form the allow-list is compared in. */
export function canonicalIp (ip: string): string {
  try {
    const host = new URL(`http://${ip.includes(':') ? `[${ip}]` : ip}/`).hostname
    return host.startsWith('[') ? host.slice(1, -1) : host
  } catch {
    return ip
  }
}

/** A bounded cache of parsed certificates, keyed by fingerprint (oldest entry evicted first). */
export class CertificateCache {
  private readonly entries = new Map<string, CertificateFacts>()
  constructor (private readonly maxEntries = 1024) {}

  get (raw: Buffer): CertificateFacts {
    const fingerprint = fingerprintOf(raw)
    const cached = this.entries.get(fingerprint)
    if (cached !== undefined) return cached
    const facts = describeCertificate(raw, fingerprint)
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!)
    this.entries.set(fingerprint, facts)
    return facts
  }
}
