import anyTest, { type TestFn } from 'ava'
import { constants, createHash, createHmac, createPrivateKey, generateKeyPairSync, randomBytes, sign as cryptoSign, type KeyObject } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { Agent, fetch as undiciFetch, request as undiciRequest } from 'undici'
import { createSigner, httpbis, type SigningKey as LibrarySigningKey } from 'http-message-signatures'
import { Rejection, StoreUnavailableError } from '../../gateway/errors.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import { RedisStore } from '../../gateway/store/redis.js'
import type { Store } from '../../gateway/store/types.js'
import type { Continue, Outcome, PolicyInstance } from '../types.js'
import { startRedis, uniquePrefix, type RedisServer } from '../../test/helpers/redis.js'
import { makeContext, makeDeps, withSchemaDefaults, type FakeRequest } from './fixtures/context.js'
import { RSA_PSS_PUBLIC, ED25519_PUBLIC, SHARED_SECRET_BASE64 } from './fixtures/rfc9421-keys.js'
import { createContentDigest } from './content-digest.js'
import { hmac, signingClientsSection } from './index.js'
import { schema, signingClientsSectionSchema, type HmacPolicyConfig } from './schema.js'
import { signCommand, signRequest, signingInterceptor, type SignRequestOptions } from './sign.js'

const test = anyTest as TestFn

const NOW = 1_700_000_000_000
const NOW_SEC = NOW / 1000

// Fixtures made at run time: secrets and key pairs of this test run only.
const billingSecret = randomBytes(32).toString('base64url')
const plainSecret = randomBytes(32).toString('hex')
const base64Secret = randomBytes(48)
const ed = generateKeyPairSync('ed25519')
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
// Made before any test runs: synchronous RSA key generation inside a test would stall the event loop under others' store timeouts.
const otherKeys = {
  ed: generateKeyPairSync('ed25519').privateKey,
  ec: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
  rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
}
const pem = (key: KeyObject) => key.export({ type: 'spki', format: 'pem' }).toString()

const signingClients = [
  { keyId: 'billing', client: 'billing-service', secret: billingSecret, scopes: ['write'], tier: 'gold' },
  { keyId: 'plain', secret: plainSecret },
  { keyId: 'b64', secret: base64Secret.toString('base64'), secretEncoding: 'base64' },
  { keyId: 'partner-ed', client: 'partner', algorithm: 'ed25519', publicKey: pem(ed.publicKey), scopes: ['read'] },
  { keyId: 'partner-ec', algorithm: 'ecdsa-p256-sha256', publicKey: pem(ec.publicKey) },
  { keyId: 'partner-pss', algorithm: 'rsa-pss-sha512', publicKey: pem(rsa.publicKey) },
  { keyId: 'partner-rsa15', algorithm: 'rsa-v1_5-sha256', publicKey: pem(rsa.publicKey) },
  // RFC 9421 Appendix B.1 published test keys, for the vectors through the policy
  { keyId: 'test-shared-secret', secret: SHARED_SECRET_BASE64, secretEncoding: 'base64' },
  { keyId: 'test-key-ed25519', algorithm: 'ed25519', publicKey: ED25519_PUBLIC },
  { keyId: 'test-key-rsa-pss', algorithm: 'rsa-pss-sha512', publicKey: RSA_PSS_PUBLIC },
]
const document = { signingClients: withSchemaDefaults(signingClientsSectionSchema, structuredClone(signingClients)) }

let redis: RedisServer | undefined
const stores: Store[] = []

test.before(async () => {
  redis = await startRedis()
})

test.after.always(async () => {
  await Promise.all(stores.map((store) => store.close()))
  await redis?.stop()
})

function memoryStore (): Store {
  const store = new MemoryStore({ now: () => NOW })
  stores.push(store)
  return store
}

function redisStore (prefix: string, options: { url?: string, timeoutMs?: number } = {}): Store {
  // Generous timeout: several tests and key generation share two cores.
  const store = new RedisStore(options.url ?? redis!.url, { prefix, timeoutMs: options.timeoutMs ?? 10_000 })
  stores.push(store)
  return store
}

async function policy (config: Partial<HmacPolicyConfig>, options: { store?: Store, routeName?: string, shared?: Map<string, unknown> } = {}): Promise<PolicyInstance> {
  const validated = withSchemaDefaults(schema, structuredClone(config)) as HmacPolicyConfig
  return await hmac.create(validated, makeDeps({
    store: options.store ?? memoryStore(),
    config: document,
    ...(options.routeName !== undefined ? { routeName: options.routeName } : {}),
    ...(options.shared !== undefined ? { shared: options.shared } : {}),
  }))
}

async function run (instance: PolicyInstance, request: FakeRequest): Promise<Outcome> {
  return await instance.evaluate(makeContext(request))
}

function rejected (t: { fail: (message: string) => void }, outcome: Outcome): Rejection {
  if (!(outcome instanceof Rejection)) {
    t.fail(`expected a rejection, got ${JSON.stringify(outcome)}`)
    throw new Error('not a rejection')
  }
  return outcome
}

