/**
 * A real browser (Debian's chromium, headless, driven by playwright-core; no browser download): log in through
 * oidc-provider's own pages, the cookie's flags from the browser's cookie store, reload, fetch() from the page, logout.
 * Fails, never skips, when /usr/bin/chromium is not installed (`.ci/run` installs it with apt).
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import test from 'ava'
import { startGateway } from '../helpers/gateway.js'
import { mintPki } from '../helpers/pki.js'
import { freePort } from '../e2e/support.js'
import { startLoginIdp } from '../../policies/session/fixtures/oidc-idp.js'

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium'
test('in chromium: login through the provider\'s pages, a __Host- HttpOnly Secure cookie, reload, fetch, logout', async (t) => {
  if (!existsSync(CHROMIUM)) t.fail(`${CHROMIUM} is not installed: apt-get install chromium (.ci/run does), or set CHROMIUM_BIN`)
  const { chromium } = await import('playwright-core')
  const pki = await mintPki()
  const port = await freePort()
  const base = `https://127.0.0.1:${port}`
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startLoginIdp({ port: await freePort(), clients: [{ clientId: 'app', secret: clientSecret, redirectUri: `${base}/.authgate/callback`, postLogoutRedirectUri: `${base}/bye` }] })
  const gw = await startGateway({
    listeners: [{ name: 'tls', address: `127.0.0.1:${port}`, tls: { cert: pki.server.certPath, key: pki.server.keyPath } }],
    sessions: { secret: '${env:SESSION_SECRET}' },
    oidcClients: { corp: { issuer: idp.issuer, clientId: 'app', clientSecret: '${env:CLIENT_SECRET}', redirectUri: `${base}/.authgate/callback`, postLogoutRedirectUri: `${base}/bye`, prompt: 'consent' } },
    routes: [
      { name: 'bye', match: { path: '/bye' }, upstream: 'demo', public: true },
      { name: 'app', match: { path: '/app/**' }, upstream: 'demo', policies: [{ session: { client: 'corp', forwardAccessToken: true } }] },
    ],
  }, { env: { SESSION_SECRET: randomBytes(48).toString('base64'), CLIENT_SECRET: clientSecret } })
  const profile = await mkdtemp(join(tmpdir(), 'authgate-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true, // the test CA is not in the browser's store
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  try {
    const page = await context.newPage()
    await page.goto(`${base}/app/home?tab=1`)
    // oidc-provider's own sign-in page, then its consent page. On a timeout, say where the browser was.
    await page.waitForSelector('input[name="login"]').catch(async (error: Error) => {
      throw new Error(`${error.message}\nat ${page.url()}:\n${(await page.content()).slice(0, 2000)}`)
    })
    t.true(page.url().startsWith(idp.issuer))
    await page.fill('input[name="login"]', 'erin')
    await page.fill('input[name="password"]', 'anything')
    await page.click('button[type="submit"]')
    await page.waitForURL((url) => url.href.startsWith(`${base}/app/home`) || url.pathname.startsWith('/interaction/'))
    if (!page.url().startsWith(base)) {
      await page.click('button[type="submit"]')
      await page.waitForURL((url) => url.href.startsWith(`${base}/app/home`))
    }
    t.is(page.url(), `${base}/app/home?tab=1`)
    const seen = JSON.parse(await page.textContent('body') ?? '{}') as { headers: Record<string, string> }
    t.is(seen.headers['x-auth-subject'], 'erin')
    t.regex(seen.headers.authorization ?? '', /^Bearer /)

    const cookies = await context.cookies(base)
    const session = cookies.find((c) => c.name === '__Host-authgate')
    t.truthy(session)
    t.like(session, { httpOnly: true, secure: true, sameSite: 'Lax', path: '/', domain: '127.0.0.1' })
    t.false(cookies.some((c) => c.name === 'authgate'), 'no insecure cookie on TLS')

    await page.reload()
    t.is((JSON.parse(await page.textContent('body') ?? '{}') as { headers: Record<string, string> }).headers['x-auth-subject'], 'erin')

    // From the page: a same-origin fetch() (the browser adds Sec-Fetch-Site: same-origin), GET and POST.
    const fetched = await page.evaluate(async () => {
      const get = await fetch('/app/api/orders', { headers: { accept: 'application/json' } })
      const post = await fetch('/app/api/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
      const info = await fetch('/.authgate/session')
      return { get: get.status, subject: (await get.json() as { headers: Record<string, string> }).headers['x-auth-subject'], post: post.status, info: await info.json() as unknown }
    })
    t.like(fetched, { get: 200, subject: 'erin', post: 200, info: { authenticated: true, subject: 'erin' } })
    t.false(JSON.stringify(fetched.info).includes(seen.headers.authorization!.slice(7)), 'the page never sees a token')

    // Logout: a form POST from the page, then the provider's own logout confirmation.
    // (A string: the page's DOM types are not in this project's lib.)
    await page.evaluate(`(() => {
      const form = document.createElement('form')
      form.method = 'POST'
      form.action = '/.authgate/logout'
      document.body.appendChild(form)
      form.submit()
    })()`)
    await page.waitForURL((url) => url.href.startsWith(idp.issuer))
    t.false((await context.cookies(base)).some((c) => c.name === '__Host-authgate'), 'the cookie is gone from the browser')
    const confirm = await page.$('button[autofocus], button[type="submit"]')
    if (confirm) {
      await confirm.click()
      await page.waitForURL(`${base}/bye`)
    }
    const after = await context.request.get(`${base}/.authgate/session`)
    t.deepEqual(await after.json(), { authenticated: false })
    const api = await context.request.get(`${base}/app/api/orders`, { headers: { accept: 'application/json' }, maxRedirects: 0 })
    t.is(api.status(), 401)
  } finally {
    await context.close()
    await rm(profile, { recursive: true, force: true })
    await gw.close()
    await idp.close()
  }
})
