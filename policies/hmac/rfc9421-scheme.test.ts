/** The hmac policy's rfc9421 scheme (HTTP Message Signatures), including the RFC 9421 Appendix B vectors through the policy. */
import anyTest, { type TestFn } from 'ava'
import { createSigner } from 'http-message-signatures'
import { uniquePrefix } from '../../test/helpers/redis.js'
import type { Outcome, PolicyInstance } from '../types.js'
import {
  NOW, asymmetric, billingSecret, context, ec, ed, libraryDigest, librarySign, otherKeys, passed, policy, redisStore, rejected, run, setup,
  signed9421, type FakeRequest, type Signed,
} from './fixtures/policy.js'
import { createContentDigest } from './content-digest.js'

const test = anyTest as TestFn
setup(test, { redis: true })

test('rfc9421: an hmac-sha256 signature over method, target URI and Content-Digest passes', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  const request = signed9421({ body: '{"a":1}' })
  t.regex(request.headers.find(([name]) => name === 'Signature-Input')![1], /^sig1=\("@method" "@target-uri" "content-digest"\);created=1700000000;keyid="billing";alg="hmac-sha256"$/)
  const outcome = passed(t, await run(instance, request))
  t.deepEqual(outcome.identity, { subject: 'billing-service', client: 'billing-service', scopes: ['write'], tier: 'gold' })
})

for (const { keyId, privateKey, algorithm } of asymmetric) {
  test(`rfc9421: a ${algorithm} signature verifies with the signing client's public key, a wrong key does not`, async (t) => {
    const instance = await policy({ scheme: 'rfc9421' })
    passed(t, await run(instance, signed9421({ keyId, privateKey, algorithm, secret: undefined, body: 'x' })))
    const other = algorithm === 'ed25519' ? otherKeys.ed : algorithm === 'ecdsa-p256-sha256' ? otherKeys.ec : otherKeys.rsa
    t.is(rejected(t, await run(instance, signed9421({ keyId, privateKey: other, algorithm, secret: undefined, body: 'x' }))).detail, 'bad signature')
  })
}

test('rfc9421: a tampered body fails the Content-Digest check, the untouched body passes', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  passed(t, await run(instance, signed9421({ body: 'original' })))
  const rejection = rejected(t, await run(instance, { ...signed9421({ body: 'original' }), body: 'tampered' }))
  t.is(rejection.code, 'invalid_signature')
  t.is(rejection.detail, 'Content-Digest does not match the body')
})

test('rfc9421: a body with a rewritten Content-Digest fails the signature', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  const request = signed9421({ body: 'original' })
  const forged = {
    ...request,
    body: 'tampered',
    headers: request.headers.map(([name, value]): [string, string] => [name, name === 'Content-Digest' ? createContentDigest('tampered') : value]),
  }
  t.is(rejected(t, await run(instance, forged)).detail, 'bad signature')
  passed(t, await run(instance, request))
})

test('rfc9421: tampered path, query, method and host fail the signature; the signed request passes', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  const request = signed9421({ target: '/v1/payments/1?amount=1', method: 'PUT', body: 'x' })
  passed(t, await run(instance, request))
  for (const change of [{ target: '/v1/payments/2?amount=1' }, { target: '/v1/payments/1?amount=9' }, { method: 'PATCH' }, { authority: 'evil.example.com' }, { scheme: 'http' as const }]) {
    t.is(rejected(t, await run(instance, { ...request, ...change })).detail, 'bad signature', JSON.stringify(change))
  }
})

test('rfc9421: created older than the window or in the future is refused, within it passes', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  passed(t, await run(instance, signed9421({ at: NOW - 300_000 })))
  passed(t, await run(instance, signed9421({ at: NOW + 300_000 })))
  t.regex(rejected(t, await run(instance, signed9421({ at: NOW - 301_000 }))).detail, /too old/)
  t.regex(rejected(t, await run(instance, signed9421({ at: NOW + 301_000 }))).detail, /in the future/)
})

