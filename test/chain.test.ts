import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { Rejection, type Challenge } from '../gateway/errors.js'
import { challengesFor, formatChallenge, runChain, type ChainContext, type ChainRejection, type ChainResult, type Step } from '../gateway/pipeline/chain.js'
import type { Outcome, PolicyInstance } from '../policies/types.js'
import { jwt } from '../policies/jwt/index.js'
import { schema as jwtSchema, type JwtPolicyConfig } from '../policies/jwt/schema.js'
import { provider } from '../policies/jwt/fixtures/harness.js'
import { FakeClock, makeContext, makeDeps, withDefaults } from './helpers/policy-harness.js'
import { sign } from '../policies/jwt/fixtures/keys.js'

interface Context { secret: Buffer, clock: FakeClock, jwt: PolicyInstance }
const test = anyTest as TestFn<Context>

test.before(async (t) => {
  const secret = randomBytes(32)
  const clock = new FakeClock()
  const deps = makeDeps({ clock, config: { jwtProviders: { internal: provider({ secret: secret.toString('base64'), secretEncoding: 'base64', algorithms: ['HS256'], audience: 'internal' }) } } })
  t.context = { secret, clock, jwt: await jwt.create(withDefaults<JwtPolicyConfig>(jwtSchema, { provider: 'internal' }), deps) }
})

const API_KEY: Challenge = { scheme: 'ApiKey', params: { realm: 'authgate', header: 'X-API-Key' } }
const BEARER: Challenge = { scheme: 'Bearer', params: { realm: 'authgate' } }
const BAD_TOKEN: Challenge = { scheme: 'Bearer', params: { realm: 'authgate', error: 'invalid_token', error_description: 'bad signature' } }

/** A policy instance that always answers `outcome`, and counts its calls. */
function fixed (outcome: Outcome, challenge?: Challenge, credential?: string): PolicyInstance & { calls: number } {
  const instance = {
    calls: 0,
    ...(challenge ? { challenge } : {}),
    ...(credential ? { credential } : {}),
    evaluate () { instance.calls++; return outcome },
  }
  return instance
}

const keyPasses = () => fixed({ identity: { subject: 'key-client', client: 'key-client', scopes: ['read'], tier: 'free' } }, API_KEY)
const keyAbsent = () => fixed(Rejection.unauthenticated('missing_credentials', 'API key required', API_KEY), API_KEY)
const tokenPasses = () => fixed({ identity: { subject: 'user-1', client: 'app-1', scopes: ['write'] } }, BEARER)
const tokenInvalid = () => fixed(Rejection.unauthenticated('invalid_token', 'bad signature', BAD_TOKEN), BEARER)
const tokenAbsent = () => fixed(Rejection.unauthenticated('missing_credentials', 'bearer token required', BEARER), BEARER)

function anyOf (...members: Array<[string, PolicyInstance]>): Step {
  return { kind: 'anyOf', members: members.map(([key, instance]) => ({ key, instance })) }
}

function policy (key: string, instance: PolicyInstance, authenticates = true): Step {
  return { kind: 'policy', key, instance, authenticates }
}

async function run (steps: Step[], ctx: ChainContext = makeContext() as ChainContext): Promise<ChainResult | ChainRejection> {
  return await runChain(steps, ctx)
}

function passed (t: { fail: (m: string) => void }, outcome: ChainResult | ChainRejection): ChainResult {
  if ('rejection' in outcome) {
    t.fail(`rejected: ${outcome.rejection.status} ${outcome.rejection.code} ${outcome.rejection.detail}`)
    throw new Error('rejected')
  }
  return outcome
}

function refused (t: { fail: (m: string) => void }, outcome: ChainResult | ChainRejection): ChainRejection {
  if (!('rejection' in outcome)) {
    t.fail(`passed as ${outcome.identity.subject} (${outcome.identity.methods.join(',')})`)
    throw new Error('passed')
  }
  return outcome
}

// --- anyOf, order-free (issue 14 item 16) ---------------------------------------------------------------------

test('anyOf: a valid API key with an invalid bearer token is 401 in either order; the key alone passes', async (t) => {
  for (const order of ['key first', 'token first']) {
    const key = keyPasses()
    const token = tokenInvalid()
    const steps = [order === 'key first' ? anyOf(['apiKey', key], ['jwt', token]) : anyOf(['jwt', token], ['apiKey', key])]
    const outcome = refused(t, await run(steps))
    t.is(outcome.rejection.status, 401, order)
    t.is(outcome.rejection.code, 'invalid_token', order)
    t.is(outcome.by, token, order)
    t.is(outcome.byKey, 'jwt', order)
    // One challenge per method of the route, the refused token's own in its place (as before the change).
    t.deepEqual(challengesFor(steps, outcome).map(formatChallenge), order === 'key first'
      ? ['ApiKey realm="authgate", header="X-API-Key"', 'Bearer realm="authgate", error="invalid_token", error_description="bad signature"']
      : ['Bearer realm="authgate", error="invalid_token", error_description="bad signature"', 'ApiKey realm="authgate", header="X-API-Key"'], order)

    const alone = passed(t, await run([order === 'key first' ? anyOf(['apiKey', keyPasses()], ['jwt', tokenAbsent()]) : anyOf(['jwt', tokenAbsent()], ['apiKey', keyPasses()])]))
    t.like(alone.identity, { subject: 'key-client', client: 'key-client', methods: ['apiKey'] }, order)
  }
})

