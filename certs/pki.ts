/**
 * A small development PKI: a CA, server and client certificates, and CRLs, made with WebCrypto (no openssl binary).
 * Keys are ECDSA P-256, signatures ECDSA with SHA-256, serial numbers 16 random bytes (positive).
 * Everything is returned as PEM: certificates as `CERTIFICATE`, private keys as PKCS#8 `PRIVATE KEY`.
 */
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto'
import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { x509 } from './x509.js'

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair
type Provider = Parameters<typeof x509.cryptoProvider.set>[0]

/** A certificate and its private key, both PEM. */
export interface PemPair {
  cert: string
  key: string
}

export interface CaOptions {
  commonName: string
  days: number
}

export interface ServerCertOptions {
  commonName: string
  dnsNames?: readonly string[]
  ips?: readonly string[]
  days: number
}

export interface ClientCertOptions {
  commonName: string
  /** `O=` placed before `CN=` in the certificate, so the RFC 4514 subject reads `CN=...,O=...`. */
  organization?: string
  /** URI SANs, e.g. SPIFFE IDs (`spiffe://example.org/ns/default/sa/client-one`). */
  uris?: readonly string[]
  dnsNames?: readonly string[]
  ips?: readonly string[]
  days: number
  /** Defaults to five minutes ago (clock skew). */
  notBefore?: Date
  /** Defaults to `days` from now; a date in the past makes an expired certificate. */
  notAfter?: Date
}

/** The files `initDevCerts` writes, by role. */
export const DEV_FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'server.crt',
  serverKey: 'server.key',
  clientCert: 'client.crt',
  clientKey: 'client.key',
} as const

/** The subject CN of the client certificate `initDevCerts` makes (no SAN: its mTLS subject is this CN). */
export const DEV_CLIENT_NAME = 'dev-client'

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' }
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' }
const DAY_MS = 24 * 60 * 60 * 1000
const SKEW_MS = 5 * 60 * 1000
const CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }

const provider = webcrypto as unknown as Provider

/** A self-signed CA certificate (basicConstraints CA, keyCertSign and cRLSign). */
export async function createCA ({ commonName, days }: CaOptions): Promise<PemPair> {
  const keys = await generateKeys()
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: subjectName(commonName),
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(now + days * DAY_MS),
    keys: keys as never,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign |
        x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never, false, provider),
    ],
  }, provider)
  return { cert: cert.toString('pem'), key: await exportKey(keys.privateKey) }
}

/** A TLS server certificate (extKeyUsage serverAuth) for the given DNS names and IP addresses. */
export async function issueServerCert (ca: PemPair, options: ServerCertOptions): Promise<PemPair> {
  const sans = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ips ?? []).map((value) => ({ type: 'ip' as const, value: checkIp(value) })),
  ]
  return await issueLeaf(ca, {
    commonName: options.commonName,
    days: options.days,
    sans,
    usage: x509.ExtendedKeyUsage.serverAuth,
  })
}

/** A TLS client certificate (extKeyUsage clientAuth), optionally with URI (SPIFFE), DNS and IP SANs. */
export async function issueClientCert (ca: PemPair, options: ClientCertOptions): Promise<PemPair> {
  const sans = [
    ...(options.uris ?? []).map((value) => ({ type: 'url' as const, value: checkUri(value) })),
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ips ?? []).map((value) => ({ type: 'ip' as const, value: checkIp(value) })),
  ]
  return await issueLeaf(ca, { ...options, sans, usage: x509.ExtendedKeyUsage.clientAuth })
}

/**
 * A CRL signed by `ca` revoking the given serial numbers (hex; case and colons ignored), valid for `days` (30).
 * Give it to a TLS server as `crl:`: OpenSSL then also refuses every certificate once the CRL's nextUpdate passes.
 */
export async function createCRL (ca: PemPair, revokedSerials: readonly string[], days = 30): Promise<string> {
  const { cert, key } = await loadCa(ca)
  const now = Date.now()
  const crl = await x509.X509CrlGenerator.create({
    issuer: cert.subjectName,
    thisUpdate: new Date(now - SKEW_MS),
    nextUpdate: new Date(now + days * DAY_MS),
    signingKey: key as never,
    signingAlgorithm: SIGNING,
    extensions: [authorityKeyId(cert)],
    entries: revokedSerials.map((serial) => ({
      serialNumber: normalizeSerial(serial),
      revocationDate: new Date(now - SKEW_MS),
      reason: x509.X509CrlReason.keyCompromise,
    })),
  }, provider)
  // RFC 7468 §5: the label is "X509 CRL" (x509 writes "CRL", which OpenSSL does not read).
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL')
}