function passed (t: { fail: (message: string) => void }, outcome: Outcome): Continue {
  if (outcome instanceof Rejection) {
    t.fail(`expected success, got ${outcome.status} ${outcome.code}: ${outcome.detail}`)
    throw new Error('rejected')
  }
  return outcome
}

interface Signed { method: string, target: string, body?: string, headers: Array<[string, string]>, now: number, scheme?: 'http' | 'https', authority?: string }

/** Signs with the package's own client (signRequest) and returns a FakeRequest carrying the headers. */
function signed (options: Partial<SignRequestOptions> & { target?: string, extraHeaders?: Array<[string, string]>, at?: number }): Signed {
  const method = options.method ?? 'POST'
  const target = options.target ?? '/v1/payments?id=7'
  const body = typeof options.body === 'string' ? options.body : undefined
  const headers = signRequest({
    keyId: 'billing',
    secret: billingSecret,
    ...options,
    method,
    url: `https://api.example.com${target}`,
    now: options.at ?? NOW,
  } as SignRequestOptions)
  return { method, target, ...(body !== undefined ? { body } : {}), headers: [...(options.extraHeaders ?? []), ...Object.entries(headers)], now: NOW }
}

// hmac-sha256

test('hmac-sha256: a request signed like the common guide\'s client passes with the signing client\'s identity', async (t) => {
  const instance = await policy({})
  const timestamp = String(NOW_SEC)
  const body = '{"amount":100}'
  // The guide's formula, computed independently of signRequest.
  const base = `POST\n/v1/payments?id=7\n${timestamp}\n${createHash('sha256').update(body).digest('hex')}`
  const signature = createHmac('sha256', billingSecret).update(base).digest('base64')
  const outcome = passed(t, await run(instance, {
    now: NOW, target: '/v1/payments?id=7', body,
    headers: [['X-Key-Id', 'billing'], ['X-Timestamp', timestamp], ['X-Signature', signature]],
  }))
  t.deepEqual(outcome.identity, { subject: 'billing-service', client: 'billing-service', scopes: ['write'], tier: 'gold' })
  t.deepEqual(signed({ body }).headers.find(([name]) => name === 'X-Signature')?.[1], signature, 'signRequest computes the same value')
})

test('hmac-sha256: without client the key id is the subject and client', async (t) => {
  const instance = await policy({})
  const outcome = passed(t, await run(instance, signed({ keyId: 'plain', secret: plainSecret, method: 'GET' })))
  t.deepEqual(outcome.identity, { subject: 'plain', client: 'plain', scopes: [] })
})

test('hmac-sha256: a base64 secretEncoding client signs with the decoded bytes', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ keyId: 'b64', secret: base64Secret })))
  t.is(rejected(t, await run(instance, signed({ keyId: 'b64', secret: base64Secret.toString('base64') }))).detail, 'bad signature')
})

test('hmac-sha256: a tampered body is refused, the untouched body passes', async (t) => {
  const instance = await policy({})
  const good = signed({ body: '{"amount":100}' })
  const bad = { ...signed({ body: '{"amount":100}' }), body: '{"amount":900}' }
  passed(t, await run(instance, good))
  const rejection = rejected(t, await run(instance, bad))
  t.is(rejection.status, 401)
  t.is(rejection.code, 'invalid_signature')
  t.is(rejection.detail, 'bad signature')
})

test('hmac-sha256: a tampered path is refused, the signed path passes', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ target: '/v1/payments/1' })))
  t.is(rejected(t, await run(instance, { ...signed({ target: '/v1/payments/1' }), target: '/v1/payments/2' })).code, 'invalid_signature')
})

test('hmac-sha256: a tampered query is refused, the signed query passes', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ target: '/v1/payments?amount=1' })))
  t.is(rejected(t, await run(instance, { ...signed({ target: '/v1/payments?amount=1' }), target: '/v1/payments?amount=1000' })).code, 'invalid_signature')
  t.is(rejected(t, await run(instance, { ...signed({ target: '/v1/payments?amount=1' }), target: '/v1/payments?amount=1&x=1' })).code, 'invalid_signature')
})

test('hmac-sha256: a changed method is refused, the signed method passes', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ method: 'DELETE', target: '/v1/payments/1' })))
  t.is(rejected(t, await run(instance, { ...signed({ method: 'DELETE', target: '/v1/payments/1' }), method: 'GET' })).detail, 'bad signature')
})

test('hmac-sha256: the request target is signed exactly as sent, percent-escapes included', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ target: '/v1/pay%6Dents?q=a%20b&x=%2F' })))
  // a client that signed the decoded form does not match what it sent
  const decodedSigned = signed({ target: '/v1/payments?q=a%20b&x=%2F' })
  t.is(rejected(t, await run(instance, { ...decodedSigned, target: '/v1/pay%6Dents?q=a%20b&x=%2F' })).detail, 'bad signature')
})

test('hmac-sha256: a timestamp older than the window is stale, one at the edge passes', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ at: NOW - 300_000 })))
  const rejection = rejected(t, await run(instance, signed({ at: NOW - 301_000 })))
  t.is(rejection.code, 'invalid_signature')
  t.regex(rejection.detail, /stale timestamp/)
})

test('hmac-sha256: a timestamp beyond the window in the future is refused, one at the edge passes', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ at: NOW + 300_000 })))
  const rejection = rejected(t, await run(instance, signed({ at: NOW + 301_000 })))
  t.regex(rejection.detail, /timestamp in the future/)
})

