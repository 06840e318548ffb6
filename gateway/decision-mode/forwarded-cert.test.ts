/**
 * Forwarded client certificates (decision mode): real certificates minted per run, encoded exactly as each proxy's
 * source encodes them (the references are in forwarded-cert.ts), and a few requests over a real loopback socket for
 * what Node's HTTP parser does to repeated headers.
 */
import anyTest, { type TestFn } from 'ava'
import { createHash, X509Certificate } from 'node:crypto'
import http, { type IncomingHttpHeaders } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { certificateSerial, createCRL, issueClientCert, type PemPair } from '../../certs/pki.js'
import { EKU, handshake, issueCertificate, mintPki, type Pki } from '../../test/helpers/pki.js'
import { FORWARDED_CERT_HEADERS, forwardedCertificate, loadClientCertTrust, type ClientCertTrust, type ForwardedCert } from './forwarded-cert.js'

interface Context {
  pki: Pki
  trust: ClientCertTrust
  /** clientCA + the CRL of mintPki (revokes pki.revoked). */
  trustWithCrl: ClientCertTrust
  intermediate: PemPair
  /** Issued by `intermediate`. */
  chained: PemPair
  chainedRevoked: PemPair
  serverOnly: PemPair
  noEku: PemPair
  notYetValid: PemPair
  rogueChained: PemPair
}

const test = anyTest as TestFn<Context>
const DAY_MS = 24 * 60 * 60 * 1000

test.before(async (t) => {
  const pki = await mintPki()
  const intermediate = await issueCertificate(pki.ca, { commonName: 'authgate intermediate CA', ca: true })
  const rogueIntermediate = await issueCertificate(pki.rogueCa, { commonName: 'authgate intermediate CA', ca: true })
  const [chained, chainedRevoked, serverOnly, noEku, notYetValid, rogueChained] = await Promise.all([
    issueClientCert(intermediate, { commonName: 'chained-client', days: 30 }),
    issueClientCert(intermediate, { commonName: 'chained-revoked', days: 30 }),
    issueCertificate(pki.ca, { commonName: 'server-only', eku: [EKU.serverAuth] }),
    issueCertificate(pki.ca, { commonName: 'no-eku', eku: [] }),
    issueCertificate(pki.ca, { commonName: 'later', notBefore: new Date(Date.now() + DAY_MS), notAfter: new Date(Date.now() + 2 * DAY_MS) }),
    issueClientCert(rogueIntermediate, { commonName: 'chained-client', days: 30 }),
  ])
  t.context = {
    pki,
    trust: loadClientCertTrust(Buffer.from(pki.ca.cert)),
    trustWithCrl: loadClientCertTrust(Buffer.from(pki.ca.cert), Buffer.from(pki.crl)),
    intermediate,
    chained,
    chainedRevoked,
    serverOnly,
    noEku,
    notYetValid,
    rogueChained,
  }
})

// --- What each proxy sends -----------------------------------------------------------------------------------------

/** The PEM OpenSSL writes (PEM_write_bio_X509), as Envoy and nginx start from. */
function opensslPem (pem: string): string {
  return new X509Certificate(pem).toString()
}

function derOf (pem: string): Buffer {
  return new X509Certificate(pem).raw
}

