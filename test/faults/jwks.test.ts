/**
 * JWKS faults through a running gateway: an IdP whose JWKS endpoint fails, hangs, or goes away after keys were
 * cached. Tokens are refused (fail closed) within the provider's timeout, concurrent requests share one fetch and
 * none waits longer, cached keys are served for the TTL and the stale grace and then refused, and the gateway
 * recovers without a restart once the IdP answers again.
 */
import { once } from 'node:events'
import type { Socket } from 'node:net'
import anyTest, { type TestFn } from 'ava'
import { makeKey, sign, startJwksServer, type JwksServer, type TestKey } from '../../policies/jwt/fixtures/keys.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { until } from '../helpers/until.js'

interface Context { key: TestKey }
const test = anyTest as TestFn<Context>

const ISSUER = 'https://issuer.test'
const JWKS_TIMEOUT_MS = 1000
/** Scheduling slack on a busy CI machine (the suite runs files in parallel): bounded is the point, not fast. */
const SLACK_MS = 3000

test.before(async (t) => {
  t.context = { key: await makeKey('ES256') }
})

function gatewayConfig (jwks: JwksServer, extra: Record<string, unknown> = {}) {
  return {
    jwtProviders: {
      corp: { issuer: ISSUER, jwksUri: jwks.jwksUri, audience: 'api', algorithms: ['ES256'], timeout: `${JWKS_TIMEOUT_MS}ms`, jwksCooldown: '1s', ...extra },
    },
    routes: [{ name: 'api', match: { path: '/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'corp' } }] }],
  }
}

async function token (key: TestKey): Promise<string> {
  return await sign(key, { iss: ISSUER, aud: 'api', sub: 'user-1' }, Date.now())
}

/** n concurrent requests with the token; returns their statuses and the slowest answer time. */
async function burst (gw: TestGateway, bearer: string, n: number): Promise<{ statuses: number[], slowestMs: number }> {
  const started = performance.now()
  const times: number[] = []
  const statuses = await Promise.all(Array.from({ length: n }, async () => {
    const res = await gw.fetch('/x', { headers: { authorization: `Bearer ${bearer}` } })
    await res.arrayBuffer()
    times.push(performance.now() - started)
    return res.status
  }))
  return { statuses, slowestMs: Math.max(...times) }
}

test('a failing JWKS endpoint: tokens are refused at once (never passed), and accepted once the IdP answers again', async (t) => {
  const jwks = await startJwksServer([t.context.key.publicJwk])
  jwks.mode = 'fail'
  const gw = await startGateway(gatewayConfig(jwks))
  try {
    const bearer = await token(t.context.key)
    const down = await burst(gw, bearer, 30)
    t.deepEqual([...new Set(down.statuses)], [401])
    t.true(down.slowestMs < JWKS_TIMEOUT_MS + SLACK_MS, `slowest ${Math.round(down.slowestMs)} ms`)
    const res = await gw.fetch('/x', { headers: { authorization: `Bearer ${bearer}` } })
    t.regex(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
    t.like(await res.json(), { error: 'invalid_token', detail: 'signing keys unavailable' })
    // Recovery without a restart: failures are not cached as answers (retried after the 1 s cooldown).
    jwks.mode = 'ok'
    t.true(await until(async () => (await gw.fetch('/x', { headers: { authorization: `Bearer ${bearer}` } })).status === 200, { timeoutMs: 8000, intervalMs: 50, message: '200 again after the JWKS recovered' }))
  } finally {
    await gw.close()
    await jwks.close()
  }
})

test('a JWKS endpoint that never answers: 40 concurrent requests are all refused within the JWKS timeout, sharing one fetch', async (t) => {
  const jwks = await startJwksServer([t.context.key.publicJwk])
  jwks.mode = 'hang'
  const gw = await startGateway(gatewayConfig(jwks))
  try {
    const bearer = await token(t.context.key)
    const result = await burst(gw, bearer, 40)
    t.deepEqual([...new Set(result.statuses)], [401])
    t.true(result.slowestMs >= JWKS_TIMEOUT_MS - 50, `slowest ${Math.round(result.slowestMs)} ms`)
    t.true(result.slowestMs < JWKS_TIMEOUT_MS + SLACK_MS, `slowest ${Math.round(result.slowestMs)} ms`)
    t.true(jwks.count() <= 2, `${jwks.count()} JWKS requests for 40 token requests`)
  } finally {
    await gw.close()
    await jwks.close()
  }
})

test('keys cached before the IdP went away serve for the TTL and the stale grace, then tokens are refused; the IdP back means accepted again', async (t) => {
  const jwks = await startJwksServer([t.context.key.publicJwk])
  let clock = Date.now()
  // A long fetch timeout here: a stale key served at once is then clearly not one that waited for the refresh.
  const gw = await startGateway(gatewayConfig(jwks, { jwksCacheTtl: '60s', jwksStaleGrace: '120s', timeout: '4s' }), { now: () => clock })
  try {
    // A new token each time: a token verified once is cached on its own (bounded by its exp and 5 minutes).
    let n = 0
    const ok = async () => {
      const bearer = await sign(t.context.key, { iss: ISSUER, aud: 'api', sub: 'user-1', jti: `t-${n++}` }, Date.now())
      const res = await gw.fetch('/x', { headers: { authorization: `Bearer ${bearer}` } })
      await res.arrayBuffer()
      return res.status
    }
    t.is(await ok(), 200)
    jwks.mode = 'hang'
    clock += 30_000 // inside the TTL
    t.is(await ok(), 200)
    // The next JWKS request is the background refresh: its connection closes when the gateway gives up on it.
    const refresh = new Promise<Socket>((resolve) => jwks.server.once('request', (req: { socket: Socket }) => resolve(req.socket)))
    clock += 60_000 // past the TTL, inside the stale grace: served while a background refresh hangs
    const started = performance.now()
    t.is(await ok(), 200)
    t.true(performance.now() - started < 3000, 'a stale key is served without waiting for the 4 s refresh')
    clock += 120_000 // past TTL + grace: fail closed, within the fetch timeout
    const socket = await refresh
    if (!socket.closed) await once(socket, 'close', { signal: AbortSignal.timeout(4000 + SLACK_MS) }) // the background refresh gives up
    const closedAt = performance.now()
    t.is(await ok(), 401)
    t.true(performance.now() - closedAt < 4000 + SLACK_MS, `refused after ${Math.round(performance.now() - closedAt)} ms`)
    jwks.mode = 'ok'
    clock += 5_000 // past the failure retry delay
    t.true(await until(async () => await ok() === 200, { timeoutMs: 8000, intervalMs: 50, message: '200 again after the JWKS recovered' }))
  } finally {
    await gw.close()
    await jwks.close()
  }
})

test('a JWKS endpoint that is not running at all: tokens are refused quickly, never passed', async (t) => {
  const jwks = await startJwksServer([t.context.key.publicJwk])
  await jwks.close() // the port is now closed: connection refused
  const gw = await startGateway(gatewayConfig(jwks))
  try {
    const result = await burst(gw, await token(t.context.key), 20)
    t.deepEqual([...new Set(result.statuses)], [401])
    t.true(result.slowestMs < JWKS_TIMEOUT_MS + SLACK_MS, `slowest ${Math.round(result.slowestMs)} ms`)
  } finally {
    await gw.close()
  }
})
