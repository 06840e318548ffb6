/**
 * Decision mode: a client certificate that a trusted proxy terminated and forwards in a request header, verified
 * again here against the decision listener's own `clientCA` (and `crl`). authgate never takes the proxy's word that
 * the certificate was verified: the header must carry the certificate itself, and it must chain to our CA.
 *
 * What the proxy is still trusted for is proof of possession (it ran the handshake; a certificate alone is public),
 * so the header must come from a trusted peer and the proxy must overwrite or remove a client-sent one.
 *
 * Formats, each checked against the proxy's own source:
 * - `X-Forwarded-Client-Cert` (Envoy XFCC). source/common/http/conn_manager_utility.cc `mutateXfccRequestHeader`
 *   writes one element `By=..;Hash=<sha256 hex of the DER>;Cert="<url-encoded PEM>";Chain="<url-encoded PEMs>";
 *   Subject="..";URI=..;DNS=..` (pairs `;`, elements `,`, `"` escaped as `\"`, docs/root/configuration/http/
 *   http_conn_man/headers.rst); source/extensions/transport_sockets/tls/connection_info_impl.cc url-encodes the PEM by
 *   replacing only `\n` `%0A`, ` ` `%20`, `+` `%2B`, `/` `%2F`, `=` `%3D`, and `Chain=` is the concatenated PEMs of
 *   SSL_get_peer_full_cert_chain, the leaf first.
 * - `X-SSL-Client-Cert` (nginx): `$ssl_client_escaped_cert`, src/event/ngx_event_openssl.c
 *   `ngx_ssl_get_escaped_certificate`: the leaf's PEM through ngx_escape_uri(NGX_ESCAPE_URI_COMPONENT), which escapes
 *   everything but ALPHA DIGIT `-._~` (src/core/ngx_string.c); empty when the client sent no certificate. nginx has
 *   no variable for the client's chain. The deprecated `$ssl_client_cert` (PEM whose lines after the first start with
 *   a tab, `ngx_ssl_get_certificate`) is read too, though Node's HTTP parser refuses such a folded header with a 400.
 * - `X-Forwarded-Tls-Client-Cert` (Traefik `passTLSClientCert: { pem: true }`),
 *   pkg/middlewares/passtlsclientcert/pass_tls_client_cert.go `getCertificates`/`sanitize`: each certificate of the
 *   client's chain as PEM with the armor lines and newlines removed (base64 DER), joined by `,`, leaf first. Traefik
 *   before v2.10 also query-escaped the value (commit 2c550c28 "Remove raw cert escape"): both forms are read.
 */
import { createHash, verify as verifySignature, X509Certificate } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

const XFCC = 'x-forwarded-client-cert'
const NGINX = 'x-ssl-client-cert'
const TRAEFIK = 'x-forwarded-tls-client-cert'

/** The header names it reads (lower-case), so the caller can remove them from the view policies see. */
export const FORWARDED_CERT_HEADERS: readonly string[] = Object.freeze([XFCC, NGINX, TRAEFIK])

/**
 * The CA certificates and CRLs a forwarded certificate is verified against; made by `loadClientCertTrust` only (its
 * revocation lists and verification cache are kept with it, out of reach). Load a new one when the files change.
 */
export interface ClientCertTrust {
  /** The `clientCA` certificates, in file order. */
  readonly authorities: readonly X509Certificate[]
  /** How many CRLs were loaded (0: no revocation checking). */
  readonly crlCount: number
}

export type ForwardedCert =
  | { readonly kind: 'none' } // no certificate header at all
  | { readonly kind: 'verified', readonly raw: Buffer } // DER of the verified leaf (shared: do not modify)
  | { readonly kind: 'rejected', readonly reason: string } // present and well-formed, but does not verify
  | { readonly kind: 'malformed', readonly reason: string } // cannot be parsed, or ambiguous

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2'
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0'
/** Certificates in a path, leaf and trust anchor included. */
const MAX_PATH_LENGTH = 5
/** Certificates one header may carry. */
const MAX_CERTIFICATES = 8
/** Different paths examined for one leaf (CA rollover gives two anchors with one name). */
const MAX_PATHS = 4
const CACHE_ENTRIES = 1024

const NONE: ForwardedCert = Object.freeze({ kind: 'none' })

// ---------------------------------------------------------------------------------------------------------------------
// Loading

interface Certificate {
  readonly x509: X509Certificate
  readonly der: Buffer
  /** SHA-256 of the DER, lower-case hex. */
  readonly fingerprint: string
  /** The DER of the issuer and subject Names, hex: CRLs are matched to issuers by their encoded name, as OpenSSL does. */
  readonly issuerName: string
  readonly subjectName: string
  /** The serial number's DER INTEGER contents, hex. */
  readonly serial: string
  readonly notBeforeMs: number
  readonly notAfterMs: number
}

