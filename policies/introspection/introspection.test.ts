import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { isRejection, type Rejection } from '../../gateway/errors.js'
import type { Outcome } from '../types.js'
import { introspection, type Introspector } from './index.js'
import { schema, type IntrospectionConfig } from './schema.js'
import { FakeClock, listen, makeContext, makeDeps, withDefaults, type TestDeps, type TestServer } from '../../test/helpers/policy-harness.js'
import { bearer } from '../jwt/fixtures/harness.js'

/** A loopback RFC 7662 endpoint: answers per token from `answers`, records every request it got. */
interface Endpoint extends TestServer {
  answers: Map<string, Record<string, unknown>>
  mode: 'ok' | 'fail' | 'hang' | 'huge'
  requests: Array<{ authorization: string | undefined, form: URLSearchParams }>
}

async function startEndpoint (): Promise<Endpoint> {
  const state = { mode: 'ok' as Endpoint['mode'] }
  const answers = new Map<string, Record<string, unknown>>()
  const requests: Endpoint['requests'] = []
  const server = await listen((req, res) => {
    let text = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => { text += chunk })
    req.on('end', () => {
      const form = new URLSearchParams(text)
      requests.push({ authorization: req.headers.authorization, form })
      if (state.mode === 'hang') return
      if (state.mode === 'fail') return void res.writeHead(500).end('{"active": true}')
      if (state.mode === 'huge') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ active: true, sub: 'x', pad: 'x'.repeat(200_000) }))
      const answer = answers.get(form.get('token') ?? '') ?? { active: false }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer))
    })
  })
  return {
    ...server, answers, requests,
    get mode () { return state.mode },
    set mode (value) { state.mode = value },
  }
}

interface Context {
  endpoint: Endpoint
  clock: FakeClock
  deps: TestDeps
  secret: string
}
const test = anyTest as TestFn<Context>

test.beforeEach(async (t) => {
  const clock = new FakeClock()
  t.context = { endpoint: await startEndpoint(), clock, deps: makeDeps({ clock }), secret: `s3cret:${randomBytes(8).toString('hex')} +&=` }
})
test.afterEach.always(async (t) => { await t.context.endpoint?.close() })

async function policyFor (t: { context: Context }, extra: Partial<IntrospectionConfig> = {}) {
  const config = withDefaults<IntrospectionConfig>(schema, {
    endpoint: `${t.context.endpoint.url}/introspect`, clientId: 'gateway', clientSecret: t.context.secret, ...extra,
  })
  return await introspection.create(config, t.context.deps)
}

function newToken (): string {
  return randomBytes(24).toString('base64url')
}

function active (t: { context: Context }, claims: Record<string, unknown> = {}) {
  const seconds = Math.floor(t.context.clock.now() / 1000)
  return { active: true, client_id: 'app-1', scope: 'orders:read orders:write', exp: seconds + 3600, iat: seconds, token_type: 'Bearer', ...claims }
}

function detail (outcome: Outcome): string | undefined {
  return isRejection(outcome) ? (outcome as Rejection).detail : undefined
}

test('an active token is accepted with identity from the answer; an unknown token is refused as not active', async (t) => {
  const policy = await policyFor(t)
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t, { sub: 'user-7', tier: 'gold' }))
  const outcome = await policy.evaluate(bearer(token, t.context.clock))
  t.false(isRejection(outcome))
  t.like((outcome as { identity: object }).identity, { subject: 'user-7', client: 'app-1', scopes: ['orders:read', 'orders:write'], tier: 'gold' })
  const refused = await policy.evaluate(bearer(newToken(), t.context.clock))
  t.like(refused, { status: 401, code: 'invalid_token', detail: 'token not active' })
  t.deepEqual((refused as Rejection).challenge, { scheme: 'Bearer', params: { realm: 'authgate', error: 'invalid_token', error_description: 'token not active' } })
})

