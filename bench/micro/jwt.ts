// Micro-benchmark: JWT verification through the jwt policy's ProviderRuntime, with the verified-token cache
// answering (the same token again) and without it (a new token each time), and jose's jwtVerify alone.
// Run: node --import tsx bench/micro/jwt.ts
import { createHash, createPublicKey, randomBytes } from 'node:crypto'
import { SignJWT, generateKeyPair, importJWK, exportJWK, jwtVerify } from 'jose'
import { createLogger } from '../../gateway/log.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import { bench, benchAsync, section } from './harness.js'

let provider: typeof import('../../policies/jwt/provider.js')
try {
  provider = await import('../../policies/jwt/provider.js')
} catch {
  console.log('\n## JWT\nskipped: policy not available (policies/jwt/provider.ts)')
  process.exit(0)
}
const { ProviderRuntime } = provider

const log = createLogger({ level: 'silent' })
const store = new MemoryStore({ prefix: 'micro:' })
const secret = randomBytes(32).toString('base64url')
const secretBytes = Buffer.from(secret, 'utf8')
const es = await generateKeyPair('ES256', { extractable: true })
const now = Math.floor(Date.now() / 1000)
const sign = (alg: 'HS256' | 'ES256', sub: string) => new SignJWT({ scope: 'read' }).setProtectedHeader({ alg })
  .setSubject(sub).setAudience('bench').setIssuedAt(now).setExpirationTime(now + 3600)
  .sign(alg === 'HS256' ? secretBytes : es.privateKey)

const options = { now: Date.now, log, store, storeOnError: 'deny' as const }
const base = { clockTolerance: '30s', requireExp: true, requiredClaims: [], revocation: false, secretEncoding: 'utf8' as const, jwksCacheTtl: '10m', jwksCooldown: '30s', jwksStaleGrace: '1h', timeout: '5s', maxResponseBytes: '512KiB', audience: 'bench' }
const hs = new ProviderRuntime('hs', { ...base, algorithms: ['HS256'], secret } as never, options)
const publicPem = createPublicKey({ key: await exportJWK(es.publicKey), format: 'jwk' } as never).export({ type: 'spki', format: 'pem' }).toString()
const esProvider = new ProviderRuntime('es', { ...base, algorithms: ['ES256'], publicKey: publicPem } as never, options)
await hs.ready
await esProvider.ready

const hsToken = await sign('HS256', 'user')
const esToken = await sign('ES256', 'user')
const COUNT = 20_000
const hsTokens = await Promise.all(Array.from({ length: COUNT }, (_, i) => sign('HS256', `user-${i}`)))
const esTokens = await Promise.all(Array.from({ length: 5_000 }, (_, i) => sign('ES256', `user-${i}`)))

section('JWT')
await benchAsync('HS256 ProviderRuntime.authenticate, cached token', 200_000, 1, () => hs.authenticate(hsToken, Date.now()))
// Without the cache: the provider's own verify step (what a cache miss costs, before the cache insert).
const verify = (p: unknown, token: string) => (p as { verify (t: string, n: number): Promise<unknown> }).verify(token, Date.now())
await benchAsync('HS256 ProviderRuntime verify, no cache', COUNT, 1, (i) => verify(hs, hsTokens[i % COUNT]!))
await benchAsync('ES256 ProviderRuntime.authenticate, cached token', 200_000, 1, () => esProvider.authenticate(esToken, Date.now()))
await benchAsync('ES256 ProviderRuntime verify, no cache', 5_000, 1, (i) => verify(esProvider, esTokens[i % 5_000]!))
const hsKey = await importJWK({ kty: 'oct', k: secretBytes.toString('base64url') }, 'HS256')
await benchAsync('jose jwtVerify HS256, imported key', 50_000, 1, () => jwtVerify(hsToken, hsKey, { algorithms: ['HS256'] }))
await benchAsync('jose jwtVerify HS256, raw key bytes', 50_000, 1, () => jwtVerify(hsToken, secretBytes, { algorithms: ['HS256'] }))
await benchAsync('jose jwtVerify ES256', 10_000, 1, () => jwtVerify(esToken, es.publicKey, { algorithms: ['ES256'] }))
bench('SHA-256 of the token, base64url (the cache key)', 500_000, () => createHash('sha256').update(hsToken).digest('base64url'))
await store.close()