interface RevocationList {
  readonly issuerName: string
  readonly thisUpdateMs: number
  /** Infinity when the CRL has no nextUpdate (RFC 5280 §5.1.2.5 requires one; OpenSSL then skips the check too). */
  readonly nextUpdateMs: number
  readonly revoked: ReadonlySet<string>
  readonly tbs: Buffer
  readonly algorithm: string
  readonly signature: Buffer
  /** Whether a key (by its certificate's fingerprint) signed it, found out once. */
  readonly signedBy: Map<string, boolean>
}

/** One verification of one header value, kept for later requests: everything but the clock. */
type Verdict =
  | { readonly kind: 'settled', readonly result: ForwardedCert }
  | { readonly kind: 'paths', readonly verified: ForwardedCert, readonly paths: readonly PathCheck[] }

interface PathCheck {
  /** Set when this path fails whatever the time. */
  readonly rejection: string | undefined
  /** Time windows the path needs (each certificate's validity, each CRL's thisUpdate..nextUpdate). */
  readonly windows: readonly TimeWindow[]
}

interface TimeWindow {
  readonly fromMs: number
  readonly toMs: number
  readonly early: string
  readonly late: string
}

interface TrustState {
  readonly authorities: readonly Certificate[]
  readonly authorityPrints: ReadonlySet<string>
  readonly crls: readonly RevocationList[]
  /** Bounded, least recently used first; keyed by a hash of the header name and value. */
  readonly cache: Map<string, Verdict>
}

const states = new WeakMap<ClientCertTrust, TrustState>()

/**
 * Reads a PEM CA bundle (one or more `CERTIFICATE` blocks; text between blocks is ignored) and optional PEM CRLs
 * (`X509 CRL` blocks, as the TLS listener's `crl` takes them). Throws an Error saying what is wrong with which block:
 * no certificate, a block that does not parse, a certificate that is not a CA, a CRL whose issuer is a `clientCA`
 * certificate but that this certificate's key did not sign, an unsupported signature algorithm or critical extension.
 * A CRL from an intermediate CA (not in the bundle) is checked against the intermediate when a chain uses it.
 */
export function loadClientCertTrust (caPem: Buffer, crlPem?: Buffer): ClientCertTrust {
  const blocks = readPem(caPem.toString('latin1'), { strict: false })
  if (typeof blocks === 'string') throw new Error(`clientCA: ${blocks}`)
  if (blocks.length === 0) throw new Error('clientCA: no PEM CERTIFICATE block found')
  const authorities = blocks.map((block, i) => {
    const where = `clientCA certificate ${i + 1}`
    if (block.label !== 'CERTIFICATE') throw new Error(`${where}: a "${block.label}" block where a CERTIFICATE was expected`)
    let certificate: Certificate
    try {
      certificate = parseCertificate(block.der)
    } catch (error) {
      throw new Error(`${where}: not a valid X.509 certificate (${(error as Error).message})`)
    }
    if (!certificate.x509.ca) throw new Error(`${where} (${oneLine(certificate.x509.subject)}) is not a CA certificate (basicConstraints CA:TRUE)`)
    return certificate
  })
  const crls: RevocationList[] = []
  if (crlPem !== undefined) {
    const crlBlocks = readPem(crlPem.toString('latin1'), { strict: false })
    if (typeof crlBlocks === 'string') throw new Error(`crl: ${crlBlocks}`)
    if (crlBlocks.length === 0) throw new Error('crl: no PEM X509 CRL block found')
    crlBlocks.forEach((block, i) => {
      const where = `crl ${i + 1}`
      if (block.label !== 'X509 CRL') throw new Error(`${where}: a "${block.label}" block where an X509 CRL was expected`)
      let crl: RevocationList
      try {
        crl = parseCrl(block.der)
      } catch (error) {
        throw new Error(`${where}: ${(error as Error).message}`)
      }
      const named = authorities.filter((ca) => ca.subjectName === crl.issuerName)
      if (named.length > 0 && !named.some((ca) => isCrlSignedBy(crl, ca))) {
        throw new Error(`${where}: issued in the name of ${oneLine(named[0]!.x509.subject)} but not signed by its key`)
      }
      crls.push(crl)
    })
  }
  const trust: ClientCertTrust = Object.freeze({
    authorities: Object.freeze(authorities.map((ca) => ca.x509)),
    crlCount: crls.length,
  })
  states.set(trust, {
    authorities,
    authorityPrints: new Set(authorities.map((ca) => ca.fingerprint)),
    crls,
    cache: new Map(),
  })
  return trust
}