test('hmac-sha256: the window is configurable', async (t) => {
  const instance = await policy({ window: '10s' })
  passed(t, await run(instance, signed({ at: NOW - 10_000 })))
  t.regex(rejected(t, await run(instance, signed({ at: NOW - 11_000 }))).detail, /stale/)
})

test('hmac-sha256: an exact replay is 401 replayed_request, the first request passes', async (t) => {
  const instance = await policy({})
  const request = signed({ body: 'pay once' })
  passed(t, await run(instance, request))
  const rejection = rejected(t, await run(instance, request))
  t.is(rejection.status, 401)
  t.is(rejection.code, 'replayed_request')
  t.deepEqual(rejection.challenge, { scheme: 'HMAC', params: { realm: 'authgate', headers: 'X-Key-Id X-Timestamp X-Signature' } })
})

test('hmac-sha256: another base64 spelling of the same MAC is still a replay', async (t) => {
  const instance = await policy({})
  const request = signed({ body: 'spelling' })
  const signature = request.headers.find(([name]) => name === 'X-Signature')![1]
  // 32 bytes in 43 base64 characters leave 2 unused bits in the last one: flip them.
  const last = signature[42]!
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  const respelled = signature.slice(0, 42) + alphabet[alphabet.indexOf(last) ^ 1] + '='
  t.not(respelled, signature)
  t.deepEqual(Buffer.from(respelled, 'base64'), Buffer.from(signature, 'base64'))
  passed(t, await run(instance, request))
  const replay = { ...request, headers: request.headers.map(([name, value]): [string, string] => [name, name === 'X-Signature' ? respelled : value]) }
  t.is(rejected(t, await run(instance, replay)).code, 'replayed_request')
})

test('hmac-sha256: a replay on a second instance sharing Redis is refused, also after a restart of the first', async (t) => {
  const prefix = uniquePrefix('hmac-replay')
  const first = await policy({}, { store: redisStore(prefix) })
  const second = await policy({}, { store: redisStore(prefix) })
  const request = signed({ body: 'across instances' })
  const other = signed({ body: 'a different request' })
  passed(t, await run(first, request))
  t.is(rejected(t, await run(second, request)).code, 'replayed_request')
  passed(t, await run(second, other))
  const restarted = await policy({}, { store: redisStore(prefix) })
  t.is(rejected(t, await run(restarted, other)).code, 'replayed_request')
  // a store with another prefix (another deployment) has not seen it
  passed(t, await run(await policy({}, { store: redisStore(uniquePrefix('hmac-other')) }), request))
})

test('hmac-sha256: replay: false accepts the same signature twice', async (t) => {
  const instance = await policy({ replay: false })
  const request = signed({})
  t.is(passed(t, await run(instance, request)).identity?.subject, 'billing-service')
  t.is(passed(t, await run(instance, request)).identity?.subject, 'billing-service')
})

test('hmac-sha256: an unknown key id is refused without saying more, a known one passes', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ keyId: 'billing' })))
  const rejection = rejected(t, await run(instance, signed({ keyId: 'nobody' })))
  t.is(rejection.code, 'invalid_signature')
  t.is(rejection.detail, 'unknown key id')
})

test('hmac-sha256: a key id of an asymmetric signing client is unknown to this scheme', async (t) => {
  const instance = await policy({})
  t.is(rejected(t, await run(instance, signed({ keyId: 'partner-ed', secret: billingSecret }))).detail, 'unknown key id')
})

test('hmac-sha256: a wrong secret is a bad signature and the detail never holds the expected MAC', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ secret: billingSecret, body: 'x' })))
  const wrong = signed({ secret: `${billingSecret}x`, body: 'x' })
  const rejection = rejected(t, await run(instance, wrong))
  t.is(rejection.detail, 'bad signature')
  const right = signed({ body: 'x' }).headers.find(([name]) => name === 'X-Signature')![1]
  t.false(JSON.stringify(rejection).includes(right))
  t.false(JSON.stringify(rejection).includes(billingSecret))
})

test('hmac-sha256: no signature headers is missing_credentials with the HMAC challenge', async (t) => {
  const instance = await policy({})
  const rejection = rejected(t, await run(instance, { now: NOW }))
  t.is(rejection.status, 401)
  t.is(rejection.code, 'missing_credentials')
  t.deepEqual(rejection.challenge, { scheme: 'HMAC', params: { realm: 'authgate', headers: 'X-Key-Id X-Timestamp X-Signature' } })
  t.deepEqual(instance.challenge, rejection.challenge)
})

test('hmac-sha256: each missing header is named in an invalid_signature, all three pass', async (t) => {
  const instance = await policy({})
  const full = signed({})
  passed(t, await run(instance, full))
  for (const missing of ['X-Key-Id', 'X-Timestamp', 'X-Signature']) {
    const request = { ...signed({ body: missing }), headers: signed({ body: missing }).headers.filter(([name]) => name !== missing) }
    const rejection = rejected(t, await run(instance, request))
    t.is(rejection.code, 'invalid_signature')
    t.is(rejection.detail, `${missing} header missing`)
  }
})

