import test from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway } from '../helpers/gateway.js'
import { until } from '../helpers/until.js'

const good = newApiKey()

function config () {
  return {
    apiKeys: [{ id: good.id, hash: hashApiKey(good.key), client: 'metrics-app', scopes: [] }],
    routes: [
      { name: 'keyed', match: { path: '/v1/**' }, upstream: 'demo', policies: [{ apiKey: {} }] },
      { name: 'limited', match: { path: '/limited' }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'ip', limit: '1/min' } }] },
    ],
  }
}

async function scrape (adminUrl: string): Promise<string> {
  const res = await fetch(`${adminUrl}/metrics`)
  return await res.text()
}

function value (text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

test('metrics count requests by route, status and code, auth failures by method and code, and rate-limit refusals', async (t) => {
  const gw = await startGateway(config())
  t.teardown(() => gw.close())
  t.is((await gw.fetch('/v1/a', { headers: { 'x-api-key': good.key } })).status, 200)
  t.is((await gw.fetch('/v1/a')).status, 401)
  t.is((await gw.fetch('/nowhere')).status, 404)
  t.is((await gw.fetch('/limited')).status, 200)
  t.is((await gw.fetch('/limited')).status, 429)
  const text = await scrape(gw.adminUrl)
  t.is(value(text, 'authgate_requests_total{route="keyed",status="200",code="ok"}'), 1)
  t.is(value(text, 'authgate_requests_total{route="keyed",status="401",code="missing_credentials"}'), 1)
  t.is(value(text, 'authgate_requests_total{route="(none)",status="404",code="no_route"}'), 1)
  t.is(value(text, 'authgate_auth_failures_total{method="apiKey",code="missing_credentials"}'), 1)
  t.is(value(text, 'authgate_rate_limited_total{route="limited"}'), 1)
  t.truthy(value(text, 'authgate_request_duration_seconds_count{route="keyed"}'))
  t.truthy(value(text, 'authgate_store_duration_seconds_count{op="rateLimit"}'))
  t.regex(text, /authgate_config_info\{hash="[0-9a-f]{12}"\}/)
})

test('the API-key cache hit ratio is exported: a repeated dynamic-key lookup is a hit, the first a miss', async (t) => {
  const gw = await startGateway(config(), { env: { AUTHGATE_ADMIN_TOKEN: 'metrics-admin-token-0123456789' } })
  t.teardown(() => gw.close())
  const created = await fetch(`${gw.adminUrl}/admin/keys`, {
    method: 'POST',
    headers: { authorization: 'Bearer metrics-admin-token-0123456789', 'content-type': 'application/json' },
    body: JSON.stringify({ client: 'dyn' }),
  })
  t.is(created.status, 201)
  const { key } = await created.json() as { key: string }
  for (let i = 0; i < 3; i++) t.is((await gw.fetch('/v1/a', { headers: { 'x-api-key': key } })).status, 200)
  const text = await scrape(gw.adminUrl)
  t.is(value(text, 'authgate_cache_lookups_total{cache="apiKey",result="miss"}'), 1)
  t.is(value(text, 'authgate_cache_lookups_total{cache="apiKey",result="hit"}'), 2)
})

test('store failures are counted and a store outage shows on /readyz', async (t) => {
  const gw = await startGateway({ ...config(), store: { timeout: '2s' } }, { redis: true })
  t.teardown(() => gw.close())
  // The store connects in the background: wait until /readyz says so.
  await until(async () => (await fetch(`${gw.adminUrl}/readyz`)).status === 200, { timeoutMs: 5000, intervalMs: 50, message: '/readyz 200' }).catch(() => {})
  t.is((await gw.fetch('/limited')).status, 200)
  t.is((await fetch(`${gw.adminUrl}/readyz`)).status, 200)
  await gw.redis!.kill()
  t.is((await gw.fetch('/limited')).status, 503)
  const text = await scrape(gw.adminUrl)
  t.true((value(text, 'authgate_store_errors_total') ?? 0) >= 1)
  t.is((await fetch(`${gw.adminUrl}/readyz`)).status, 503)
})
