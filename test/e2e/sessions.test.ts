/**
 * Browser sessions (shared/design/sessions.md) against oidc-provider: the whole login by HTTP with a cookie jar,
 * logout, the navigation/API split, the cross-site rule, the __Host- cookie on TLS, private_key_jwt.
 */
import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { Agent, request } from 'undici'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { mintPki } from '../helpers/pki.js'
import { freePort } from './support.js'
import { startLoginIdp, type LoginIdp } from '../../policies/session/fixtures/oidc-idp.js'
import { TestBrowser } from '../../policies/session/fixtures/browser.js'

interface Context { idp: LoginIdp, gw: TestGateway, base: string, secret: string, clientSecret: string }
const test = anyTest as TestFn<Context>

interface Echo { method: string, path: string, query: string, headers: Record<string, string> }

test.before(async (t) => {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startLoginIdp({
    port: await freePort(),
    clients: [
      { clientId: 'app', secret: clientSecret, redirectUri: `${base}/.authgate/callback`, postLogoutRedirectUri: `${base}/`, backchannelLogoutUri: `${base}/.authgate/backchannel-logout/corp` },
      { clientId: 'app-pkjwt', redirectUri: `${base}/.authgate/callback` },
    ],
  })
  const secret = randomBytes(48).toString('base64')
  const gw = await startGateway({
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    sessions: { secret: '${env:SESSION_SECRET}', allowInsecure: true },
    oidcClients: {
      corp: { issuer: idp.issuer, clientId: 'app', clientSecret: '${env:CLIENT_SECRET}', redirectUri: `${base}/.authgate/callback`, postLogoutRedirectUri: `${base}/`, scopes: ['openid', 'profile', 'email', 'offline_access'], prompt: 'consent' },
      keyed: { issuer: idp.issuer, clientId: 'app-pkjwt', privateKeyJwt: { key: 'client.key', alg: 'ES256' }, redirectUri: `${base}/.authgate/callback`, scopes: ['openid', 'email'] },
    },
    jwtProviders: { api: { issuer: idp.issuer, audience: 'nobody', algorithms: ['ES256'] } },
    routes: [
      { name: 'app', match: { path: '/app/**' }, upstream: 'demo', policies: [{ session: { client: 'corp', forwardAccessToken: true } }] },
      { name: 'csrf', match: { path: '/strict/**' }, upstream: 'demo', policies: [{ session: { client: 'corp', csrfHeader: 'X-Requested-With' } }] },
      { name: 'mixed', match: { path: '/mixed/**' }, upstream: 'demo', policies: [{ anyOf: [{ session: { client: 'corp' } }, { jwt: { provider: 'api' } }] }, { claims: { groups: 'staff' } }] },
      { name: 'open', match: { path: '/open/**' }, upstream: 'demo', public: true },
      { name: 'keyed', match: { path: '/keyed/**' }, upstream: 'demo', policies: [{ session: { client: 'keyed' } }] },
    ],
  }, { env: { SESSION_SECRET: secret, CLIENT_SECRET: clientSecret }, files: { 'client.key': idp.clientKeys['app-pkjwt']! } })
  t.context = { idp, gw, base, secret, clientSecret }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.idp?.close()
})

async function login (t: { context: Context }, browser: TestBrowser, path = '/app/page?x=1', user = 'alice') {
  return await browser.navigate(t.context.base + path, { user })
}