test('anyOf: two valid credentials of one caller: the identity is the first listed member\'s, and every member that passed is listed', async (t) => {
  const sameCaller = () => fixed({ identity: { subject: 'key-client', client: 'app-1', scopes: ['write'] } }, BEARER)
  const keyFirst = passed(t, await run([anyOf(['apiKey', keyPasses()], ['jwt', sameCaller()])]))
  t.like(keyFirst.identity, { subject: 'key-client', client: 'key-client', scopes: ['read'], tier: 'free' })
  t.deepEqual(keyFirst.identity.methods, ['apiKey', 'jwt'])
  const tokenFirst = passed(t, await run([anyOf(['jwt', sameCaller()], ['apiKey', keyPasses()])]))
  t.like(tokenFirst.identity, { subject: 'key-client', client: 'app-1', scopes: ['write'] })
  t.is(tokenFirst.identity.tier, undefined)
  t.deepEqual(tokenFirst.identity.methods, ['jwt', 'apiKey'])
})

test('anyOf: two valid credentials of different callers are 400 bad_request in either order; either alone passes (review F4)', async (t) => {
  for (const members of [[['apiKey', keyPasses()], ['jwt', tokenPasses()]], [['jwt', tokenPasses()], ['apiKey', keyPasses()]]] as Array<Array<[string, PolicyInstance]>>) {
    const outcome = await run([anyOf(...members)])
    t.true('rejection' in outcome)
    if ('rejection' in outcome) t.like(outcome.rejection, { status: 400, code: 'bad_request' })
  }
  t.like(passed(t, await run([anyOf(['apiKey', keyPasses()], ['jwt', tokenAbsent()])])).identity, { subject: 'key-client' })
  t.like(passed(t, await run([anyOf(['apiKey', keyAbsent()], ['jwt', tokenPasses()])])).identity, { subject: 'user-1' })
})

test('anyOf: a 429, a 400 or a fault of a member whose credential is present wins over a pass, in any order', async (t) => {
  const lockedOut = Rejection.tooManyRequests('too many failed attempts', { 'retry-after': '60' })
  for (const refusal of [lockedOut, Rejection.badRequest('only one Authorization header is allowed')]) {
    for (const order of ['pass first', 'refusal first']) {
      const other = fixed(refusal, { scheme: 'Basic', params: { realm: 'authgate', charset: 'UTF-8' } })
      const steps = [order === 'pass first' ? anyOf(['apiKey', keyPasses()], ['basic', other]) : anyOf(['basic', other], ['apiKey', keyPasses()])]
      const outcome = refused(t, await run(steps))
      t.is(outcome.rejection, refusal, order)
      t.is(outcome.byKey, 'basic', order)
    }
  }
  const failing: PolicyInstance = { evaluate () { throw new Error('store down') } }
  await t.throwsAsync(run([anyOf(['apiKey', keyPasses()], ['jwt', failing])]), { message: 'store down' })
})

test('anyOf: the first refusal in listed order decides, and members after it are not asked', async (t) => {
  const token = tokenInvalid()
  const basic = fixed(Rejection.tooManyRequests('too many failed attempts', { 'retry-after': '60' }))
  const key = keyPasses()
  const outcome = refused(t, await run([anyOf(['jwt', token], ['basic', basic], ['apiKey', key])]))
  t.is(outcome.byKey, 'jwt')
  t.is(outcome.rejection.code, 'invalid_token')
  t.is(basic.calls, 0)
  t.is(key.calls, 0)
})

test('anyOf: members that read the same credential are alternatives: a token one provider accepts passes', async (t) => {
  // Two JWT providers (or jwt and introspection) both read the bearer token: it is invalid only when none accepts it.
  const corp = fixed(Rejection.unauthenticated('invalid_token', 'bad signature', BAD_TOKEN), BEARER, 'bearer')
  const partner = fixed({ identity: { subject: 'partner-user', client: 'partner-app' } }, BEARER, 'bearer')
  const ok = passed(t, await run([anyOf(['jwt', corp], ['jwt', partner])]))
  t.like(ok.identity, { subject: 'partner-user', methods: ['jwt'] })
  const neither = refused(t, await run([anyOf(['jwt', corp], ['jwt', fixed(Rejection.unauthenticated('invalid_token', 'wrong audience', BAD_TOKEN), BEARER, 'bearer')])]))
  t.is(neither.by, corp)
  // A refused token still rejects next to another kind of credential that passed.
  const withKey = refused(t, await run([anyOf(['apiKey', keyPasses()], ['jwt', corp], ['jwt', fixed(Rejection.unauthenticated('invalid_token', 'wrong audience', BAD_TOKEN), BEARER, 'bearer')])]))
  t.is(withKey.by, corp)
})