test('hmac-sha256: a duplicated signature header is 400 bad_request, the single one passes', async (t) => {
  const instance = await policy({})
  passed(t, await run(instance, signed({ body: 'once' })))
  for (const header of ['X-Key-Id', 'X-Timestamp', 'X-Signature']) {
    const request = signed({ body: header })
    const value = request.headers.find(([name]) => name === header)![1]
    const rejection = rejected(t, await run(instance, { ...request, headers: [...request.headers, [header, value]] }))
    t.is(rejection.status, 400)
    t.is(rejection.code, 'bad_request')
  }
})

test('hmac-sha256: malformed timestamp and signature values are refused', async (t) => {
  const instance = await policy({})
  const request = signed({})
  const replace = (header: string, value: string) => ({ ...request, headers: request.headers.map(([n, v]): [string, string] => [n, n === header ? value : v]) })
  t.regex(rejected(t, await run(instance, replace('X-Timestamp', '1700000000.5'))).detail, /unix time/)
  t.regex(rejected(t, await run(instance, replace('X-Timestamp', '-1'))).detail, /unix time/)
  t.regex(rejected(t, await run(instance, replace('X-Signature', 'not base64!'))).detail, /base64/)
  t.regex(rejected(t, await run(instance, replace('X-Signature', Buffer.alloc(20).toString('base64')))).detail, /base64/)
  passed(t, await run(instance, request))
})

test('hmac-sha256: header names are configurable, and so is the challenge', async (t) => {
  const instance = await policy({ headers: { keyId: 'X-Client', timestamp: 'X-Time', signature: 'X-Sig' } })
  t.deepEqual(instance.credentialHeaders, ['x-client', 'x-time', 'x-sig'])
  t.is(instance.challenge?.params.headers, 'X-Client X-Time X-Sig')
  passed(t, await run(instance, signed({ headerNames: { keyId: 'X-Client', timestamp: 'X-Time', signature: 'X-Sig' } })))
  t.is(rejected(t, await run(instance, signed({}))).code, 'missing_credentials')
})

test('hmac-sha256: a body over the route limit is not turned into a 401: the body error propagates', async (t) => {
  const instance = await policy({})
  const tooLarge = new Error('request body too large')
  await t.throwsAsync(instance.evaluate(makeContext({ ...signed({ body: 'big' }), bodyError: tooLarge })) as Promise<Outcome>, { is: tooLarge })
})

test('hmac-sha256: a store failure propagates as StoreUnavailableError, never as a pass', async (t) => {
  const down = await startRedis()
  t.teardown(() => down.stop())
  const instance = await policy({}, { store: redisStore(uniquePrefix('hmac-down'), { url: down.url, timeoutMs: 300 }) })
  passed(t, await run(instance, signed({ body: 'before' })))
  down.pause()
  await t.throwsAsync(instance.evaluate(makeContext(signed({ body: 'while down' }))) as Promise<Outcome>, { instanceOf: StoreUnavailableError })
  down.resume()
})

test('the hmac policy reads the body and declares its credential headers lower-cased per scheme', async (t) => {
  t.true((await policy({})).readsBody)
  t.deepEqual((await policy({})).credentialHeaders, ['x-key-id', 'x-timestamp', 'x-signature'])
  t.deepEqual((await policy({ scheme: 'rfc9421' })).credentialHeaders, ['signature', 'signature-input'])
  t.deepEqual((await policy({ scheme: 'github', secret: 'gh' })).credentialHeaders, ['x-hub-signature-256'])
  t.deepEqual((await policy({ scheme: 'stripe', secret: 'st' })).credentialHeaders, ['stripe-signature'])
  t.is(hmac.key, 'hmac')
  t.true(hmac.authenticates)
})

test('signing clients are parsed once per configuration generation and shared by routes', async (t) => {
  const shared = new Map<string, unknown>()
  await policy({}, { shared })
  const keys = shared.get('signingClients')
  await policy({ scheme: 'rfc9421' }, { shared })
  t.true(keys instanceof Map)
  t.is(shared.get('signingClients'), keys)
  t.is(shared.size, 1)
})

// rfc9421

function signed9421 (options: Partial<SignRequestOptions> & { target?: string, extraHeaders?: Array<[string, string]>, at?: number }): Signed {
  return signed({ scheme: 'rfc9421', ...options })
}

const asymmetric = [
  { keyId: 'partner-ed', privateKey: ed.privateKey, algorithm: 'ed25519' },
  { keyId: 'partner-ec', privateKey: ec.privateKey, algorithm: 'ecdsa-p256-sha256' },
  { keyId: 'partner-pss', privateKey: rsa.privateKey, algorithm: 'rsa-pss-sha512' },
  { keyId: 'partner-rsa15', privateKey: rsa.privateKey, algorithm: 'rsa-v1_5-sha256' },
] as const

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

// Interoperability with the independent npm package http-message-signatures

const libraryBody = '{"hello":"world"}'
const libraryDigest = createContentDigest(libraryBody, 'sha-512')

