import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, exportPKCS8, generateKeyPair, jwtVerify } from 'jose'
import type { Identity } from '../policies/types.js'
import { freePort } from '../test/e2e/support.js'
import { ConfigError, StoreUnavailableError } from './errors.js'
import { IdentitySigner, SIGNING_KEY, type SignedIdentityConfig } from './signed-identity.js'
import { MemoryStore } from './store/memory.js'
import { RedisStore } from './store/redis.js'
import { until } from '../test/helpers/until.js'

const config = (extra: Partial<SignedIdentityConfig> = {}): SignedIdentityConfig =>
  ({ header: 'X-Auth-Identity', ttl: '60s', issuer: 'authgate', algorithm: 'ES256', ...extra })

const alice: Identity = { subject: 'alice', client: 'web', methods: ['mtls', 'jwt'], scopes: ['orders:read', 'orders:write'], claims: { secret: 'x' } }

function clock (start = 1_700_000_000_000) {
  let at = start
  return { now: () => at, advance: (ms: number) => { at += ms } }
}

async function verify (token: string, signer: IdentitySigner, audience: string, now: number) {
  return await jwtVerify(token, createLocalJWKSet(signer.jwks()), { issuer: 'authgate', audience, currentDate: new Date(now), algorithms: [signer.algorithm] })
}

test('the token carries iss, aud, sub, client, methods (array), scope (string), iat, exp = iat + ttl and jti, with a kid', async (t) => {
  const c = clock()
  const signer = await IdentitySigner.create(config(), { store: new MemoryStore(), baseDir: '.', now: c.now })
  const token = await signer.sign(alice, 'orders')
  const { payload, protectedHeader } = await verify(token, signer, 'orders', c.now())
  t.is(protectedHeader.alg, 'ES256')
  t.is(protectedHeader.kid, signer.kid)
  t.like(payload, { iss: 'authgate', aud: 'orders', sub: 'alice', client: 'web', scope: 'orders:read orders:write' })
  t.deepEqual(payload.methods, ['mtls', 'jwt'])
  t.is(payload.iat, Math.floor(c.now() / 1000))
  t.is(payload.exp, payload.iat! + 60)
  t.regex(String(payload.jti), /^[0-9a-f-]{36}$/)
  t.false('claims' in payload || 'secret' in payload, 'upstream claims from the credential are not copied')
  signer.close()
})