test('a navigation without a session goes to the login, and the whole login ends on the page asked for, as that user', async (t) => {
  const { base, gw, secret, clientSecret } = t.context
  const browser = new TestBrowser()
  const first = await browser.send(`${base}/app/page?x=1`)
  t.is(first.status, 302)
  t.is(first.location, `${base}/.authgate/login?rd=${encodeURIComponent('/app/page?x=1')}`)

  const toIdp = await browser.send(first.location!)
  t.is(toIdp.status, 302)
  const authorize = new URL(toIdp.location!)
  t.is(authorize.origin, t.context.idp.issuer)
  t.is(authorize.searchParams.get('response_type'), 'code')
  t.is(authorize.searchParams.get('code_challenge_method'), 'S256')
  t.regex(authorize.searchParams.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/)
  t.regex(authorize.searchParams.get('state') ?? '', /^[A-Za-z0-9_-]{43}$/)
  t.regex(authorize.searchParams.get('nonce') ?? '', /^[A-Za-z0-9_-]{43}$/)
  t.is(authorize.searchParams.get('redirect_uri'), `${base}/.authgate/callback`)
  const tx = toIdp.setCookies.find((c) => c.startsWith('authgate-tx='))
  t.truthy(tx)
  t.regex(tx!, /HttpOnly/)
  t.regex(tx!, /SameSite=Lax/)

  const { answer, trail } = await browser.navigate(toIdp.location!, { user: 'alice' })
  const callback = trail.find((a) => a.url.startsWith(`${base}/.authgate/callback`))!
  t.is(callback.status, 303)
  t.is(callback.location, `${base}/app/page?x=1`)
  t.is(new URL(callback.url).searchParams.get('iss'), t.context.idp.issuer, 'the provider names itself (RFC 9207)')
  const cookie = callback.setCookies.find((c) => c.startsWith('authgate='))!
  t.regex(cookie, /^authgate=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=43200; HttpOnly; SameSite=Lax$/)

  t.is(answer.status, 200)
  const echo = JSON.parse(answer.body) as Echo
  t.is(echo.path, '/app/page')
  t.is(echo.headers['x-auth-subject'], 'alice')
  t.is(echo.headers['x-auth-client'], 'app')
  t.is(echo.headers['x-auth-methods'], 'session')
  t.regex(echo.headers.authorization ?? '', /^Bearer \S+$/)
  t.false((echo.headers.cookie ?? '').includes('authgate'), 'the gateway\'s cookies are not sent upstream')

  // Reload: the same cookie is the same session; the browser's other cookies go upstream, ours do not.
  browser.setCookie(base, 'theme', 'dark')
  const again = await browser.send(`${base}/app/other`)
  t.is(again.status, 200)
  const echoed = JSON.parse(again.body) as Echo
  t.is(echoed.headers['x-auth-subject'], 'alice')
  t.is(echoed.headers.cookie, 'theme=dark')
  // On a route without any session step (public), the session cookie is not forwarded either.
  const open = await browser.send(`${base}/open/x`)
  t.is(JSON.parse(open.body).headers.cookie, 'theme=dark')
  browser.setCookie(base, 'theme', '')

  const info = await browser.send(`${base}/.authgate/session`, { kind: 'fetch' })
  t.is(info.status, 200)
  const session = JSON.parse(info.body) as { authenticated: boolean, subject: string, claims: Record<string, unknown> }
  t.true(session.authenticated)
  t.is(session.subject, 'alice')
  t.is(session.claims.email, 'alice@example.com', 'userinfo claims are merged')
  t.false(info.body.includes(echo.headers.authorization!.slice(7)), 'never a token')

  // The record in the store is sealed: neither tokens nor the email are readable there.
  const id = browser.cookie(base, 'authgate')!.value
  const { createHash } = await import('node:crypto')
  const sealed = await gw.gateway.currentStore.get(`session:s:${createHash('sha256').update(id).digest('hex')}`)
  t.truthy(sealed)
  t.false(sealed!.includes('alice'))
  t.false(sealed!.includes(echo.headers.authorization!.slice(7)))
  t.false(gw.rawLogs().includes(id), 'the session id is not logged')
  t.false(gw.rawLogs().includes(secret))
  t.false(gw.rawLogs().includes(clientSecret))
})