/** Envoy connection_info_impl.cc: StrReplaceAll(pem, {"\n" "%0A", " " "%20", "+" "%2B", "/" "%2F", "=" "%3D"}). */
function envoyUrlEncode (pem: string): string {
  return pem.replace(/[\n +/=]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
}

/** Envoy conn_manager_utility.cc mutateXfccRequestHeader with SANITIZE_SET and cert, chain, subject, uri, dns. */
function xfcc (leaf: string, options: { chain?: readonly string[], hash?: string, cert?: boolean } = {}): string {
  const parts = ['By=spiffe://example.org/ns/edge/sa/envoy', `Hash=${options.hash ?? createHash('sha256').update(derOf(leaf)).digest('hex')}`]
  if (options.cert !== false) parts.push(`Cert="${envoyUrlEncode(opensslPem(leaf))}"`)
  if (options.chain) parts.push(`Chain="${[leaf, ...options.chain].map((c) => envoyUrlEncode(opensslPem(c))).join('')}"`)
  parts.push('Subject="CN=client-one"', 'URI=spiffe://example.org/ns/default/sa/client-one')
  return parts.join(';')
}

/** nginx $ssl_client_escaped_cert: ngx_escape_uri(NGX_ESCAPE_URI_COMPONENT), all but ALPHA DIGIT "-._~", upper hex. */
function nginxEscaped (pem: string): string {
  return nginxEscape(opensslPem(pem))
}

function nginxEscape (text: string): string {
  return [...Buffer.from(text)].map((b) => /[A-Za-z0-9\-._~]/.test(String.fromCharCode(b))
    ? String.fromCharCode(b)
    : `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('')
}

/** nginx $ssl_client_cert (deprecated): the PEM without its last newline, a tab after every other newline. */
function nginxTabbed (pem: string): string {
  return opensslPem(pem).replace(/\n$/, '').replace(/\n/g, '\n\t')
}

/** Traefik >= 2.10 getCertificates: each PEM with armor and newlines removed, joined by ",", leaf first. */
function traefik (...pems: string[]): string {
  return pems.map((pem) => derOf(pem).toString('base64')).join(',')
}

/** Traefik < 2.10: the same through Go's url.QueryEscape. */
function traefikEscaped (...pems: string[]): string {
  return traefik(...pems).replace(/[^A-Za-z0-9\-._~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
}

function check (t: { context: Context }, headers: IncomingHttpHeaders, options: { trust?: ClientCertTrust | null, nowMs?: number } = {}): ForwardedCert {
  const trust = options.trust === null ? undefined : options.trust ?? t.context.trust
  return forwardedCertificate(headers, trust, options.nowMs ?? Date.now())
}

// --- Verified -------------------------------------------------------------------------------------------------------

test('a certificate from the trusted CA verifies in each proxy\'s format, and raw is the leaf\'s DER', (t) => {
  const { client } = t.context.pki
  const leaf = derOf(client.cert)
  const forms: Array<[string, IncomingHttpHeaders]> = [
    ['Envoy XFCC Cert=', { 'x-forwarded-client-cert': xfcc(client.cert) }],
    ['Envoy XFCC Cert= and Chain=', { 'x-forwarded-client-cert': xfcc(client.cert, { chain: [t.context.pki.ca.cert] }) }],
    ['Envoy XFCC Chain= alone', { 'x-forwarded-client-cert': xfcc(client.cert, { chain: [], cert: false }) }],
    ['nginx $ssl_client_escaped_cert', { 'x-ssl-client-cert': nginxEscaped(client.cert) }],
    ['nginx $ssl_client_cert (tab-indented PEM)', { 'x-ssl-client-cert': nginxTabbed(client.cert) }],
    ['Traefik pem: true', { 'x-forwarded-tls-client-cert': traefik(client.cert) }],
    ['Traefik pem: true before 2.10 (query-escaped)', { 'x-forwarded-tls-client-cert': traefikEscaped(client.cert) }],
  ]
  for (const [name, headers] of forms) {
    const result = check(t, headers)
    t.is(result.kind, 'verified', `${name}: ${JSON.stringify(result)}`)
    if (result.kind === 'verified') t.true(result.raw.equals(leaf), name)
  }
})

test('a leaf without extendedKeyUsage verifies; one for serverAuth only is rejected', (t) => {
  t.is(check(t, { 'x-forwarded-tls-client-cert': traefik(t.context.noEku.cert) }).kind, 'verified')
  t.deepEqual(check(t, { 'x-forwarded-tls-client-cert': traefik(t.context.serverOnly.cert) }),
    { kind: 'rejected', reason: 'the certificate is not for client authentication (extendedKeyUsage)' })
  t.deepEqual(check(t, { 'x-ssl-client-cert': nginxEscaped(t.context.pki.server.cert) }),
    { kind: 'rejected', reason: 'the certificate is not for client authentication (extendedKeyUsage)' })
})

// --- Rejected -------------------------------------------------------------------------------------------------------

test('a leaf from a rogue CA with the same subject name as the trusted CA is rejected, in every format', (t) => {
  const { untrusted, rogueCa, ca } = t.context.pki
  t.is(new X509Certificate(rogueCa.cert).subject, new X509Certificate(ca.cert).subject, 'the rogue CA has the trusted name')
  const rejected = { kind: 'rejected', reason: 'the certificate does not chain to a trusted CA' }
  t.deepEqual(check(t, { 'x-forwarded-client-cert': xfcc(untrusted.cert) }), rejected)
  // The rogue CA itself handed over as a chain helper does not help: only clientCA certificates are anchors.
  t.deepEqual(check(t, { 'x-forwarded-client-cert': xfcc(untrusted.cert, { chain: [rogueCa.cert] }) }), rejected)
  t.deepEqual(check(t, { 'x-ssl-client-cert': nginxEscaped(untrusted.cert) }), rejected)
  t.deepEqual(check(t, { 'x-forwarded-tls-client-cert': traefik(untrusted.cert, rogueCa.cert) }), rejected)
  // And a rogue intermediate with the real intermediate's name, signed by the rogue root.
  t.deepEqual(check(t, { 'x-forwarded-tls-client-cert': traefik(t.context.rogueChained.cert, t.context.intermediate.cert) }), rejected)
  // The same formats with the trusted client do verify (the pairing positive case).
  t.is(check(t, { 'x-forwarded-tls-client-cert': traefik(t.context.pki.client.cert, rogueCa.cert) }).kind, 'verified')
})

test('an expired leaf is rejected, a not yet valid one too, and the clock is read on every call (not cached)', async (t) => {
  const { expired, client } = t.context.pki
  t.deepEqual(check(t, { 'x-forwarded-client-cert': xfcc(expired.cert) }), { kind: 'rejected', reason: 'the certificate has expired' })
  t.deepEqual(check(t, { 'x-forwarded-tls-client-cert': traefik(t.context.notYetValid.cert) }),
    { kind: 'rejected', reason: 'the certificate is not yet valid' })
  t.is(check(t, { 'x-forwarded-tls-client-cert': traefik(t.context.notYetValid.cert) }, { nowMs: Date.now() + 1.5 * DAY_MS }).kind, 'verified')
  // The same header value, verified now and then checked at a later time: the cached verdict keeps its time checks.
  const headers = { 'x-ssl-client-cert': nginxEscaped(client.cert) }
  t.is(check(t, headers).kind, 'verified')
  const notAfter = Date.parse(new X509Certificate(client.cert).validTo)
  t.deepEqual(check(t, headers, { nowMs: notAfter + 1000 }), { kind: 'rejected', reason: 'the certificate has expired' })
  t.is(check(t, headers).kind, 'verified')
  // A CA of the path out of its validity fails the path too: a leaf that outlives its intermediate.
  const shortLived = await issueCertificate(t.context.pki.ca, { commonName: 'short-lived CA', ca: true, notAfter: new Date(Date.now() + DAY_MS) })
  const outliving = await issueClientCert(shortLived, { commonName: 'outliving', days: 30 })
  const chain = { 'x-forwarded-tls-client-cert': traefik(outliving.cert, shortLived.cert) }
  t.is(check(t, chain).kind, 'verified')
  t.deepEqual(check(t, chain, { nowMs: Date.now() + 2 * DAY_MS }), { kind: 'rejected', reason: 'a CA certificate of its chain has expired' })
})

test('with the CRL: the revoked leaf is rejected and the same CA\'s other leaves verify; an expired CRL rejects all', (t) => {
  const { revoked, client, otherClient } = t.context.pki
  const trust = t.context.trustWithCrl
  t.deepEqual(check(t, { 'x-ssl-client-cert': nginxEscaped(revoked.cert) }, { trust }), { kind: 'rejected', reason: 'the certificate is revoked' })
  t.deepEqual(check(t, { 'x-forwarded-client-cert': xfcc(revoked.cert) }, { trust }), { kind: 'rejected', reason: 'the certificate is revoked' })
  t.is(check(t, { 'x-ssl-client-cert': nginxEscaped(client.cert) }, { trust }).kind, 'verified')
  t.is(check(t, { 'x-forwarded-client-cert': xfcc(otherClient.cert) }, { trust }).kind, 'verified')
  // Without the CRL the revoked certificate is just a certificate.
  t.is(check(t, { 'x-ssl-client-cert': nginxEscaped(revoked.cert) }).kind, 'verified')
  // mintPki's CRL has nextUpdate in 30 days; client-one is valid for 825 days.
  const later = Date.now() + 31 * DAY_MS
  t.deepEqual(check(t, { 'x-ssl-client-cert': nginxEscaped(client.cert) }, { trust, nowMs: later }),
    { kind: 'rejected', reason: 'the CRL of its issuing CA has expired' })
  t.is(check(t, { 'x-ssl-client-cert': nginxEscaped(client.cert) }, { nowMs: later }).kind, 'verified')
})

test('a chain through an intermediate given in XFCC Chain= or the Traefik list verifies; without it, rejected', (t) => {
  const { chained, intermediate } = t.context
  const leaf = derOf(chained.cert)
  for (const headers of [
    { 'x-forwarded-client-cert': xfcc(chained.cert, { chain: [intermediate.cert] }) },
    { 'x-forwarded-client-cert': xfcc(chained.cert, { chain: [intermediate.cert, t.context.pki.ca.cert] }) },
    { 'x-forwarded-tls-client-cert': traefik(chained.cert, intermediate.cert) },
    { 'x-forwarded-tls-client-cert': traefik(chained.cert, intermediate.cert, t.context.pki.ca.cert) },
  ]) {
    const result = check(t, headers)
    t.is(result.kind, 'verified', JSON.stringify(headers).slice(0, 60))
    if (result.kind === 'verified') t.true(result.raw.equals(leaf))
  }
  const missing = { kind: 'rejected', reason: 'the certificate does not chain to a trusted CA' }
  t.deepEqual(check(t, { 'x-forwarded-client-cert': xfcc(chained.cert) }), missing)
  t.deepEqual(check(t, { 'x-forwarded-tls-client-cert': traefik(chained.cert) }), missing)
  t.deepEqual(check(t, { 'x-ssl-client-cert': nginxEscaped(chained.cert) }), missing) // nginx has no chain variable
  // nginx users put the intermediate into clientCA instead: it is then an anchor.
  const bundle = loadClientCertTrust(Buffer.from(t.context.pki.ca.cert + intermediate.cert))
  t.is(check(t, { 'x-ssl-client-cert': nginxEscaped(chained.cert) }, { trust: bundle }).kind, 'verified')
})

test('CRLs along a chain: each link needs its issuer\'s CRL, checked against the intermediate from the header', async (t) => {
  const { chained, chainedRevoked, intermediate, pki } = t.context
  const rootCrl = await createCRL(pki.ca, [certificateSerial(pki.revoked.cert)])
  const intermediateCrl = await createCRL(intermediate, [certificateSerial(chainedRevoked.cert)])
  const both = loadClientCertTrust(Buffer.from(pki.ca.cert), Buffer.from(rootCrl + intermediateCrl))
  const chainOf = (leaf: string) => ({ 'x-forwarded-tls-client-cert': traefik(leaf, intermediate.cert) })
  t.is(check(t, chainOf(chained.cert), { trust: both }).kind, 'verified')
  t.deepEqual(check(t, chainOf(chainedRevoked.cert), { trust: both }), { kind: 'rejected', reason: 'the certificate is revoked' })
  // Only the root's CRL: the intermediate's leaves are not known to be unrevoked (as OpenSSL's CRL_CHECK_ALL).
  const rootOnly = loadClientCertTrust(Buffer.from(pki.ca.cert), Buffer.from(rootCrl))
  t.deepEqual(check(t, chainOf(chained.cert), { trust: rootOnly }), { kind: 'rejected', reason: 'no CRL from its issuing CA' })
  t.is(check(t, { 'x-ssl-client-cert': nginxEscaped(pki.client.cert) }, { trust: rootOnly }).kind, 'verified')
  // The root revokes the intermediate: everything under it is rejected.
  const intermediateRevoked = await createCRL(pki.ca, [certificateSerial(intermediate.cert)])
  const revokedCa = loadClientCertTrust(Buffer.from(pki.ca.cert), Buffer.from(intermediateRevoked + intermediateCrl))
  t.deepEqual(check(t, chainOf(chained.cert), { trust: revokedCa }), { kind: 'rejected', reason: 'an intermediate CA of its chain is revoked' })
})

test('the verdicts agree with OpenSSL verifying the same certificates in a real TLS handshake (same CA, same CRL)', async (t) => {
  const { pki, serverOnly, noEku, notYetValid } = t.context
  const cases = { client: pki.client, otherClient: pki.otherClient, untrusted: pki.untrusted, expired: pki.expired, revoked: pki.revoked, serverOnly, noEku, notYetValid }
  for (const [name, pair] of Object.entries(cases)) {
    for (const crl of [undefined, pki.crl]) {
      const seen = await handshake(pki, pair, crl === undefined ? {} : { crl })
      const ours = check(t, { 'x-ssl-client-cert': nginxEscaped(pair.cert) }, { trust: crl === undefined ? t.context.trust : t.context.trustWithCrl })
      t.is(ours.kind === 'verified', seen.authorized, `${name}${crl === undefined ? '' : ' with the CRL'}: OpenSSL ${seen.authorizationError ?? 'ok'}, ours ${JSON.stringify(ours)}`)
    }
  }
})

test('chains agree with OpenSSL too: intermediates sent by the client, CRLs of the root and of the intermediate', async (t) => {
  const { pki, intermediate, chained, chainedRevoked, rogueChained } = t.context
  const rootCrl = await createCRL(pki.ca, [])
  const intermediateCrl = await createCRL(intermediate, [certificateSerial(chainedRevoked.cert)])
  // Node's TLS `crl` reads one CRL per string (PEM_read_bio_X509_CRL once): several go in as an array.
  const crls: Record<string, string[] | undefined> = { none: undefined, 'root only': [rootCrl], both: [rootCrl, intermediateCrl] }
  const leaves = { chained, chainedRevoked, rogueChained }
  for (const [crlName, crl] of Object.entries(crls)) {
    const trust = loadClientCertTrust(Buffer.from(pki.ca.cert), crl === undefined ? undefined : Buffer.from(crl.join('\n')))
    for (const [name, pair] of Object.entries(leaves)) {
      const seen = await handshake(pki, { cert: opensslPem(pair.cert) + opensslPem(intermediate.cert), key: pair.key }, crl === undefined ? {} : { crl })
      const ours = check(t, { 'x-forwarded-tls-client-cert': traefik(pair.cert, intermediate.cert) }, { trust })
      t.is(ours.kind === 'verified', seen.authorized, `${name}, CRLs: ${crlName}: OpenSSL ${seen.authorizationError ?? 'ok'}, ours ${JSON.stringify(ours)}`)
    }
  }
})

// --- None -----------------------------------------------------------------------------------------------------------

test('no certificate header is none; an empty header (nginx without a client certificate) is none too', (t) => {
  t.deepEqual(check(t, {}), { kind: 'none' })
  t.deepEqual(check(t, { 'x-forwarded-for': '192.0.2.1', authorization: 'Bearer x' }), { kind: 'none' })
  for (const name of FORWARDED_CERT_HEADERS) t.deepEqual(check(t, { [name]: '' }), { kind: 'none' }, name)
  t.deepEqual(check(t, { 'x-ssl-client-cert': '' }, { trust: null }), { kind: 'none' })
})

test('FORWARDED_CERT_HEADERS names the three headers, lower-case', (t) => {
  t.deepEqual([...FORWARDED_CERT_HEADERS], ['x-forwarded-client-cert', 'x-ssl-client-cert', 'x-forwarded-tls-client-cert'])
})

// --- Malformed ------------------------------------------------------------------------------------------------------

test('XFCC with two elements is malformed (which one is the end user\'s is unknowable), one element verifies', (t) => {
  const { client, otherClient } = t.context.pki
  const result = check(t, { 'x-forwarded-client-cert': `${xfcc(otherClient.cert)},${xfcc(client.cert)}` })
  t.is(result.kind, 'malformed')
  t.regex((result as { reason: string }).reason, /2 XFCC elements/)
  t.is(check(t, { 'x-forwarded-client-cert': xfcc(client.cert) }).kind, 'verified')
})

test('an XFCC Hash= that is not the SHA-256 of Cert= is malformed', (t) => {
  const { client, otherClient } = t.context.pki
  const otherHash = createHash('sha256').update(derOf(otherClient.cert)).digest('hex')
  t.deepEqual(check(t, { 'x-forwarded-client-cert': xfcc(client.cert, { hash: otherHash }) }),
    { kind: 'malformed', reason: 'the XFCC Hash= is not the SHA-256 of its Cert=' })
  t.is(check(t, { 'x-forwarded-client-cert': xfcc(client.cert, { hash: 'nothex' }) }).kind, 'malformed')
  // Upper-case hex is the same hash.
  const hash = createHash('sha256').update(derOf(client.cert)).digest('hex').toUpperCase()
  t.is(check(t, { 'x-forwarded-client-cert': xfcc(client.cert, { hash }) }).kind, 'verified')
})

test('garbage in any of the three headers is malformed, never verified', (t) => {
  const pem = opensslPem(t.context.pki.client.cert)
  const body = pem.split('\n').slice(1, -2).join('')
  const truncated = `-----BEGIN CERTIFICATE-----\n${body.slice(0, 200)}\n-----END CERTIFICATE-----\n`
  const notBase64 = `-----BEGIN CERTIFICATE-----\n${body.slice(0, 60)}!!!!\n-----END CERTIFICATE-----\n`
  const key = t.context.pki.client.key
  const cases: Array<[string, string]> = [
    ['x-forwarded-client-cert', 'garbage'],
    ['x-forwarded-client-cert', 'Cert="not a pem"'],
    ['x-forwarded-client-cert', `Cert="${envoyUrlEncode(truncated)}"`],
    ['x-forwarded-client-cert', `Cert="${envoyUrlEncode(notBase64)}"`],
    ['x-forwarded-client-cert', `Cert="${envoyUrlEncode(key)}"`],
    ['x-forwarded-client-cert', `Cert="%E0%A4%A"`],
    ['x-forwarded-client-cert', `Cert="${envoyUrlEncode(pem)}`], // unterminated quote
    ['x-forwarded-client-cert', `Cert="${envoyUrlEncode(pem)}"x`],
    ['x-forwarded-client-cert', `Cert="${envoyUrlEncode(pem)}";Cert="${envoyUrlEncode(pem)}"`],
    ['x-forwarded-client-cert', `Cert="${envoyUrlEncode(pem + pem)}"`],
    ['x-forwarded-client-cert', `Cert="${envoyUrlEncode(pem)}";Chain="${envoyUrlEncode(opensslPem(t.context.pki.otherClient.cert))}"`],
    ['x-forwarded-client-cert', `URI=spiffe://a,b;Cert="${envoyUrlEncode(pem)}"`], // an unquoted comma (Envoy's TODO)
    ['x-ssl-client-cert', 'garbage'],
    ['x-ssl-client-cert', '%ZZ'],
    ['x-ssl-client-cert', nginxEscape(truncated)],
    ['x-ssl-client-cert', encodeURIComponent(notBase64)],
    ['x-ssl-client-cert', encodeURIComponent(key)],
    ['x-ssl-client-cert', encodeURIComponent(pem + pem)],
    ['x-ssl-client-cert', encodeURIComponent(`junk${pem}`)],
    ['x-forwarded-tls-client-cert', 'garbage!'],
    ['x-forwarded-tls-client-cert', body.slice(0, 200)],
    ['x-forwarded-tls-client-cert', `${body},`],
    ['x-forwarded-tls-client-cert', `${body},,${body}`],
    ['x-forwarded-tls-client-cert', pem],
    ['x-forwarded-tls-client-cert', Buffer.from('not a certificate at all').toString('base64')],
    ['x-forwarded-tls-client-cert', '%ZZ'],
  ]
  for (const [name, value] of cases) {
    const result = check(t, { [name]: value })
    t.is(result.kind, 'malformed', `${name}: ${value.slice(0, 40)} -> ${JSON.stringify(result)}`)
    // Reasons never echo the header value.
    if (result.kind === 'malformed') t.false(result.reason.includes(value.slice(0, 24)) && value.length > 24)
  }
})