test('anyOf: no credential at all is 401 missing_credentials with the first member\'s bare challenge', async (t) => {
  const outcome = refused(t, await run([anyOf(['apiKey', keyAbsent()], ['jwt', tokenAbsent()])]))
  t.is(outcome.rejection.code, 'missing_credentials')
  t.deepEqual(outcome.rejection.challenge, API_KEY)
})

test('anyOf: a member sees only what the steps before the group established', async (t) => {
  const seen: Array<string | undefined> = []
  const recorder = (subject: string): PolicyInstance => ({
    evaluate (ctx) { seen.push(ctx.identity.subject); return { identity: { subject } } },
  })
  const outcome = passed(t, await run([policy('mtls', fixed({ identity: { subject: 'cert', client: 'cert' } })), anyOf(['a', recorder('a')], ['b', recorder('a')])]))
  t.deepEqual(seen, ['cert', 'cert'])
  t.like(outcome.identity, { subject: 'a', client: 'cert', methods: ['mtls', 'a', 'b'] })
})

// --- JWT client (issue 14 item 17) ------------------------------------------------------------------------------

async function token (t: { context: Context }, claims: Record<string, unknown>): Promise<string> {
  return await sign(t.context.secret, { aud: 'internal', sub: 'user-1', ...claims }, t.context.clock.now())
}

function bearer (t: { context: Context }, value: string): ChainContext {
  return makeContext({ headers: [['authorization', `Bearer ${value}`]], clock: t.context.clock }) as ChainContext
}

const certificate = () => fixed({ identity: { subject: 'billing-service', client: 'billing-service' } })

test('mtls then a JWT without client_id or azp: the certificate\'s client stays, the subject is the token\'s', async (t) => {
  const bare = await token(t, {})
  const chained = passed(t, await run([policy('mtls', certificate()), policy('jwt', t.context.jwt)], bearer(t, bare)))
  t.like(chained.identity, { subject: 'user-1', client: 'billing-service' })
  t.deepEqual(chained.identity.methods, ['mtls', 'jwt'])
  // Alone, the same token's client falls back to its sub.
  const alone = passed(t, await run([policy('jwt', t.context.jwt)], bearer(t, bare)))
  t.like(alone.identity, { subject: 'user-1', client: 'user-1' })
  // A token that names its client still overrides the certificate's (the later step is the more specific).
  for (const claim of ['client_id', 'azp']) {
    const named = passed(t, await run([policy('mtls', certificate()), policy('jwt', t.context.jwt)], bearer(t, await token(t, { [claim]: 'app-1' }))))
    t.like(named.identity, { subject: 'user-1', client: 'app-1' }, claim)
  }
})

test('a JWT without client_id after a cached verification of the same token still keeps the earlier client', async (t) => {
  const bare = await token(t, { jti: 'cached' })
  // First alone (verified and cached with the sub fallback), then after mtls: the cache must not carry the fallback over.
  t.like(passed(t, await run([policy('jwt', t.context.jwt)], bearer(t, bare))).identity, { client: 'user-1' })
  t.like(passed(t, await run([policy('mtls', certificate()), policy('jwt', t.context.jwt)], bearer(t, bare))).identity, { client: 'billing-service' })
  t.like(passed(t, await run([policy('jwt', t.context.jwt)], bearer(t, bare))).identity, { client: 'user-1' })
})

// --- identity whitespace (issue 14 item 13) ---------------------------------------------------------------------

test('identity values with leading or trailing whitespace are 401; the same values trimmed, or with inner spaces, pass', async (t) => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['subject', { subject: ' admin ' }],
    ['subject', { subject: 'admin ' }],
    ['subject', { subject: '\u00a0admin' }],
    ['client', { client: ' billing' }],
    ['tier', { tier: 'gold ' }],
    ['scopes', { scopes: ['read', ' admin'] }],
  ]
  for (const [what, identity] of cases) {
    const outcome = refused(t, await run([policy('jwt', fixed({ identity: { subject: 'user-1', client: 'app-1', ...identity } }, BEARER))]))
    t.is(outcome.rejection.status, 401, `${what} ${JSON.stringify(identity)}`)
    t.is(outcome.rejection.code, 'invalid_credentials')
    t.regex(outcome.rejection.detail, /whitespace/)
  }
  const fine = passed(t, await run([policy('jwt', fixed({ identity: { subject: 'admin', client: 'billing app', tier: 'gold', scopes: ['read', 'admin'] } }, BEARER))]))
  t.like(fine.identity, { subject: 'admin', client: 'billing app', tier: 'gold' })
})

test('a JWT whose sub has surrounding spaces is refused by the chain; the trimmed sub passes', async (t) => {
  const outcome = refused(t, await run([policy('jwt', t.context.jwt)], bearer(t, await token(t, { sub: ' admin ' }))))
  t.is(outcome.rejection.status, 401)
  t.is(outcome.rejection.code, 'invalid_credentials')
  t.like(passed(t, await run([policy('jwt', t.context.jwt)], bearer(t, await token(t, { sub: 'admin' })))).identity, { subject: 'admin' })
})