// ---------------------------------------------------------------------------------------------------------------------
// Per request

/**
 * The forwarded client certificate of this request, verified at `nowMs` against `trust` (`undefined`: no `clientCA`
 * configured, so any certificate is rejected). Fails closed: a header that cannot be read, or that could be read two
 * ways, is `malformed`; one that reads but does not verify is `rejected`. Reasons never echo the header.
 *
 * Verification: a path leaf -> (certificates from the header, as untrusted helpers) -> a `clientCA` certificate, each
 * link checked by name and key identifiers (`checkIssued`) and signature; every issuer a CA; every certificate of the
 * path valid at `nowMs`; the leaf not a CA, and its extendedKeyUsage, when present, allowing clientAuth (an
 * intermediate's too); at most 5 certificates. With CRLs loaded, every certificate of the path but the anchor needs a
 * current CRL from its issuer that does not list it (OpenSSL's CRL_CHECK_ALL, what Node sets for a TLS `crl`).
 * Results are cached per trust (1024 values); the clock-dependent checks run again on every call.
 */
export function forwardedCertificate (headers: IncomingHttpHeaders, trust: ClientCertTrust | undefined, nowMs: number): ForwardedCert {
  let name: string | undefined
  let value: string | string[] | undefined
  for (const header of FORWARDED_CERT_HEADERS) {
    const v = headers[header]
    if (v === undefined) continue
    // Present, even empty: one proxy sets one of them, so a second kind beside it was sent by the client.
    if (name !== undefined) return malformed(`client certificate headers of two proxies at once (${name}, ${header})`)
    name = header
    value = v
  }
  if (name === undefined) return NONE
  if (Array.isArray(value)) {
    if (value.length > 1) return malformed(`the ${name} header was sent more than once`)
    value = value[0] ?? ''
  }
  const text = value!.trim()
  // The variables are empty without a client certificate (nginx's proxy_set_header then omits the header altogether:
  // ngx_http_proxy_create_request skips an empty value).
  if (text === '') return NONE

  const state = trust === undefined ? undefined : states.get(trust)
  if (trust !== undefined && state === undefined) throw new TypeError('the trust was not made by loadClientCertTrust')
  if (state === undefined) return judge(examine(name, text, undefined), nowMs)
  const key = createHash('sha256').update(name).update('\n').update(text).digest('base64')
  let verdict = state.cache.get(key)
  if (verdict !== undefined) {
    state.cache.delete(key) // least recently used first: move to the end
  } else {
    verdict = examine(name, text, state)
    if (state.cache.size >= CACHE_ENTRIES) state.cache.delete(state.cache.keys().next().value!)
  }
  state.cache.set(key, verdict)
  return judge(verdict, nowMs)
}

function judge (verdict: Verdict, nowMs: number): ForwardedCert {
  if (verdict.kind === 'settled') return verdict.result
  let timeReason: string | undefined
  for (const path of verdict.paths) {
    if (path.rejection !== undefined) continue
    const outside = path.windows.find((w) => nowMs < w.fromMs || nowMs > w.toMs)
    if (outside === undefined) return verdict.verified
    timeReason ??= nowMs < outside.fromMs ? outside.early : outside.late
  }
  return rejected(timeReason ?? verdict.paths[0]!.rejection!)
}

function examine (name: string, text: string, state: TrustState | undefined): Verdict {
  const read = name === XFCC ? readXfcc(text) : name === NGINX ? readNginx(text) : readTraefik(text)
  if ('kind' in read) return { kind: 'settled', result: read }
  const parsed: Certificate[] = []
  for (const der of read.ders) {
    try {
      parsed.push(parseCertificate(der))
    } catch {
      return settled(malformed(`the ${name} header holds something that is not an X.509 certificate`))
    }
  }
  const [leaf, ...rest] = parsed as [Certificate, ...Certificate[]]
  if (read.hash !== undefined && read.hash !== leaf.fingerprint) {
    return settled(malformed('the XFCC Hash= is not the SHA-256 of its Cert='))
  }
  if (state === undefined) return settled(rejected('no clientCA is configured to verify a forwarded client certificate'))
  // The chain a proxy passes may repeat the leaf or hold the anchor itself: only other, untrusted certificates help.
  const seen = new Set([leaf.fingerprint, ...state.authorityPrints])
  const helpers = rest.filter((c) => !seen.has(c.fingerprint) && (seen.add(c.fingerprint), true))
  return verify(leaf, helpers, state)
}

