/** The hmac policy's hmac-sha256 scheme: X-Key-Id, X-Timestamp, X-Signature (the common guide's client). */
import anyTest, { type TestFn } from 'ava'
import { createHash, createHmac } from 'node:crypto'
import { StoreUnavailableError } from '../../gateway/errors.js'
import type { Outcome } from '../types.js'
import { startRedis, uniquePrefix } from '../../test/helpers/redis.js'
import {
  NOW, NOW_SEC, base64Secret, billingSecret, context, passed, plainSecret, policy, redisStore, rejected, run, setup, signed,
} from './fixtures/policy.js'

const test = anyTest as TestFn
setup(test, { redis: true })

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
  await t.throwsAsync(instance.evaluate(context({ ...signed({ body: 'big' }), bodyError: tooLarge })) as Promise<Outcome>, { is: tooLarge })
})

test('hmac-sha256: a store failure propagates as StoreUnavailableError, never as a pass', async (t) => {
  const down = await startRedis()
  t.teardown(() => down.stop())
  const instance = await policy({}, { store: redisStore(uniquePrefix('hmac-down'), { url: down.url, timeoutMs: 300 }) })
  passed(t, await run(instance, signed({ body: 'before' })))
  down.pause()
  await t.throwsAsync(instance.evaluate(context(signed({ body: 'while down' }))) as Promise<Outcome>, { instanceOf: StoreUnavailableError })
  down.resume()
})

test('hmac-sha256: an X-Key-Id named like an Object.prototype property is an unknown key id', async (t) => {
  const instance = await policy({})
  for (const keyId of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    const rejection = rejected(t, await run(instance, signed({ keyId })))
    t.is(rejection.code, 'invalid_signature', keyId)
    t.is(rejection.detail, 'unknown key id')
  }
  passed(t, await run(instance, signed({})))
})