test('two different certificate headers at once are malformed, even when one of them is empty', (t) => {
  const { client } = t.context.pki
  const xfccValue = xfcc(client.cert)
  for (const headers of [
    { 'x-forwarded-client-cert': xfccValue, 'x-ssl-client-cert': nginxEscaped(client.cert) },
    { 'x-ssl-client-cert': nginxEscaped(client.cert), 'x-forwarded-tls-client-cert': traefik(client.cert) },
    // A proxy's own header, even empty, beside a second kind the client must have sent: not a verified user.
    { 'x-ssl-client-cert': '', 'x-forwarded-client-cert': xfccValue },
  ]) {
    const result = check(t, headers)
    t.is(result.kind, 'malformed')
    t.regex((result as { reason: string }).reason, /two proxies/)
  }
  t.is(check(t, { 'x-forwarded-client-cert': xfccValue }).kind, 'verified')
})

test('a header given as an array of several values is malformed; of one value, read as that value', (t) => {
  const value = nginxEscaped(t.context.pki.client.cert)
  t.is(check(t, { 'x-ssl-client-cert': [value, value] as unknown as string }).kind, 'malformed')
  t.is(check(t, { 'x-ssl-client-cert': [value] as unknown as string }).kind, 'verified')
})

test('a certificate with no trust configured is rejected (after being read: garbage stays malformed)', (t) => {
  const { client } = t.context.pki
  t.deepEqual(check(t, { 'x-forwarded-client-cert': xfcc(client.cert) }, { trust: null }),
    { kind: 'rejected', reason: 'no clientCA is configured to verify a forwarded client certificate' })
  t.is(check(t, { 'x-forwarded-tls-client-cert': traefik(client.cert) }, { trust: null }).kind, 'rejected')
  t.is(check(t, { 'x-forwarded-tls-client-cert': 'garbage!' }, { trust: null }).kind, 'malformed')
  t.is(check(t, { 'x-forwarded-client-cert': xfcc(client.cert) }).kind, 'verified')
})