async function librarySign (key: LibrarySigningKey, params?: string[]): Promise<{ signatureInput: string, signature: string }> {
  const message = await httpbis.signMessage({
    key,
    fields: ['@method', '@target-uri', 'content-digest'],
    ...(params ? { params } : {}),
    paramValues: { created: new Date(NOW) },
  }, {
    method: 'POST',
    url: 'https://api.example.com/v1/payments?id=7',
    headers: { 'content-digest': libraryDigest } as Record<string, string | string[]>,
  })
  return { signatureInput: String(message.headers['Signature-Input']), signature: String(message.headers.Signature) }
}

async function librarySigned (key: LibrarySigningKey): Promise<FakeRequest> {
  const message = await httpbis.signMessage({
    key,
    fields: ['@method', '@target-uri', 'content-digest'],
    paramValues: { created: new Date(NOW) },
  }, {
    method: 'POST',
    url: 'https://api.example.com/v1/payments?id=7',
    headers: { 'content-digest': libraryDigest } as Record<string, string | string[]>,
  })
  return {
    now: NOW, method: 'POST', target: '/v1/payments?id=7', body: libraryBody,
    headers: [['Content-Digest', libraryDigest], ['Signature-Input', String(message.headers['Signature-Input'])], ['Signature', String(message.headers.Signature)]],
  }
}

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

// Webhooks

const githubSecret = randomBytes(20).toString('hex')
const stripeSecret = `whsec_${randomBytes(24).toString('base64url')}`

function githubRequest (body: string, secret = githubSecret): FakeRequest {
  return { now: NOW, body, headers: [['X-Hub-Signature-256', `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`]] }
}

test('github: a delivery signed with the webhook secret passes as the configured client (default: the route name)', async (t) => {
  const named = await policy({ scheme: 'github', secret: githubSecret, client: 'github' })
  t.deepEqual(passed(t, await run(named, githubRequest('{"zen":"ok"}'))).identity, { subject: 'github', client: 'github' })
  const unnamed = await policy({ scheme: 'github', secret: githubSecret }, { routeName: 'gh-hooks' })
  t.deepEqual(passed(t, await run(unnamed, githubRequest('{"zen":"ok"}'))).identity, { subject: 'gh-hooks', client: 'gh-hooks' })
})

test('github: a tampered body or a wrong secret is a bad signature; redeliveries are not replays', async (t) => {
  const instance = await policy({ scheme: 'github', secret: githubSecret })
  const request = githubRequest('{"action":"opened"}')
  passed(t, await run(instance, request))
  passed(t, await run(instance, request))
  t.is(rejected(t, await run(instance, { ...request, body: '{"action":"closed"}' })).detail, 'bad signature')
  t.is(rejected(t, await run(instance, githubRequest('{"action":"opened"}', 'other'))).detail, 'bad signature')
})

test('github: missing, duplicated and malformed X-Hub-Signature-256 headers', async (t) => {
  const instance = await policy({ scheme: 'github', secret: githubSecret })
  const request = githubRequest('x')
  const missing = rejected(t, await run(instance, { now: NOW, body: 'x' }))
  t.is(missing.code, 'missing_credentials')
  t.deepEqual(missing.challenge, { scheme: 'HMAC', params: { realm: 'authgate' } })
  t.is(rejected(t, await run(instance, { ...request, headers: [...request.headers!, ...request.headers!] })).status, 400)
  t.regex(rejected(t, await run(instance, { ...request, headers: [['X-Hub-Signature-256', 'sha1=abc']] })).detail, /sha256=<hex>/)
  passed(t, await run(instance, request))
})

function stripeRequest (body: string, t: number, options: { secret?: string, extra?: string } = {}): FakeRequest {
  const v1 = createHmac('sha256', options.secret ?? stripeSecret).update(`${t}.${body}`).digest('hex')
  return { now: NOW, body, headers: [['Stripe-Signature', `t=${t},v1=${v1}${options.extra ?? ''}`]] }
}

test('stripe: an event signed with the endpoint secret passes; a tampered one does not', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret, client: 'stripe' })
  t.deepEqual(passed(t, await run(instance, stripeRequest('{"id":"evt_1"}', NOW_SEC))).identity, { subject: 'stripe', client: 'stripe' })
  t.is(rejected(t, await run(instance, { ...stripeRequest('{"id":"evt_2"}', NOW_SEC), body: '{"id":"evt_3"}' })).detail, 'bad signature')
  t.is(rejected(t, await run(instance, stripeRequest('{"id":"evt_4"}', NOW_SEC, { secret: 'whsec_other' }))).detail, 'bad signature')
})

test('stripe: any of several v1 signatures may match (secret rolling); v0 is ignored', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  const other = createHmac('sha256', 'old').update('x').digest('hex')
  const request = stripeRequest('{"id":"evt_5"}', NOW_SEC, { extra: `,v1=${other},v0=${other}` })
  passed(t, await run(instance, request))
  const onlyWrong = { ...request, headers: [['Stripe-Signature', `t=${NOW_SEC},v1=${other}`]] as Array<[string, string]> }
  t.is(rejected(t, await run(instance, onlyWrong)).detail, 'bad signature')
})

