import { generateKeyPairSync, randomBytes } from 'node:crypto'
import test from 'ava'
import type { ConfigIssue } from '../../gateway/errors.js'
import { validate } from '../../gateway/config/validate.js'
import { jwtProvidersSection } from './section.js'
import { withDefaults } from '../../test/helpers/policy-harness.js'

const rsaPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
const smallRsaPem = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
const privatePem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
const secret32 = randomBytes(32).toString('base64')

function check (providers: Record<string, Record<string, unknown>>): ConfigIssue[] {
  const value = withDefaults(jwtProvidersSection.schema, providers)
  return jwtProvidersSection.check!(value, { jwtProviders: value }, { baseDir: '.' })
}

function errors (providers: Record<string, Record<string, unknown>>) {
  return check(providers).filter((issue) => issue.severity === 'error')
}

test('the providers of DESIGN.md are valid: discovery by issuer, HS256 secret, PEM key, JWKS URL', (t) => {
  t.deepEqual(check({
    corp: { issuer: 'https://idp.example.com', audience: 'orders-api', algorithms: ['RS256', 'ES256'], clockTolerance: '30s' },
    internal: { secret: secret32, secretEncoding: 'base64', algorithms: ['HS256'], audience: 'internal' },
    pem: { publicKey: rsaPem, algorithms: ['RS256', 'PS256'], audience: 'x' },
    jwks: { jwksUri: 'https://idp.example.com/keys', issuer: 'https://idp.example.com', algorithms: ['ES256'], audience: 'x' },
    local: { issuer: 'http://127.0.0.1:9000', algorithms: ['ES256'], audience: 'x' },
    local6: { jwksUri: 'http://[::1]:9000/jwks', algorithms: ['ES256'], audience: 'x' },
  }), [])
})

test('defaults are applied: 30s tolerance, exp required, no revocation, 10m JWKS TTL', (t) => {
  const value = withDefaults<Record<string, Record<string, unknown>>>(jwtProvidersSection.schema, { corp: { issuer: 'https://idp.example.com', algorithms: ['RS256'] } })
  t.like(value.corp, { clockTolerance: '30s', requireExp: true, revocation: false, jwksCacheTtl: '10m', jwksCooldown: '30s', jwksStaleGrace: '1h', timeout: '5s', secretEncoding: 'utf8', requiredClaims: [] })
})

test('algorithm "none" is an error in any case; RS256 alone is fine', (t) => {
  for (const none of ['none', 'NONE', 'None']) {
    const [issue] = errors({ p: { issuer: 'https://idp.example.com', audience: 'a', algorithms: ['RS256', none] } })
    t.like(issue, { path: ['jwtProviders', 'p', 'algorithms', 1] })
    t.regex(issue!.message, /"none" is never accepted/)
  }
  t.deepEqual(errors({ p: { issuer: 'https://idp.example.com', audience: 'a', algorithms: ['RS256'] } }), [])
})

test('an unknown algorithm gets a did-you-mean', (t) => {
  const [issue] = errors({ p: { issuer: 'https://idp.example.com', audience: 'a', algorithms: ['rs256'] } })
  t.like(issue, { path: ['jwtProviders', 'p', 'algorithms', 0], message: 'unknown algorithm "rs256"', fix: 'did you mean "RS256"?' })
})

test('HS and asymmetric algorithms in one provider are algorithm confusion', (t) => {
  const issues = errors({ p: { secret: secret32, secretEncoding: 'base64', audience: 'a', algorithms: ['HS256', 'RS256'] } })
  t.true(issues.some((i) => /^algorithm confusion: HS256 and RS256/.test(i.message)))
})

test('HS256 with a public key, JWKS or issuer is algorithm confusion; with a secret it is fine', (t) => {
  for (const source of [{ publicKey: rsaPem }, { jwksUri: 'https://idp.example.com/keys' }, { issuer: 'https://idp.example.com' }]) {
    const issues = errors({ p: { ...source, audience: 'a', algorithms: ['HS256'] } })
    t.true(issues.some((i) => /^algorithm confusion: HS256 needs a shared `secret`/.test(i.message)), JSON.stringify(issues))
  }
  t.deepEqual(errors({ p: { secret: secret32, secretEncoding: 'base64', audience: 'a', algorithms: ['HS256'] } }), [])
})

test('a secret with RS256 is algorithm confusion', (t) => {
  const issues = errors({ p: { secret: secret32, secretEncoding: 'base64', audience: 'a', algorithms: ['RS256'] } })
  t.true(issues.some((i) => /^algorithm confusion: a shared `secret` cannot verify RS256/.test(i.message)))
})

test('a secret shorter than the hash output is an error that does not show the secret', (t) => {
  const short = 'correct-horse-battery-staple'
  const [issue] = errors({ p: { secret: short, audience: 'a', algorithms: ['HS256'] } })
  t.like(issue, { path: ['jwtProviders', 'p', 'secret'], message: 'secret is 28 bytes; HS256 needs at least 32' })
  t.false(JSON.stringify(issue).includes(short))
  const [hs512] = errors({ p: { secret: randomBytes(48).toString('base64'), secretEncoding: 'base64', audience: 'a', algorithms: ['HS256', 'HS512'] } })
  t.like(hs512, { message: 'secret is 48 bytes; HS512 needs at least 64' })
  t.deepEqual(errors({ p: { secret: randomBytes(64).toString('base64url'), secretEncoding: 'base64', audience: 'a', algorithms: ['HS256', 'HS512'] } }), [])
  t.deepEqual(errors({ p: { secret: 'x'.repeat(32), audience: 'a', algorithms: ['HS256'] } }), [])
})