test('an XFCC element without Cert= or Chain= is rejected: there is nothing to verify', (t) => {
  const result = check(t, { 'x-forwarded-client-cert': xfcc(t.context.pki.client.cert, { cert: false }) })
  t.is(result.kind, 'rejected')
})

test('a CA certificate forwarded as the client certificate is rejected', (t) => {
  t.deepEqual(check(t, { 'x-forwarded-tls-client-cert': traefik(t.context.intermediate.cert) }),
    { kind: 'rejected', reason: 'a CA certificate is not a client certificate' })
})

// --- Loading --------------------------------------------------------------------------------------------------------

test('loadClientCertTrust reads bundles with comments and throws a clear error on bad content', async (t) => {
  const { ca, client, crl } = t.context.pki
  const trust = loadClientCertTrust(Buffer.from(`# our CAs\nsubject=CN=authgate development CA\n${ca.cert}\n${t.context.intermediate.cert}`), Buffer.from(crl))
  t.is(trust.authorities.length, 2)
  t.is(trust.crlCount, 1)
  t.throws(() => loadClientCertTrust(Buffer.from('')), { message: /clientCA: no PEM CERTIFICATE block/ })
  t.throws(() => loadClientCertTrust(Buffer.from('not a pem at all')), { message: /clientCA: no PEM CERTIFICATE block/ })
  t.throws(() => loadClientCertTrust(Buffer.from(client.cert)), { message: /clientCA certificate 1 .* is not a CA certificate/ })
  t.throws(() => loadClientCertTrust(Buffer.from(ca.cert + client.key)), { message: /clientCA certificate 2: a "PRIVATE KEY" block/ })
  const broken = ca.cert.replace(/\n[A-Za-z0-9+/]{8}/, '\nAAAAAAAA')
  t.throws(() => loadClientCertTrust(Buffer.from(broken)), { message: /clientCA certificate 1: not a valid X.509 certificate/ })
  t.throws(() => loadClientCertTrust(Buffer.from(ca.cert), Buffer.from('')), { message: /crl: no PEM X509 CRL block/ })
  t.throws(() => loadClientCertTrust(Buffer.from(ca.cert), Buffer.from(ca.cert)), { message: /crl 1: a "CERTIFICATE" block/ })
  const crlBody = crl.split('\n').slice(1, -2).join('')
  t.throws(() => loadClientCertTrust(Buffer.from(ca.cert), Buffer.from(`-----BEGIN X509 CRL-----\n${crlBody.slice(0, 100)}\n-----END X509 CRL-----\n`)),
    { message: /crl 1: / })
  const intermediateCrl = await createCRL(t.context.intermediate, [])
  t.notThrows(() => loadClientCertTrust(Buffer.from(ca.cert), Buffer.from(intermediateCrl)), 'a CRL of a CA outside the bundle is kept for intermediates')
})