test('stripe: t outside the tolerance is refused, inside passes', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  passed(t, await run(instance, stripeRequest('a', NOW_SEC - 300)))
  passed(t, await run(instance, stripeRequest('b', NOW_SEC + 300)))
  t.regex(rejected(t, await run(instance, stripeRequest('c', NOW_SEC - 301))).detail, /stale/)
  t.regex(rejected(t, await run(instance, stripeRequest('d', NOW_SEC + 301))).detail, /future/)
})

test('stripe: the same signed event twice is a replay', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  const request = stripeRequest('{"id":"evt_6"}', NOW_SEC)
  passed(t, await run(instance, request))
  t.is(rejected(t, await run(instance, request)).code, 'replayed_request')
})

test('stripe: missing, duplicated and malformed Stripe-Signature headers', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  t.is(rejected(t, await run(instance, { now: NOW, body: 'x' })).code, 'missing_credentials')
  const request = stripeRequest('x', NOW_SEC)
  t.is(rejected(t, await run(instance, { ...request, headers: [...request.headers!, ...request.headers!] })).status, 400)
  for (const value of ['garbage', `t=${NOW_SEC}`, 'v1=00', `t=${NOW_SEC},t=${NOW_SEC},v1=${'0'.repeat(64)}`, `t=abc,v1=${'0'.repeat(64)}`, `t=${NOW_SEC},v1=xyz`]) {
    t.is(rejected(t, await run(instance, { ...request, headers: [['Stripe-Signature', value]] })).code, 'invalid_signature', value)
  }
  passed(t, await run(instance, request))
})

// Configuration checks

test('signingClients check: an HMAC secret under 32 bytes is an error, 32 bytes is fine', (t) => {
  const issues = signingClientsSection.check!([{ keyId: 'a', secret: 'x'.repeat(31) }, { keyId: 'b', secret: 'x'.repeat(32) }], {}, { baseDir: '.' })
  t.is(issues.length, 1)
  t.deepEqual(issues[0]!.path, ['signingClients', 0, 'secret'])
  t.regex(issues[0]!.message, /31 bytes; hmac-sha256 needs at least 32/)
  t.false(issues[0]!.message.includes('x'.repeat(31)), 'the secret is not echoed')
})

test('signingClients check: key material must fit the algorithm, keyIds must be unique', (t) => {
  const check = (entries: unknown[]) => signingClientsSection.check!(entries, {}, { baseDir: '.' }).map((issue) => `${issue.path.join('.')}: ${issue.message}`)
  t.deepEqual(check([{ keyId: 'a' }]), ['signingClients.0: keyId "a" has no secret'])
  t.deepEqual(check([{ keyId: 'a', algorithm: 'ed25519' }]), ['signingClients.0: keyId "a" (ed25519) has no publicKey'])
  t.regex(check([{ keyId: 'a', secret: 'x'.repeat(40), publicKey: pem(ed.publicKey) }])[0]!, /not a public key/)
  t.regex(check([{ keyId: 'a', algorithm: 'ed25519', secret: 'x'.repeat(40), publicKey: pem(ed.publicKey) }])[0]!, /a secret must not be given/)
  t.regex(check([{ keyId: 'a', algorithm: 'ed25519', publicKey: 'not a pem' }])[0]!, /not an SPKI PEM/)
  t.regex(check([{ keyId: 'a', algorithm: 'ed25519', publicKey: ed.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }])[0]!, /private key/)
  t.regex(check([{ keyId: 'a', algorithm: 'ecdsa-p256-sha256', publicKey: pem(ed.publicKey) }])[0]!, /ed25519 and cannot verify ecdsa-p256-sha256/)
  t.regex(check([{ keyId: 'a', secret: '!!!', secretEncoding: 'base64' }])[0]!, /not base64/)
  t.deepEqual(check([{ keyId: 'a', secret: 'x'.repeat(32) }, { keyId: 'a', secret: 'y'.repeat(32) }]), ['signingClients.1.keyId: duplicate keyId "a" (also at signingClients[0])'])
  t.deepEqual(check(signingClients), [])
})

test('hmac check: webhook schemes need a secret; signing schemes need signing clients and refuse a secret', (t) => {
  const check = (config: Partial<HmacPolicyConfig>, doc: Record<string, unknown> = document) =>
    hmac.check!(withSchemaDefaults(schema, config) as HmacPolicyConfig, { config: doc, route: { name: 'r', upstream: 'demo', listeners: [], maxBodyBytes: 1024 } })
      .filter((issue) => issue.severity === 'error').map((issue) => issue.message)
  t.deepEqual(check({ scheme: 'github', secret: 's' }), [])
  t.regex(check({ scheme: 'github' })[0]!, /needs the webhook `secret`/)
  t.regex(check({ scheme: 'stripe' })[0]!, /needs the webhook `secret`/)
  t.deepEqual(check({ scheme: 'hmac-sha256' }), [])
  t.regex(check({ scheme: 'hmac-sha256' }, {})[0]!, /needs at least one entry in `signingClients`/)
  t.regex(check({ scheme: 'hmac-sha256' }, { signingClients: [{ keyId: 'e', algorithm: 'ed25519', publicKey: pem(ed.publicKey) }] })[0]!, /needs a signing client with algorithm hmac-sha256/)
  t.deepEqual(check({ scheme: 'rfc9421' }, { signingClients: [{ keyId: 'e', algorithm: 'ed25519', publicKey: pem(ed.publicKey) }] }), [])
  t.regex(check({ scheme: 'rfc9421', secret: 's' })[0]!, /`secret` is for the github and stripe schemes/)
  t.regex(check({ scheme: 'rfc9421', components: ['@method', 'bad name with spaces'] })[0]!, /not a lower-case field name/)
  t.regex(check({ scheme: 'rfc9421', components: ['@method', '"unclosed'] })[0]!, /malformed/)
  t.regex(check({ scheme: 'rfc9421', components: ['@status'] })[0]!, /only for responses: it cannot be a required component/)
  t.regex(check({ scheme: 'rfc9421', components: ['@query-param'] })[0]!, /needs name=/)
  t.deepEqual(check({ scheme: 'rfc9421', components: ['@query-param;name="id"', '"x-request";sf', 'content-digest'] }), [])
})