test('a token for one upstream does not verify for another (aud = upstream name)', async (t) => {
  const c = clock()
  const signer = await IdentitySigner.create(config(), { store: new MemoryStore(), baseDir: '.', now: c.now })
  const token = await signer.sign(alice, 'orders')
  await t.throwsAsync(() => verify(token, signer, 'billing', c.now()), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' })
  const billing = await signer.sign(alice, 'billing')
  t.not(billing, token)
  t.is((await verify(billing, signer, 'billing', c.now())).payload.aud, 'billing')
  signer.close()
})

test('a signed token is reused for the same identity and audience until half its lifetime has passed', async (t) => {
  const c = clock()
  const signer = await IdentitySigner.create(config({ ttl: '60s' }), { store: new MemoryStore(), baseDir: '.', now: c.now })
  const first = await signer.sign(alice, 'orders')
  c.advance(29_000)
  t.is(await signer.sign(alice, 'orders'), first)
  t.not(await signer.sign({ ...alice, scopes: ['orders:read'] }, 'orders'), first, 'different scopes, different token')
  t.not(await signer.sign({ ...alice, subject: 'bob' }, 'orders'), first)
  c.advance(1_000)
  const renewed = await signer.sign(alice, 'orders')
  t.not(renewed, first)
  t.is((await verify(renewed, signer, 'orders', c.now())).payload.iat, Math.floor(c.now() / 1000))
  signer.close()
})

test('instances sharing a store sign with the same generated key, and the store holds it without expiry', async (t) => {
  const c = clock()
  const store = new MemoryStore({ now: c.now })
  const [a, b] = await Promise.all([
    IdentitySigner.create(config(), { store, baseDir: '.', now: c.now }),
    IdentitySigner.create(config(), { store, baseDir: '.', now: c.now }),
  ])
  t.truthy(a.kid)
  t.is(a.kid, b.kid)
  t.deepEqual(a.jwks(), b.jwks())
  const record = JSON.parse((await store.get(SIGNING_KEY))!)
  t.is(record.current.kid, a.kid)
  t.is(store.size, 1)
  // The public JWKS never holds the private part.
  for (const key of a.jwks().keys) {
    t.false('d' in key)
    t.like(key, { kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
    t.is(key.kid, await calculateJwkThumbprint({ kty: key.kty!, crv: key.crv!, x: key.x!, y: key.y! }))
  }
  const token = await a.sign(alice, 'orders')
  t.is((await jwtVerify(token, createLocalJWKSet(b.jwks()), { audience: 'orders', currentDate: new Date(c.now()) })).payload.sub, 'alice')
  c.advance(401 * 86_400_000)
  t.is(JSON.parse((await store.get(SIGNING_KEY))!).current.kid, a.kid, 'still there after the 400-day creation TTL')
  a.close()
  b.close()
})

test('rotation signs with a new key, keeps the old public key for 2 × ttl, and reaches the other instances', async (t) => {
  const c = clock()
  const store = new MemoryStore({ now: c.now })
  const a = await IdentitySigner.create(config({ ttl: '60s' }), { store, baseDir: '.', now: c.now })
  const b = await IdentitySigner.create(config({ ttl: '60s' }), { store, baseDir: '.', now: c.now })
  const before = await a.sign(alice, 'orders')
  const oldKid = a.kid
  await a.rotate()
  t.not(a.kid, oldKid)
  await until(() => b.kid === a.kid, { timeoutMs: 2000, message: 'the rotation message to reach the other instance' }).catch(() => {}) // pub/sub delivery
  t.is(b.kid, a.kid, 'the other instance reloaded after the rotation message')
  const after = await a.sign(alice, 'orders')
  t.not(after, before, 'the token cache does not outlive the key')
  t.is(decodeProtectedHeader(after).kid, a.kid)
  for (const signer of [a, b]) {
    t.deepEqual(signer.jwks().keys.map((k) => k.kid), [a.kid, oldKid])
    t.is((await verify(before, signer, 'orders', c.now())).payload.sub, 'alice')
  }
  c.advance(120_000 - 1)
  t.is(a.jwks().keys.length, 2, 'still listed just before 2 × ttl')
  c.advance(1)
  t.deepEqual(a.jwks().keys.map((k) => k.kid), [a.kid])
  a.close()
  b.close()
})

test('EdDSA keys are generated as Ed25519', async (t) => {
  const signer = await IdentitySigner.create(config({ algorithm: 'EdDSA' }), { store: new MemoryStore(), baseDir: '.' })
  const token = await signer.sign(alice, 'orders')
  t.is(decodeProtectedHeader(token).alg, 'EdDSA')
  t.like(signer.jwks().keys[0], { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA' })
  t.is((await jwtVerify(token, createLocalJWKSet(signer.jwks()), { audience: 'orders' })).payload.client, 'web')
  signer.close()
})

test('a key generated for one algorithm is not used under another: a ConfigError says how to fix it', async (t) => {
  const store = new MemoryStore()
  const es = await IdentitySigner.create(config({ algorithm: 'ES256' }), { store, baseDir: '.' })
  es.close()
  const error = await t.throwsAsync(() => IdentitySigner.create(config({ algorithm: 'EdDSA' }), { store, baseDir: '.' }), { instanceOf: ConfigError })
  t.regex(error!.message, /shared signing key in the store is ES256, not EdDSA/)
})

test('keyFile: a PKCS#8 key from a file signs, and its thumbprint is the kid; the store is not used', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-signer-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  for (const [algorithm, options] of [['ES256', {}], ['EdDSA', { crv: 'Ed25519' }]] as const) {
    const { privateKey } = await generateKeyPair(algorithm, { ...options, extractable: true })
    await writeFile(join(dir, `${algorithm}.pem`), await exportPKCS8(privateKey))
    const store = new MemoryStore()
    const signer = await IdentitySigner.create(config({ algorithm, keyFile: `${algorithm}.pem` }), { store, baseDir: dir })
    const token = await signer.sign(alice, 'orders')
    t.is((await jwtVerify(token, createLocalJWKSet(signer.jwks()), { audience: 'orders' })).payload.sub, 'alice')
    t.is(signer.jwks().keys.length, 1)
    t.is(store.size, 0)
    await t.throwsAsync(() => signer.rotate(), { instanceOf: TypeError })
    signer.close()
  }
})

test('keyFile: a missing file or a key of the wrong type is a ConfigError naming identity.signed.keyFile', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-signer-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const missing = await t.throwsAsync(() => IdentitySigner.create(config({ keyFile: 'nope.pem' }), { store: new MemoryStore(), baseDir: dir }), { instanceOf: ConfigError })
  t.deepEqual(missing!.issues[0]!.path, ['identity', 'signed', 'keyFile'])
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true })
  await writeFile(join(dir, 'ed.pem'), await exportPKCS8(privateKey))
  const wrong = await t.throwsAsync(() => IdentitySigner.create(config({ algorithm: 'ES256', keyFile: 'ed.pem' }), { store: new MemoryStore(), baseDir: dir }), { instanceOf: ConfigError })
  t.regex(wrong!.message, /not a PKCS#8 P-256 EC private key/)
  t.regex(wrong!.issues[0]!.fix ?? '', /openssl genpkey/)
})

test('with the store down at start the signer starts, and signing fails with StoreUnavailableError until it is back', async (t) => {
  const port = await freePort()
  const store = new RedisStore(`redis://127.0.0.1:${port}`, { prefix: 't:', timeoutMs: 200 })
  t.teardown(() => store.close())
  const signer = await IdentitySigner.create(config(), { store, baseDir: '.' })
  t.is(signer.kid, undefined)
  t.deepEqual(signer.jwks(), { keys: [] })
  await t.throwsAsync(() => signer.sign(alice, 'orders'), { instanceOf: StoreUnavailableError })
  signer.close()
})