test('an API request without a session is 401 with the Session challenge; with one it passes', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  const api = await browser.send(`${base}/app/api/orders`, { kind: 'fetch' })
  t.is(api.status, 401)
  t.is(JSON.parse(api.body).error, 'missing_credentials')
  t.is(api.headers['www-authenticate'], 'Session realm="authgate", login="/.authgate/login"')
  t.is(api.location, undefined)
  await login(t, browser)
  const ok = await browser.send(`${base}/app/api/orders`, { kind: 'fetch' })
  t.is(ok.status, 200)
})

test('an unknown or expired session cookie counts as none, and is cleared', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  browser.setCookie(base, 'authgate', 'x'.repeat(43))
  const api = await browser.send(`${base}/app/api`, { kind: 'fetch' })
  t.is(api.status, 401)
  t.is(JSON.parse(api.body).error, 'missing_credentials')
  t.true(api.setCookies.some((c) => /^authgate=; Path=\/; Max-Age=0/.test(c)))
  t.is(browser.cookie(base, 'authgate'), undefined)
  const page = await browser.send(`${base}/app/page`)
  t.is(page.status, 302)
})

test('unsafe methods need a same-origin request (Sec-Fetch-Site or Origin); safe ones do not', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  await login(t, browser)
  const post = (headers: Record<string, string>) => browser.send(`${base}/app/api/orders`, { method: 'POST', kind: 'none', headers: { 'content-type': 'application/json', ...headers }, body: '{}' })
  const crossSite = await post({ 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' })
  t.is(crossSite.status, 403)
  t.like(JSON.parse(crossSite.body), { error: 'forbidden', detail: 'cross-site request' })
  t.is((await post({ 'sec-fetch-site': 'same-site' })).status, 403)
  t.is((await post({})).status, 403, 'neither header: refused')
  t.is((await post({ origin: 'http://evil.example' })).status, 403)
  t.is((await post({ origin: `http://127.0.0.1:${new URL(base).port}0` })).status, 403)
  t.is((await post({ 'sec-fetch-site': 'same-origin' })).status, 200)
  t.is((await post({ origin: base })).status, 200)
  t.is((await browser.send(`${base}/app/api/orders`, { kind: 'none', headers: { 'sec-fetch-site': 'cross-site' } })).status, 200, 'a GET is not refused')
})

test('csrfHeader: unsafe requests also need that header', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  await login(t, browser, '/strict/page')
  const without = await browser.send(`${base}/strict/api`, { method: 'POST', kind: 'fetch', body: '' })
  t.is(without.status, 403)
  const withIt = await browser.send(`${base}/strict/api`, { method: 'POST', kind: 'fetch', headers: { 'x-requested-with': 'fetch' }, body: '' })
  t.is(withIt.status, 200)
})

