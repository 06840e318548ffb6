/**
 * The console on the admin listener (issue 18, shared/design/console.md), at the HTTP level: absent from public
 * listeners; the admin token exchanged once for an HttpOnly SameSite=Strict session cookie; state-changing calls need
 * `X-Authgate-Console: 1` and the listener's own Origin; strict headers; the token never in a response; the key API
 * through the session; explain without spending a rate limit; traffic counted.
 */
import http from 'node:http'
import test from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { buildConsole } from '../helpers/console.js'
import { until } from '../helpers/until.js'
import { assertProblem } from './support.js'

const TOKEN = 'console-admin-token-' + 'x'.repeat(24)
const staticKey = newApiKey()

test.before(async () => { await buildConsole() })

function config () {
  return {
    apiKeys: [{ id: staticKey.id, hash: hashApiKey(staticKey.key), client: 'static-app', scopes: [] }],
    routes: [
      { name: 'keyed', match: { path: '/v1/**' }, upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'ip', limit: '1/min' } }] },
      { name: 'open', match: { path: '/**' }, upstream: 'demo', public: true },
    ],
  }
}

interface Answer { status: number, headers: http.IncomingHttpHeaders, body: string }

/** Every answer a test received, to check that the token is never in one. */
const seen: Answer[] = []

/** A request with exactly these headers (fetch would add or refuse some, Origin among them). */
function call (url: string, method: string, path: string, headers: Record<string, string> = {}, body?: string, record = true): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, url), { method, headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const answer = { status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }
        if (record) seen.push(answer)
        resolve(answer)
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

function consoleHeaders (gw: TestGateway, extra: Record<string, string> = {}): Record<string, string> {
  return { 'x-authgate-console': '1', origin: gw.adminUrl, ...extra }
}

async function signIn (gw: TestGateway): Promise<string> {
  const res = await call(gw.adminUrl, 'POST', '/console/session', consoleHeaders(gw), JSON.stringify({ token: TOKEN }))
  if (res.status !== 200) throw new Error(`sign-in: ${res.status} ${res.body}`)
  const cookie = String(res.headers['set-cookie']?.[0] ?? '')
  return cookie.slice(0, cookie.indexOf(';'))
}

function asProblem (res: Answer) {
  return { status: res.status, headers: new Headers(Object.entries(res.headers).map(([k, v]) => [k, String(v)])), text: async () => res.body, clone: true } as unknown as Response
}

test.after.always(() => {
  // Checked once every test ran: no answer of this file carried the admin token.
  for (const answer of seen) {
    if (answer.body.includes(TOKEN) || JSON.stringify(answer.headers).includes(TOKEN)) throw new Error(`the admin token appeared in an answer: ${answer.body.slice(0, 200)}`)
  }
})

test('the console is on the admin listener only: a public listener forwards /console/ like any path, with no session to be had', async (t) => {
  const gw = await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => gw.close())
  const admin = await call(gw.adminUrl, 'GET', '/console/')
  t.is(admin.status, 200)
  t.regex(admin.body, /<script type="module" src="\/console\/app.js">/)
  const pub = await call(gw.url, 'GET', '/console/')
  t.is(pub.status, 200)
  t.is(pub.headers['content-security-policy'], undefined)
  t.is((JSON.parse(pub.body) as { path: string }).path, '/console/', 'the echo upstream answered: the gateway has no console here')
  // (The echo upstream sends the request back, token included: that answer is not the gateway's own.)
  const signin = await call(gw.url, 'POST', '/console/session', { 'x-authgate-console': '1', origin: gw.url }, JSON.stringify({ token: TOKEN }), false)
  t.is(signin.headers['set-cookie'], undefined)
  // A gateway without routes for it: 404 no_route, never the console.
  const bare = await startGateway({ routes: [{ name: 'v1', match: { path: '/v1/**' }, upstream: 'demo', public: true }] }, { env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => bare.close())
  await assertProblem(t, asProblem(await call(bare.url, 'GET', '/console/')), 404, 'no_route')
  await assertProblem(t, asProblem(await call(bare.url, 'GET', '/console/app.js')), 404, 'no_route')
  t.is((await call(bare.adminUrl, 'GET', '/console/app.js')).status, 200)
})

test('console pages and files carry the strict headers: CSP without inline, nosniff, no-referrer; no other origin is named', async (t) => {
  const gw = await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => gw.close())
  for (const path of ['/console/', '/console/app.js', '/console/app.css', '/console/api/overview', '/console/session']) {
    const res = await call(gw.adminUrl, 'GET', path)
    t.is(res.headers['content-security-policy'], "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'", path)
    t.is(res.headers['x-content-type-options'], 'nosniff', path)
    t.is(res.headers['referrer-policy'], 'no-referrer', path)
  }
  const page = await call(gw.adminUrl, 'GET', '/console/')
  t.regex(String(page.headers['content-type']), /^text\/html/)
  t.notRegex(page.body, /<script>|<style|\sstyle=|\son[a-z]+=/i, 'no inline script or style')
  const js = await call(gw.adminUrl, 'GET', '/console/app.js')
  t.regex(String(js.headers['content-type']), /^text\/javascript/)
  t.notRegex(js.body + page.body + (await call(gw.adminUrl, 'GET', '/console/app.css')).body, /https?:\/\/(?!www\.w3\.org)[a-z0-9.-]+\.[a-z]{2,}\//i, 'no asset from another origin')
  t.is((await call(gw.adminUrl, 'GET', '/console')).status, 308)
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'GET', '/console/../admin/keys')), 401, 'invalid_credentials')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'GET', '/console/nothing.js')), 404, 'no_route')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/app.js', consoleHeaders(gw))), 405, 'bad_request')
})