test('a secret that is not base64 with secretEncoding base64 is an error', (t) => {
  const [issue] = errors({ p: { secret: 'not base64 at all!', secretEncoding: 'base64', audience: 'a', algorithms: ['HS256'] } })
  t.like(issue, { path: ['jwtProviders', 'p', 'secret'], message: 'secret is not base64 (secretEncoding: base64)' })
})

test('no key source and two key sources are errors', (t) => {
  const [none] = errors({ p: { audience: 'a', algorithms: ['RS256'] } })
  t.like(none, { path: ['jwtProviders', 'p'], message: 'no signing key source' })
  const [two] = errors({ p: { publicKey: rsaPem, jwksUri: 'https://idp.example.com/keys', audience: 'a', algorithms: ['RS256'] } })
  t.like(two, { message: 'more than one key source (publicKey, jwksUri)' })
  const [withDiscovery] = errors({ p: { issuer: 'https://idp.example.com', discovery: true, jwksUri: 'https://idp.example.com/keys', audience: 'a', algorithms: ['RS256'] } })
  t.like(withDiscovery, { message: 'more than one key source (jwksUri, discovery)' })
  const [offWithoutKeys] = errors({ p: { issuer: 'https://idp.example.com', discovery: false, audience: 'a', algorithms: ['RS256'] } })
  t.like(offWithoutKeys, { message: 'no signing key source' })
})

test('remote key URLs must be https unless loopback', (t) => {
  const [jwks] = errors({ p: { jwksUri: 'http://idp.example.com/keys', audience: 'a', algorithms: ['RS256'] } })
  t.like(jwks, { path: ['jwtProviders', 'p', 'jwksUri'] })
  t.regex(jwks!.message, /must use https/)
  const [issuer] = errors({ p: { issuer: 'http://idp.example.com', audience: 'a', algorithms: ['RS256'] } })
  t.like(issuer, { path: ['jwtProviders', 'p', 'issuer'] })
  for (const url of ['http://127.0.0.1:8080/jwks', 'http://127.8.9.10/jwks', 'http://localhost:1/jwks', 'http://[::1]/jwks', 'https://idp.example.com/jwks']) {
    t.deepEqual(errors({ p: { jwksUri: url, audience: 'a', algorithms: ['RS256'] } }), [], url)
  }
  for (const url of ['http://128.0.0.1/jwks', 'http://localhost.evil.com/jwks', 'ftp://idp.example.com/jwks', 'not a url', 'https://user:pw@idp.example.com/jwks']) {
    t.is(errors({ p: { jwksUri: url, audience: 'a', algorithms: ['RS256'] } }).length, 1, url)
  }
  // An issuer that is only compared (keys from a PEM) need not be a URL at all.
  t.deepEqual(errors({ p: { issuer: 'corp-idp', publicKey: rsaPem, audience: 'a', algorithms: ['RS256'] } }), [])
})

test('a provider without audience gets a warning, not an error', (t) => {
  const issues = check({ p: { issuer: 'https://idp.example.com', algorithms: ['RS256'] } })
  t.is(issues.length, 1)
  t.like(issues[0], { severity: 'warning', path: ['jwtProviders', 'p'] })
  t.regex(issues[0]!.message, /no audience/)
})

test('a PEM key must be a public key of a type that fits every listed algorithm', (t) => {
  t.like(errors({ p: { publicKey: privatePem, audience: 'a', algorithms: ['ES256'] } })[0], { message: 'publicKey holds a private key: give only the public key' })
  t.like(errors({ p: { publicKey: 'hello', audience: 'a', algorithms: ['ES256'] } })[0], { message: 'publicKey is not an SPKI PEM public key' })
  t.like(errors({ p: { publicKey: ecPem, audience: 'a', algorithms: ['RS256'] } })[0], { message: 'publicKey is ec (prime256v1) and cannot verify RS256' })
  t.like(errors({ p: { publicKey: ecPem, audience: 'a', algorithms: ['ES384'] } })[0], { message: 'publicKey is ec (prime256v1) and cannot verify ES384' })
  t.like(errors({ p: { publicKey: smallRsaPem, audience: 'a', algorithms: ['RS256'] } })[0], { message: 'publicKey is a 1024-bit RSA key; at least 2048 bits are required' })
  t.deepEqual(errors({ p: { publicKey: ecPem, audience: 'a', algorithms: ['ES256'] } }), [])
})

test('the schema refuses unknown keys and an empty algorithm list', (t) => {
  const value = { p: { issuer: 'https://idp.example.com', algorithms: [], audiance: 'x' } }
  const issues = validate(jwtProvidersSection.schema, value, ['jwtProviders'])
  t.true(issues.some((i) => i.message.startsWith('unknown key "audiance"')))
  t.true(issues.some((i) => i.message === 'needs at least 1 item(s)'))
})