function verify (leaf: Certificate, helpers: readonly Certificate[], state: TrustState): Verdict {
  // A CA certificate presented as a client certificate is refused outright (stricter than OpenSSL's sslclient purpose).
  if (leaf.x509.ca) return settled(rejected('a CA certificate is not a client certificate'))
  if (!allowsClientAuth(leaf.x509)) return settled(rejected('the certificate is not for client authentication (extendedKeyUsage)'))
  const paths: Certificate[][] = []
  const walk = (path: Certificate[]) => {
    const child = path.at(-1)!
    for (const anchor of state.authorities) {
      if (paths.length < MAX_PATHS && isIssuedBy(child, anchor)) paths.push([...path, anchor])
    }
    if (path.length + 2 > MAX_PATH_LENGTH) return // no room left for an intermediate and an anchor
    for (const helper of helpers) {
      if (paths.length >= MAX_PATHS) return
      if (helper.x509.ca && !path.includes(helper) && isIssuedBy(child, helper)) walk([...path, helper])
    }
  }
  walk([leaf])
  if (paths.length === 0) return settled(rejected('the certificate does not chain to a trusted CA'))
  return { kind: 'paths', verified: Object.freeze({ kind: 'verified', raw: leaf.der }), paths: paths.map((p) => checkPath(p, state)) }
}

function checkPath (path: readonly Certificate[], state: TrustState): PathCheck {
  const windows: TimeWindow[] = path.map((c, i) => ({
    fromMs: c.notBeforeMs,
    toMs: c.notAfterMs,
    early: i === 0 ? 'the certificate is not yet valid' : 'a CA certificate of its chain is not yet valid',
    late: i === 0 ? 'the certificate has expired' : 'a CA certificate of its chain has expired',
  }))
  const fail = (rejection: string): PathCheck => ({ rejection, windows })
  for (const intermediate of path.slice(1, -1)) {
    if (!allowsClientAuth(intermediate.x509)) return fail('an intermediate CA of its chain may not issue client certificates (extendedKeyUsage)')
  }
  if (state.crls.length === 0) return { rejection: undefined, windows }
  for (let i = 0; i < path.length - 1; i++) {
    const subject = path[i]!
    const issuer = path[i + 1]!
    // OpenSSL's choice among several CRLs of one issuer: the most recent one.
    let crl: RevocationList | undefined
    for (const candidate of state.crls) {
      if (candidate.issuerName !== subject.issuerName || !isCrlSignedBy(candidate, issuer)) continue
      if (crl === undefined || candidate.thisUpdateMs > crl.thisUpdateMs) crl = candidate
    }
    // With CRLs configured, a certificate whose issuer has none is not known to be unrevoked (OpenSSL:
    // X509_V_ERR_UNABLE_TO_GET_CRL), as on a TLS listener given the same clientCA and crl.
    if (crl === undefined) return fail(i === 0 ? 'no CRL from its issuing CA' : 'no CRL from the CA that issued an intermediate of its chain')
    if (crl.revoked.has(subject.serial)) return fail(i === 0 ? 'the certificate is revoked' : 'an intermediate CA of its chain is revoked')
    // A CRL past its nextUpdate may miss recent revocations: rejected, as OpenSSL does (X509_V_ERR_CRL_HAS_EXPIRED).
    windows.push({ fromMs: crl.thisUpdateMs, toMs: crl.nextUpdateMs, early: 'the CRL of its issuing CA is not yet valid', late: 'the CRL of its issuing CA has expired' })
  }
  return { rejection: undefined, windows }
}

function isIssuedBy (child: Certificate, issuer: Certificate): boolean {
  // Node: `child.checkIssued(issuer)` (X509_check_issued: names, key identifiers, keyCertSign), then the signature.
  return child.x509.checkIssued(issuer.x509) && child.x509.verify(issuer.x509.publicKey)
}

function allowsClientAuth (x509: X509Certificate): boolean {
  const usages = x509.keyUsage as string[] | undefined // Node 20: the extendedKeyUsage OIDs, undefined without one
  return usages === undefined || usages.includes(CLIENT_AUTH) || usages.includes(ANY_EXTENDED_KEY_USAGE)
}

function settled (result: ForwardedCert): Verdict {
  return { kind: 'settled', result }
}

function malformed (reason: string): ForwardedCert {
  return Object.freeze({ kind: 'malformed', reason })
}

function rejected (reason: string): ForwardedCert {
  return Object.freeze({ kind: 'rejected', reason })
}

// ---------------------------------------------------------------------------------------------------------------------
// Header formats

