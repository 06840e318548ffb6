import anyTest, { type TestFn } from 'ava'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'
import { CLIENT_SPIFFE_ID, handshake, mintPki, type Pki } from '../test/helpers/pki.js'
import { certsCommand } from '../cli/certs.js'
import { DEV_FILES, createCA, issueServerCert, initDevCerts, issueClientToDir, parseSans } from './pki.js'

const test = anyTest as TestFn<{ pki: Pki }>

test.before(async (t) => {
  t.context.pki = await mintPki()
})

test('a client certificate from the CA verifies on a server that trusts the CA', async (t) => {
  const { pki } = t.context
  const seen = await handshake(pki, pki.client)
  t.true(seen.authorized)
  t.is(seen.peerCert?.subject.CN, 'client-one')
  t.is(seen.peerCert?.subjectaltname, `URI:${CLIENT_SPIFFE_ID}`)
  t.false(seen.peerCertRejected)
})

test('a certificate from a rogue CA with the same names is presented but not authorized', async (t) => {
  const { pki } = t.context
  const seen = await handshake(pki, pki.untrusted)
  t.false(seen.authorized)
  t.is(seen.presented?.subject.CN, 'client-one')
  t.is(seen.peerCert, undefined)
  t.true(seen.peerCertRejected)
  t.regex(seen.authorizationError ?? '', /UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE/)
})

test('an expired client certificate is not authorized', async (t) => {
  const { pki } = t.context
  const seen = await handshake(pki, pki.expired)
  t.false(seen.authorized)
  t.is(seen.authorizationError, 'CERT_HAS_EXPIRED')
})

test('a revoked client certificate is refused when the CRL is given, and accepted without it', async (t) => {
  const { pki } = t.context
  const withCrl = await handshake(pki, pki.revoked, { crl: pki.crl })
  t.false(withCrl.authorized)
  t.is(withCrl.authorizationError, 'CERT_REVOKED')

  const withoutCrl = await handshake(pki, pki.revoked)
  t.true(withoutCrl.authorized)
})

test('with a CRL loaded, certificates not on it still verify', async (t) => {
  const { pki } = t.context
  const seen = await handshake(pki, pki.client, { crl: await readFile(pki.crlPath, 'utf8') })
  t.true(seen.authorized)
})

test('no client certificate is neither authorized nor rejected', async (t) => {
  const { pki } = t.context
  const seen = await handshake(pki, undefined)
  t.false(seen.authorized)
  t.is(seen.presented, undefined)
  t.false(seen.peerCertRejected)
})

for (const host of ['localhost', '127.0.0.1']) {
  test(`the server certificate verifies for ${host} against the CA`, async (t) => {
    const { pki } = t.context
    const authorized = await connectToServer(pki, { ca: pki.ca.cert, host })
    t.true(authorized)
  })
}

test('the server certificate does not verify against a rogue CA or for another host name', async (t) => {
  const { pki } = t.context
  await t.throwsAsync(connectToServer(pki, { ca: pki.rogueCa.cert, host: 'localhost' }))
  await t.throwsAsync(connectToServer(pki, { ca: pki.ca.cert, host: 'example.com' }),
    { message: /does not match|altnames/i })
})