test('logout: cross-site is refused and the session goes on; same-origin ends it and goes to the provider with id_token_hint', async (t) => {
  const { base, idp } = t.context
  const browser = new TestBrowser()
  await login(t, browser)
  const forged = await browser.send(`${base}/.authgate/logout`, { method: 'POST', kind: 'none', headers: { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' } })
  t.is(forged.status, 403)
  t.is(JSON.parse(forged.body).error, 'forbidden')
  t.is((await browser.send(`${base}/app/page`)).status, 200)

  t.is((await browser.send(`${base}/.authgate/logout`)).status, 405, 'never by GET (a link or an image would log out)')

  const out = await browser.send(`${base}/.authgate/logout`, { method: 'POST', kind: 'none', headers: { origin: base } })
  t.is(out.status, 303)
  const end = new URL(out.location!)
  t.is(`${end.origin}${end.pathname}`, `${idp.issuer}/session/end`)
  t.truthy(end.searchParams.get('id_token_hint'))
  t.is(end.searchParams.get('post_logout_redirect_uri'), `${base}/`)
  t.true(out.setCookies.some((c) => /^authgate=; Path=\/; Max-Age=0/.test(c)))
  t.is((await browser.send(`${base}/app/page`)).status, 302)
  // The provider's own logout page, confirmed, comes back to postLogoutRedirectUri.
  const done = await browser.navigate(out.location!, { stopAt: (url) => url.startsWith(base) })
  t.is(done.answer.location, `${base}/`)
})

test('a callback is refused (400, no cookie) unless its state was started by this very browser, and only once', async (t) => {
  const { base } = t.context
  const victim = new TestBrowser()
  const attacker = new TestBrowser()
  const started = await victim.send(`${base}/.authgate/login?rd=/app/x`)
  const { answer: atCallback } = await victim.navigate(started.location!, { stopAt: (url) => url.startsWith(`${base}/.authgate/callback`) })
  const callbackUrl = atCallback.location!

  const stolen = await attacker.send(callbackUrl)
  t.is(stolen.status, 400)
  t.is(JSON.parse(stolen.body).error, 'bad_request')
  t.is(stolen.setCookies.length, 0)

  const wrongIss = new URL(callbackUrl)
  wrongIss.searchParams.set('iss', 'https://evil.example')
  const forgedIss = await victim.send(wrongIss.href)
  t.is(forgedIss.status, 400, 'another issuer (RFC 9207): refused; the state is spent')

  // A fresh login whose callback the victim uses twice.
  const again = await victim.send(`${base}/.authgate/login?rd=/app/y`)
  const { answer: second } = await victim.navigate(again.location!, { stopAt: (url) => url.startsWith(`${base}/.authgate/callback`) })
  const ok = await victim.send(second.location!)
  t.is(ok.status, 303)
  t.is(ok.location, `${base}/app/y`)
  const replay = await victim.send(second.location!)
  t.is(replay.status, 400)
  t.false(replay.setCookies.some((c) => c.startsWith('authgate=')))

  const unknown = await victim.send(`${base}/.authgate/callback?state=nope&code=x`)
  t.is(unknown.status, 400)
})

test('two logins in parallel tabs both complete', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  const a = await browser.send(`${base}/.authgate/login?rd=/app/a`)
  const b = await browser.send(`${base}/.authgate/login?rd=/app/b`)
  const { answer: atA } = await browser.navigate(a.location!, { stopAt: (url) => url.startsWith(`${base}/.authgate/callback`) })
  const { answer: atB } = await browser.navigate(b.location!, { stopAt: (url) => url.startsWith(`${base}/.authgate/callback`) })
  const doneB = await browser.send(atB.location!)
  const doneA = await browser.send(atA.location!)
  t.is(doneB.status, 303)
  t.is(doneB.location, `${base}/app/b`)
  t.is(doneA.status, 303)
  t.is(doneA.location, `${base}/app/a`)
})

test('a new login replaces the session the browser had (no fixation)', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  await login(t, browser)
  const first = browser.cookie(base, 'authgate')!.value
  await browser.navigate(`${base}/.authgate/login?rd=/app/z`)
  const second = browser.cookie(base, 'authgate')!.value
  t.not(first, second)
  const other = new TestBrowser()
  other.setCookie(base, 'authgate', first)
  t.is((await other.send(`${base}/app/page`, { kind: 'fetch' })).status, 401, 'the old session id is dead')
  t.is((await browser.send(`${base}/app/page`)).status, 200, 'the new one works')
})

test('rd: only a local path or a listed host; anything else lands on /', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  const started = await browser.send(`${base}/.authgate/login?rd=${encodeURIComponent('//evil.example/x')}`)
  const { answer } = await browser.navigate(started.location!, { stopAt: (url) => url.startsWith(`${base}/.authgate/callback`) })
  const done = await browser.send(answer.location!)
  t.is(done.status, 303)
  t.is(done.location, `${base}/`)
})

