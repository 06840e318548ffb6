import test from 'ava'
import { createPrivateKey, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto'
import {
  buildSignatureBase, componentValues, keyFitsAlgorithm, MAX_COVERED_COMPONENTS, MAX_SIGNATURES, MessageComponents, parseComponentId,
  parseSignatureFields, requestMessage, responseMessage, signRfc9421, verifySignatureBytes, type HttpMessage, type SignatureAlgorithm,
  type SignatureEntry,
} from './rfc9421.js'
import { createContentDigest, verifyContentDigest } from './content-digest.js'
import { isInnerList, parseDictionary, type InnerList } from './structured-fields.js'
import {
  ECC_P256_PRIVATE, ECC_P256_PUBLIC, ED25519_PRIVATE, ED25519_PUBLIC, RSA_PSS_PRIVATE, RSA_PSS_PUBLIC, SHARED_SECRET_BASE64,
} from './fixtures/rfc9421-keys.js'

// RFC 9421 Appendix B, byte for byte from ../shared/vectors/rfc9421.md (the "exact" blocks).

const REQUEST_DIGEST = 'sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:'
// The md's test-response block prints JlEy...; the B.2.4 base and sha-512 of the body are both mEWX... (used here).
const RESPONSE_DIGEST = 'sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:'
const CLIENT_CERT = ':MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6MRswGQYDVQQKDBJMZXQncyBBdXRoZW50aWNhdGUxGzAZBgNVBAMMEkxBIEludGVybWVkaWF0ZSBDQTAeFw0yMDAxMTQyMjU1MzNaFw0yMTAxMjMyMjU1MzNaMA0xCzAJBgNVBAMMAkJDMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8YnXXfaUgmnMtOXU/IncWalRhebrXmckC8vdgJ1p5Be5F/3YC8OthxM4+k1M6aEAEFcGzkJiNy6J84y7uzo9M6NyMHAwCQYDVR0TBAIwADAfBgNVHSMEGDAWgBRm3WjLa38lbEYCuiCPct0ZaSED2DAOBgNVHQ8BAf8EBAMCBsAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0RAQH/BBMwEYEPYmRjQGV4YW1wbGUuY29tMAoGCCqGSM49BAMCA0gAMEUCIBHda/r1vaL6G3VliL4/Di6YK0Q6bMjeSkC3dFCOOB8TAiEAx/kHSB4urmiZ0NX5r5XarmPk0wmuydBVoU4hBVZ1yhk=:'

const requestHeaders = {
  host: 'example.com',
  date: 'Tue, 20 Apr 2021 02:07:55 GMT',
  'content-type': 'application/json',
  'content-digest': REQUEST_DIGEST,
  'content-length': '18',
}
const testRequest = requestMessage('POST', 'https://example.com/foo?param=Value&Pet=dog', requestHeaders)
const testResponse = responseMessage(200, {
  date: 'Tue, 20 Apr 2021 02:07:56 GMT',
  'content-type': 'application/json',
  'content-digest': RESPONSE_DIGEST,
  'content-length': '23',
})
const proxiedRequest = requestMessage('POST', 'https://service.internal.example/foo?param=Value&Pet=dog', {
  host: 'service.internal.example', 'client-cert': CLIENT_CERT,
})

const keys = {
  rsaPss: { verify: createPublicKey(RSA_PSS_PUBLIC), sign: createPrivateKey(RSA_PSS_PRIVATE) },
  ecc: { verify: createPublicKey(ECC_P256_PUBLIC), sign: createPrivateKey(ECC_P256_PRIVATE) },
  ed25519: { verify: createPublicKey(ED25519_PUBLIC), sign: createPrivateKey(ED25519_PRIVATE) },
  hmac: { verify: createSecretKey(Buffer.from(SHARED_SECRET_BASE64, 'base64')), sign: createSecretKey(Buffer.from(SHARED_SECRET_BASE64, 'base64')) },
}

interface Vector {
  readonly name: string
  readonly message: HttpMessage
  readonly algorithm: SignatureAlgorithm
  readonly key: { verify: KeyObject, sign: KeyObject }
  readonly deterministic: boolean
  readonly signatureInput: string
  readonly signature: string
  readonly base: string
  readonly baseBytes: number
}

const vectors: Vector[] = [
  {
    name: 'B.2.1 minimal rsa-pss-sha512',
    message: testRequest,
    algorithm: 'rsa-pss-sha512',
    key: keys.rsaPss,
    deterministic: false,
    signatureInput: 'sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"',
    signature: 'sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:',
    base: '"@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"',
    baseBytes: 98,
  },
  {
    name: 'B.2.2 selective components with @query-param and tag, rsa-pss-sha512',
    message: testRequest,
    algorithm: 'rsa-pss-sha512',
    key: keys.rsaPss,
    deterministic: false,
    signatureInput: 'sig-b22=("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example"',
    signature: 'sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:',
    base: [
      '"@authority": example.com',
      `"content-digest": ${REQUEST_DIGEST}`,
      '"@query-param";name="Pet": dog',
      '"@signature-params": ("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example"',
    ].join('\n'),
    baseBytes: 317,
  },
  {
    name: 'B.2.3 full coverage, rsa-pss-sha512',
    message: testRequest,
    algorithm: 'rsa-pss-sha512',
    key: keys.rsaPss,
    deterministic: false,
    signatureInput: 'sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"',
    signature: 'sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:',
    base: [
      '"date": Tue, 20 Apr 2021 02:07:55 GMT',
      '"@method": POST',
      '"@path": /foo',
      '"@query": ?param=Value&Pet=dog',
      '"@authority": example.com',
      '"content-type": application/json',
      `"content-digest": ${REQUEST_DIGEST}`,
      '"content-length": 18',
      '"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"',
    ].join('\n'),
    baseBytes: 458,
  },
  {
    name: 'B.2.4 response, ecdsa-p256-sha256',
    message: testResponse,
    algorithm: 'ecdsa-p256-sha256',
    key: keys.ecc,
    deterministic: false,
    signatureInput: 'sig-b24=("@status" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-ecc-p256"',
    signature: 'sig-b24=:wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw==:',
    base: [
      '"@status": 200',
      '"content-type": application/json',
      `"content-digest": ${RESPONSE_DIGEST}`,
      '"content-length": 23',
      '"@signature-params": ("@status" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-ecc-p256"',
    ].join('\n'),
    baseBytes: 312,
  },
  {
    name: 'B.2.5 hmac-sha256',
    message: testRequest,
    algorithm: 'hmac-sha256',
    key: keys.hmac,
    deterministic: true,
    signatureInput: 'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"',
    signature: 'sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:',
    base: [
      '"date": Tue, 20 Apr 2021 02:07:55 GMT',
      '"@authority": example.com',
      '"content-type": application/json',
      '"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"',
    ].join('\n'),
    baseBytes: 200,
  },
  {
    name: 'B.2.6 ed25519',
    message: testRequest,
    algorithm: 'ed25519',
    key: keys.ed25519,
    deterministic: true,
    signatureInput: 'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
    signature: 'sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:',
    base: [
      '"date": Tue, 20 Apr 2021 02:07:55 GMT',
      '"@method": POST',
      '"@path": /foo',
      '"@authority": example.com',
      '"content-type": application/json',
      '"content-length": 18',
      '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
    ].join('\n'),
    baseBytes: 284,
  },
  {
    name: '§3.1/3.2 example sig1, rsa-pss-sha512',
    message: testRequest,
    algorithm: 'rsa-pss-sha512',
    key: keys.rsaPss,
    deterministic: false,
    signatureInput: 'sig1=("@method" "@authority" "@path" "content-digest" "content-length" "content-type");created=1618884473;keyid="test-key-rsa-pss"',
    signature: 'sig1=:HIbjHC5rS0BYaa9v4QfD4193TORw7u9edguPh0AW3dMq9WImrlFrCGUDih47vAxi4L2YRZ3XMJc1uOKk/J0ZmZ+wcta4nKIgBkKq0rM9hs3CQyxXGxHLMCy8uqK488o+9jrptQ+xFPHK7a9sRL1IXNaagCNN3ZxJsYapFj+JXbmaI5rtAdSfSvzPuBCh+ARHBmWuNo1UzVVdHXrl8ePL4cccqlazIJdC4QEjrF+Sn4IxBQzTZsL9y9TP5FsZYzHvDqbInkTNigBcE9cKOYNFCn4D/WM7F6TNuZO9EgtzepLWcjTymlHzK7aXq6Am6sfOrpIC49yXjj3ae6HRalVc/g==:',
    base: [
      '"@method": POST',
      '"@authority": example.com',
      '"@path": /foo',
      `"content-digest": ${REQUEST_DIGEST}`,
      '"content-length": 18',
      '"content-type": application/json',
      '"@signature-params": ("@method" "@authority" "@path" "content-digest" "content-length" "content-type");created=1618884473;keyid="test-key-rsa-pss"',
    ].join('\n'),
    baseBytes: 373,
  },
  {
    name: 'B.3 TLS-terminating proxy ttrp, ecdsa-p256-sha256',
    message: proxiedRequest,
    algorithm: 'ecdsa-p256-sha256',
    key: keys.ecc,
    deterministic: false,
    signatureInput: 'ttrp=("@path" "@query" "@method" "@authority" "client-cert");created=1618884473;keyid="test-key-ecc-p256"',
    signature: 'ttrp=:xVMHVpawaAC/0SbHrKRs9i8I3eOs5RtTMGCWXm/9nvZzoHsIg6Mce9315T6xoklyy0yzhD9ah4JHRwMLOgmizw==:',
    base: [
      '"@path": /foo',
      '"@query": ?param=Value&Pet=dog',
      '"@method": POST',
      '"@authority": service.internal.example',
      `"client-cert": ${CLIENT_CERT}`,
      '"@signature-params": ("@path" "@query" "@method" "@authority" "client-cert");created=1618884473;keyid="test-key-ecc-p256"',
    ].join('\n'),
    baseBytes: 811,
  },
]

function entryOf (signatureInput: string, signature: string): SignatureEntry {
  const parsed = parseSignatureFields(signatureInput, signature)
  if (!parsed.ok) throw new Error(parsed.error)
  const [first] = parsed.value
  if (!first?.ok) throw new Error(first ? first.error : 'no entry')
  return first.entry
}

function baseOf (message: HttpMessage, entry: SignatureEntry): string {
  const base = buildSignatureBase(message, entry.input)
  if (!base.ok) throw new Error(base.error)
  return base.value
}

for (const vector of vectors) {
  test(`${vector.name}: the signature base is rebuilt byte for byte from the Signature-Input`, (t) => {
    const base = baseOf(vector.message, entryOf(vector.signatureInput, vector.signature))
    t.is(base, vector.base)
    t.is(Buffer.byteLength(base), vector.baseBytes)
    t.false(base.endsWith('\n'))
  })

  test(`${vector.name}: the published signature verifies with the published key`, (t) => {
    const entry = entryOf(vector.signatureInput, vector.signature)
    t.true(verifySignatureBytes(vector.algorithm, vector.key.verify, Buffer.from(vector.base), entry.signature))
  })

  test(`${vector.name}: one flipped bit in the base makes the signature fail`, (t) => {
    const entry = entryOf(vector.signatureInput, vector.signature)
    const tampered = Buffer.from(vector.base)
    tampered[0] = tampered[0]! ^ 1
    t.false(verifySignatureBytes(vector.algorithm, vector.key.verify, tampered, entry.signature))
  })

  test(`${vector.name}: signing the same components and parameters gives the same Signature-Input${vector.deterministic ? ' and signature' : ' and a verifiable signature'}`, (t) => {
    const entry = entryOf(vector.signatureInput, vector.signature)
    const params = Object.fromEntries(entry.input.params)
    const signed = signRfc9421({
      message: vector.message,
      components: entry.input.items.map((item) => componentString(item.value as string, item.params)),
      params,
      algorithm: vector.algorithm,
      key: vector.key.sign,
      label: entry.label,
    })
    if (!signed.ok) return t.fail(signed.error)
    t.is(signed.value.base, vector.base)
    t.is(signed.value.signatureInput, vector.signatureInput)
    if (vector.deterministic) t.is(signed.value.signatureField, vector.signature)
    else t.true(verifySignatureBytes(vector.algorithm, vector.key.verify, Buffer.from(vector.base), signed.value.signature))
  })

  test(`${vector.name}: renaming the label in both fields still verifies (the label is not signed)`, (t) => {
    const label = vector.signatureInput.slice(0, vector.signatureInput.indexOf('='))
    const entry = entryOf(vector.signatureInput.replace(label, 'renamed'), vector.signature.replace(label, 'renamed'))
    t.is(entry.label, 'renamed')
    const base = baseOf(vector.message, entry)
    t.is(base, vector.base)
    t.true(verifySignatureBytes(vector.algorithm, vector.key.verify, Buffer.from(base), entry.signature))
  })
}

function componentString (name: string, params: Map<string, unknown>): string {
  let out = name
  for (const [key, value] of params) out += value === true ? `;${key}` : `;${key}=${JSON.stringify(value)}`
  return out
}

const b25 = vectors.find((v) => v.name.startsWith('B.2.5'))!
const b26 = vectors.find((v) => v.name.startsWith('B.2.6'))!

test('B.2.5 with created changed by one second fails: the parameters are part of the base', (t) => {
  const entry = entryOf(b25.signatureInput.replace('1618884473', '1618884474'), b25.signature)
  const base = baseOf(testRequest, entry)
  t.not(base, b25.base)
  t.false(verifySignatureBytes('hmac-sha256', keys.hmac.verify, Buffer.from(base), entry.signature))
  // the twin: unchanged input verifies
  const good = entryOf(b25.signatureInput, b25.signature)
  t.true(verifySignatureBytes('hmac-sha256', keys.hmac.verify, Buffer.from(baseOf(testRequest, good)), good.signature))
})

test('B.2.5 with the Date header one second later fails, the original Date verifies', (t) => {
  const entry = entryOf(b25.signatureInput, b25.signature)
  const later = requestMessage('POST', 'https://example.com/foo?param=Value&Pet=dog', { ...requestHeaders, date: 'Tue, 20 Apr 2021 02:07:56 GMT' })
  t.false(verifySignatureBytes('hmac-sha256', keys.hmac.verify, Buffer.from(baseOf(later, entry)), entry.signature))
  t.true(verifySignatureBytes('hmac-sha256', keys.hmac.verify, Buffer.from(baseOf(testRequest, entry)), entry.signature))
})

test('B.2.5 with the secret used as base64 text instead of decoded bytes fails', (t) => {
  const entry = entryOf(b25.signatureInput, b25.signature)
  const textKey = createSecretKey(Buffer.from(SHARED_SECRET_BASE64, 'utf8'))
  t.false(verifySignatureBytes('hmac-sha256', textKey, Buffer.from(b25.base), entry.signature))
  t.true(verifySignatureBytes('hmac-sha256', keys.hmac.verify, Buffer.from(b25.base), entry.signature))
})

test('B.2.6 with alg="hmac-sha256" added fails: the Ed25519 key does not fit, and the base changes', (t) => {
  const withAlg = b26.signatureInput + ';alg="hmac-sha256"'
  const entry = entryOf(withAlg, b26.signature)
  t.is(entry.params.alg, 'hmac-sha256')
  t.false(keyFitsAlgorithm('hmac-sha256', keys.ed25519.verify))
  t.false(verifySignatureBytes('hmac-sha256', keys.ed25519.verify, Buffer.from(b26.base), entry.signature))
  const base = baseOf(testRequest, entry)
  t.not(base, b26.base)
  t.false(verifySignatureBytes('ed25519', keys.ed25519.verify, Buffer.from(base), entry.signature))
  t.true(keyFitsAlgorithm('ed25519', keys.ed25519.verify))
})

test('a key of the wrong type never verifies, whatever the bytes', (t) => {
  const ecc = vectors.find((v) => v.name.startsWith('B.2.4'))!
  const entry = entryOf(ecc.signatureInput, ecc.signature)
  t.false(verifySignatureBytes('ed25519', keys.ecc.verify, Buffer.from(ecc.base), entry.signature))
  t.false(verifySignatureBytes('rsa-pss-sha512', keys.ecc.verify, Buffer.from(ecc.base), entry.signature))
  t.false(verifySignatureBytes('ecdsa-p256-sha256', keys.ecc.verify, Buffer.from(ecc.base), Buffer.concat([entry.signature, Buffer.alloc(1)])))
  t.true(verifySignatureBytes('ecdsa-p256-sha256', keys.ecc.verify, Buffer.from(ecc.base), entry.signature))
})

test('@signature-params listed as a covered component is an error', (t) => {
  const entry = entryOf('sig=("@method" "@signature-params");created=1', 'sig=:AAAA:')
  const base = buildSignatureBase(testRequest, entry.input)
  t.false(base.ok)
  t.true(buildSignatureBase(testRequest, entryOf('sig=("@method");created=1', 'sig=:AAAA:').input).ok)
})

/** The inner list of a Signature-Input member, without the checks that make an entry usable. */
function innerListOf (signatureInput: string): InnerList {
  const parsed = parseDictionary(signatureInput)
  const member = parsed.ok ? parsed.value.values().next().value : undefined
  if (member === undefined || !isInnerList(member)) throw new Error('not an inner list')
  return member
}

test('a component covered twice is an error, distinct parameters are distinct components', (t) => {
  t.false(buildSignatureBase(testRequest, innerListOf('sig=("@method" "date" "@method");created=1')).ok)
  const parsed = parseSignatureFields('sig=("@method" "date" "@method");created=1', 'sig=:AAAA:')
  t.deepEqual(parsed.ok && parsed.value[0], { label: 'sig', ok: false, error: 'Signature-Input sig covers "@method" twice' }, 'refused before any base is built')
  const twoParams = buildSignatureBase(testRequest, entryOf('sig=("@query-param";name="Pet" "@query-param";name="param");created=1', 'sig=:AAAA:').input)
  t.true(twoParams.ok)
})

test('a header field named like a derived component is never used as one', (t) => {
  const message = requestMessage('POST', 'https://example.com/foo', { '@method': 'GET' })
  const id = parseComponentId('@method')
  if (!id.ok) return t.fail(id.error)
  t.deepEqual(componentValues(message, id.value), { ok: true, value: ['POST'] })
})

test('derived components of the RFC §2.2 examples', (t) => {
  const message = requestMessage('POST', 'https://WWW.Example.com:443/path?param=value&foo=bar&baz=batman&qux=', {})
  const value = (text: string) => {
    const id = parseComponentId(text)
    if (!id.ok) return id.error
    const values = componentValues(message, id.value)
    return values.ok ? values.value : values.error
  }
  t.deepEqual(value('@target-uri'), ['https://www.example.com/path?param=value&foo=bar&baz=batman&qux='])
  t.deepEqual(value('@authority'), ['www.example.com'])
  t.deepEqual(value('@scheme'), ['https'])
  t.deepEqual(value('@request-target'), ['/path?param=value&foo=bar&baz=batman&qux='])
  t.deepEqual(value('@path'), ['/path'])
  t.deepEqual(value('@query'), ['?param=value&foo=bar&baz=batman&qux='])
  t.deepEqual(value('@query-param;name="baz"'), ['batman'])
  t.deepEqual(value('@query-param;name="qux"'), [''])
  t.deepEqual(value('"@query-param";name="param"'), ['value'])
  t.is(typeof value('@query-param;name="missing"'), 'string')
  t.is(typeof value('@status'), 'string')
  t.is(typeof value('@unknown'), 'string')
})

test('@query of a request without a query string is "?", and @path of "" is "/"', (t) => {
  const message: HttpMessage = { kind: 'request', method: 'GET', scheme: 'http', authority: 'h', target: '', fieldLines: () => [] }
  const q = parseComponentId('@query')
  const p = parseComponentId('@path')
  if (!q.ok || !p.ok) return t.fail()
  t.deepEqual(componentValues(message, q.value), { ok: true, value: ['?'] })
  t.deepEqual(componentValues(message, p.value), { ok: true, value: ['/'] })
})

test('@query-param values are decoded, then percent-encoded as RFC 9421 §2.2.8 shows', (t) => {
  const message = requestMessage('GET', 'https://example.com/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something', {})
  const lines = ['var', 'bar', 'fa%C3%A7ade%22%3A%20'].map((name) => {
    const id = parseComponentId(`@query-param;name="${name}"`)
    if (!id.ok) throw new Error(id.error)
    const values = componentValues(message, id.value)
    return values.ok ? values.value[0] : values.error
  })
  t.deepEqual(lines, ['this%20is%20a%20big%0Amultiline%20value', 'with%20plus%20whitespace', 'something'])
})

test('a repeated query parameter gives one base line per occurrence, in order', (t) => {
  const message = requestMessage('GET', 'https://example.com/p?a=1&b=2&a=3', {})
  const entry = entryOf('sig=("@query-param";name="a");created=1', 'sig=:AAAA:')
  t.is(baseOf(message, entry), '"@query-param";name="a": 1\n"@query-param";name="a": 3\n"@signature-params": ("@query-param";name="a");created=1')
})

test('header components: field lines trimmed and joined, sf re-serialized, key picks a member, bs wraps each line', (t) => {
  const message = requestMessage('GET', 'https://example.com/', {
    'x-ows': ['  Leading and trailing whitespace.   '],
    'cache-control': ['max-age=60', '   must-revalidate'],
    'example-dict': [' a=1,    b=2;x=1;y=2,   c=(a   b   c)'],
    'x-empty': [''],
    'example-header': ['value, with, lots', 'of, commas'],
  })
  const value = (text: string) => {
    const id = parseComponentId(text)
    if (!id.ok) return id.error
    const values = componentValues(message, id.value)
    return values.ok ? values.value[0] : `error: ${values.error}`
  }
  t.is(value('x-ows'), 'Leading and trailing whitespace.')
  t.is(value('cache-control'), 'max-age=60, must-revalidate')
  t.is(value('example-dict'), 'a=1,    b=2;x=1;y=2,   c=(a   b   c)')
  t.is(value('"example-dict";sf'), 'a=1, b=2;x=1;y=2, c=(a b c)')
  t.is(value('"example-dict";key="a"'), '1')
  t.is(value('"example-dict";key="b"'), '2;x=1;y=2')
  t.is(value('"example-dict";key="c"'), '(a b c)')
  t.regex(value('"example-dict";key="d"') ?? '', /^error/)
  t.is(value('x-empty'), '')
  t.is(value('"example-header";bs'), ':dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:')
  t.regex(value('"example-header";bs;sf') ?? '', /^error/)
  t.regex(value('"example-header";req') ?? '', /^error/)
  t.regex(value('"example-header";foo') ?? '', /^error/)
  t.regex(value('"Example-Header"') ?? '', /^error/)
  t.regex(value('x-absent') ?? '', /^error/)
})

test('Content-Digest: the RFC values verify against their bodies, a changed body does not', (t) => {
  t.deepEqual(verifyContentDigest([REQUEST_DIGEST], Buffer.from('{"hello": "world"}')), { ok: true })
  t.deepEqual(verifyContentDigest([RESPONSE_DIGEST], Buffer.from('{"message": "good dog"}')), { ok: true })
  t.false(verifyContentDigest([REQUEST_DIGEST], Buffer.from('{"hello": "World"}')).ok)
})

test('Content-Digest: sha-256 and sha-512 are produced and checked; unknown algorithms alone are refused', (t) => {
  const body = Buffer.from('payload')
  t.deepEqual(verifyContentDigest([createContentDigest(body, 'sha-256')], body), { ok: true })
  t.deepEqual(verifyContentDigest([createContentDigest(body, 'sha-512')], body), { ok: true })
  t.deepEqual(verifyContentDigest([`${createContentDigest(body, 'sha-256')}, ${createContentDigest(body, 'sha-512')}`], body), { ok: true })
  t.false(verifyContentDigest([`${createContentDigest(body, 'sha-256')}, ${createContentDigest('other', 'sha-512')}`], body).ok)
  t.false(verifyContentDigest(['md5=:AAAA:'], body).ok)
  t.deepEqual(verifyContentDigest(['md5=:AAAA:', createContentDigest(body)], body), { ok: true })
  t.false(verifyContentDigest([], body).ok)
  t.false(verifyContentDigest(['sha-256=abc'], body).ok)
  t.false(verifyContentDigest(['sha-256=:@@@:'], body).ok)
  t.false(verifyContentDigest([createContentDigest(body), createContentDigest(body)], body).ok, 'the same algorithm twice is ambiguous')
})

test('Signature fields that are not dictionaries, or name a label twice, are refused as a whole', (t) => {
  t.false(parseSignatureFields('sig=("@method"', 'sig=:AAAA:').ok)
  t.false(parseSignatureFields('sig=("@method");created=1, sig=();created=2', 'sig=:AAAA:').ok)
  t.false(parseSignatureFields('sig=("@method");created=1', 'sig=:AAAA:, sig=:AAAA:').ok)
  t.true(parseSignatureFields('sig=("@method");created=1', 'sig=:AAAA:').ok)
})

test('a Signature-Input member with bad parameter types or no matching signature is unusable', (t) => {
  const parsed = parseSignatureFields(
    'a=("@method");created="1", b=(method);created=1, c=("@method");keyid=1, d=("@method");created=1, e=("@method")',
    'a=:AAAA:, b=:AAAA:, c=:AAAA:, e=abc',
  )
  if (!parsed.ok) return t.fail(parsed.error)
  t.deepEqual(parsed.value.map((entry) => entry.ok), [false, false, false, false, false])
  t.deepEqual(parsed.value.map((entry) => entry.label), ['a', 'b', 'c', 'd', 'e'])
})

test('Content-Digest: a member named like an Object.prototype property is an unknown algorithm, never a hash name', (t) => {
  const body = Buffer.from('payload')
  // `constructor` is the one such name RFC 8941 lets a dictionary key spell (lower-case); `__proto__` is not a key.
  t.deepEqual(verifyContentDigest(['constructor=:AAAA:'], body), { ok: false, reason: 'Content-Digest has no supported algorithm (sha-256, sha-512)' })
  t.deepEqual(verifyContentDigest([`constructor=:AAAA:, ${createContentDigest(body)}`], body), { ok: true })
  t.false(verifyContentDigest(['__proto__=:AAAA:'], body).ok)
  t.deepEqual(verifyContentDigest([createContentDigest(body)], body), { ok: true })
})

test('createContentDigest refuses an algorithm it does not know, also one named like an Object.prototype property', (t) => {
  for (const name of ['constructor', 'toString', '__proto__', 'md5']) {
    t.throws(() => createContentDigest('x', name as 'sha-256'), { instanceOf: TypeError, message: /sha-256 or sha-512/ }, name)
  }
  t.is(createContentDigest('x', 'sha-256'), `sha-256=:${Buffer.from('2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', 'hex').toString('base64')}:`)
})

// Bounds (DESIGN, "Signature bases are bounded")

/** @method, @target-uri, `keys` members of X-Dict and `params` query parameters: 2 + keys + params components. */
function manyComponents (keys: number, params: number): { components: string[], target: string, dict: string } {
  const components = ['@method', '@target-uri']
  for (let i = 1; i <= keys; i++) components.push(`"x-dict";key="k${i}"`)
  for (let i = 1; i <= params; i++) components.push(`"@query-param";name="p${i}"`)
  const target = `/v1/payments?${Array.from({ length: params }, (_, i) => `p${i + 1}=${i + 1}`).join('&')}`
  const dict = Array.from({ length: keys }, (_, i) => `k${i + 1}=${i + 1}`).join(', ')
  return { components, target, dict }
}

test('a base over many key= and @query-param components reads and parses the field and the query once', (t) => {
  const { components, target, dict } = manyComponents(14, 14)
  components.push('"x-dict";sf', '"x-dict"')
  const reads = { fields: new Map<string, number>(), target: 0 }
  const inner = requestMessage('GET', `https://example.com${target}`, { 'x-dict': dict })
  const counting: HttpMessage = {
    kind: 'request',
    method: inner.method!,
    scheme: inner.scheme!,
    authority: inner.authority!,
    get target () {
      reads.target++
      return inner.target
    },
    fieldLines (name) {
      reads.fields.set(name, (reads.fields.get(name) ?? 0) + 1)
      return inner.fieldLines(name)
    },
  }
  const items = components.map((text) => {
    const id = parseComponentId(text)
    if (!id.ok) throw new Error(id.error)
    return id.value
  })
  t.is(items.length, MAX_COVERED_COMPONENTS)
  const source = new MessageComponents(counting)
  const base = buildSignatureBase(source, { items, params: new Map([['created', 1]]) })
  if (!base.ok) return t.fail(base.error)
  t.is(base.value.split('\n').length, MAX_COVERED_COMPONENTS + 1)
  t.regex(base.value, /^"x-dict";key="k14": 14$/m)
  t.regex(base.value, /^"@query-param";name="p14": 14$/m)
  t.deepEqual([...reads.fields], [['x-dict', 1]])
  t.is(reads.target, 1)
  t.is(source.parses, 2, 'one dictionary parse of X-Dict (key= and sf share it), one parse of the query')
  // a fresh message without MessageComponents still reads each once within one base
  reads.fields.clear()
  reads.target = 0
  t.true(buildSignatureBase(counting, { items, params: new Map() }).ok)
  t.deepEqual([...reads.fields], [['x-dict', 1]])
  t.is(reads.target, 1)
})

test('a Signature-Input member covering more than 32 components is unusable before any base is built; 32 is fine', (t) => {
  const entry = (count: number) => {
    const components = Array.from({ length: count }, (_, i) => `"x-h${i}"`).join(' ')
    const parsed = parseSignatureFields(`sig=(${components});created=1;keyid="k"`, 'sig=:AAAA:')
    if (!parsed.ok) throw new Error(parsed.error)
    return parsed.value[0]!
  }
  t.true(entry(32).ok)
  t.deepEqual(entry(33), { label: 'sig', ok: false, error: 'Signature-Input sig covers 33 components; at most 32 are accepted' })
  t.false(entry(600).ok)
})

test('a Signature-Input with more than 8 signatures is refused as a whole; 8 parse', (t) => {
  const fields = (count: number) => {
    const labels = Array.from({ length: count }, (_, i) => `s${i}`)
    return parseSignatureFields(labels.map((l) => `${l}=("@method");created=1`).join(', '), labels.map((l) => `${l}=:AAAA:`).join(', '))
  }
  const eight = fields(MAX_SIGNATURES)
  t.true(eight.ok && eight.value.length === 8 && eight.value.every((entry) => entry.ok))
  t.deepEqual(fields(9), { ok: false, error: 'Signature-Input has 9 signatures; at most 8 are accepted' })
})