test('certificates carry the key usages, serials and names the PKI promises', async (t) => {
  const { pki } = t.context
  const ca = new X509Certificate(pki.ca.cert)
  const server = new X509Certificate(pki.server.cert)
  const client = new X509Certificate(pki.client.cert)
  t.true(ca.ca)
  t.false(client.ca)
  t.is(ca.subject, 'CN=authgate development CA')
  t.is(client.subject, 'CN=client-one')
  t.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1'])
  t.deepEqual(client.keyUsage, ['1.3.6.1.5.5.7.3.2'])
  t.is(server.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
  t.true(client.checkIssued(ca))
  t.is(client.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  for (const cert of [ca, server, client]) {
    t.regex(cert.serialNumber, /^[0-7][0-9A-F]{31}$/)
  }
  t.not(server.serialNumber, client.serialNumber)
})

test('initDevCerts writes the six files once, keys private, and keeps them on a second run', async (t) => {
  const dir = await tempDir(t)
  t.true(await initDevCerts(dir))
  for (const name of Object.values(DEV_FILES)) {
    const mode = (await stat(join(dir, name))).mode & 0o777
    t.is(mode, name.endsWith('.key') ? 0o600 : 0o644, name)
  }
  const before = await readFile(join(dir, DEV_FILES.serverCert), 'utf8')
  t.false(await initDevCerts(dir))
  t.is(await readFile(join(dir, DEV_FILES.serverCert), 'utf8'), before)

  t.true(await initDevCerts(dir, { force: true }))
  t.not(await readFile(join(dir, DEV_FILES.serverCert), 'utf8'), before)
})

test('initDevCerts fills in a missing server certificate from the existing CA', async (t) => {
  const dir = await tempDir(t)
  await initDevCerts(dir)
  const ca = await readFile(join(dir, DEV_FILES.caCert), 'utf8')
  await rm(join(dir, DEV_FILES.serverKey))
  t.true(await initDevCerts(dir))
  t.is(await readFile(join(dir, DEV_FILES.caCert), 'utf8'), ca)
  const server = new X509Certificate(await readFile(join(dir, DEV_FILES.serverCert), 'utf8'))
  t.true(server.checkIssued(new X509Certificate(ca)))
  t.true(server.checkPrivateKey(createPrivateKey(await readFile(join(dir, DEV_FILES.serverKey), 'utf8'))))
})

test('issueClientToDir issues a client certificate with SANs from the CA in the folder', async (t) => {
  const dir = await tempDir(t)
  await initDevCerts(dir)
  const issued = await issueClientToDir(dir, 'payments', { sans: ['spiffe://example.org/payments', 'DNS:pay.internal'] })
  const cert = new X509Certificate(await readFile(issued.certPath, 'utf8'))
  t.is(cert.subject, 'CN=payments')
  t.is(cert.subjectAltName, 'URI:spiffe://example.org/payments, DNS:pay.internal')
  t.is((await stat(issued.keyPath)).mode & 0o777, 0o600)
  await t.throwsAsync(issueClientToDir(dir, 'payments'), { message: /already exists/ })
  await t.throwsAsync(issueClientToDir(dir, '../escape'), { message: /invalid certificate name/ })
})

test('issueClientToDir refuses a folder without a CA', async (t) => {
  const dir = await tempDir(t)
  await t.throwsAsync(issueClientToDir(dir, 'x'), { message: /run "authgate certs init/ })
})

test('SAN arguments are typed by prefix or by shape, and bad ones are refused', (t) => {
  t.deepEqual(parseSans(['spiffe://a/b', 'URI:urn:x:y', 'api.internal', 'DNS:*.svc.local', '10.0.0.1', 'IP:::1']), {
    uris: ['spiffe://a/b', 'urn:x:y'], dnsNames: ['api.internal', '*.svc.local'], ips: ['10.0.0.1', '::1'],
  })
  for (const bad of ['IP:300.1.1.1', 'URI:not a uri', 'bad name', 'DNS:a..b']) {
    t.throws(() => parseSans([bad]), { message: /invalid/ }, bad)
  }
})

test('a server certificate made by one CA does not verify under another', async (t) => {
  const a = await createCA({ commonName: 'A', days: 1 })
  const b = await createCA({ commonName: 'B', days: 1 })
  const server = await issueServerCert(a, { commonName: 'localhost', dnsNames: ['localhost'], days: 1 })
  t.true(new X509Certificate(server.cert).checkIssued(new X509Certificate(a.cert)))
  t.false(new X509Certificate(server.cert).checkIssued(new X509Certificate(b.cert)))
})

test('certs init and certs client work from the command line, with usage errors as exit 2', async (t) => {
  const dir = await tempDir(t)
  const run = async (...args: string[]) => {
    let out = ''
    let err = ''
    const code = await certsCommand(args, {
      stdout: { write: (s: string) => { out += s; return true } },
      stderr: { write: (s: string) => { err += s; return true } },
    })
    return { code, out, err }
  }
  const init = await run('init', '--dir', dir)
  t.is(init.code, 0)
  t.regex(init.out, /ca\.crt/)
  const again = await run('init', '--dir', dir)
  t.is(again.code, 0)
  t.regex(again.out, /already exist/)

  const client = await run('client', 'orders', '--dir', dir, '--san', 'spiffe://example.org/orders')
  t.is(client.code, 0)
  t.is(new X509Certificate(await readFile(join(dir, 'orders.crt'), 'utf8')).subjectAltName,
    'URI:spiffe://example.org/orders')

  for (const args of [[], ['nope'], ['client'], ['client', 'a', 'b'], ['init', '--bogus'], ['init', '--dir'],
    ['client', 'x', '--san']]) {
    const res = await run(...args)
    t.is(res.code, 2, args.join(' '))
    t.regex(res.err, /usage: authgate certs/, args.join(' '))
  }
  const missingCa = await run('client', 'x', '--dir', join(dir, 'none'))
  t.is(missingCa.code, 1)
  t.regex(missingCa.err, /certs init/)
  const badSan = await run('client', 'y', '--dir', dir, '--san', 'IP:999.1.1.1')
  t.is(badSan.code, 2)
})

async function connectToServer (pki: Pki, { ca, host }: { ca: string, host: string }): Promise<boolean> {
  const server = tls.createServer({ cert: pki.server.cert, key: pki.server.key }, (socket) => socket.end())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const { port } = server.address() as AddressInfo
    return await new Promise<boolean>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: host === '127.0.0.1' ? undefined : host, ca,
        checkServerIdentity: (_name, cert) => tls.checkServerIdentity(host, cert) })
      socket.on('secureConnect', () => {
        resolve(socket.authorized)
        socket.destroy()
      })
      socket.on('error', reject)
    })
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
}

async function tempDir (t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-certs-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  return dir
}