test('an answer without client_id keeps the client of an earlier step (mtls); alone, the subject is the client', async (t) => {
  const policy = await policyFor(t)
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t, { sub: 'user-7', client_id: undefined }))
  const afterCert = { ...bearer(token, t.context.clock), identity: { subject: 'billing-service', client: 'billing-service' } }
  const kept = await policy.evaluate(afterCert)
  t.false(isRejection(kept))
  t.is((kept as { identity: { client?: string } }).identity.client, undefined)
  t.like((kept as { identity: object }).identity, { subject: 'user-7' })
  // The same cached answer, alone: the subject is the client.
  t.like((await policy.evaluate(bearer(token, t.context.clock)) as { identity: object }).identity, { subject: 'user-7', client: 'user-7' })
  // An answer that names its client (RFC 7662 client_id) overrides the earlier one.
  const named = newToken()
  t.context.endpoint.answers.set(named, active(t, { sub: 'user-7' }))
  t.like((await policy.evaluate({ ...bearer(named, t.context.clock), identity: { client: 'billing-service' } }) as { identity: object }).identity, { client: 'app-1' })
})

test('client_secret_basic sends form-encoded credentials in Basic; client_secret_post sends them as form fields', async (t) => {
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t))
  await (await policyFor(t)).evaluate(bearer(token, t.context.clock))
  const basic = t.context.endpoint.requests[0]!
  const decoded = Buffer.from(basic.authorization!.replace(/^Basic /, ''), 'base64').toString()
  const [id, secret] = decoded.split(':').map((part) => decodeURIComponent(part.replace(/\+/g, ' ')))
  t.is(id, 'gateway')
  t.is(secret, t.context.secret)
  t.is(basic.form.get('token'), token)
  t.is(basic.form.get('token_type_hint'), 'access_token')
  t.false(basic.form.has('client_secret'))

  const post = await policyFor(t, { auth: 'client_secret_post' })
  const other = newToken()
  t.context.endpoint.answers.set(other, active(t))
  t.false(isRejection(await post.evaluate(bearer(other, t.context.clock))))
  const form = t.context.endpoint.requests[1]!
  t.is(form.authorization, undefined)
  t.is(form.form.get('client_id'), 'gateway')
  t.is(form.form.get('client_secret'), t.context.secret)
})

test('an active answer is reused until cacheTtl, then asked again', async (t) => {
  const policy = await policyFor(t, { cacheTtl: '60s' })
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t))
  for (let i = 0; i < 3; i++) t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), undefined)
  t.is(t.context.endpoint.requests.length, 1)
  t.context.clock.advance(59_000)
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), undefined)
  t.is(t.context.endpoint.requests.length, 1)
  t.context.clock.advance(1_000)
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), undefined)
  t.is(t.context.endpoint.requests.length, 2)
})

test('an active answer is never reused past the token exp', async (t) => {
  const policy = await policyFor(t, { cacheTtl: '10m' })
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t, { exp: Math.floor(t.context.clock.now() / 1000) + 10 }))
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), undefined)
  t.context.clock.advance(11_000)
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), 'token expired')
  t.is(t.context.endpoint.requests.length, 2)
})

test('an inactive answer is reused for negativeTtl only, so a token that becomes valid is soon accepted', async (t) => {
  const policy = await policyFor(t, { negativeTtl: '5s' })
  const token = newToken()
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), 'token not active')
  t.context.endpoint.answers.set(token, active(t))
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), 'token not active')
  t.is(t.context.endpoint.requests.length, 1)
  t.context.clock.advance(5_000)
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), undefined)
  t.is(t.context.endpoint.requests.length, 2)
})

test('a 5xx, a timeout or an oversized answer is refused and never cached; the endpoint answering again is accepted', async (t) => {
  const policy = await policyFor(t, { timeout: '1s', maxResponseBytes: '64KiB' })
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t))
  for (const mode of ['fail', 'hang', 'huge'] as const) {
    t.context.endpoint.mode = mode
    const outcome = await policy.evaluate(bearer(token, t.context.clock))
    t.like(outcome, { status: 401, code: 'invalid_token', detail: 'token introspection unavailable' }, mode)
  }
  t.context.endpoint.mode = 'ok'
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), undefined)
  t.is(t.context.endpoint.requests.length, 4)
  const logs = t.context.deps.logged()
  t.false(logs.includes(token))
  t.false(logs.includes(t.context.secret))
})

