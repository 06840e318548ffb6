/** Interoperability of the rfc9421 scheme and signRequest with the independent npm package http-message-signatures. */
import anyTest, { type TestFn } from 'ava'
import { constants, sign as cryptoSign } from 'node:crypto'
import { createSigner, httpbis, type SigningKey as LibrarySigningKey } from 'http-message-signatures'
import {
  asymmetric, billingSecret, ec, ed, libraryBody, librarySigned, passed, policy, rejected, rsa, run, setup,
} from './fixtures/policy.js'
import { signRequest } from './sign.js'

const test = anyTest as TestFn
setup(test)

const libraryKeys = [
  { name: 'hmac-sha256', key: () => createSigner(Buffer.from(billingSecret), 'hmac-sha256', 'billing') },
  { name: 'ed25519', key: () => createSigner(ed.privateKey, 'ed25519', 'partner-ed') },
  { name: 'ecdsa-p256-sha256', key: () => createSigner(ec.privateKey, 'ecdsa-p256-sha256', 'partner-ec') },
  { name: 'rsa-v1_5-sha256', key: () => createSigner(rsa.privateKey, 'rsa-v1_5-sha256', 'partner-rsa15') },
] as const

for (const { name, key } of libraryKeys) {
  test(`interop: a ${name} signature made by http-message-signatures verifies; the same with a changed body does not`, async (t) => {
    const instance = await policy({ scheme: 'rfc9421', replay: false })
    const request = await librarySigned(key())
    t.regex(request.headers![1]![1], /alg="/)
    passed(t, await run(instance, request))
    t.is(rejected(t, await run(instance, { ...request, body: '{"hello":"World"}' })).detail, 'Content-Digest does not match the body')
  })
}

test('interop: an rsa-pss-sha512 signature by http-message-signatures verifies when it uses the RFC\'s 64-byte salt, not with its default maximum salt', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  // The package's built-in rsa-pss signer leaves Node's default salt length (the maximum, 190 bytes for
  // 2048-bit keys and SHA-512); RFC 9421 §3.3.1 fixes it at 64, and this verifier enforces that.
  t.is(rejected(t, await run(instance, await librarySigned(createSigner(rsa.privateKey, 'rsa-pss-sha512', 'partner-pss')))).detail, 'bad signature')
  const rfcSalt: LibrarySigningKey = {
    id: 'partner-pss',
    alg: 'rsa-pss-sha512',
    sign: async (data) => cryptoSign('sha512', data, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 }),
  }
  passed(t, await run(instance, await librarySigned(rfcSalt)))
})

test('interop: signatures made by signRequest verify with http-message-signatures\' verifier', async (t) => {
  const { createVerifier } = await import('http-message-signatures')
  for (const { keyId, privateKey, algorithm } of asymmetric.filter((k) => k.algorithm !== 'rsa-pss-sha512')) {
    const headers = signRequest({ scheme: 'rfc9421', keyId, privateKey, algorithm, method: 'POST', url: 'https://api.example.com/v1/payments?id=7', body: libraryBody, now: Date.now() })
    const publicKey = algorithm === 'ed25519' ? ed.publicKey : algorithm === 'ecdsa-p256-sha256' ? ec.publicKey : rsa.publicKey
    const verified = await httpbis.verifyMessage({
      keyLookup: async () => ({ id: keyId, algs: [algorithm], verify: createVerifier(publicKey, algorithm) }),
      requiredFields: ['@method', '@target-uri', 'content-digest'],
    }, {
      method: 'POST',
      url: 'https://api.example.com/v1/payments?id=7',
      headers: { 'content-digest': headers['Content-Digest']!, 'signature-input': headers['Signature-Input']!, signature: headers.Signature! },
    })
    t.true(verified, algorithm)
  }
})
