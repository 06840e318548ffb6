/**
 * Sessions in decision mode behind a real nginx: auth_request asks authgate's /nginx endpoint; a navigation without a
 * session gets 401 with Location (nginx turns it into the redirect); nginx passes /.authgate/* through to the decision
 * listener, which serves the login, callback and logout for the original scheme and host.
 */
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import anyTest, { type TestFn } from 'ava'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { fileURLToPath } from 'node:url'
import { startNginx, testedSnippet, type ProxyProcess } from '../helpers/proxies.js'
import { freePort } from './support.js'
import { startLoginIdp, type LoginIdp } from '../../policies/session/fixtures/oidc-idp.js'
import { TestBrowser } from '../../policies/session/fixtures/browser.js'

interface Context { idp: LoginIdp, gw: TestGateway, nginx: ProxyProcess, app: http.Server, base: string }
const test = anyTest as TestFn<Context>

/** The snippet docs/sessions.md shows, run as it is (`authgate:8181` and `orders:8080` are filled in by startNginx). */
const SNIPPET = testedSnippet('nginx-sessions', fileURLToPath(new URL('../../docs/sessions.md', import.meta.url)))

test.before(async (t) => {
  const decidePort = await freePort()
  const app = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ path: req.url, headers: req.headers }))
  })
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
  const nginx = await startNginx({ authgate: `127.0.0.1:${decidePort}`, upstream: `127.0.0.1:${(app.address() as AddressInfo).port}` }, { snippet: SNIPPET })
  const base = nginx.url
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startLoginIdp({ port: await freePort(), clients: [{ clientId: 'app', secret: clientSecret, redirectUri: `${base}/.authgate/callback` }] })
  const gw = await startGateway({
    listeners: [{ name: 'decide', address: `127.0.0.1:${decidePort}`, mode: 'decide' }],
    upstreams: {},
    sessions: { secret: randomBytes(32).toString('hex'), allowInsecure: true },
    oidcClients: { corp: { issuer: idp.issuer, clientId: 'app', clientSecret, redirectUri: `${base}/.authgate/callback`, scopes: ['openid', 'email'] } },
    routes: [{ name: 'app', match: { path: '/**' }, policies: [{ session: { client: 'corp' } }] }],
  })
  t.context = { idp, gw, nginx, app, base }
})

test.after.always(async (t) => {
  await t.context.nginx?.stop()
  await t.context.gw?.close()
  await t.context.idp?.close()
  await new Promise((resolve) => t.context.app?.close(resolve))
})

test('through nginx: the navigation is sent to the login, the login completes, the app receives the user', async (t) => {
  const { base } = t.context
  const browser = new TestBrowser()
  const first = await browser.send(`${base}/app/page?x=1`)
  t.is(first.status, 302, t.context.nginx.output())
  t.is(first.location, `${base}/.authgate/login?rd=${encodeURIComponent('/app/page?x=1')}`)
  const { answer, trail } = await browser.navigate(first.location!, { user: 'lena' })
  t.true(trail.some((a) => a.url.startsWith(`${base}/.authgate/callback`) && a.status === 303))
  t.is(answer.status, 200)
  const seen = JSON.parse(answer.body) as { path: string, headers: Record<string, string> }
  t.is(seen.path, '/app/page?x=1')
  t.is(seen.headers['x-auth-subject'], 'lena')

  const api = await new TestBrowser().send(`${base}/app/api`, { kind: 'fetch' })
  t.is(api.status, 401, 'an API call without a session: 401, no redirect')
  t.is(api.location, undefined)

  const forged = await browser.send(`${base}/.authgate/logout`, { method: 'POST', kind: 'none', headers: { 'sec-fetch-site': 'cross-site' } })
  t.is(forged.status, 403)
  const out = await browser.send(`${base}/.authgate/logout`, { method: 'POST', kind: 'none', headers: { origin: base } })
  t.is(out.status, 303)
  t.is((await browser.send(`${base}/app/page`)).status, 302, 'logged out')
})