test('anyOf session | jwt: a navigation goes to the login, an API call gets both challenges, a session passes with claims checked', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  const page = await browser.send(`${base}/mixed/page`)
  t.is(page.status, 302)
  t.is(page.location, `${base}/.authgate/login?rd=%2Fmixed%2Fpage`)
  const api = await browser.send(`${base}/mixed/api`, { kind: 'fetch' })
  t.is(api.status, 401)
  const challenges = String(api.headers['www-authenticate'])
  t.regex(challenges, /Session realm="authgate", login="\/.authgate\/login"/)
  t.regex(challenges, /Bearer realm="authgate"/)
  await login(t, browser, '/mixed/page')
  const ok = await browser.send(`${base}/mixed/api`, { kind: 'fetch' })
  t.is(ok.status, 200)
  t.is(JSON.parse(ok.body).headers['x-auth-methods'], 'session')
})

test('private_key_jwt: a client that signs its token requests logs in too', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  const start = await browser.send(`${base}/.authgate/login?client=keyed&rd=/keyed/home`)
  t.is(new URL(start.location!).searchParams.get('client_id'), 'app-pkjwt')
  const { answer } = await browser.navigate(start.location!, { user: 'carol' })
  t.is(answer.status, 200)
  const echo = JSON.parse(answer.body) as Echo
  t.is(echo.path, '/keyed/home')
  t.is(echo.headers['x-auth-subject'], 'carol')
  t.false('authorization' in echo.headers, 'no forwardAccessToken: no token upstream')
})

test('reserved endpoints answer on the redirectUri\'s host only', async (t) => {
  const { base } = t.context
  const res = await new TestBrowser().send(`${base}/.authgate/session`, { kind: 'fetch', headers: { host: 'other.example' } })
  t.is(res.status, 404)
  t.is(JSON.parse(res.body).error, 'no_route')
  const unknown = await new TestBrowser().send(`${base}/.authgate/nothing`, { kind: 'fetch' })
  t.is(unknown.status, 404)
  const anonymous = await new TestBrowser().send(`${base}/.authgate/session`, { kind: 'fetch' })
  t.deepEqual(JSON.parse(anonymous.body), { authenticated: false })
})

test('on a TLS listener the cookies are __Host- and Secure', async (t) => {
  const pki = await mintPki()
  const port = await freePort()
  const base = `https://localhost:${port}`
  const idp = await startLoginIdp({ port: await freePort(), clients: [{ clientId: 'tls-app', secret: 'tls-secret-0123456789', redirectUri: `${base}/.authgate/callback` }] })
  const gw = await startGateway({
    listeners: [{ name: 'tls', address: `127.0.0.1:${port}`, tls: { cert: pki.server.certPath, key: pki.server.keyPath } }],
    sessions: { secret: randomBytes(32).toString('hex') },
    oidcClients: { corp: { issuer: idp.issuer, clientId: 'tls-app', clientSecret: 'tls-secret-0123456789', redirectUri: `${base}/.authgate/callback`, scopes: ['openid'] } },
    routes: [{ name: 'app', match: { path: '/**' }, upstream: 'demo', policies: [{ session: { client: 'corp' } }] }],
  })
  const dispatcher = new Agent({ connect: { ca: pki.ca.cert } })
  try {
    const browser = new TestBrowser({ dispatcher })
    const start = await browser.send(`${base}/home`)
    t.is(start.status, 302)
    const { answer, trail } = await browser.navigate(start.location!, { user: 'dora' })
    t.is(answer.status, 200)
    t.true(trail.some((a) => a.setCookies.some((c) => /^__Host-authgate-tx=[^;]+; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax; Secure$/.test(c))))
    t.true(trail.some((a) => a.setCookies.some((c) => /^__Host-authgate=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=43200; HttpOnly; SameSite=Lax; Secure$/.test(c))))
    t.is(JSON.parse(answer.body).headers['x-auth-subject'], 'dora')
  } finally {
    await dispatcher.close()
    await gw.close()
    await idp.close()
  }
})