test('rfc9421: an expired signature is refused, an unexpired one passes', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  passed(t, await run(instance, signed9421({ at: NOW - 10_000, expiresInSeconds: 10 })))
  t.is(rejected(t, await run(instance, signed9421({ at: NOW - 10_000, expiresInSeconds: 9 }))).detail, 'signature expired')
})

test('rfc9421: the default required components are @method and @target-uri, plus content-digest only with a body', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  passed(t, await run(instance, signed9421({ method: 'GET' })))
  const noTarget = rejected(t, await run(instance, signed9421({ method: 'GET', components: ['@method', '@path'] })))
  t.is(noTarget.detail, 'signature must cover "@target-uri"')
  const noDigest = rejected(t, await run(instance, signed9421({ body: 'x', components: ['@method', '@target-uri'] })))
  t.is(noDigest.detail, 'signature must cover "content-digest"')
  t.is(noDigest.headers['accept-signature'], 'sig1=("@method" "@target-uri" "content-digest");created')
})

test('rfc9421: configured components replace the defaults', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', components: ['@method', '@path', '@query-param;name="id"', 'content-digest'] })
  passed(t, await run(instance, signed9421({ target: '/v1/payments?id=7', body: 'x', components: ['@method', '@path', '@query-param;name="id"', 'content-digest'] })))
  t.is(rejected(t, await run(instance, signed9421({ target: '/v1/payments?id=7', body: 'x' }))).detail, 'signature must cover "@path"')
})

test('rfc9421: Accept-Signature on a 401 asks for the required components, created and the tag', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', tag: 'payments', label: 'pay' })
  const rejection = rejected(t, await run(instance, { now: NOW, method: 'GET' }))
  t.is(rejection.code, 'missing_credentials')
  t.deepEqual(rejection.challenge, { scheme: 'Signature', params: { realm: 'authgate' } })
  t.is(rejection.headers['accept-signature'], 'pay=("@method" "@target-uri");created;tag="payments"')
  const withBody = rejected(t, await run(instance, { now: NOW, body: 'x' }))
  t.is(withBody.headers['accept-signature'], 'pay=("@method" "@target-uri" "content-digest");created;tag="payments"')
})

test('rfc9421: one of the two headers alone is invalid_signature, both missing is missing_credentials', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  const request = signed9421({})
  t.is(rejected(t, await run(instance, { ...request, headers: request.headers.filter(([n]) => n !== 'Signature') })).detail, 'Signature header missing')
  t.is(rejected(t, await run(instance, { ...request, headers: request.headers.filter(([n]) => n !== 'Signature-Input') })).detail, 'Signature-Input header missing')
  t.is(rejected(t, await run(instance, { now: NOW })).code, 'missing_credentials')
  passed(t, await run(instance, request))
})

test('rfc9421: a label given twice across field lines is 400; two labels on two lines are one dictionary', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  const request = signed9421({ body: 'x' })
  const input = request.headers.find(([n]) => n === 'Signature-Input')![1]
  const signature = request.headers.find(([n]) => n === 'Signature')![1]
  const twice = rejected(t, await run(instance, { ...request, headers: [...request.headers, ['Signature-Input', input]] }))
  t.is(twice.status, 400)
  t.is(twice.code, 'bad_request')
  t.is(rejected(t, await run(instance, { ...request, headers: [...request.headers, ['Signature', signature]] })).status, 400)
  const extra: Array<[string, string]> = [['Signature-Input', input.replace('sig1=', 'other=')], ['Signature', signature.replace('sig1=', 'other=')]]
  passed(t, await run(instance, { ...request, headers: [...request.headers, ...extra] }))
})

