/**
 * Property-based tests of header parsing at the edge, through a running gateway (raw sockets: the values must
 * reach the parser exactly as generated). Seeds: FUZZ_SEED or the fixed default; a failure prints the seed and the
 * shrunk counterexample.
 *
 * - Authorization, every scheme and its weird spellings, once or twice, against apiKey, basic, jwt and an anyOf of
 *   the three: never a 5xx, only 200/400/401, and a 200 only when the request carried a valid credential for an
 *   accepted method; a 401 always carries a challenge.
 * - X-Forwarded-For / Forwarded / X-Real-IP from an untrusted peer never reach the upstream (replaced by the peer
 *   address); from a trusted proxy the peer is appended; any garbage is served, never a 5xx.
 * - Identity headers in any spelling of case, listed in Connection or not, never reach an upstream.
 */
import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import fc from 'fast-check'
import { SignJWT } from 'jose'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { scryptHash } from '../../policies/basic/users.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { checkProperty, exchange, portOf, type ParsedResponse } from './support.js'

interface Context {
  gw: TestGateway
  trusting: TestGateway
  key: string
  token: string
  password: string
  basic: string
}
const test = anyTest as TestFn<Context>

const USER = 'alice'

test.before(async (t) => {
  const { id, key } = newApiKey()
  const secret = randomBytes(32)
  const password = `pw-${randomBytes(6).toString('hex')}`
  const hash = await scryptHash(password, { N: 1024, r: 8, p: 1 }) // cheap: every wrong password is verified
  const token = await new SignJWT({ sub: 'jwt-user', aud: 'fuzz-api', scope: 'read' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime('1h').sign(secret)
  const basicPolicy = { basic: { allowInsecure: true, maxFailuresPerUser: 1_000_000, maxFailuresPerIp: 1_000_000 } }
  const gw = await startGateway({
    apiKeys: [{ id, hash: hashApiKey(key), client: 'key-client', scopes: ['read'] }],
    users: { inline: [{ username: USER, hash }] },
    jwtProviders: { hs: { secret: '${env:FUZZ_JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'fuzz-api' } },
    identity: { stripInbound: ['X-User-Id'] },
    routes: [
      { name: 'public', match: { path: '/public/**' }, upstream: 'demo', public: true },
      { name: 'key', match: { path: '/key/**' }, upstream: 'demo', policies: [{ apiKey: {} }] },
      { name: 'basic', match: { path: '/basic/**' }, upstream: 'demo', policies: [basicPolicy] },
      { name: 'jwt', match: { path: '/jwt/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'hs' } }] },
      { name: 'any', match: { path: '/any/**' }, upstream: 'demo', policies: [{ anyOf: [{ apiKey: {} }, { jwt: { provider: 'hs' } }, basicPolicy] }] },
    ],
  }, { env: { FUZZ_JWT_SECRET: secret.toString('base64') } })
  const trusting = await startGateway({
    trustProxies: ['127.0.0.0/8', '::1/128'],
    routes: [{ name: 'public', match: { path: '/public/**' }, upstream: 'demo', public: true }],
  })
  t.context = { gw, trusting, key, token, password, basic: Buffer.from(`${USER}:${password}`).toString('base64') }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.trusting?.close()
})

/** Sends GET `target` with the given header lines (name, value) exactly as generated. */
async function send (gw: TestGateway, target: string, headers: ReadonlyArray<readonly [string, string]>): Promise<ParsedResponse> {
  const port = portOf(gw.url)
  const lines = [`GET ${target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...headers.map(([n, v]) => `${n}: ${v}`), 'Connection: close']
  const result = await exchange(port, Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), { timeoutMs: 10_000 })
  const res = result.responses.find((r) => r.status >= 200)
  if (!res) throw new Error(`no answer (timed out: ${result.timedOut})`)
  return res
}

interface Echo { headers: Record<string, string | string[]> }
const echoOf = (res: ParsedResponse) => JSON.parse(res.body.toString('utf8')) as Echo

/** A header value a client can put on the wire: printable Latin-1 and tabs, no CR/LF/NUL. */
const fieldText = fc.string({ unit: fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.constant(0x09), fc.integer({ min: 0xa0, max: 0xff })).map((c) => String.fromCharCode(c)), maxLength: 80 })
const b64token = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/'), minLength: 1, maxLength: 60 }).chain((s) => fc.constantFrom(s, `${s}=`, `${s}==`))

/** Authorization values: the valid ones in odd spellings, near misses, and noise. */
function authorizationValue (ctx: Context): fc.Arbitrary<string> {
  const scheme = fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', 'basic', 'BASIC', 'ApiKey', 'Digest', 'Negotiate', 'Token', '', 'Bearer,', 'Basic:')
  const separator = fc.constantFrom(' ', '  ', '\t', '', ' \t')
  const basicPayload = fc.oneof(
    fc.constant(ctx.basic),
    fc.constant(`${ctx.basic}=`),
    fc.constant(ctx.basic.toLowerCase()),
    fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 })).map(([u, p]) => Buffer.from(`${u}:${p}`).toString('base64')),
    fc.constantFrom(USER, `${USER}:${ctx.password}`).map((s) => Buffer.from(s).toString('base64')),
    fc.constant(Buffer.from(`${USER}:${ctx.password}x`).toString('base64')),
    fc.constant(Buffer.from(`${USER}:${ctx.password}`, 'latin1').toString('base64url')),
    fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString('base64')),
    fc.constant('A'.repeat(6000)),
  )
  const credential = fc.oneof(
    fc.constant(ctx.token),
    fc.constant(`${ctx.token}x`),
    fc.constant(ctx.token.split('.').slice(0, 2).join('.') + '.'),
    fc.constant(ctx.key),
    basicPayload,
    b64token,
    fieldText,
  )
  return fc.oneof(
    fc.tuple(scheme, separator, credential, fc.constantFrom('', ' ', '\t', ' x')).map(([s, sep, c, tail]) => `${s}${sep}${c}${tail}`),
    fieldText,
  )
}

/** What a 200 may be based on: the exact credential of an accepted method appears in the request. */
function carriesValid (ctx: Context, route: string, headers: ReadonlyArray<readonly [string, string]>): boolean {
  // Field values reach the gateway without their leading and trailing whitespace (RFC 9110 §5.5 OWS).
  const auth = headers.filter(([n]) => n.toLowerCase() === 'authorization').map(([, v]) => trimOws(v))
  const keys = headers.filter(([n]) => n.toLowerCase() === 'x-api-key').map(([, v]) => trimOws(v))
  const oneAuth = auth.length === 1 ? auth[0]! : undefined
  const bearerOk = oneAuth !== undefined && /^bearer +/i.test(oneAuth) && oneAuth.replace(/^bearer +/i, '') === ctx.token
  const basicOk = oneAuth !== undefined && /^basic[ \t]+/i.test(oneAuth) &&
    Buffer.from(oneAuth.replace(/^basic[ \t]+/i, ''), 'base64').toString('utf8') === `${USER}:${ctx.password}`
  const keyOk = keys.length === 1 && keys[0] === ctx.key
  switch (route) {
    case 'key': return keyOk
    case 'basic': return basicOk
    case 'jwt': return bearerOk
    default: return keyOk || bearerOk || basicOk
  }
}

function trimOws (value: string): string {
  return value.replace(/^[ \t]+|[ \t]+$/g, '')
}

function assertAnswer (res: ParsedResponse): string | undefined {
  if (res.status >= 500) return `status ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`
  if (![200, 400, 401, 431].includes(res.status)) return `unexpected status ${res.status}`
  if (res.status === 401 && (res.headers['www-authenticate'] ?? []).length === 0) return '401 without WWW-Authenticate'
  if (res.status >= 400 && res.headers['content-type']?.[0] !== 'application/problem+json') return `${res.status} is not problem+json`
  return undefined
}

test('any Authorization value, once or twice, on any method: never a 5xx, and a 200 only with a valid credential', async (t) => {
  t.timeout(120_000)
  const ctx = t.context
  const value = authorizationValue(ctx)
  const headerSet = fc.tuple(
    fc.array(fc.tuple(fc.constantFrom('Authorization', 'authorization', 'AUTHORIZATION'), value), { minLength: 0, maxLength: 2 }),
    fc.option(fc.constantFrom(ctx.key, ` ${ctx.key} `, `${ctx.key}x`, 'agk_nope_x'), { nil: undefined }),
  ).map(([auths, key]) => [...auths, ...(key !== undefined ? [['X-API-Key', key] as const] : [])] as Array<readonly [string, string]>)

  await checkProperty(t, fc.asyncProperty(fc.constantFrom('key', 'basic', 'jwt', 'any'), headerSet, async (route, headers) => {
    const res = await send(ctx.gw, `/${route}/x`, headers)
    const problem = assertAnswer(res)
    if (problem) throw new Error(problem)
    if (res.status === 200 && !carriesValid(ctx, route, headers)) throw new Error('a request without a valid credential was forwarded')
    if (res.status === 200) {
      const seen = echoOf(res).headers
      if (seen['x-auth-methods'] === undefined) throw new Error('forwarded without an identity')
      if (route !== 'key' && seen.authorization !== undefined) throw new Error('the consumed Authorization header was forwarded')
    }
  }), { numRuns: 400 })
})

test('the valid credential in each accepted spelling is 200 (the positive twin of the property above)', async (t) => {
  const ctx = t.context
  const cases: Array<[string, Array<[string, string]>]> = [
    ['key', [['X-API-Key', ctx.key]]],
    ['key', [['x-api-key', ` ${ctx.key}\t`]]],
    ['basic', [['Authorization', `Basic ${ctx.basic}`]]],
    ['basic', [['authorization', `basic ${ctx.basic}`]]],
    ['jwt', [['Authorization', `Bearer ${ctx.token}`]]],
    ['jwt', [['Authorization', `bearer  ${ctx.token}`]]],
    ['any', [['Authorization', `Bearer ${ctx.token}`]]],
    ['any', [['Authorization', `Basic ${ctx.basic}`]]],
    ['any', [['X-API-Key', ctx.key]]],
  ]
  for (const [route, headers] of cases) {
    const res = await send(ctx.gw, `/${route}/x`, headers)
    t.is(res.status, 200, `${route} ${JSON.stringify(headers.map(([n]) => n))}`)
  }
  // And the negative twins: two valid Authorization headers are refused, not "first one wins".
  t.is((await send(ctx.gw, '/jwt/x', [['Authorization', `Bearer ${ctx.token}`], ['Authorization', `Bearer ${ctx.token}`]])).status, 400)
  t.is((await send(ctx.gw, '/basic/x', [['Authorization', `Basic ${ctx.basic}`], ['Authorization', `Basic ${ctx.basic}`]])).status, 400)
})

/** X-Forwarded-For values: addresses, ports, brackets, garbage, empty items. */
const forwardedItem = fc.oneof(
  fc.ipV4(), fc.ipV6(), fc.constantFrom('unknown', '', ' ', '_hidden', '[::1]:80', '1.2.3.4:5678', '127.0.0.1', '::ffff:10.0.0.1', 'for=1.2.3.4', '999.1.1.1'),
  fc.string({ maxLength: 20 }).filter((s) => !/[\r\n\u0000]/.test(s) && [...s].every((c) => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) < 0x7f)),
)
const forwardedHeaders = fc.array(fc.tuple(
  fc.constantFrom('X-Forwarded-For', 'x-forwarded-for', 'Forwarded', 'X-Real-IP', 'X-Forwarded-Host', 'X-Forwarded-Proto'),
  fc.array(forwardedItem, { minLength: 1, maxLength: 5 }).chain((items) => fc.constantFrom(items.join(','), items.join(', '), items.join(' ,'))),
), { maxLength: 4 })

test('forwarding headers from an untrusted peer are replaced by the peer address, whatever they say', async (t) => {
  const { gw } = t.context
  await checkProperty(t, fc.asyncProperty(forwardedHeaders, async (headers) => {
    const res = await send(gw, '/public/x', headers)
    if (res.status !== 200) throw new Error(`status ${res.status}`)
    const seen = echoOf(res).headers
    if (seen['x-forwarded-for'] !== '127.0.0.1') throw new Error(`X-Forwarded-For ${JSON.stringify(seen['x-forwarded-for'])}`)
    if (seen.forwarded !== undefined || seen['x-real-ip'] !== undefined) throw new Error('Forwarded/X-Real-IP passed through')
    if (seen['x-forwarded-proto'] !== 'http') throw new Error(`X-Forwarded-Proto ${JSON.stringify(seen['x-forwarded-proto'])}`)
    if (seen['x-forwarded-host'] !== `127.0.0.1:${portOf(gw.url)}`) throw new Error(`X-Forwarded-Host ${JSON.stringify(seen['x-forwarded-host'])}`)
  }), { numRuns: 200, seedOffset: 1 })
})

test('from a trusted proxy, X-Forwarded-For is kept and the peer appended; garbage in it is served, never a 5xx', async (t) => {
  const { trusting } = t.context
  await checkProperty(t, fc.asyncProperty(forwardedHeaders, async (headers) => {
    const res = await send(trusting, '/public/x', headers)
    if (res.status !== 200) throw new Error(`status ${res.status}`)
    const seen = echoOf(res).headers
    // Node trims each field value and joins repeated X-Forwarded-For fields with ", " (RFC 9110 §5.3).
    const sent = headers.filter(([n]) => n.toLowerCase() === 'x-forwarded-for').map(([, v]) => trimOws(v))
    const prior = sent.join(', ')
    const expected = prior ? `${prior}, 127.0.0.1` : '127.0.0.1'
    if (seen['x-forwarded-for'] !== expected) throw new Error(`X-Forwarded-For ${JSON.stringify(seen['x-forwarded-for'])}, expected ${JSON.stringify(expected)}`)
  }), { numRuns: 200, seedOffset: 2 })
})

const IDENTITY_NAMES = ['x-auth-subject', 'x-auth-client', 'x-auth-methods', 'x-auth-scopes', 'x-auth-tier', 'x-auth-identity', 'x-forwarded-client-cert', 'x-user-id']

test('identity headers in any case, listed in Connection or not, never reach the upstream of a public or keyed route', async (t) => {
  const ctx = t.context
  const spelled = fc.constantFrom(...IDENTITY_NAMES).chain((name) =>
    fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((upper) => [...name].map((c, i) => upper[i] ? c.toUpperCase() : c).join('')))
  await checkProperty(t, fc.asyncProperty(
    fc.array(spelled, { minLength: 1, maxLength: 4 }), fc.boolean(), fc.boolean(), fc.constantFrom('public', 'key'),
    async (names, listInConnection, keyed, route) => {
      const headers: Array<[string, string]> = names.map((n, i) => [n, `spoofed-${i}`])
      if (listInConnection) headers.push(['Connection', `keep-alive, ${names.join(', ')}`])
      if (keyed) headers.push(['X-API-Key', ctx.key])
      const res = await send(ctx.gw, `/${route}/x`, headers)
      if (route === 'key' && !keyed) { if (res.status !== 401) throw new Error(`status ${res.status}`); return }
      if (res.status !== 200) throw new Error(`status ${res.status}`)
      const seen = echoOf(res).headers
      for (const [name, value] of Object.entries(seen)) {
        if (String(value).includes('spoofed')) throw new Error(`${name} reached the upstream`)
      }
      if (route === 'key' && seen['x-auth-subject'] !== 'key-client') throw new Error('the verified identity is missing')
    }), { numRuns: 200, seedOffset: 3 })
})