test.serial('metrics count logins, refused callbacks by reason, and sessions in use', async (t) => {
  const { base, gw } = t.context
  const browser = new TestBrowser()
  await login(t, browser)
  await new TestBrowser().send(`${base}/.authgate/callback?state=forged&code=x`)
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  t.regex(text, /# TYPE authgate_session_logins_total counter/)
  t.regex(text, /authgate_session_logins_total\{client="corp"\} [1-9]\d*/)
  t.regex(text, /authgate_session_login_failures_total\{client="unknown",reason="state"\} [1-9]\d*/)
  t.regex(text, /authgate_sessions_active [1-9]\d*/)
})

test('one client address starts at most sessions.loginsPerMinute logins a minute (each writes a transaction record); another address is not limited', async (t) => {
  const { idp, clientSecret } = t.context
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const gw = await startGateway({
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    trustProxies: ['127.0.0.1/32'],
    // 6 a minute: one refills every 10 s, far longer than six logins take even on a loaded machine.
    sessions: { secret: '${env:SESSION_SECRET}', allowInsecure: true, loginsPerMinute: 6 },
    oidcClients: { corp: { issuer: idp.issuer, clientId: 'app', clientSecret: '${env:CLIENT_SECRET}', redirectUri: `${base}/.authgate/callback` } },
    routes: [{ name: 'app', match: { path: '/app/**' }, upstream: 'demo', policies: [{ session: { client: 'corp' } }] }],
  }, { env: { SESSION_SECRET: randomBytes(48).toString('base64'), CLIENT_SECRET: clientSecret } })
  t.teardown(async () => await gw.close())
  const login = async (client: string) => {
    const res = await request(`${base}/.authgate/login?rd=/app/x`, { headers: { 'x-forwarded-for': client } })
    await res.body.dump()
    return res
  }
  for (let i = 0; i < 6; i++) t.is((await login('203.0.113.1')).statusCode, 302, `login ${i + 1}`)
  const refused = await login('203.0.113.1')
  t.is(refused.statusCode, 429)
  t.truthy(refused.headers['retry-after'])
  t.is((await login('203.0.113.2')).statusCode, 302, 'the limit is per client address behind the trusted proxy, not per proxy')
})

test('over HTTP/2 too: a navigation without a session is sent to the login (302), and /.authgate/login is served', async (t) => {
  const { idp, clientSecret } = t.context
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const gw = await startGateway({
    listeners: [{ name: 'local', address: `127.0.0.1:${port}`, http2: 'prior-knowledge' }],
    sessions: { secret: '${env:SESSION_SECRET}', allowInsecure: true },
    oidcClients: { corp: { issuer: idp.issuer, clientId: 'app', clientSecret: '${env:CLIENT_SECRET}', redirectUri: `${base}/.authgate/callback` } },
    routes: [{ name: 'app', match: { path: '/app/**' }, upstream: 'demo', policies: [{ session: { client: 'corp' } }] }],
  }, { env: { SESSION_SECRET: randomBytes(48).toString('base64'), CLIENT_SECRET: clientSecret } })
  t.teardown(async () => await gw.close())
  const { connect } = await import('node:http2')
  const session = connect(base)
  t.teardown(() => session.close())
  const get = (path: string, headers: Record<string, string>) => new Promise<Record<string, unknown>>((resolve, reject) => {
    const stream = session.request({ ':path': path, ':method': 'GET', ...headers })
    stream.on('response', (head) => { stream.resume(); stream.on('end', () => resolve(head)) })
    stream.on('error', reject)
    stream.end()
  })
  const navigation = await get('/app/page', { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept: 'text/html' })
  t.is(navigation[':status'], 302)
  t.is(navigation.location, '/.authgate/login?rd=%2Fapp%2Fpage')
  const api = await get('/app/page', { accept: 'application/json' })
  t.is(api[':status'], 401, 'an API call is still 401')
  const login = await get('/.authgate/login?rd=/app/page', {})
  t.is(login[':status'], 302)
  t.true(String(login.location).startsWith(idp.issuer), String(login.location))
})