test('sign-in exchanges the token for an HttpOnly SameSite=Strict cookie of 8 h; without the header, from another origin or with a wrong token it is refused', async (t) => {
  const gw = await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => gw.close())
  const body = JSON.stringify({ token: TOKEN })
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/session', { origin: gw.adminUrl }, body)), 403, 'forbidden')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/session', { 'x-authgate-console': '1' }, body)), 403, 'forbidden')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/session', consoleHeaders(gw, { origin: 'http://evil.example' }), body)), 403, 'forbidden')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/session', consoleHeaders(gw), JSON.stringify({ token: TOKEN + 'x' }))), 401, 'invalid_credentials')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/session', consoleHeaders(gw), '{"token":')), 400, 'bad_request')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'GET', '/console/api/overview')), 401, 'invalid_credentials')

  const ok = await call(gw.adminUrl, 'POST', '/console/session', consoleHeaders(gw), body)
  t.is(ok.status, 200)
  const setCookie = String(ok.headers['set-cookie']?.[0])
  t.regex(setCookie, /^authgate-console=[A-Za-z0-9_.-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=28800$/)
  const expiresAt = Date.parse((JSON.parse(ok.body) as { expiresAt: string }).expiresAt)
  t.true(Math.abs(expiresAt - (Date.now() + 8 * 3600_000)) < 60_000)
  const cookie = setCookie.slice(0, setCookie.indexOf(';'))
  const overview = await call(gw.adminUrl, 'GET', '/console/api/overview', { cookie })
  t.is(overview.status, 200)
  const o = JSON.parse(overview.body) as { version: string, store: { kind: string, reachable: boolean }, listeners: unknown[] }
  t.is(o.version, '0.1.0')
  t.deepEqual([o.store.kind, o.store.reachable], ['memory', true])
  t.is(o.listeners.length, 1)
  // A forged or altered cookie is no session.
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'GET', '/console/api/overview', { cookie: cookie.slice(0, -2) + (cookie.endsWith('AA') ? 'BB' : 'AA') })), 401, 'invalid_credentials')
})