test('refresh tokens, sender-constrained tokens and active answers that are not `true` are refused', async (t) => {
  const policy = await policyFor(t)
  const cases: Array<Record<string, unknown>> = [
    active(t, { token_type: 'refresh_token' }),
    active(t, { token_type: 'DPoP' }),
    active(t, { cnf: { 'x5t#S256': 'abc' } }),
    { ...active(t), active: 'true' },
    { ...active(t), active: 1 },
    { active: true },
  ]
  for (const answer of cases) {
    const token = newToken()
    t.context.endpoint.answers.set(token, answer)
    t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), 'token not active', JSON.stringify(answer))
  }
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t, { token_type: undefined }))
  t.is(detail(await policy.evaluate(bearer(token, t.context.clock))), undefined)
})

test('an audience is checked on every call, cached answer or not', async (t) => {
  const orders = await policyFor(t, { audience: 'orders-api' })
  const billing = await policyFor(t, { audience: ['billing-api'] })
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t, { aud: ['orders-api'] }))
  t.is(detail(await orders.evaluate(bearer(token, t.context.clock))), undefined)
  t.is(detail(await billing.evaluate(bearer(token, t.context.clock))), 'wrong audience')
  t.is(t.context.endpoint.requests.length, 1)
  const noAud = newToken()
  t.context.endpoint.answers.set(noAud, active(t))
  t.is(detail(await orders.evaluate(bearer(noAud, t.context.clock))), 'wrong audience')
})

test('concurrent requests with one token share one introspection request', async (t) => {
  const policy = await policyFor(t)
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t))
  const outcomes = await Promise.all(Array.from({ length: 50 }, () => policy.evaluate(bearer(token, t.context.clock))))
  t.true(outcomes.every((o) => !isRejection(o)))
  t.is(t.context.endpoint.requests.length, 1)
})

test('bearer rules apply: no token is missing_credentials, a query token or two headers are 400', async (t) => {
  const policy = await policyFor(t)
  const token = newToken()
  t.like(await policy.evaluate(makeContext({ clock: t.context.clock })), { status: 401, code: 'missing_credentials' })
  t.like(await policy.evaluate(makeContext({ query: `access_token=${token}`, clock: t.context.clock })), { status: 400, code: 'bad_request' })
  t.like(await policy.evaluate(makeContext({ headers: [['authorization', `Bearer ${token}`], ['authorization', `Bearer ${token}`]], clock: t.context.clock })), { status: 400, code: 'bad_request' })
  t.is(t.context.endpoint.requests.length, 0)
  t.deepEqual(policy.credentialHeaders, ['authorization'])
  t.deepEqual((await policyFor(t, { passthrough: true })).credentialHeaders, [])
})

test('routes with the same endpoint and client share one cache', async (t) => {
  const a = await policyFor(t)
  const b = await policyFor(t, { audience: 'x' })
  const token = newToken()
  t.context.endpoint.answers.set(token, active(t, { aud: 'x' }))
  await a.evaluate(bearer(token, t.context.clock))
  await b.evaluate(bearer(token, t.context.clock))
  t.is(t.context.endpoint.requests.length, 1)
  const shared = t.context.deps.shared<Introspector>(`introspection:${JSON.stringify([`${t.context.endpoint.url}/introspect`, 'gateway',
    (await import('node:crypto')).createHash('sha256').update(t.context.secret).digest('hex'), 'client_secret_basic', '60s', '5s', '5s', '64KiB'])}`, () => { throw new Error('not shared') })
  t.deepEqual(shared.stats, { requests: 1, hits: 1 })
})

test('check refuses a plain-http endpoint off loopback', (t) => {
  const issues = introspection.check!(withDefaults<IntrospectionConfig>(schema, { endpoint: 'http://idp.example.com/introspect', clientId: 'a', clientSecret: 'b' }), { config: {}, route: t.context.deps.route })
  t.like(issues[0], { severity: 'error', path: ['endpoint'] })
  t.deepEqual(introspection.check!(withDefaults<IntrospectionConfig>(schema, { endpoint: 'https://idp.example.com/introspect', clientId: 'a', clientSecret: 'b' }), { config: {}, route: t.context.deps.route }), [])
})