test('hmac check: options of another scheme are warnings', (t) => {
  const warnings = hmac.check!(withSchemaDefaults(schema, { scheme: 'github', secret: 's', components: ['@method'], headers: { keyId: 'X-K' } }) as HmacPolicyConfig,
    { config: document, route: { name: 'r', upstream: 'demo', listeners: [], maxBodyBytes: 1024 } })
  t.deepEqual(warnings.map((w) => [w.severity, w.path.join('.')]), [['warning', 'components'], ['warning', 'headers']])
})

test('the schema refuses unknown fields and schemes, and fills the defaults', (t) => {
  t.throws(() => withSchemaDefaults(schema, { scheme: 'md5' }))
  t.throws(() => withSchemaDefaults(schema, { windw: '5s' }))
  t.throws(() => withSchemaDefaults(schema, { label: 'Not A Key' }))
  t.like(withSchemaDefaults(schema, {}), { scheme: 'hmac-sha256', window: '300s', replay: true, requireNonce: false })
  t.like(withSchemaDefaults(signingClientsSectionSchema, [{ keyId: 'k', secret: 's' }])[0], { secretEncoding: 'utf8', algorithm: 'hmac-sha256', scopes: [] })
  t.true((schema.properties.secret as { sensitive?: boolean }).sensitive)
})

// Client side: signRequest, signingInterceptor, authgate sign

interface Received { method: string, url: string, headers: Array<[string, string]>, body: Buffer }

async function recordingServer (t: { teardown: (fn: () => Promise<void> | void) => void }): Promise<{ url: string, received: Received[] }> {
  const received: Received[] = []
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const headers: Array<[string, string]> = []
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!])
      received.push({ method: req.method!, url: req.url!, headers, body: Buffer.concat(chunks) })
      res.end('ok')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received }
}

function asFakeRequest (received: Received): FakeRequest {
  return {
    now: NOW, method: received.method, target: received.url, scheme: 'http',
    headers: received.headers,
    body: received.body,
  }
}

test('signingInterceptor: requests sent through a composed undici Agent verify (string body, fetch stream, no body)', async (t) => {
  const server = await recordingServer(t)
  for (const scheme of ['hmac-sha256', 'rfc9421'] as const) {
    const agent = new Agent().compose(signingInterceptor({ scheme, keyId: 'billing', secret: billingSecret, now: () => NOW }))
    t.teardown(() => agent.close())
    await (await undiciRequest(`${server.url}/v1/payments?id=1`, { method: 'POST', body: '{"amount":1}', dispatcher: agent })).body.text()
    await (await undiciFetch(`${server.url}/v1/payments?id=2`, { method: 'POST', body: '{"amount":2}', dispatcher: agent })).text()
    await (await undiciRequest(`${server.url}/v1/payments?id=3`, { method: 'POST', body: Readable.from([Buffer.from('{"amount"'), Buffer.from(':3}')]), dispatcher: agent })).body.text()
    await (await undiciRequest(`${server.url}/v1/payments?id=4`, { dispatcher: agent })).body.text()
    // a path the URL parser would re-encode ({ } become %7B %7D) is signed exactly as undici sends it
    await (await agent.request({ origin: server.url, path: '/v1/payments/{5}', method: 'GET' })).body.text()
  }
  t.is(server.received.length, 10)
  t.is(server.received[4]!.url, '/v1/payments/{5}')
  const instances = { 'hmac-sha256': await policy({}), rfc9421: await policy({ scheme: 'rfc9421' }) }
  for (const [i, received] of server.received.entries()) {
    const instance = i < 5 ? instances['hmac-sha256'] : instances.rfc9421
    passed(t, await run(instance, asFakeRequest(received)))
    t.is(rejected(t, await run(instance, { ...asFakeRequest(received), target: `${received.url}0` })).code, 'invalid_signature')
  }
})

test('signingInterceptor: a streamed body over maxBodyBytes and a FormData body are refused with a clear error', async (t) => {
  const server = await recordingServer(t)
  const agent = new Agent().compose(signingInterceptor({ keyId: 'billing', secret: billingSecret, maxBodyBytes: 8 }))
  t.teardown(() => agent.close())
  await t.throwsAsync(undiciRequest(`${server.url}/x`, { method: 'POST', body: Readable.from([Buffer.alloc(16)]), dispatcher: agent }), { message: /exceeds 8 bytes/ })
  const form = new FormData()
  form.set('a', 'b')
  await t.throwsAsync(undiciRequest(`${server.url}/x`, { method: 'POST', body: form as never, dispatcher: agent }), { message: /FormData/ })
  t.is(server.received.length, 0)
})