test('rfc9421: the first signature that meets the requirements is verified; a label option picks one', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  const weak = signed9421({ label: 'weak', components: ['@method'], body: 'x' })
  const strong = signed9421({ label: 'strong', body: 'x' })
  const combine = (first: Signed, second: Signed): Signed => ({
    ...first,
    headers: [
      ['Content-Digest', first.headers.find(([n]) => n === 'Content-Digest')![1]],
      ['Signature-Input', `${first.headers.find(([n]) => n === 'Signature-Input')![1]}, ${second.headers.find(([n]) => n === 'Signature-Input')![1]}`],
      ['Signature', `${first.headers.find(([n]) => n === 'Signature')![1]}, ${second.headers.find(([n]) => n === 'Signature')![1]}`],
    ],
  })
  passed(t, await run(instance, combine(weak, strong)))
  t.is(rejected(t, await run(instance, weak)).detail, 'signature must cover "@target-uri"')
  const labelled = await policy({ scheme: 'rfc9421', label: 'weak', replay: false })
  t.is(rejected(t, await run(labelled, combine(weak, strong))).detail, 'signature must cover "@target-uri"')
  t.is(rejected(t, await run(await policy({ scheme: 'rfc9421', label: 'absent' }), strong)).detail, 'no signature labelled absent')
  passed(t, await run(await policy({ scheme: 'rfc9421', label: 'strong', replay: false }), combine(weak, strong)))
})

test('rfc9421: a required tag must be present and equal', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', tag: 'payments' })
  passed(t, await run(instance, signed9421({ tag: 'payments' })))
  t.is(rejected(t, await run(instance, signed9421({ tag: 'other' }))).detail, 'tag parameter must be "payments"')
  t.is(rejected(t, await run(instance, signed9421({}))).detail, 'tag parameter must be "payments"')
})

test('rfc9421: an alg parameter must name the key\'s algorithm; without alg the key decides', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  const request = signed9421({ keyId: 'partner-ed', privateKey: ed.privateKey, secret: undefined, body: 'x' })
  passed(t, await run(instance, request))
  const lie = signed9421({ keyId: 'partner-ed', privateKey: ed.privateKey, secret: undefined, algorithm: 'ed25519', body: 'x' })
  const relabelled = { ...lie, headers: lie.headers.map(([n, v]): [string, string] => [n, n === 'Signature-Input' ? v.replace('alg="ed25519"', 'alg="hmac-sha256"') : v]) }
  t.is(rejected(t, await run(instance, relabelled)).detail, 'alg parameter does not match the key\'s algorithm')
  // signed without alg: the signing client's algorithm is used
  const { signatureInput, signature } = await librarySign(createSigner(ed.privateKey, 'ed25519', 'partner-ed'), ['keyid', 'created'])
  passed(t, await run(instance, { now: NOW, method: 'POST', target: '/v1/payments?id=7', body: '{"hello":"world"}', headers: [['Content-Digest', libraryDigest], ['Signature-Input', signatureInput], ['Signature', signature]] }))
})

test('rfc9421: missing created or keyid is refused', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  const noCreated = await librarySign(createSigner(Buffer.from(billingSecret), 'hmac-sha256', 'billing'), ['keyid', 'alg'])
  const noKeyid = await librarySign(createSigner(Buffer.from(billingSecret), 'hmac-sha256'), ['alg', 'created'])
  const request = (s: { signatureInput: string, signature: string }): FakeRequest => ({ now: NOW, method: 'POST', target: '/v1/payments?id=7', body: '{"hello":"world"}', headers: [['Content-Digest', libraryDigest], ['Signature-Input', s.signatureInput], ['Signature', s.signature]] })
  t.is(rejected(t, await run(instance, request(noCreated))).detail, 'created parameter missing')
  t.is(rejected(t, await run(instance, request(noKeyid))).detail, 'keyid parameter missing')
  passed(t, await run(instance, request(await librarySign(createSigner(Buffer.from(billingSecret), 'hmac-sha256', 'billing')))))
})

test('rfc9421: an unknown keyid is refused, a known one passes', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  passed(t, await run(instance, signed9421({})))
  t.is(rejected(t, await run(instance, signed9421({ keyId: 'nobody' }))).detail, 'unknown key id')
})