interface Read {
  /** The leaf first, then what the proxy sent of its chain. */
  readonly ders: readonly Buffer[]
  /** XFCC `Hash=`, lower-case. */
  readonly hash?: string
}

function readXfcc (text: string): Read | ForwardedCert {
  const elements = splitXfcc(text)
  if (typeof elements === 'string') return malformed(elements)
  // Each proxy on the way appends its own element (forward_client_cert_details APPEND_FORWARD), and the client may
  // have sent some: which element belongs to the end user is not knowable here. Envoy in front of authgate must
  // use SANITIZE_SET, which leaves exactly one. (Node also joins a repeated header with ", ": that lands here too.)
  if (elements.length !== 1) return malformed(`${elements.length} XFCC elements where one was expected (forward_client_cert_details: SANITIZE_SET)`)
  let cert: string | undefined
  let chain: string | undefined
  let hash: string | undefined
  for (const [key, value] of elements[0]!) {
    if (key === 'cert' || key === 'chain' || key === 'hash') {
      if ((key === 'cert' ? cert : key === 'chain' ? chain : hash) !== undefined) return malformed(`XFCC ${key} given twice`)
      if (key === 'cert') cert = value
      else if (key === 'chain') chain = value
      else hash = value
    }
    // By, Subject, URI, DNS and anything newer are ignored: they are the proxy's reading of the certificate.
  }
  if (hash !== undefined && !/^[0-9a-f]{64}$/i.test(hash)) return malformed('the XFCC Hash= is not a SHA-256 in hex')
  if (cert === undefined && chain === undefined) {
    return rejected('the XFCC element carries no certificate (set_current_client_cert_details: cert: true)')
  }
  const leaf = cert === undefined ? undefined : urlEncodedPem(cert, 'Cert=')
  if (typeof leaf === 'string') return malformed(leaf)
  if (leaf !== undefined && leaf.length !== 1) return malformed('the XFCC Cert= holds more than one certificate')
  const fullChain = chain === undefined ? undefined : urlEncodedPem(chain, 'Chain=')
  if (typeof fullChain === 'string') return malformed(fullChain)
  // Chain= is the whole peer chain, leaf first (headers.rst: "including the leaf certificate").
  if (leaf !== undefined && fullChain !== undefined && !fullChain[0]!.equals(leaf[0]!)) {
    return malformed('the XFCC Chain= does not start with its Cert=')
  }
  const ders = fullChain ?? leaf!
  if (ders.length > MAX_CERTIFICATES) return malformed('too many certificates in the XFCC header')
  return hash === undefined ? { ders } : { ders, hash: hash.toLowerCase() }
}

/**
 * Elements split on `,`, pairs on `;`, key and value on the first `=`, all outside double quotes; `\"` inside quotes
 * is a quote. Keys lower-cased (headers.rst: keys are case-insensitive). Envoy does not quote `By=` and `URI=`
 * (a TODO in conn_manager_utility.cc): a URI holding `,` or `;` then splits wrongly and fails here, closed.
 */
function splitXfcc (text: string): Array<Array<[string, string]>> | string {
  const elements: Array<Array<[string, string]>> = []
  let pairs: Array<[string, string]> = []
  let key: string | undefined
  let token = ''
  let quoted = false
  let closed = false // after a value's closing quote: only the next separator may follow
  const endPair = (): string | undefined => {
    if (key === undefined) {
      if (token.trim() === '') return 'an empty XFCC field'
      return 'an XFCC field without "="'
    }
    pairs.push([key.trim().toLowerCase(), token])
    key = undefined
    token = ''
    closed = false
    return undefined
  }
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!
    if (quoted) {
      if (char === '\\' && text[i + 1] === '"') { token += '"'; i++ } else if (char === '"') { quoted = false; closed = true } else token += char
    } else if (closed && char !== ';' && char !== ',') {
      if (char.trim() !== '') return 'text after a quoted XFCC value'
    } else if (char === '"') {
      if (key === undefined || token.trim() !== '') return 'a quote inside an XFCC value'
      token = ''
      quoted = true
    } else if (char === '=' && key === undefined) {
      key = token
      token = ''
    } else if (char === ';' || char === ',') {
      const problem = endPair()
      if (problem !== undefined) return problem
      if (char === ',') { elements.push(pairs); pairs = [] }
    } else {
      token += char
    }
  }
  if (quoted) return 'an unterminated quote in the XFCC header'
  const problem = endPair()
  if (problem !== undefined) return problem
  elements.push(pairs)
  return elements
}