test('a CRL in the trusted CA\'s name but signed by the rogue CA\'s key is refused at load', async (t) => {
  const { ca, rogueCa, revoked } = t.context.pki
  const forged = await createCRL(rogueCa, [certificateSerial(revoked.cert)])
  t.throws(() => loadClientCertTrust(Buffer.from(ca.cert), Buffer.from(forged)), { message: /crl 1: issued in the name of CN=authgate development CA but not signed by its key/ })
  t.notThrows(() => loadClientCertTrust(Buffer.from(ca.cert), Buffer.from(t.context.pki.crl)))
})

test('a CRL in an intermediate\'s name signed by another key does not count as that intermediate\'s CRL', async (t) => {
  const { chained, chainedRevoked, intermediate, pki } = t.context
  // An intermediate with the same name and a different key, made by the rogue root: its CRL claims the real one's name.
  const impostor = await issueCertificate(pki.rogueCa, { commonName: 'authgate intermediate CA', ca: true })
  const forged = await createCRL(impostor, [])
  const rootCrl = await createCRL(pki.ca, [])
  const trust = loadClientCertTrust(Buffer.from(pki.ca.cert), Buffer.from(rootCrl + forged))
  // The forged CRL does not list chainedRevoked, but it is not the intermediate's: no CRL, so rejected.
  t.deepEqual(check(t, { 'x-forwarded-tls-client-cert': traefik(chainedRevoked.cert, intermediate.cert) }, { trust }),
    { kind: 'rejected', reason: 'no CRL from its issuing CA' })
  const real = await createCRL(intermediate, [])
  const good = loadClientCertTrust(Buffer.from(pki.ca.cert), Buffer.from(rootCrl + real))
  t.is(check(t, { 'x-forwarded-tls-client-cert': traefik(chained.cert, intermediate.cert) }, { trust: good }).kind, 'verified')
})