/** The serial number of a PEM certificate, lower-case hex (as `createCRL` takes it). */
export function certificateSerial (certPem: string): string {
  return normalizeSerial(new x509.X509Certificate(certPem).serialNumber)
}

/**
 * Writes a development CA, a server certificate for `localhost`, `127.0.0.1` and `::1`, and a client certificate
 * (CN=dev-client) into `dir`, keys with mode 0600. Does nothing when all six files exist, unless `force`.
 * An existing CA is kept (certificates issued from it stay valid) unless `force`.
 * Returns whether it wrote anything.
 */
export async function initDevCerts (dir: string, options: { force?: boolean } = {}): Promise<boolean> {
  const path = (name: string) => join(dir, name)
  const present = async (name: string) => await exists(path(name))
  const force = options.force === true

  const all = await Promise.all(Object.values(DEV_FILES).map(present))
  if (!force && all.every(Boolean)) return false
  await mkdir(dir, { recursive: true })

  let ca: PemPair
  if (!force && await present(DEV_FILES.caCert) && await present(DEV_FILES.caKey)) {
    ca = { cert: await readFile(path(DEV_FILES.caCert), 'utf8'), key: await readFile(path(DEV_FILES.caKey), 'utf8') }
  } else {
    ca = await createCA({ commonName: 'authgate development CA', days: 3650 })
    await writePair(dir, 'ca', ca)
  }
  const stale = async (cert: string, key: string) => force || !await present(cert) || !await present(key)
  if (await stale(DEV_FILES.serverCert, DEV_FILES.serverKey)) {
    const server = await issueServerCert(ca, {
      commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1', '::1'], days: 825,
    })
    await writePair(dir, 'server', server)
  }
  if (await stale(DEV_FILES.clientCert, DEV_FILES.clientKey)) {
    await writePair(dir, 'client', await issueClientCert(ca, { commonName: DEV_CLIENT_NAME, days: 825 }))
  }
  return true
}

export interface IssuedFiles {
  cert: string
  key: string
  certPath: string
  keyPath: string
}

/**
 * Issues a client certificate CN=`name` from the CA in `dir` (made by `initDevCerts`) into `NAME.crt`/`NAME.key`.
 * `sans` entries: `URI:...`, `DNS:...`, `IP:...`, or bare (a `scheme://` value is a URI, an IP literal an IP, else DNS).
 */
export async function issueClientToDir (dir: string, name: string,
  options: { sans?: readonly string[], force?: boolean, days?: number } = {}): Promise<IssuedFiles> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new Error(`invalid certificate name "${name}": use letters, digits, ".", "_" and "-" (at most 64)`)
  }
  if (name === 'ca' || name === 'server') throw new Error(`"${name}" is reserved for the CA and server files`)
  const caCertPath = join(dir, DEV_FILES.caCert)
  const caKeyPath = join(dir, DEV_FILES.caKey)
  if (!await exists(caCertPath) || !await exists(caKeyPath)) {
    throw new Error(`no CA in ${dir}: run "authgate certs init --dir ${dir}" first`)
  }
  const certPath = join(dir, `${name}.crt`)
  const keyPath = join(dir, `${name}.key`)
  if (options.force !== true && (await exists(certPath) || await exists(keyPath))) {
    throw new Error(`${certPath} already exists: pass --force to replace it`)
  }
  const sans = parseSans(options.sans ?? [])
  const ca = { cert: await readFile(caCertPath, 'utf8'), key: await readFile(caKeyPath, 'utf8') }
  const pair = await issueClientCert(ca, { commonName: name, ...sans, days: options.days ?? 825 })
  await writePair(dir, name, pair)
  return { ...pair, certPath, keyPath }
}

/** Splits `--san` values into URIs, DNS names and IPs; throws with a clear message on a bad one. */
export function parseSans (values: readonly string[]): { uris: string[], dnsNames: string[], ips: string[] } {
  const out = { uris: [] as string[], dnsNames: [] as string[], ips: [] as string[] }
  for (const raw of values) {
    const prefixed = /^(uri|dns|ip):(.*)$/i.exec(raw)
    const kind = prefixed?.[1]!.toLowerCase() ??
      (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? 'uri' : isIP(raw) !== 0 ? 'ip' : 'dns')
    const value = prefixed ? prefixed[2]! : raw
    if (kind === 'uri') out.uris.push(checkUri(value))
    else if (kind === 'ip') out.ips.push(checkIp(value))
    else if (/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(value)) {
      out.dnsNames.push(value)
    } else throw new Error(`invalid SAN "${raw}": expected URI:..., DNS:name or IP:address`)
  }
  return out
}