function urlEncodedPem (value: string, what: string): Buffer[] | string {
  let pem: string
  try {
    pem = decodeURIComponent(value)
  } catch {
    return `the XFCC ${what} is not URL-encoded`
  }
  const blocks = readPem(pem, { strict: true })
  if (typeof blocks === 'string') return `the XFCC ${what} is not PEM: ${blocks}`
  if (blocks.length === 0) return `the XFCC ${what} holds no certificate`
  if (blocks.some((b) => b.label !== 'CERTIFICATE')) return `the XFCC ${what} holds something other than certificates`
  return blocks.map((b) => b.der)
}

function readNginx (text: string): Read | ForwardedCert {
  // Neither form contains a comma: one here is Node joining a repeated header.
  if (text.includes(',')) return malformed(`the ${NGINX} header was sent more than once`)
  let pem = text
  if (text.includes('%')) { // escaped ("-----BEGIN%20CERTIFICATE-----%0A..."); raw PEM has no "%"
    try {
      pem = decodeURIComponent(text)
    } catch {
      return malformed(`the ${NGINX} header is neither PEM nor URL-encoded PEM`)
    }
  }
  const blocks = readPem(pem, { strict: true })
  if (typeof blocks === 'string') return malformed(`the ${NGINX} header is not PEM: ${blocks}`)
  if (blocks.length !== 1 || blocks[0]!.label !== 'CERTIFICATE') return malformed(`the ${NGINX} header does not hold exactly one certificate`)
  return { ders: [blocks[0]!.der] }
}

function readTraefik (text: string): Read | ForwardedCert {
  let list = text
  if (list.includes('%')) { // Traefik < 2.10: url.QueryEscape of the same list
    try {
      list = decodeURIComponent(list)
    } catch {
      return malformed(`the ${TRAEFIK} header is not base64 certificates`)
    }
  }
  const parts = list.split(',')
  if (parts.length > MAX_CERTIFICATES) return malformed(`too many certificates in the ${TRAEFIK} header`)
  const ders: Buffer[] = []
  for (const part of parts) {
    // Traefik joins with "," alone: a space (Node's ", " for a repeated header) or an empty entry is not its output.
    const der = strictBase64(part)
    if (der === undefined) return malformed(`the ${TRAEFIK} header is not a comma-separated list of base64 certificates`)
    ders.push(der)
  }
  return { ders }
}

// ---------------------------------------------------------------------------------------------------------------------
// PEM and DER

interface PemBlock {
  readonly label: string
  readonly der: Buffer
}

/**
 * RFC 7468 blocks. `strict`: nothing but whitespace between blocks (a header), else any text (a CA bundle with
 * comments). Inside a block, whitespace of any kind is ignored (nginx's tab-indented `$ssl_client_cert`).
 */
function readPem (text: string, { strict }: { strict: boolean }): PemBlock[] | string {
  const blocks: PemBlock[] = []
  const pattern = /-----BEGIN ([A-Z0-9 ]{1,40})-----([^-]*)-----END ([A-Z0-9 ]{1,40})-----/g
  let last = 0
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    if (strict && text.slice(last, match.index).trim() !== '') return 'text outside the PEM blocks'
    if (match[1] !== match[3]) return 'a PEM block whose BEGIN and END labels differ'
    const der = strictBase64(match[2]!.replace(/\s+/g, ''))
    if (der === undefined) return `a PEM ${match[1]} block that is not base64`
    blocks.push({ label: match[1]!, der })
    last = match.index + match[0].length
  }
  if (strict && text.slice(last).trim() !== '') return 'text outside the PEM blocks'
  if (!strict && blocks.length === 0 && /-----BEGIN/.test(text)) return 'a PEM block that does not parse'
  return blocks
}

function strictBase64 (text: string): Buffer | undefined {
  if (text.length === 0 || text.length % 4 !== 0) return undefined
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined
  return Buffer.from(text, 'base64')
}

class DerError extends Error {
  override name = 'DerError'
}

interface Tlv {
  readonly tag: number
  /** Offset of the tag byte. */
  readonly from: number
  /** Offset of the contents. */
  readonly start: number
  readonly end: number
}

const INTEGER = 0x02
const BIT_STRING = 0x03
const OCTET_STRING = 0x04
const OID = 0x06
const SEQUENCE = 0x30
const UTC_TIME = 0x17
const GENERALIZED_TIME = 0x18
const BOOLEAN = 0x01

