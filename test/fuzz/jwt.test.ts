/**
 * Property-based tests of JWT inputs through a running gateway: random segments, huge tokens, hostile headers
 * (`alg` spellings, `none`, `kid`, `jku`, embedded `jwk`, `crit`), claims of the wrong type, and the signatures an
 * attacker can make (none, another secret, the public key used as an HMAC secret). Invariants: never a 5xx, only
 * 200/400/401/403/431, and a 200 only for a token signed by the provider's key with valid claims; then the upstream
 * sees the token's subject and not the token. Seeds: FUZZ_SEED or the fixed default.
 */
import { createHmac, createPrivateKey, generateKeyPairSync, randomBytes, sign as signBytes, type KeyObject } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import fc from 'fast-check'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { checkProperty, exchange, portOf, type ParsedResponse } from './support.js'

interface Context { gw: TestGateway, secret: Buffer, esKey: KeyObject, esPem: string }
const test = anyTest as TestFn<Context>

const ISSUER = 'https://issuer.test'
const AUD = 'fuzz-api'
const TOLERANCE_S = 30

test.before(async (t) => {
  const secret = randomBytes(32)
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const esPem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const gw = await startGateway({
    jwtProviders: {
      hs: { issuer: ISSUER, secret: '${env:FUZZ_JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: AUD },
      es: { publicKey: '${file:es.pem}', algorithms: ['ES256'], audience: AUD },
    },
    routes: [
      { name: 'hs', match: { path: '/hs/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'hs' } }] },
      { name: 'scoped', match: { path: '/scoped/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'hs' } }, { scopes: ['read'] }, { claims: { tenant: 'acme' } }] },
      { name: 'es', match: { path: '/es/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'es' } }] },
    ],
  }, { env: { FUZZ_JWT_SECRET: secret.toString('base64') }, files: { 'es.pem': esPem } })
  t.context = { gw, secret, esKey: createPrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' })), esPem }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
})

const b64url = (data: string | Buffer) => Buffer.from(data).toString('base64url')

type Signer = 'hs' | 'hs-other-secret' | 'es' | 'none' | 'confusion' | 'garbage' | 'empty'

/** Signs `header.payload` the way `signer` says; `alg` in the header is whatever the generator chose. */
function signature (ctx: Context, signer: Signer, input: string): string {
  switch (signer) {
    case 'hs': return b64url(createHmac('sha256', ctx.secret).update(input).digest())
    case 'hs-other-secret': return b64url(createHmac('sha256', randomBytes(32)).update(input).digest())
    case 'es': return b64url(signBytes('sha256', Buffer.from(input), { key: ctx.esKey, dsaEncoding: 'ieee-p1363' }))
    // Algorithm confusion: the verifier's public key (text) used as an HMAC secret.
    case 'confusion': return b64url(createHmac('sha256', ctx.esPem).update(input).digest())
    case 'garbage': return b64url(randomBytes(32))
    case 'none': case 'empty': return ''
  }
}

interface Token { text: string, header: unknown, payload: unknown, signer: Signer, raw: boolean }

const now = () => Math.floor(Date.now() / 1000)
const anyJson = fc.jsonValue({ maxDepth: 2 })
const claim = <T>(good: fc.Arbitrary<T>, ...bad: Array<fc.Arbitrary<unknown>>) =>
  fc.option(fc.oneof({ weight: 3, arbitrary: good }, ...bad.map((b) => ({ weight: 1, arbitrary: b }))), { nil: undefined, freq: 6 })

const headerArb = fc.record({
  alg: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('HS256', 'ES256') },
    { weight: 2, arbitrary: fc.constantFrom('none', 'None', 'NONE', 'nOnE', 'HS384', 'HS512', 'RS256', 'PS256', 'EdDSA', 'hs256', ' HS256', 'HS256 ', '', 'ES256K') },
    { weight: 1, arbitrary: anyJson },
  ),
  typ: fc.option(fc.oneof(fc.constantFrom('JWT', 'at+jwt', 'JOSE'), anyJson), { nil: undefined }),
  kid: fc.option(fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('../../../etc/passwd', "' OR 1=1 --", 'x'.repeat(3000)), anyJson), { nil: undefined }),
  jku: fc.option(fc.constantFrom('https://evil.example/jwks.json', 'http://127.0.0.1:1/jwks'), { nil: undefined }),
  x5u: fc.option(fc.constant('https://evil.example/cert.pem'), { nil: undefined }),
  jwk: fc.option(fc.constant({ kty: 'oct', k: b64url('attacker-key-attacker-key-attacker') }), { nil: undefined }),
  crit: fc.option(fc.oneof(fc.constant(['exp']), fc.constant(['b64']), fc.constant([]), anyJson), { nil: undefined }),
  b64: fc.option(fc.boolean(), { nil: undefined }),
}, { requiredKeys: ['alg'] })

const payloadArb = fc.record({
  exp: claim(fc.integer({ min: -600, max: 3600 }).map((d) => now() + d), fc.constantFrom('9999999999', 1e308, -1, 0.5, null, true, [now() + 300], { n: 1 }), fc.double()),
  nbf: claim(fc.integer({ min: -600, max: 600 }).map((d) => now() + d), fc.constantFrom('0', null, [], {})),
  iat: claim(fc.integer({ min: -600, max: 600 }).map((d) => now() + d), fc.constantFrom('now', null, {}, 1e308)),
  iss: claim(fc.constant(ISSUER), fc.constantFrom('https://evil.example', `${ISSUER}/`, 42, [ISSUER], null, '')),
  aud: claim(fc.constantFrom(AUD, [AUD], ['other', AUD]), fc.constantFrom('other', 42, [42], {}, null, [], [null], `${AUD} `)),
  sub: claim(fc.constantFrom('user-1', 'ümlaut', 'a b'), fc.constantFrom('', 42, {}, ['a'], null, 'a\nb', 'a\u0000b', 'x'.repeat(5000), 'a\rX-Auth-Subject: root')),
  client_id: claim(fc.constant('app-1'), fc.constantFrom(42, {}, null, '', 'c\nd')),
  azp: claim(fc.constant('azp-1'), fc.constantFrom(7, [])),
  scope: claim(fc.constantFrom('read', 'read write', ''), fc.constantFrom(['read'], 42, {}, 'a\u0000b', null, 'read\nwrite')),
  scp: claim(fc.constantFrom(['read'], ['read', 'write']), fc.constantFrom('read', [42], [{}], [null])),
  tier: claim(fc.constant('gold'), fc.constantFrom(1, {}, 'a\nb')),
  tenant: claim(fc.constant('acme'), fc.constantFrom(['acme'], 'other', 1, {}, null)),
  jti: claim(fc.string({ maxLength: 10 }), anyJson),
  extra: fc.option(anyJson, { nil: undefined }),
}, { requiredKeys: [] })

function tokenArb (ctx: Context): fc.Arbitrary<Token> {
  const signed = fc.record({
    header: headerArb,
    payload: payloadArb,
    signer: fc.constantFrom<Signer>('hs', 'hs', 'es', 'es', 'none', 'hs-other-secret', 'confusion', 'garbage', 'empty'),
    padding: fc.constantFrom(0, 0, 0, 2000, 12_000, 30_000),
  }).map(({ header, payload, signer, padding }) => {
    const body = padding > 0 ? { ...payload, pad: 'p'.repeat(padding) } : payload
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(body))}`
    return { text: `${input}.${signature(ctx, signer, input)}`, header, payload: body, signer, raw: false }
  })
  // Structurally broken tokens: random segments and counts, non-JSON, non-base64url.
  const segment = fc.oneof(
    fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'), maxLength: 40 }),
    anyJson.map((v) => b64url(JSON.stringify(v))),
    fc.constantFrom('e30', 'bnVsbA', 'W10', 'IiI', 'eyJhbGciOiJub25lIn0', '', '====', 'eyJ', '%7B%7D'),
  )
  const broken = fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => ({ text: parts.join('.'), header: undefined, payload: undefined, signer: 'garbage' as Signer, raw: true }))
  // Valid tokens for one of the providers, then at most one spoiler (a claim, the header or the signer).
  const nearValid = fc.record({
    es: fc.boolean(),
    sub: fc.constantFrom('user-1', 'ümlaut', 'svc a'),
    expIn: fc.integer({ min: 5, max: 3600 }),
    tenant: fc.constantFrom('acme', ['acme', 'x'], undefined),
    spoil: fc.option(fc.tuple(fc.constantFrom('exp', 'nbf', 'iat', 'iss', 'aud', 'sub', 'alg', 'crit', 'kid', 'jwk', 'signer'), anyJson), { nil: undefined }),
  }).map(({ es, sub, expIn, tenant, spoil }) => {
    const header: Record<string, unknown> = { alg: es ? 'ES256' : 'HS256', typ: 'JWT' }
    const payload: Record<string, unknown> = { iss: ISSUER, aud: AUD, sub, iat: now(), exp: now() + expIn, scope: 'read', ...(tenant !== undefined ? { tenant } : {}) }
    let signer: Signer = es ? 'es' : 'hs'
    if (spoil) {
      const [what, value] = spoil
      if (what === 'alg' || what === 'crit' || what === 'kid' || what === 'jwk') header[what] = value
      else if (what === 'signer') signer = es ? 'confusion' : 'hs-other-secret'
      else payload[what] = value
    }
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`
    return { text: `${input}.${signature(ctx, signer, input)}`, header, payload, signer, raw: false }
  })
  return fc.oneof({ weight: 3, arbitrary: signed }, { weight: 1, arbitrary: broken }, { weight: 3, arbitrary: nearValid })
}

/**
 * The oracle. With a positive `slackS` it says whether the provider MAY accept the token (every 200 needs it); with
 * a negative one, whether it MUST (every valid token not near a time boundary passes).
 */
function acceptable (token: Token, route: 'hs' | 'es' | 'scoped', slackS: number): boolean {
  if (token.raw) return false
  const header = token.header as Record<string, unknown>
  const p = token.payload as Record<string, unknown>
  const t = now()
  const alg = route === 'es' ? 'ES256' : 'HS256'
  const signer: Signer = route === 'es' ? 'es' : 'hs'
  if (header.alg !== alg || token.signer !== signer) return false
  if (header.crit !== undefined || header.b64 !== undefined) return false
  if (typeof p.exp !== 'number' || !(p.exp > t - TOLERANCE_S - slackS)) return false
  if (p.nbf !== undefined && !(typeof p.nbf === 'number' && p.nbf <= t + TOLERANCE_S + slackS)) return false
  if (p.iat !== undefined && !(typeof p.iat === 'number' && p.iat <= t + TOLERANCE_S + slackS)) return false
  if (route !== 'es' && p.iss !== ISSUER) return false
  if (!(p.aud === AUD || (Array.isArray(p.aud) && p.aud.includes(AUD)))) return false
  const subject = p.sub ?? p.client_id ?? p.azp
  if (p.sub !== undefined && typeof p.sub !== 'string') return false
  if (typeof subject !== 'string' || subject === '' || /[\u0000-\u001f\u007f]/.test(subject)) return false
  if (route === 'scoped' && p.tenant !== 'acme' && !(Array.isArray(p.tenant) && p.tenant.includes('acme'))) return false
  return true
}

async function send (gw: TestGateway, target: string, authorization: string): Promise<ParsedResponse> {
  const port = portOf(gw.url)
  const head = `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: ${authorization}\r\nConnection: close\r\n\r\n`
  const result = await exchange(port, Buffer.from(head, 'latin1'), { timeoutMs: 10_000 })
  const res = result.responses.find((r) => r.status >= 200)
  if (!res) throw new Error(`no answer (timed out: ${result.timedOut}, closed: ${result.closed})`)
  return res
}

test('random, hostile and mistyped tokens: never a 5xx, and a 200 only for a token signed by the key with valid claims', async (t) => {
  t.timeout(120_000)
  const ctx = t.context
  let accepted = 0
  await checkProperty(t, fc.asyncProperty(tokenArb(ctx), fc.constantFrom<'hs' | 'es' | 'scoped'>('hs', 'es', 'scoped'), async (token, route) => {
    const res = await send(ctx.gw, `/${route}/x`, `Bearer ${token.text}`)
    const text = res.body.toString('utf8')
    if (res.status >= 500) throw new Error(`status ${res.status}: ${text.slice(0, 200)}`)
    if (![200, 400, 401, 403, 431].includes(res.status)) throw new Error(`unexpected status ${res.status}`)
    if (res.status === 401) {
      const challenge = res.headers['www-authenticate']?.[0] ?? ''
      // RFC 6750 §3.1 wants error="invalid_token" once a token was sent. The chain's own refusal of an identity
      // with control characters (a claim such as tier: "a\nb") names no method and sends the bare challenge.
      const bare = /identity contains control characters/.test(text)
      if (!(bare ? /^Bearer realm="authgate"/ : /^Bearer realm="authgate", error="invalid_token"/).test(challenge)) throw new Error(`401 challenge ${JSON.stringify(challenge)}`)
      if (text.includes(token.text.slice(0, 40)) && token.text.length >= 40) throw new Error('the 401 detail echoes the token')
    }
    if (res.status === 200) {
      if (!acceptable(token, route, 3)) throw new Error('a token that must be refused was accepted')
      accepted++
      const seen = (JSON.parse(text) as { headers: Record<string, string> }).headers
      if (seen.authorization !== undefined) throw new Error('the token was forwarded')
      const p = token.payload as Record<string, unknown>
      if (seen['x-auth-subject'] !== (p.sub ?? p.client_id ?? p.azp)) throw new Error(`subject ${JSON.stringify(seen['x-auth-subject'])}`)
    } else if (acceptable(token, route, -3) && route !== 'scoped' && res.status !== 431) {
      // The positive side: a well-signed token with valid claims passes (scoped may still be 403 on scopes).
      throw new Error(`a valid token was refused with ${res.status}: ${text.slice(0, 200)}`)
    }
  }), { numRuns: 700 })
  t.log(`${accepted} tokens accepted`)
  t.true(accepted > 10, 'the generator reaches valid tokens too')
})

test('arbitrary text after "Bearer " is refused with 400 or 401, never a 5xx', async (t) => {
  const ctx = t.context
  const text = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 200 })
  await checkProperty(t, fc.asyncProperty(text, fc.constantFrom('hs', 'es'), async (value, route) => {
    const res = await send(ctx.gw, `/${route}/x`, `Bearer ${value}`)
    if (res.status !== 401 && res.status !== 400) throw new Error(`status ${res.status}`)
  }), { numRuns: 300, seedOffset: 1 })
})

test('a token with alg "none" in any spelling, or HS256 signed with the ES256 public key, is 401; the ES256-signed twin is 200', async (t) => {
  const ctx = t.context
  const payload = { sub: 'user-1', aud: AUD, iat: now(), exp: now() + 300 }
  const make = (header: object, signer: Signer) => {
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`
    return `${input}.${signature(ctx, signer, input)}`
  }
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    for (const route of ['hs', 'es']) t.is((await send(ctx.gw, `/${route}/x`, `Bearer ${make({ alg }, 'none')}`)).status, 401, `${alg} on ${route}`)
  }
  t.is((await send(ctx.gw, '/es/x', `Bearer ${make({ alg: 'HS256' }, 'confusion')}`)).status, 401, 'algorithm confusion')
  t.is((await send(ctx.gw, '/es/x', `Bearer ${make({ alg: 'ES256' }, 'es')}`)).status, 200, 'the ES256 twin')
})