interface LeafOptions {
  commonName: string
  organization?: string
  days: number
  notBefore?: Date
  notAfter?: Date
  sans: Array<{ type: 'dns' | 'ip' | 'url', value: string }>
  usage: string
}

async function issueLeaf (caPem: PemPair, options: LeafOptions): Promise<PemPair> {
  const ca = await loadCa(caPem)
  const keys = await generateKeys()
  const now = Date.now()
  const extensions: InstanceType<typeof x509.Extension>[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([options.usage], false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never, false, provider),
    authorityKeyId(ca.cert),
  ]
  if (options.sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(options.sans, false))
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: subjectName(options.commonName, options.organization),
    issuer: ca.cert.subjectName,
    notBefore: options.notBefore ?? new Date(now - SKEW_MS),
    notAfter: options.notAfter ?? new Date(now + options.days * DAY_MS),
    publicKey: keys.publicKey as never,
    signingKey: ca.key as never,
    signingAlgorithm: SIGNING,
    extensions,
  }, provider)
  return { cert: cert.toString('pem'), key: await exportKey(keys.privateKey) }
}

// Values are given as explicit UTF8String objects: x509's plain-string path would interpret quotes and backslashes.
function subjectName (commonName: string, organization?: string) {
  const rdns: Array<Record<string, Array<{ utf8String: string }>>> = []
  if (organization !== undefined) rdns.push({ O: [{ utf8String: organization }] })
  rdns.push({ CN: [{ utf8String: commonName }] })
  return new x509.Name(rdns)
}

function authorityKeyId (caCert: InstanceType<typeof x509.X509Certificate>) {
  const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension)
  if (!ski) throw new Error('the CA certificate has no subjectKeyIdentifier')
  return new x509.AuthorityKeyIdentifierExtension(ski.keyId, false)
}

async function loadCa (ca: PemPair): Promise<{ cert: InstanceType<typeof x509.X509Certificate>, key: CryptoKey }> {
  const cert = new x509.X509Certificate(ca.cert)
  const keyObject = createPrivateKey(ca.key)
  const namedCurve = CURVES[keyObject.asymmetricKeyDetails?.namedCurve ?? '']
  if (keyObject.asymmetricKeyType !== 'ec' || namedCurve === undefined) {
    throw new Error('the CA key must be an ECDSA P-256, P-384 or P-521 key')
  }
  const der = keyObject.export({ type: 'pkcs8', format: 'der' })
  const key = await webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve }, false, ['sign'])
  return { cert, key }
}

async function generateKeys (): Promise<CryptoKeyPair> {
  return await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']) as CryptoKeyPair
}

async function exportKey (key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key)
  return x509.PemConverter.encode(der, 'PRIVATE KEY')
}

// RFC 5280 §4.1.2.2: positive, at most 20 octets. A non-zero first byte below 0x80 keeps the DER minimal and positive.
function randomSerial (): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0]! & 0x7f) || 0x01
  return bytes.toString('hex')
}

function normalizeSerial (serial: string): string {
  const hex = serial.replace(/:/g, '').toLowerCase()
  if (!/^[0-9a-f]+$/.test(hex)) throw new Error(`invalid serial number "${serial}": expected hex`)
  return hex.length % 2 === 1 ? `0${hex}` : hex
}

function checkUri (value: string): string {
  if (!/^[a-z][a-z0-9+.-]*:/i.test(value) || !URL.canParse(value)) throw new Error(`invalid URI SAN "${value}"`)
  return value
}

function checkIp (value: string): string {
  if (isIP(value) === 0) throw new Error(`invalid IP SAN "${value}"`)
  return value
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

async function writePair (dir: string, name: string, pair: PemPair): Promise<void> {
  await writeAtomic(join(dir, `${name}.crt`), pair.cert, 0o644)
  await writeAtomic(join(dir, `${name}.key`), pair.key, 0o600)
}

// Write then rename: a gateway watching the folder never reads a half-written file. The key is 0600 from creation.
async function writeAtomic (path: string, data: string, mode: number): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    await writeFile(temp, data, { mode, flag: 'wx' })
    await rename(temp, path)
  } catch (error) {
    await rm(temp, { force: true })
    throw error
  }
}