function parseCertificate (der: Buffer): Certificate {
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature } (RFC 5280 §4.1); ours reads the names,
  // serial and validity; OpenSSL (X509Certificate) reads the rest and must agree that it is a certificate.
  const outer = readTlv(der, 0, der.length)
  if (outer.tag !== SEQUENCE || outer.end !== der.length) throw new DerError('not one DER SEQUENCE')
  const [tbs] = children(der, outer)
  if (tbs?.tag !== SEQUENCE) throw new DerError('no tbsCertificate')
  const fields = children(der, tbs)
  const at = fields[0]?.tag === 0xa0 ? 1 : 0 // version [0] EXPLICIT, optional
  const [serial, , issuer, validity, subject] = fields.slice(at)
  if (serial?.tag !== INTEGER || issuer?.tag !== SEQUENCE || validity?.tag !== SEQUENCE || subject?.tag !== SEQUENCE) {
    throw new DerError('not a tbsCertificate')
  }
  const [notBefore, notAfter, extra] = children(der, validity)
  if (notBefore === undefined || notAfter === undefined || extra !== undefined) throw new DerError('bad validity')
  const x509 = new X509Certificate(der)
  return {
    x509,
    der,
    fingerprint: createHash('sha256').update(der).digest('hex'),
    issuerName: hexOf(der, issuer, true),
    subjectName: hexOf(der, subject, true),
    serial: hexOf(der, serial, false),
    notBeforeMs: readTime(der, notBefore),
    notAfterMs: readTime(der, notAfter),
  }
}

/** CertificateList (RFC 5280 §5.1), v1 or v2. */
function parseCrl (der: Buffer): RevocationList {
  const outer = readTlv(der, 0, der.length)
  if (outer.tag !== SEQUENCE || outer.end !== der.length) throw new DerError('not a DER CRL')
  const [tbs, algorithm, signature, extra] = children(der, outer)
  if (tbs?.tag !== SEQUENCE || algorithm?.tag !== SEQUENCE || signature?.tag !== BIT_STRING || extra !== undefined) {
    throw new DerError('not a DER CRL')
  }
  const fields = children(der, tbs)
  let i = 0
  if (fields[i]?.tag === INTEGER) i++ // version v2
  const innerAlgorithm = fields[i++]
  const issuer = fields[i++]
  const thisUpdate = fields[i++]
  if (innerAlgorithm?.tag !== SEQUENCE || issuer?.tag !== SEQUENCE || thisUpdate === undefined) throw new DerError('not a DER CRL')
  // RFC 5280 §5.1.1.2: the signature field inside must name the algorithm outside.
  if (!der.subarray(innerAlgorithm.from, innerAlgorithm.end).equals(der.subarray(algorithm.from, algorithm.end))) {
    throw new DerError('the CRL names two different signature algorithms')
  }
  let nextUpdateMs = Infinity
  if (fields[i]?.tag === UTC_TIME || fields[i]?.tag === GENERALIZED_TIME) nextUpdateMs = readTime(der, fields[i++]!)
  const revoked = new Set<string>()
  if (fields[i]?.tag === SEQUENCE) {
    for (const entry of children(der, fields[i++]!)) {
      const [serial, date, extensions] = entry.tag === SEQUENCE ? children(der, entry) : []
      if (serial?.tag !== INTEGER || date === undefined) throw new DerError('a bad revoked certificate entry')
      // A critical entry extension (certificateIssuer: an indirect CRL) changes whose serial this is.
      if (extensions !== undefined) rejectCriticalExtensions(der, extensions, 'CRL entry')
      revoked.add(hexOf(der, serial, false))
    }
  }
  if (fields[i]?.tag === 0xa0) { // crlExtensions [0] EXPLICIT
    const [list] = children(der, fields[i++]!)
    if (list === undefined) throw new DerError('bad CRL extensions')
    // Critical ones (issuingDistributionPoint, deltaCRLIndicator) narrow what the CRL covers: not understood here.
    rejectCriticalExtensions(der, list, 'CRL')
  }
  if (i !== fields.length) throw new DerError('unexpected fields in the CRL')
  const bits = der.subarray(signature.start, signature.end)
  if (bits.length < 2 || bits[0] !== 0) throw new DerError('a bad CRL signature')
  const oid = children(der, algorithm)[0]
  if (oid?.tag !== OID) throw new DerError('a bad CRL signature algorithm')
  const algorithmOid = readOid(der, oid)
  if (!(algorithmOid in SIGNATURES)) throw new DerError(`unsupported CRL signature algorithm ${algorithmOid}`)
  return {
    issuerName: hexOf(der, issuer, true),
    thisUpdateMs: readTime(der, thisUpdate),
    nextUpdateMs,
    revoked,
    tbs: der.subarray(tbs.from, tbs.end),
    algorithm: algorithmOid,
    signature: bits.subarray(1),
    signedBy: new Map(),
  }
}