test('a gateway without admin.token has no console session to give', async (t) => {
  const gw = await startGateway(config())
  t.teardown(() => gw.close())
  const res = await call(gw.adminUrl, 'POST', '/console/session', consoleHeaders(gw), JSON.stringify({ token: 'anything-at-all-123456' }))
  const problem = await assertProblem(t, asProblem(res), 401, 'invalid_credentials')
  t.regex(String(problem.detail), /admin\.token/)
})

test('keys through the console session: reads need the cookie, changes also the header and same Origin; the bearer API is unchanged; sign-out ends the session', async (t) => {
  const gw = await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => gw.close())
  const cookie = await signIn(gw)
  const list = await call(gw.adminUrl, 'GET', '/admin/keys', { cookie })
  t.is(list.status, 200)
  t.true((JSON.parse(list.body) as Array<{ id: string, source?: string }>).some((k) => k.id === staticKey.id && k.source === 'config'))
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'GET', '/admin/keys')), 401, 'invalid_credentials')

  const create = JSON.stringify({ client: 'console-app' })
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/admin/keys', { cookie }, create)), 403, 'forbidden')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/admin/keys', { cookie, 'x-authgate-console': '1', origin: 'http://127.0.0.1:1' }, create)), 403, 'forbidden')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/admin/keys', { cookie, origin: gw.adminUrl }, create)), 403, 'forbidden')
  const created = await call(gw.adminUrl, 'POST', '/admin/keys', { cookie, ...consoleHeaders(gw) }, create)
  t.is(created.status, 201)
  const { id, key } = JSON.parse(created.body) as { id: string, key: string }
  t.is((await gw.fetch('/v1/a', { headers: { 'x-api-key': key } })).status, 200)
  // The bearer token needs no console header (scripts and the CLI).
  const bearer = await call(gw.adminUrl, 'DELETE', `/admin/keys/${id}`, { authorization: `Bearer ${TOKEN}` })
  t.is(bearer.status, 204)
  await until(async () => (await gw.fetch('/v1/b', { headers: { 'x-api-key': key } })).status === 401, { timeoutMs: 1_000, message: 'the revoked key refused' })

  // Sign-out: the header and Origin rule applies; then the cookie is cleared and no longer a session.
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'DELETE', '/console/session', { cookie })), 403, 'forbidden')
  const out = await call(gw.adminUrl, 'DELETE', '/console/session', { cookie, ...consoleHeaders(gw) })
  t.is(out.status, 204)
  t.regex(String(out.headers['set-cookie']?.[0]), /^authgate-console=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0$/)
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'GET', '/console/api/overview', { cookie })), 401, 'invalid_credentials')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'GET', '/admin/keys', { cookie })), 401, 'invalid_credentials')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'GET', '/console/session', { cookie })), 401, 'invalid_credentials')
})

