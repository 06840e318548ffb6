/**
 * A fresh PKI per call, made at run time with certs/pki.ts (the code behind `authgate certs init`), in a temp dir.
 * EC P-256 keys: a whole PKI takes a few milliseconds.
 */
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls, { type DetailedPeerCertificate } from 'node:tls'
import type { AddressInfo } from 'node:net'
import {
  DEV_FILES, certificateSerial, createCA, createCRL, initDevCerts, issueClientCert, issueClientToDir,
  type PemPair,
} from '../../certs/pki.js'
import { x509 } from '../../certs/x509.js'

export interface CertFiles extends PemPair {
  certPath: string
  keyPath: string
}

export interface Pki {
  dir: string
  ca: PemPair
  caPath: string
  /** CN=localhost, SANs localhost, 127.0.0.1, ::1. */
  server: CertFiles
  /** CN=client-one, SAN URI spiffe://example.org/ns/default/sa/client-one. */
  client: CertFiles
  /** CN=billing-service, no SAN. */
  otherClient: CertFiles
  /** Same subject and SAN as `client`, issued by `rogueCa`. */
  untrusted: CertFiles
  /** CN=expired-client, valid CA, notAfter yesterday. */
  expired: CertFiles
  /** CN=revoked-client, valid CA, listed in the CRL at `crlPath`. */
  revoked: CertFiles
  crl: string
  crlPath: string
  rogueCa: PemPair & { certPath: string }
}

export const CLIENT_SPIFFE_ID = 'spiffe://example.org/ns/default/sa/client-one'

const made: string[] = []
process.once('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true })
})

export async function mintPki (): Promise<Pki> {
  const dir = mkdtempSync(join(tmpdir(), 'authgate-pki-'))
  made.push(dir)
  const file = (name: string) => join(dir, name)
  const save = async (name: string, pair: PemPair): Promise<CertFiles> => {
    const certPath = file(`${name}.crt`)
    const keyPath = file(`${name}.key`)
    await writeFile(certPath, pair.cert)
    await writeFile(keyPath, pair.key, { mode: 0o600 })
    return { ...pair, certPath, keyPath }
  }

  await initDevCerts(dir)
  const read = async (name: string) => await readFile(file(name), 'utf8')
  const ca = { cert: await read(DEV_FILES.caCert), key: await read(DEV_FILES.caKey) }
  const server = {
    cert: await read(DEV_FILES.serverCert),
    key: await read(DEV_FILES.serverKey),
    certPath: file(DEV_FILES.serverCert),
    keyPath: file(DEV_FILES.serverKey),
  }

  const day = 24 * 60 * 60 * 1000
  const rogue = await createCA({ commonName: 'authgate development CA', days: 30 })
  const [client, otherClient, untrusted, expired, revoked] = await Promise.all([
    issueClientToDir(dir, 'client-one', { sans: [`URI:${CLIENT_SPIFFE_ID}`] }),
    issueClientToDir(dir, 'billing-service'),
    issueClientCert(rogue, { commonName: 'client-one', uris: [CLIENT_SPIFFE_ID], days: 30 }),
    issueClientCert(ca, {
      commonName: 'expired-client', days: 1, notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day),
    }),
    issueClientCert(ca, { commonName: 'revoked-client', days: 30 }),
  ])
  const crl = await createCRL(ca, [certificateSerial(revoked.cert)])
  await writeFile(file('ca.crl'), crl)
  const rogueCaPath = file('rogue-ca.crt')
  await writeFile(rogueCaPath, rogue.cert)

  return {
    dir,
    ca,
    caPath: file(DEV_FILES.caCert),
    server,
    client,
    otherClient,
    untrusted: await save('untrusted', untrusted),
    expired: await save('expired', expired),
    revoked: await save('revoked', revoked),
    crl,
    crlPath: file('ca.crl'),
    rogueCa: { ...rogue, certPath: rogueCaPath },
  }
}

export interface Handshake {
  /** What the server side of a real handshake saw. */
  authorized: boolean
  authorizationError: string | undefined
  /** The certificate the client presented (verified or not), undefined when none. */
  presented: DetailedPeerCertificate | undefined
  /** As the gateway's listener exposes it: the certificate only when it verified. */
  peerCert: DetailedPeerCertificate | undefined
  peerCertRejected: boolean
}

