/**
 * The console in a real browser (issue 18): Debian's chromium, headless, driven by playwright-core. Sign in with the
 * token; every route shown with its chain; a key created, read once, used (200), revoked (401 within 1 s); traffic
 * counters move; a refused request explained down to the refusing step; sign-out refuses the session. No CSP
 * violation, no serious or critical axe-core finding, and the token nowhere in the browser's storage or profile.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway } from '../helpers/gateway.js'
import { buildConsole } from '../helpers/console.js'
import { axeScan, launchBrowser, type AxeViolation } from '../helpers/browser.js'
import { until } from '../helpers/until.js'

const TOKEN = 'browser-admin-token-' + 'z'.repeat(24)
const staticKey = newApiKey()

test.before(async () => { await buildConsole() })

const ROUTES = [
  { name: 'orders', match: { path: '/v1/orders/**', methods: ['GET', 'POST'] }, upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '100/min' } }] },
  { name: 'admin-api', match: { path: '/v1/admin/**' }, upstream: 'demo', policies: [{ apiKey: {} }, { scopes: ['admin'] }] },
  { name: 'health', match: { path: '/health' }, upstream: 'demo', public: true },
]
const CHAINS: Record<string, string[]> = {
  orders: ['apiKey', 'rateLimit 100/min by=client'],
  'admin-api': ['apiKey', 'scopes admin'],
  health: [],
}

async function filesContaining (dir: string, text: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    try { if ((await readFile(path)).includes(text)) found.push(path) } catch {} // sockets, files in use
  }
  return found
}

test('the console in chromium: sign in, routes, a key created/used/revoked, traffic, explain, sign-out; no CSP violation, axe clean', async (t) => {
  t.timeout(240_000)
  const gw = await startGateway({
    apiKeys: [{ id: staticKey.id, hash: hashApiKey(staticKey.key), client: 'static-app', scopes: [] }],
    routes: ROUTES,
  }, { redis: true, env: { AUTHGATE_ADMIN_TOKEN: TOKEN } })
  t.teardown(() => gw.close())
  const browser = await launchBrowser()
  t.teardown(() => browser.close())
  const { page } = browser
  const axe: Record<string, AxeViolation[]> = {}
  const scan = async (name: string) => { axe[name] = await axeScan(page) }

  // Sign in.
  await page.goto(`${gw.adminUrl}/console/`)
  await page.getByLabel('Admin token').waitFor()
  await scan('sign-in')
  await page.getByLabel('Admin token').fill('not-the-token')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('alert').filter({ hasText: 'wrong admin token' }).waitFor()
  await page.getByLabel('Admin token').fill(TOKEN)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('navigation', { name: 'console pages' }).waitFor()
  t.is(await page.getByLabel('Admin token').count(), 0)
  const cookies = await browser.context.cookies()
  t.deepEqual(cookies.map((c) => [c.name, c.httpOnly, c.sameSite]), [['authgate-console', true, 'Strict']])
  const storage = await page.evaluate('JSON.stringify([document.cookie, Object.entries(localStorage), Object.entries(sessionStorage)])') as string
  t.false(storage.includes(TOKEN))
  t.is(storage, '["",[],[]]')
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor()
  await page.getByText('Redis', { exact: true }).waitFor()
  await scan('overview')

  // Routes: each one with its chain drawn as steps.
  await page.getByRole('link', { name: 'Routes' }).click()
  await page.locator('li[data-route="health"]').waitFor()
  for (const route of ROUTES) {
    const card = page.locator(`li[data-route="${route.name}"]`)
    t.is(await card.getByRole('heading', { level: 2 }).innerText().then((s) => s.replace(/\s*public$/, '')), route.name)
    t.deepEqual(await card.locator('.chain .step').allInnerTexts(), CHAINS[route.name])
    t.is(await card.locator('.badge').count(), route.public === true ? 1 : 0)
  }
  await scan('routes')

  // Keys: create, read the key once, use it; revoke it and see 401 within 1 s.
  await page.getByRole('link', { name: 'Keys' }).click()
  await page.getByLabel('Client', { exact: true }).fill('browser-app')
  await page.getByLabel('Scopes (space or comma separated)').fill('orders:read')
  await page.getByRole('button', { name: 'Create key' }).click()
  const shown = page.getByTestId('new-key')
  await shown.waitFor()
  const key = await shown.inputValue()
  t.regex(key, /\S{20,}/)
  await scan('keys')
  t.is((await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': key } })).status, 200)
  await page.getByRole('button', { name: 'Done, hide it' }).click()
  t.is(await page.getByTestId('new-key').count(), 0)
  t.false((await page.content()).includes(key), 'the key is shown once, then gone from the page')
  const first = await page.locator('tr', { hasText: 'browser-app' }).getAttribute('data-key')
  t.truthy(first)
  // Rotate with a grace period: the new key is shown once; both work during the grace.
  const firstRow = page.locator(`tr[data-key="${first}"]`)
  await firstRow.getByRole('button', { name: `Rotate ${first!}` }).click()
  await firstRow.getByLabel('Grace').fill('10m')
  await firstRow.getByRole('button', { name: 'Confirm rotate' }).click()
  await page.getByTestId('new-key').waitFor()
  t.regex(await page.getByRole('heading', { name: /New key for browser-app/ }).innerText(), new RegExp(`replaces ${first!}`))
  const rotated = await page.getByTestId('new-key').inputValue()
  t.not(rotated, key)
  await page.getByRole('button', { name: 'Done, hide it' }).click()
  t.is((await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': rotated } })).status, 200)
  t.is((await gw.fetch('/v1/orders/1', { headers: { 'x-api-key': key } })).status, 200, 'the old key works during the grace period')
  const ids = await Promise.all((await page.locator('tr[data-key]', { hasText: 'browser-app' }).all()).map(async (r) => await r.getAttribute('data-key')))
  t.is(ids.length, 2)
  const id = ids.find((i) => i !== first)
  t.truthy(id)
  const row = page.locator(`tr[data-key="${id}"]`)
  await row.getByRole('button', { name: `Revoke ${id!}` }).click()
  // From the moment the gateway answered the revoke: the key is refused within 1 s.
  const revoked = page.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().endsWith(`/admin/keys/${id!}`))
  await row.getByRole('button', { name: 'Confirm revoke' }).click()
  t.is((await revoked).status(), 204)
  const revokedAt = Date.now()
  await until(async () => (await gw.fetch('/v1/orders/2', { headers: { 'x-api-key': rotated } })).status === 401, { timeoutMs: 1_000, intervalMs: 20, message: 'the revoked key refused within 1 s' })
  t.true(Date.now() - revokedAt < 1_000)
  await row.getByText('revoked').waitFor()
  t.is((await gw.fetch('/v1/orders/3', { headers: { 'x-api-key': staticKey.key } })).status, 200, 'another key still passes')

  // Traffic: the counters move after requests.
  await page.getByRole('link', { name: 'Traffic' }).click()
  const total = page.getByTestId('total-requests')
  await total.waitFor()
  const before = Number(await total.innerText())
  for (let i = 0; i < 5; i++) t.is((await gw.fetch('/health')).status, 200)
  t.is((await gw.fetch('/v1/orders/4')).status, 401)
  await until(async () => Number(await total.innerText()) >= before + 6, { timeoutMs: 6_000, message: 'the traffic page counted the requests' })
  await until(async () => Number(await page.getByTestId('total-auth-failures').innerText()) >= 1, { timeoutMs: 6_000, message: 'auth failures counted' })
  t.true(await page.locator('.uplot canvas').count() >= 3, 'charts drawn')
  await scan('traffic')

  // Explain a refused request: the refusing step is shown.
  await page.getByRole('link', { name: 'Explain' }).click()
  await page.getByLabel('URL (/path or http(s)://host/path)').fill('/v1/admin/users')
  await page.getByLabel('Headers (one "Name: value" per line)').fill(`X-API-Key: ${staticKey.key}`)
  await page.getByRole('button', { name: 'Explain' }).click()
  await page.getByTestId('verdict').waitFor()
  t.is(await page.getByTestId('verdict').innerText(), 'refused: 403 insufficient_scope')
  t.is(await page.getByTestId('route').innerText(), 'admin-api → demo')
  t.regex(await page.locator('li[data-verdict="reject"]').innerText(), /^scopes — refused \(403 insufficient_scope\)/)
  t.regex(await page.locator('li[data-verdict="pass"]').innerText(), /^apiKey — passed/)
  await scan('explain')

  // Sign out: back to the sign-in page, and the old session is refused.
  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.getByLabel('Admin token').waitFor()
  const after = await page.evaluate("fetch('/console/api/overview').then((r) => r.status)")
  t.is(after, 401)
  const keysAfter = await page.evaluate("fetch('/admin/keys').then((r) => r.status)")
  t.is(keysAfter, 401)
  t.deepEqual(await browser.context.cookies(), [])

  // Phone width: still usable (the navigation and a page fit).
  await page.setViewportSize({ width: 390, height: 844 })
  await page.getByLabel('Admin token').fill(TOKEN)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('navigation', { name: 'console pages' }).waitFor()
  t.false(await page.evaluate('document.documentElement.scrollWidth > window.innerWidth + 1') as boolean, 'no horizontal scroll at phone width')
  await scan('overview (phone)')

  t.log('axe (all impacts):', JSON.stringify(Object.fromEntries(Object.entries(axe).map(([k, v]) => [k, v.map((x) => `${x.id}:${x.impact}`)]))))
  t.deepEqual(browser.cspViolations, [], 'no CSP violation reported by the browser')
  // The listener works: a style attribute set as markup is refused and reported.
  await page.evaluate(`document.body.insertAdjacentHTML('beforeend', '<p style="color: red">x</p>')`)
  await until(() => browser.cspViolations.length > 0, { timeoutMs: 5_000, message: 'the probe violation reported' })
  t.regex(browser.cspViolations.join('\n'), /style-src/)
  t.deepEqual(browser.pageErrors, [])
  for (const [name, violations] of Object.entries(axe)) {
    t.deepEqual(violations.filter((v) => v.impact === 'serious' || v.impact === 'critical'), [], `axe on ${name}`)
  }
  await browser.context.close()
  t.deepEqual(await filesContaining(browser.profile, TOKEN), [], 'the token is nowhere in the browser profile')
})