test('rfc9421: a nonce is single-use; requireNonce refuses signatures without one', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', requireNonce: true })
  const request = signed9421({ nonce: true })
  passed(t, await run(instance, request))
  const replay = rejected(t, await run(instance, request))
  t.is(replay.code, 'replayed_request')
  t.is(replay.detail, 'nonce already used')
  passed(t, await run(instance, signed9421({ nonce: true })))
  t.is(rejected(t, await run(instance, signed9421({}))).detail, 'nonce parameter missing')
})

test('rfc9421: without a nonce an identical signature base is a replay, even re-signed (ECDSA is not deterministic)', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  const first = signed9421({ keyId: 'partner-ec', privateKey: ec.privateKey, secret: undefined, body: 'x' })
  const again = signed9421({ keyId: 'partner-ec', privateKey: ec.privateKey, secret: undefined, body: 'x' })
  t.not(first.headers.find(([n]) => n === 'Signature')![1], again.headers.find(([n]) => n === 'Signature')![1])
  passed(t, await run(instance, first))
  t.is(rejected(t, await run(instance, again)).code, 'replayed_request')
  passed(t, await run(instance, signed9421({ keyId: 'partner-ec', privateKey: ec.privateKey, secret: undefined, body: 'y' })))
})

test('rfc9421: a nonce replay on a second instance sharing Redis is refused', async (t) => {
  const prefix = uniquePrefix('hmac-nonce')
  const first = await policy({ scheme: 'rfc9421' }, { store: redisStore(prefix) })
  const second = await policy({ scheme: 'rfc9421' }, { store: redisStore(prefix) })
  const request = signed9421({ nonce: 'n-1' })
  passed(t, await run(first, request))
  t.is(rejected(t, await run(second, request)).code, 'replayed_request')
})

test('rfc9421: malformed Signature-Input is invalid_signature, never an exception', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  for (const input of ['sig1=("@method"', 'sig1=("@method");created=abc', 'sig1=(@method)', 'sig1=("@method" "@method");created=1700000000;keyid="billing"', '\u00ff']) {
    const rejection = rejected(t, await run(instance, { now: NOW, method: 'GET', headers: [['Signature-Input', input], ['Signature', 'sig1=:AAAA:']] }))
    t.is(rejection.code, 'invalid_signature', input)
  }
})

// RFC 9421 Appendix B through the policy, clock fixed at the vectors' `created`

const VECTOR_NOW = 1618884473 * 1000
const vectorRequest = {
  now: VECTOR_NOW,
  method: 'POST',
  target: '/foo?param=Value&Pet=dog',
  authority: 'example.com',
  body: '{"hello": "world"}',
}
const vectorHeaders: Array<[string, string]> = [
  ['Date', 'Tue, 20 Apr 2021 02:07:55 GMT'],
  ['Content-Type', 'application/json'],
  ['Content-Digest', 'sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:'],
  ['Content-Length', '18'],
]

test('rfc9421 vectors: B.2.5 (hmac-sha256) passes the policy with its components required; a changed Date fails', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', components: ['date', '@authority', 'content-type'], replay: false })
  const headers: Array<[string, string]> = [...vectorHeaders,
    ['Signature-Input', 'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'],
    ['Signature', 'sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:']]
  const outcome = passed(t, await run(instance, { ...vectorRequest, headers }))
  t.is(outcome.identity?.subject, 'test-shared-secret')
  const later = headers.map(([n, v]): [string, string] => [n, n === 'Date' ? 'Tue, 20 Apr 2021 02:07:56 GMT' : v])
  t.is(rejected(t, await run(instance, { ...vectorRequest, headers: later })).detail, 'bad signature')
  t.regex(rejected(t, await run(instance, { ...vectorRequest, now: VECTOR_NOW + 301_000, headers })).detail, /too old/)
})