test('routes, explain and traffic: chains drawn as steps; explain shows the refusing step and spends no rate limit; traffic counts requests', async (t) => {
  const gw = await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => gw.close())
  const cookie = await signIn(gw)
  const routes = JSON.parse((await call(gw.adminUrl, 'GET', '/console/api/routes', { cookie })).body) as { routes: Array<{ name: string, public: boolean, chain: Array<{ summary: string }> }> }
  t.deepEqual(routes.routes.map((r) => [r.name, r.public, r.chain.map((s) => s.summary)]), [
    ['keyed', false, ['apiKey', 'rateLimit 1/min by=ip']],
    ['open', true, []],
  ])

  const explain = (headers: string) => call(gw.adminUrl, 'POST', '/console/api/explain', { cookie, ...consoleHeaders(gw) }, JSON.stringify({ method: 'GET', url: '/v1/x', headers }))
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/api/explain', { cookie }, JSON.stringify({ method: 'GET', url: '/v1/x', headers: '' }))), 403, 'forbidden')
  const refused = JSON.parse((await explain('')).body) as { route: { name: string }, steps: Array<{ policy: string, verdict: string, code?: string }>, decision: { status: number, code: string } }
  t.is(refused.route.name, 'keyed')
  t.deepEqual(refused.decision, { ...refused.decision, forwarded: false, status: 401, code: 'missing_credentials' })
  t.like(refused.steps[0], { policy: 'apiKey', verdict: 'reject', code: 'missing_credentials' })
  // With the key: passes; explained twice, the 1/min limit is still whole for the real request.
  for (let i = 0; i < 2; i++) {
    const passed = JSON.parse((await explain(`X-API-Key: ${staticKey.key}`)).body) as { decision: { forwarded: boolean } }
    t.true(passed.decision.forwarded)
  }
  t.is((await gw.fetch('/v1/real', { headers: { 'x-api-key': staticKey.key } })).status, 200)
  t.is((await gw.fetch('/v1/real', { headers: { 'x-api-key': staticKey.key } })).status, 429)
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/api/explain', { cookie, ...consoleHeaders(gw) }, JSON.stringify({ method: 'GET', url: 'nope', headers: '' }))), 400, 'bad_request')
  await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/api/explain', { cookie, ...consoleHeaders(gw) }, JSON.stringify({ method: 'GET', url: '/', headers: 'no colon' }))), 400, 'bad_request')

  t.is((await gw.fetch('/v1/a')).status, 401)
  t.is((await gw.fetch('/elsewhere')).status, 200)
  const traffic = JSON.parse((await call(gw.adminUrl, 'GET', '/console/api/traffic', { cookie })).body) as { times: number[], totals: { requests: number, byStatus: Record<string, number>, authFailures: Record<string, number>, rateLimited: number }, latency: Record<string, unknown>, workers: number }
  t.is(traffic.times.length, 450)
  t.is(traffic.workers, 1)
  t.deepEqual(traffic.totals.byStatus, { '2xx': 2, '4xx': 2 })
  t.is(traffic.totals.requests, 4)
  t.deepEqual(traffic.totals.authFailures, { missing_credentials: 1 })
  t.is(traffic.totals.rateLimited, 1)
  t.deepEqual(Object.keys(traffic.latency).sort(), ['keyed', 'open'])
})

test('the overview shows a refused reload with the FILE:LINE:COL of its errors, and an applied one', async (t) => {
  const gw = await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => gw.close())
  const cookie = await signIn(gw)
  const overview = async () => JSON.parse((await call(gw.adminUrl, 'GET', '/console/api/overview', { cookie })).body) as { lastReload: null | { ok: boolean, errors: Array<{ where: string, message: string }> } }
  t.is((await overview()).lastReload, null)
  const bad = config()
  ;(bad.routes[0] as Record<string, unknown>).upstream = 'nowhere'
  t.false((await gw.reload(bad)).ok)
  const refused = (await overview()).lastReload!
  t.false(refused.ok)
  t.true(refused.errors.length > 0)
  t.regex(refused.errors[0]!.where, /gateway\.yaml:\d+:\d+$/)
  t.regex(refused.errors[0]!.message, /nowhere/)
  t.true((await gw.reload(config())).ok)
  t.deepEqual((await overview()).lastReload, { ...(await overview()).lastReload!, ok: true, errors: [] })
})

test('sign-in past 10 wrong tokens a minute answers 429 with Retry-After, the right token included, while the bearer API still works', async (t) => {
  const gw = await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => gw.close())
  for (let i = 0; i < 10; i++) {
    await assertProblem(t, asProblem(await call(gw.adminUrl, 'POST', '/console/session', consoleHeaders(gw), JSON.stringify({ token: `guess-${i}` }))), 401, 'invalid_credentials')
  }
  const limited = await call(gw.adminUrl, 'POST', '/console/session', consoleHeaders(gw), JSON.stringify({ token: TOKEN }))
  await assertProblem(t, asProblem(limited), 429, 'rate_limited')
  t.true(Number(limited.headers['retry-after']) > 0)
  t.is((await call(gw.adminUrl, 'GET', '/admin/keys', { authorization: `Bearer ${TOKEN}` })).status, 200)
})
