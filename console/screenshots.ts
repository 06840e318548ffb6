/**
 * Regenerates docs/console/*.png: one screenshot per console page at 1280×800, from a real gateway with a demo
 * configuration and some traffic, in headless chromium. Run: `node --import tsx console/screenshots.ts`.
 */
import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { hashApiKey, newApiKey } from '../policies/api-key/format.js'
import { startGateway } from '../test/helpers/gateway.js'
import { buildConsole } from '../test/helpers/console.js'
import { launchBrowser } from '../test/helpers/browser.js'

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'console')
const token = randomBytes(24).toString('base64url')
const partner = newApiKey()
const mobile = newApiKey()

await buildConsole()
await mkdir(OUT, { recursive: true })
const gw = await startGateway({
  apiKeys: [{ id: partner.id, hash: hashApiKey(partner.key), client: 'partner-portal', scopes: ['orders:read'], tier: 'gold' }],
  rateLimitTiers: { gold: '600/min' },
  jwtProviders: { staff: { secret: '${env:STAFF_JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'internal' } },
  routes: [
    { name: 'orders', match: { path: '/v1/orders/**', methods: ['GET', 'POST'] }, upstream: 'demo', policies: [{ apiKey: {} }, { scopes: ['orders:read'] }, { rateLimit: { by: 'client', limit: '100/min' } }] },
    { name: 'reports', match: { path: '/v1/reports/**' }, upstream: 'demo', policies: [{ anyOf: [{ apiKey: {} }, { jwt: { provider: 'staff' } }] }, { claims: { groups: 'staff' } }] },
    { name: 'search', match: { path: '/v1/search' }, upstream: 'demo', policies: [{ rateLimit: { by: 'ip', limit: '5/s' } }], public: true },
    { name: 'health', match: { path: '/health', methods: ['GET'] }, upstream: 'demo', public: true },
  ],
}, { env: { AUTHGATE_ADMIN_TOKEN: token, STAFF_JWT_SECRET: randomBytes(32).toString('base64') } })

const bearer = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
for (const body of [{ client: 'mobile-app', scopes: ['orders:read'], tier: 'gold' }, { client: 'billing-batch', scopes: ['orders:read'], expiresIn: '90d' }, { client: 'old-integration' }]) {
  await fetch(`${gw.adminUrl}/admin/keys`, { method: 'POST', headers: bearer, body: JSON.stringify(body) })
}
const keys = await (await fetch(`${gw.adminUrl}/admin/keys`, { headers: bearer })).json() as Array<{ id: string, client: string }>
await fetch(`${gw.adminUrl}/admin/keys/${keys.find((k) => k.client === 'old-integration')!.id}`, { method: 'DELETE', headers: bearer })

// Traffic for the charts: some passes, some refusals, a burst on the rate-limited route.
let stop = false
const traffic = (async () => {
  for (let i = 0; !stop; i++) {
    const requests = [
      gw.fetch('/health'),
      gw.fetch(`/v1/orders/${i}`, { headers: { 'x-api-key': partner.key } }),
      ...(i % 3 === 0 ? [gw.fetch('/v1/orders/1')] : []),
      ...(i % 5 === 0 ? [gw.fetch('/v1/orders/1', { headers: { 'x-api-key': mobile.key } })] : []),
      ...(i % 4 === 0 ? [gw.fetch('/v1/reports/daily', { headers: { 'x-api-key': partner.key } })] : []),
      ...(i % 7 < 3 ? Array.from({ length: 4 }, () => gw.fetch('/v1/search?q=x')) : []),
    ]
    await Promise.all(requests.map(async (r) => { await (await r).arrayBuffer() }))
    await new Promise((resolve) => setTimeout(resolve, 60))
  }
})()

const browser = await launchBrowser({ width: 1280, height: 800 })
try {
  const { page } = browser
  await page.goto(`${gw.adminUrl}/console/`)
  await page.getByLabel('Admin token').waitFor()
  await page.screenshot({ path: join(OUT, 'sign-in.png') })
  await page.getByLabel('Admin token').fill(token)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByText('memory (this process)').waitFor()
  await page.screenshot({ path: join(OUT, 'overview.png') })
  await page.getByRole('link', { name: 'Routes' }).click()
  await page.locator('li[data-route="health"]').waitFor()
  await page.screenshot({ path: join(OUT, 'routes.png'), fullPage: true })
  await page.getByRole('link', { name: 'Keys' }).click()
  await page.getByLabel('Client', { exact: true }).fill('reporting-dashboard')
  await page.getByLabel('Scopes (space or comma separated)').fill('orders:read')
  await page.getByRole('button', { name: 'Create key' }).click()
  await page.getByTestId('new-key').waitFor()
  // Not a secret (this gateway is gone when the script ends), but no key-shaped string goes into the docs either.
  await page.evaluate(`(() => { const i = document.querySelector('[data-testid="new-key"]'); i.value = i.value.slice(0, 12) + '•'.repeat(32) })()`)
  await page.screenshot({ path: join(OUT, 'keys.png'), fullPage: true })
  await page.getByRole('link', { name: 'Traffic' }).click()
  await page.getByTestId('total-requests').waitFor()
  await new Promise((resolve) => setTimeout(resolve, 30_000)) // half a minute of traffic on the charts
  await page.screenshot({ path: join(OUT, 'traffic.png'), fullPage: true })
  await page.getByRole('link', { name: 'Explain' }).click()
  await page.getByLabel('URL (/path or http(s)://host/path)').fill('/v1/reports/daily')
  await page.getByLabel('Headers (one "Name: value" per line)').fill(`X-API-Key: ${partner.key}`)
  await page.getByRole('button', { name: 'Explain' }).click()
  await page.getByTestId('verdict').waitFor()
  await page.evaluate(`document.getElementById('x-headers').value = 'X-API-Key: ' + '•'.repeat(24)`)
  await page.screenshot({ path: join(OUT, 'explain.png'), fullPage: true })
  process.stdout.write(`screenshots written to ${OUT}\n`)
} finally {
  stop = true
  await traffic
  await browser.close()
  await gw.close()
}