test('rfc9421 vectors: B.2.6 (ed25519) passes the policy; with alg="hmac-sha256" it is refused', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', components: ['@method', '@path', '@authority'], replay: false })
  const input = 'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"'
  const signature = 'sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:'
  passed(t, await run(instance, { ...vectorRequest, headers: [...vectorHeaders, ['Signature-Input', input], ['Signature', signature]] }))
  const withAlg = rejected(t, await run(instance, { ...vectorRequest, headers: [...vectorHeaders, ['Signature-Input', `${input};alg="hmac-sha256"`], ['Signature', signature]] }))
  t.is(withAlg.detail, 'alg parameter does not match the key\'s algorithm')
})

test('rfc9421 vectors: B.2.2 (rsa-pss-sha512, @query-param, tag) passes with its Content-Digest checked against the body', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', components: ['@authority', 'content-digest', '@query-param;name="Pet"'], tag: 'header-example', replay: false })
  const headers: Array<[string, string]> = [...vectorHeaders,
    ['Signature-Input', 'sig-b22=("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example"'],
    ['Signature', 'sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:']]
  passed(t, await run(instance, { ...vectorRequest, headers }))
  t.is(rejected(t, await run(instance, { ...vectorRequest, body: '{"hello": "World"}', headers })).detail, 'Content-Digest does not match the body')
  t.is(rejected(t, await run(instance, { ...vectorRequest, target: '/foo?param=Value&Pet=cat', headers })).detail, 'bad signature')
})

test('rfc9421 vectors: B.2.1 covers no components, so the default requirements refuse it', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  const rejection = rejected(t, await run(instance, { ...vectorRequest, headers: [...vectorHeaders,
    ['Signature-Input', 'sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"'],
    ['Signature', 'sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:']] }))
  t.is(rejection.detail, 'signature must cover "@method"')
})

// Names a client chooses are never looked up on a plain object: Object.prototype names are unknown, not 500s

test('rfc9421: Content-Digest: constructor=:AAAA: is 401 invalid_signature, the real digest passes', async (t) => {
  const instance = await policy({ scheme: 'rfc9421' })
  const digest = 'constructor=:AAAA:'
  const request = {
    ...signed9421({ headers: { 'content-digest': digest }, extraHeaders: [['Content-Digest', digest]], components: ['@method', '@target-uri', 'content-digest'] }),
    body: 'x',
  }
  const rejection = rejected(t, await run(instance, request))
  t.is(rejection.status, 401)
  t.is(rejection.code, 'invalid_signature')
  t.is(rejection.detail, 'Content-Digest has no supported algorithm (sha-256, sha-512)')
  passed(t, await run(instance, signed9421({ body: 'x' })))
})

test('rfc9421: keyid, alg, label, covered field, dictionary key and query parameter named like Object.prototype properties are unknown or absent', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  t.is(rejected(t, await run(await policy({ scheme: 'rfc9421', label: 'constructor' }), signed9421({}))).detail, 'no signature labelled constructor')
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
    t.is(rejected(t, await run(instance, signed9421({ keyId: name }))).detail, 'unknown key id', `keyid ${name}`)
    const alg = signed9421({})
    const relabelled = { ...alg, headers: alg.headers.map(([n, v]): [string, string] => [n, n === 'Signature-Input' ? v.replace('alg="hmac-sha256"', `alg="${name}"`) : v]) }
    t.is(rejected(t, await run(instance, relabelled)).detail, 'alg parameter does not match the key\'s algorithm', `alg ${name}`)
    // a covered field the signer was given and the request does not carry
    const field = name.toLowerCase()
    const absent = rejected(t, await run(instance, signed9421({ headers: { [field]: 'v' }, components: ['@method', '@target-uri', `"${field}"`] })))
    t.is(absent.code, 'invalid_signature', `field ${field}`)
    t.is(absent.detail, `covered field ${field} is absent`)
    // a dictionary member by key
    const member = signed9421({ headers: { 'x-dict': 'a=1' }, extraHeaders: [['X-Dict', 'a=1']], components: ['@method', '@target-uri', '"x-dict";key="a"'] })
    const noMember = { ...member, headers: member.headers.map(([n, v]): [string, string] => [n, n === 'Signature-Input' ? v.replace('key="a"', `key="${field}"`) : v]) }
    t.is(rejected(t, await run(instance, noMember)).detail, `field x-dict has no member ${field}`)
    // a query parameter by name: absent is refused, present passes
    const components = ['@method', '@target-uri', `"@query-param";name="${name}"`]
    const withParam = signed9421({ target: `/v1/payments?${name}=1`, components })
    passed(t, await run(instance, withParam))
    t.is(rejected(t, await run(instance, { ...withParam, target: '/v1/payments?id=1' })).detail, `query parameter ${name} is absent`)
  }
})