function captureIo (env: Record<string, string | undefined> = {}, cwd?: string) {
  const out: string[] = []
  const err: string[] = []
  return {
    out, err,
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env, ...(cwd ? { cwd } : {}), now: () => NOW },
  }
}

test('authgate sign prints curl-ready headers that the policy accepts, and never the secret', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-sign-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'body.json'), '{"amount":5}')
  const { out, err, io } = captureIo({ BILLING_SECRET: billingSecret }, dir)
  const code = await signCommand(['--key-id', 'billing', '--secret-env', 'BILLING_SECRET', 'POST', 'https://api.example.com/v1/payments?id=7', '--data', '@body.json'], io)
  t.is(code, 0, err.join(''))
  const lines = out.join('').trimEnd().split('\n')
  t.deepEqual(lines.map((line) => line.slice(0, line.indexOf(':'))), ['X-Key-Id', 'X-Timestamp', 'X-Signature'])
  t.false(out.join('').includes(billingSecret))
  const headers = lines.map((line): [string, string] => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)])
  passed(t, await run(await policy({}), { now: NOW, target: '/v1/payments?id=7', body: '{"amount":5}', headers }))
})

test('authgate sign --scheme rfc9421 adds Content-Digest and signs with a secret or a key file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-sign-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'partner.pem'), ed.privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  for (const args of [['--secret-env', 'S', '--key-id', 'billing'], ['--key-file', 'partner.pem', '--key-id', 'partner-ed']]) {
    const { out, err, io } = captureIo({ S: billingSecret }, dir)
    t.is(await signCommand([...args, '--scheme', 'rfc9421', 'PUT', 'https://api.example.com/v1/payments/1', '--data', 'hello'], io), 0, err.join(''))
    const headers = out.join('').trimEnd().split('\n').map((line): [string, string] => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)])
    t.deepEqual(headers.map(([name]) => name), ['Content-Digest', 'Signature-Input', 'Signature'])
    passed(t, await run(instance, { now: NOW, method: 'PUT', target: '/v1/payments/1', body: 'hello', headers }))
  }
})

test('authgate sign: usage mistakes exit 2 with the usage, unreadable files exit 1, --help exits 0', async (t) => {
  const cases: Array<[string[], number, RegExp]> = [
    [['POST', 'https://x.example/'], 2, /--key-id is required/],
    [['--key-id', 'k', 'POST', 'https://x.example/'], 2, /exactly one of --secret-env/],
    [['--key-id', 'k', '--secret-env', 'MISSING', 'POST', 'https://x.example/'], 2, /MISSING is not set/],
    [['--key-id', 'k', '--secret-env', 'S', 'POST'], 2, /METHOD and URL are required/],
    [['--key-id', 'k', '--secret-env', 'S', 'POST', '/relative'], 2, /URL must be absolute/],
    [['--key-id', 'k', '--secret-env', 'S', '--scheme', 'md5', 'POST', 'https://x.example/'], 2, /--scheme must be/],
    [['--key-id', 'k', '--secret-env', 'S', '--bogus', 'POST', 'https://x.example/'], 2, /unknown option --bogus/],
    [['--key-id', 'k', '--key-file', 'k.pem', 'POST', 'https://x.example/'], 2, /--key-file needs --scheme rfc9421/],
    [['--key-id', 'k', '--secret-env', 'S', 'POST', 'https://x.example/', '--data', '@/nonexistent/file'], 1, /file not found/],
  ]
  for (const [args, expected, message] of cases) {
    const { out, err, io } = captureIo({ S: billingSecret })
    t.is(await signCommand(args, io), expected, args.join(' '))
    t.regex(err.join(''), message)
    t.is(out.join(''), '')
    t.false(err.join('').includes(billingSecret))
  }
  const { out, io } = captureIo()
  t.is(await signCommand(['--help'], io), 0)
  t.regex(out.join(''), /^usage: authgate sign/)
})

test('signRequest refuses to sign without key material or with an absent covered header', (t) => {
  t.throws(() => signRequest({ keyId: 'k', method: 'GET', url: 'https://x.example/' }), { instanceOf: TypeError })
  t.throws(() => signRequest({ scheme: 'rfc9421', keyId: 'k', method: 'GET', url: 'https://x.example/' }), { instanceOf: TypeError })
  t.throws(() => signRequest({ scheme: 'rfc9421', keyId: 'k', secret: 's', components: ['date'], method: 'GET', url: 'https://x.example/' }), { message: /date is absent/ })
  t.truthy(signRequest({ scheme: 'rfc9421', keyId: 'k', secret: 's', components: ['date'], headers: { Date: 'now' }, method: 'GET', url: 'https://x.example/' }).Signature)
  t.truthy(signRequest({ scheme: 'rfc9421', keyId: 'k', privateKey: createPrivateKey(ed.privateKey.export({ type: 'pkcs8', format: 'pem' })), method: 'GET', url: 'https://x.example/' }).Signature)
})