/**
 * Runs one real TLS handshake on 127.0.0.1 against a server that requests but does not require a client certificate
 * (`rejectUnauthorized: false`, as an `optional` listener), presenting `client` (or nothing), and reports what the
 * server saw.
 */
export async function handshake (pki: Pki, client: PemPair | undefined, options: { crl?: string | string[] } = {}): Promise<Handshake> {
  let seen: Handshake | undefined
  const server = tls.createServer({
    cert: pki.server.cert,
    key: pki.server.key,
    ca: pki.ca.cert,
    crl: options.crl,
    requestCert: true,
    rejectUnauthorized: false,
  }, (socket) => {
    const cert = socket.getPeerCertificate(true)
    const presented = cert !== null && cert.raw !== undefined ? cert : undefined
    seen = {
      authorized: socket.authorized,
      authorizationError: socket.authorizationError === null ? undefined : String(socket.authorizationError),
      presented,
      peerCert: socket.authorized ? presented : undefined,
      peerCertRejected: !socket.authorized && presented !== undefined,
    }
    socket.end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const { port } = server.address() as AddressInfo
    await new Promise<void>((resolve, reject) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca: pki.ca.cert,
        cert: client?.cert,
        key: client?.key,
      })
      socket.on('error', reject)
      socket.on('close', () => resolve())
      socket.resume()
    })
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
  if (!seen) throw new Error('the TLS server saw no connection')
  return seen
}

export interface CertificateOptions {
  commonName: string
  /** basicConstraints CA:TRUE with keyCertSign and cRLSign (an intermediate CA); default false. */
  ca?: boolean
  /** extendedKeyUsage OIDs; omitted: clientAuth for a leaf, none for a CA; `[]`: no extension at all. */
  eku?: readonly string[]
  /** Defaults to five minutes ago. */
  notBefore?: Date
  /** Defaults to 30 days from now. */
  notAfter?: Date
}

export const EKU = { serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2' } as const

/**
 * A certificate signed by `issuer` (an ECDSA P-256 CA as `certs/pki.ts` makes, or one made here with `ca: true`),
 * with exactly the extensions asked for: intermediate CAs, leaves with another or no extendedKeyUsage. EC P-256.
 */
export async function issueCertificate (issuer: PemPair, options: CertificateOptions): Promise<PemPair> {
  const issuerCert = new x509.X509Certificate(issuer.cert)
  const issuerKey = await webcrypto.subtle.importKey('pkcs8', createPrivateKey(issuer.key).export({ type: 'pkcs8', format: 'der' }),
    { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const ca = options.ca ?? false
  const eku = options.eku ?? (ca ? [] : [EKU.clientAuth])
  const issuerSki = issuerCert.getExtension(x509.SubjectKeyIdentifierExtension)
  if (!issuerSki) throw new Error('the issuer has no subjectKeyIdentifier')
  const extensions: InstanceType<typeof x509.Extension>[] = [
    new x509.BasicConstraintsExtension(ca, undefined, true),
    new x509.KeyUsagesExtension(ca
      ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature
      : x509.KeyUsageFlags.digitalSignature, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never, false, webcrypto as never),
    new x509.AuthorityKeyIdentifierExtension(issuerSki.keyId, false),
  ]
  if (eku.length > 0) extensions.push(new x509.ExtendedKeyUsageExtension([...eku], false))
  const serial = randomBytes(16)
  serial[0] = (serial[0]! & 0x7f) || 0x01
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: new x509.Name([{ CN: [{ utf8String: options.commonName }] }]),
    issuer: issuerCert.subjectName,
    notBefore: options.notBefore ?? new Date(now - 5 * 60 * 1000),
    notAfter: options.notAfter ?? new Date(now + 30 * 24 * 60 * 60 * 1000),
    publicKey: keys.publicKey as never,
    signingKey: issuerKey as never,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions,
  }, webcrypto as never)
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY')
  return { cert: cert.toString('pem'), key }
}