// Bounds (DESIGN, "Signature bases are bounded")

/** A request signed over @method, @target-uri, `keys` members of X-Dict and `params` query parameters. */
function signedOverMany (keys: number, params: number, extra: string[] = []): Signed {
  const components = ['@method', '@target-uri', ...extra]
  for (let i = 1; i <= keys; i++) components.push(`"x-dict";key="k${i}"`)
  for (let i = 1; i <= params; i++) components.push(`"@query-param";name="p${i}"`)
  const dict = Array.from({ length: keys }, (_, i) => `k${i + 1}=${i + 1}`).join(', ')
  const target = `/v1/payments?${Array.from({ length: params }, (_, i) => `p${i + 1}=${i + 1}`).join('&')}`
  return signed9421({ method: 'GET', target, components, headers: { 'x-dict': dict }, extraHeaders: [['X-Dict', dict]] })
}

/** Runs a request and counts the field reads the policy makes, by name. */
async function runCounting (instance: PolicyInstance, request: FakeRequest): Promise<{ outcome: Outcome, reads: Map<string, number> }> {
  const ctx = context(request)
  const reads = new Map<string, number>()
  const outcome = await instance.evaluate({
    ...ctx,
    headerValues: (name: string) => {
      reads.set(name, (reads.get(name) ?? 0) + 1)
      return ctx.headerValues(name)
    },
  })
  return { outcome, reads }
}

test('rfc9421: a signature covering 33 components is 401 invalid_signature before any base is built; 32 pass, each field read once', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  const at32 = await runCounting(instance, signedOverMany(15, 15))
  passed(t, at32.outcome)
  t.is(at32.reads.get('x-dict'), 1, 'X-Dict read (and parsed) once for 15 key= components')

  const over = await runCounting(instance, signedOverMany(15, 15, ['@path']))
  const rejection = rejected(t, over.outcome)
  t.is(rejection.status, 401)
  t.is(rejection.code, 'invalid_signature')
  t.is(rejection.detail, 'Signature-Input sig1 covers 33 components; at most 32 are accepted')
  t.is(over.reads.get('x-dict'), undefined, 'no component value was computed')

  const flood = rejected(t, (await runCounting(instance, signedOverMany(300, 300))).outcome)
  t.is(flood.detail, 'Signature-Input sig1 covers 602 components; at most 32 are accepted')
})

test('rfc9421: more than 8 signatures in Signature-Input is 401 invalid_signature; 8 pass', async (t) => {
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  const combine = (count: number): Signed => {
    const all = Array.from({ length: count }, (_, i) => signed9421({ label: `s${i}`, method: 'GET' }))
    const joined = (name: string) => all.map((one) => one.headers.find(([n]) => n === name)![1]).join(', ')
    return { ...all[0]!, headers: [['Signature-Input', joined('Signature-Input')], ['Signature', joined('Signature')]] }
  }
  passed(t, await run(instance, combine(8)))
  const rejection = rejected(t, await run(instance, combine(9)))
  t.is(rejection.code, 'invalid_signature')
  t.is(rejection.detail, 'Signature-Input has 9 signatures; at most 8 are accepted')
})