// --- Over a real socket ---------------------------------------------------------------------------------------------

/** Sends raw HTTP/1.1 requests to a node:http server and returns, per request, the verdict on what Node parsed. */
async function overHttp (trust: ClientCertTrust, requests: readonly string[]): Promise<Array<ForwardedCert | number>> {
  const seen: ForwardedCert[] = []
  const server = http.createServer((req, res) => {
    seen.push(forwardedCertificate(req.headers, trust, Date.now()))
    res.end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const out: Array<ForwardedCert | number> = []
  try {
    for (const request of requests) {
      const before = seen.length
      const status = await new Promise<number>((resolve, reject) => {
        let response = ''
        const socket = net.connect(port, '127.0.0.1', () => socket.write(request))
        socket.on('data', (chunk) => { response += String(chunk) })
        socket.on('error', reject)
        socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0)))
      })
      out.push(seen.length > before ? seen[before]! : status)
    }
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
  return out
}

test('over a real socket: one header verifies; a repeated header (Node joins it with ", ") is malformed', async (t) => {
  const { client } = t.context.pki
  const request = (...lines: string[]) => `GET / HTTP/1.1\r\nHost: authgate\r\n${lines.map((l) => `${l}\r\n`).join('')}Connection: close\r\n\r\n`
  const xfccValue = xfcc(client.cert)
  const nginxValue = nginxEscaped(client.cert)
  const traefikValue = traefik(client.cert)
  const [one, twoXfcc, oneNginx, twoNginx, oneTraefik, twoTraefik, empty] = await overHttp(t.context.trust, [
    request(`X-Forwarded-Client-Cert: ${xfccValue}`),
    request(`X-Forwarded-Client-Cert: ${xfccValue}`, `x-forwarded-client-cert: ${xfccValue}`),
    request(`X-SSL-Client-Cert: ${nginxValue}`),
    request(`X-SSL-Client-Cert: ${nginxValue}`, `X-SSL-Client-Cert: ${nginxValue}`),
    request(`X-Forwarded-Tls-Client-Cert: ${traefikValue}`),
    request(`X-Forwarded-Tls-Client-Cert: ${traefikValue}`, `X-Forwarded-Tls-Client-Cert: ${traefikValue}`),
    request('X-SSL-Client-Cert:'),
  ])
  t.like(one, { kind: 'verified' })
  t.like(twoXfcc, { kind: 'malformed' })
  t.like(oneNginx, { kind: 'verified' })
  t.like(twoNginx, { kind: 'malformed' })
  t.like(oneTraefik, { kind: 'verified' })
  t.like(twoTraefik, { kind: 'malformed' })
  t.like(empty, { kind: 'none' })
})

test('over a real socket: nginx\'s deprecated $ssl_client_cert (a folded header) is refused by Node with 400', async (t) => {
  // Documented so that the README points nginx users at $ssl_client_escaped_cert.
  const tabbed = nginxTabbed(t.context.pki.client.cert).replace(/\n/g, '\r\n')
  const [result] = await overHttp(t.context.trust, [`GET / HTTP/1.1\r\nHost: authgate\r\nX-SSL-Client-Cert: ${tabbed}\r\nConnection: close\r\n\r\n`])
  t.is(result, 400)
})
