/**
 * Sessions on two gateway instances sharing one Redis, against oidc-provider rotating refresh tokens: the refresh race
 * (single flight across instances, with a lease renewed while the provider is slow), reuse and revocation ending the
 * session, a provider that cannot be reached, and back-channel logout reaching both instances.
 */
import { createHash, randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { request } from 'undici'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { FakeClock } from '../helpers/clock.js'
import { startRedis, uniquePrefix, type RedisServer } from '../helpers/redis.js'
import { until } from '../helpers/until.js'
import { freePort } from './support.js'
import { startLoginIdp, type LoginIdp } from '../../policies/session/fixtures/oidc-idp.js'
import { TestBrowser } from '../../policies/session/fixtures/browser.js'
import { SessionKeys } from '../../policies/session/crypto.js'

interface Context { idp: LoginIdp, a: TestGateway, b: TestGateway, baseA: string, baseB: string, clock: FakeClock, redis: RedisServer, keys: SessionKeys, clientSecret: string }
const test = anyTest as TestFn<Context>

test.before(async (t) => {
  const portA = await freePort()
  const portB = await freePort()
  const baseA = `http://127.0.0.1:${portA}`
  const baseB = `http://127.0.0.1:${portB}`
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startLoginIdp({
    port: await freePort(),
    clients: [{ clientId: 'app', secret: clientSecret, redirectUri: `${baseA}/.authgate/callback`, postLogoutRedirectUri: `${baseA}/`, backchannelLogoutUri: `${baseA}/.authgate/backchannel-logout/corp` }],
  })
  const redis = await startRedis()
  const secret = randomBytes(48).toString('base64')
  const clock = new FakeClock()
  const prefix = uniquePrefix('sessions')
  // Both instances have the same configuration (one redirectUri on the app's host), as behind a load balancer; a
  // browser's cookies for 127.0.0.1 go to either port.
  const config = (port: number) => ({
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    store: { redis: redis.url, prefix },
    sessions: { secret: '${env:SESSION_SECRET}', allowInsecure: true },
    oidcClients: { corp: { issuer: idp.issuer, clientId: 'app', clientSecret: '${env:CLIENT_SECRET}', redirectUri: `${baseA}/.authgate/callback`, postLogoutRedirectUri: `${baseA}/`, prompt: 'consent' } },
    routes: [{ name: 'app', match: { path: '/**' }, upstream: 'demo', policies: [{ session: { client: 'corp', forwardAccessToken: true } }] }],
  })
  const env = { SESSION_SECRET: secret, CLIENT_SECRET: clientSecret }
  const a = await startGateway(config(portA), { env, now: clock.now, redis: redis.url })
  const b = await startGateway(config(portB), { env, now: clock.now, redis: redis.url })
  t.context = { idp, a, b, baseA, baseB, clock, redis, keys: new SessionKeys(secret), clientSecret }
})

test.after.always(async (t) => {
  await t.context.a?.close()
  await t.context.b?.close()
  await t.context.idp?.close()
  await t.context.redis?.stop()
})

const recordKey = (id: string) => `session:s:${createHash('sha256').update(id).digest('hex')}`

async function loggedIn (t: { context: Context }): Promise<{ browser: TestBrowser, id: string }> {
  // Back to the real time: the provider's ID tokens are dated by it.
  t.context.clock.ms = Date.now()
  const browser = new TestBrowser()
  const { answer } = await browser.navigate(`${t.context.baseA}/start`)
  if (answer.status !== 200) throw new Error(`login ended with ${answer.status}`)
  return { browser, id: browser.cookie(t.context.baseA, 'authgate')!.value }
}

function bearer (body: string): string {
  return (JSON.parse(body) as { headers: Record<string, string> }).headers.authorization!
}

test.serial('20 parallel requests on two instances with an expired access token: one refresh at the provider, all pass, the session survives', async (t) => {
  const { idp, baseA, baseB, clock } = t.context
  const { browser } = await loggedIn(t)
  const before = bearer((await browser.send(`${baseB}/api/x`, { kind: 'fetch' })).body)
  const refreshesBefore = idp.grants.refresh_token

  clock.advance(290_000) // 10 s left of the 300 s access token: within the 30 s margin
  const held = idp.hold()
  const started = performance.now()
  const requests = Array.from({ length: 20 }, (_, i) => browser.send(`${i % 2 === 0 ? baseA : baseB}/api/item/${i}`, { kind: 'fetch' }))
  await until(() => held.waiting() > 0, { timeoutMs: 10_000, message: 'the refresh to reach the provider' })
  // The provider answers after longer than the lock's 6 s lease: the lease must be renewed meanwhile, or the other
  // instance would take the lock and present the same (rotated) refresh token a second time.
  await until(() => performance.now() - started > 7_500, { timeoutMs: 10_000, intervalMs: 250, message: 'a provider slower than the lease' })
  t.is(held.waiting(), 1, 'one refresh request while the provider is slow')
  held.release()
  const answers = await Promise.all(requests)
  t.deepEqual(answers.map((a) => a.status), Array(20).fill(200))
  t.is(idp.grants.refresh_token - refreshesBefore, 1, 'exactly one refresh at the provider')
  t.is(idp.refusedRefreshes(), 0)
  const tokens = new Set(answers.map((a) => bearer(a.body)))
  t.is(tokens.size, 1, 'every request forwarded the one refreshed token')
  t.false(tokens.has(before))

  const after = await browser.send(`${baseA}/api/after`, { kind: 'fetch' })
  t.is(after.status, 200)
  t.is(idp.grants.refresh_token - refreshesBefore, 1, 'no second refresh')
  // Counted where it happened: one refresh over both instances' /metrics.
  const counted = await Promise.all([t.context.a, t.context.b].map(async (gw) => {
    const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    return Number(/authgate_session_refreshes_total\{client="corp"\} (\d+)/.exec(text)?.[1] ?? 0)
  }))
  t.is(counted[0]! + counted[1]!, 1)
})

test.serial('reuse: when the provider refuses a rotated refresh token (invalid_grant), the session ends', async (t) => {
  const { idp, a, baseA, clock } = t.context
  const { browser, id } = await loggedIn(t)
  const store = a.gateway.currentStore
  const stale = await store.get(recordKey(id))
  clock.advance(290_000)
  t.is((await browser.send(`${baseA}/api/one`, { kind: 'fetch' })).status, 200)
  // The store goes back to the record with the refresh token the provider has already rotated.
  await store.set(recordKey(id), stale!, 3_600_000)
  clock.advance(290_000)
  const refused = idp.refusedRefreshes()
  const res = await browser.send(`${baseA}/api/two`, { kind: 'fetch' })
  t.is(res.status, 401)
  t.is(JSON.parse(res.body).error, 'missing_credentials')
  t.true(res.setCookies.some((c) => /^authgate=; Path=\/; Max-Age=0/.test(c)))
  t.is(idp.refusedRefreshes() - refused, 1)
  t.is(await store.get(recordKey(id)), null, 'the record is gone')
  t.is((await browser.send(`${baseA}/page`)).status, 302, 'a navigation goes to the login again')
})

test.serial('a grant revoked at the provider ends the session at the next refresh; until then it goes on', async (t) => {
  const { idp, a, baseA, clock, keys, clientSecret } = t.context
  const { browser, id } = await loggedIn(t)
  const sealed = await a.gateway.currentStore.get(recordKey(id))
  const record = JSON.parse(keys.open(sealed!, recordKey(id))!) as { refreshToken: string }
  const revoked = await request(`${idp.issuer}/token/revocation`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`app:${clientSecret}`).toString('base64')}` },
    body: new URLSearchParams({ token: record.refreshToken, token_type_hint: 'refresh_token' }).toString(),
  })
  await revoked.body.dump()
  t.is(revoked.statusCode, 200)
  clock.advance(290_000)
  const res = await browser.send(`${baseA}/api/x`, { kind: 'fetch' })
  t.is(res.status, 401)
  t.is(await a.gateway.currentStore.get(recordKey(id)), null)
})

test.serial('back-channel logout from the provider ends the sessions of that provider session on both instances', async (t) => {
  const { idp, baseA, baseB, clock } = t.context
  clock.ms = Date.now()
  // One provider session, two gateway sessions: one browser logs in on A; another shares its provider cookies
  // (the provider's session) and logs in on B.
  const browser = new TestBrowser()
  await browser.navigate(`${baseA}/one`)
  const second = new TestBrowser()
  second.copyCookies(browser, idp.issuer)
  await second.navigate(`${baseB}/.authgate/login?rd=/two`)
  t.not(browser.cookie(baseA, 'authgate')!.value, second.cookie(baseA, 'authgate')!.value)
  t.is((await browser.send(`${baseA}/api`, { kind: 'fetch' })).status, 200)
  t.is((await second.send(`${baseB}/api`, { kind: 'fetch' })).status, 200)

  const delivered = idp.backchannelDelivered()
  // The user logs out at the provider itself (another app's logout, say): it tells every client of that session.
  const end = await second.navigate(`${idp.issuer}/session/end?client_id=app`, { stopAt: (url) => url.startsWith(baseA) || url.includes('/session/end/success') })
  t.true(end.trail.length > 0)
  await until(() => idp.backchannelDelivered() > delivered, { timeoutMs: 5_000, message: 'the logout token to be delivered' })
  t.is((await browser.send(`${baseA}/api`, { kind: 'fetch' })).status, 401, 'the session used on instance A')
  t.is((await second.send(`${baseB}/api`, { kind: 'fetch' })).status, 401, 'the session used on instance B')
  t.is((await second.send(`${baseA}/api`, { kind: 'fetch' })).status, 401)
})

test.serial('a logout token is refused unless it verifies, and only once (jti)', async (t) => {
  const { baseB } = t.context
  const post = (body: string) => request(`${baseB}/.authgate/backchannel-logout/corp`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body })
  const forged = await post(new URLSearchParams({ logout_token: 'eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.' }).toString())
  t.is(forged.statusCode, 400)
  t.is((await forged.body.json() as { error: string }).error, 'bad_request')
  const missing = await post('')
  t.is(missing.statusCode, 400)
  await missing.body.dump()
  // The token the provider delivered in the test before, sent again: its jti was seen.
  const delivered = t.context.idp.logoutTokens.at(-1)
  t.truthy(delivered)
  const replay = await post(new URLSearchParams({ logout_token: delivered! }).toString())
  t.is(replay.statusCode, 400)
  t.regex((await replay.body.json() as { detail: string }).detail, /already used/)
})

test.serial('a provider that cannot be reached at refresh time: 503, and the session goes on', async (t) => {
  const { idp, a, baseA, clock } = t.context
  const { browser, id } = await loggedIn(t)
  clock.advance(290_000)
  await idp.close()
  const res = await browser.send(`${baseA}/api/x`, { kind: 'fetch' })
  t.is(res.status, 503)
  t.not(await a.gateway.currentStore.get(recordKey(id)), null, 'the session is kept')
})