function rejectCriticalExtensions (der: Buffer, list: Tlv, what: string): void {
  if (list.tag !== SEQUENCE) throw new DerError(`bad ${what} extensions`)
  for (const extension of children(der, list)) {
    const [oid, critical] = extension.tag === SEQUENCE ? children(der, extension) : []
    if (oid?.tag !== OID) throw new DerError(`bad ${what} extension`)
    if (critical?.tag === BOOLEAN && der[critical.start] !== 0 && critical.end - critical.start === 1) {
      throw new DerError(`unsupported critical ${what} extension ${readOid(der, oid)}`)
    }
    if (critical !== undefined && critical.tag !== BOOLEAN && critical.tag !== OCTET_STRING) throw new DerError(`bad ${what} extension`)
  }
}

/** Signature algorithm OID -> [digest for crypto.verify (null: EdDSA), the key type it needs]. */
const SIGNATURES: Record<string, readonly [string | null, string]> = {
  '1.2.840.10045.4.3.2': ['sha256', 'ec'],
  '1.2.840.10045.4.3.3': ['sha384', 'ec'],
  '1.2.840.10045.4.3.4': ['sha512', 'ec'],
  '1.2.840.113549.1.1.11': ['sha256', 'rsa'],
  '1.2.840.113549.1.1.12': ['sha384', 'rsa'],
  '1.2.840.113549.1.1.13': ['sha512', 'rsa'],
  '1.3.101.112': [null, 'ed25519'],
  '1.3.101.113': [null, 'ed448'],
}

function isCrlSignedBy (crl: RevocationList, issuer: Certificate): boolean {
  const known = crl.signedBy.get(issuer.fingerprint)
  if (known !== undefined) return known
  const [digest, keyType] = SIGNATURES[crl.algorithm]!
  const key = issuer.x509.publicKey
  let ok = false
  try {
    ok = key.asymmetricKeyType === keyType && verifySignature(digest, crl.tbs, key, crl.signature)
  } catch {
    ok = false
  }
  crl.signedBy.set(issuer.fingerprint, ok)
  return ok
}

function readTime (der: Buffer, tlv: Tlv): number {
  const text = der.subarray(tlv.start, tlv.end).toString('latin1')
  // RFC 5280 §4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY < 50 is 20YY), GeneralizedTime YYYYMMDDHHMMSSZ, always Zulu.
  const match = tlv.tag === UTC_TIME
    ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
    : tlv.tag === GENERALIZED_TIME ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text) : null
  if (match === null) throw new DerError('a bad time')
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number]
  const fullYear = tlv.tag === UTC_TIME ? (year < 50 ? 2000 + year : 1900 + year) : year
  const ms = Date.UTC(fullYear, month - 1, day, hour, minute, second)
  if (Number.isNaN(ms)) throw new DerError('a bad time')
  return ms
}

function readOid (der: Buffer, tlv: Tlv): string {
  const arcs: number[] = []
  let value = 0
  for (let i = tlv.start; i < tlv.end; i++) {
    const byte = der[i]!
    value = value * 128 + (byte & 0x7f)
    if (!Number.isSafeInteger(value)) throw new DerError('OID arc too large')
    if ((byte & 0x80) !== 0) continue
    if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80)
    else arcs.push(value)
    value = 0
  }
  if (arcs.length < 2 || (der[tlv.end - 1]! & 0x80) !== 0) throw new DerError('bad OID')
  return arcs.join('.')
}

function hexOf (der: Buffer, tlv: Tlv, whole: boolean): string {
  return der.subarray(whole ? tlv.from : tlv.start, tlv.end).toString('hex')
}

function children (der: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = []
  for (let at = parent.start; at < parent.end;) {
    const child = readTlv(der, at, parent.end)
    out.push(child)
    at = child.end
  }
  return out
}

function readTlv (der: Buffer, from: number, limit: number): Tlv {
  const tag = der[from]
  const first = der[from + 1]
  if (tag === undefined || first === undefined || from + 2 > limit) throw new DerError('truncated DER')
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here')
  let start = from + 2
  let length = first
  if (first >= 0x80) {
    const count = first & 0x7f
    if (count === 0 || count > 4) throw new DerError('unsupported DER length')
    length = 0
    for (let i = 0; i < count; i++) {
      const byte = der[start + i]
      if (byte === undefined) throw new DerError('truncated DER')
      length = length * 256 + byte
    }
    start += count
  }
  const end = start + length
  if (end > limit) throw new DerError('truncated DER')
  return { tag, from, start, end }
}

// Node writes multi-valued subjects on several lines.
function oneLine (subject: string): string {
  return subject.replace(/\n/g, ', ')
}
