import test from 'ava'
import { Metrics } from '../metrics.js'
import { ConsoleSessions, SESSION_TTL_MS } from './session.js'
import { quantile, SLOT_MS, TrafficRecorder, trafficView } from './traffic.js'

test('a session cookie holds for 8 h, not after; a changed admin token or a sign-out ends it; another key cannot forge one', (t) => {
  let now = 1_700_000_000_000
  let token: string | undefined = 'first-admin-token-0123456789'
  const sessions = new ConsoleSessions(() => token, () => now)
  const { value, session } = sessions.issue()!
  t.false(value.includes(token))
  t.deepEqual(sessions.verify(value), session)
  now += SESSION_TTL_MS - 1_000
  t.truthy(sessions.verify(value))
  now += 1_000
  t.is(sessions.verify(value), undefined, 'expired at 8 h')
  now -= 60_000
  const other = new ConsoleSessions(() => 'another-admin-token-0123456789', () => now)
  t.is(other.verify(value), undefined)
  t.is(sessions.verify(value.replace(/\.\d+\./, (m) => `.${Number(m.slice(1, -1)) + 3600}.`)), undefined, 'a longer expiry breaks the MAC')
  sessions.revoke(session)
  t.is(sessions.verify(value), undefined)
  const second = sessions.issue()!
  token = 'rotated-admin-token-0123456789'
  t.is(sessions.verify(second.value), undefined)
  token = undefined
  t.is(sessions.issue(), undefined)
  t.false(sessions.tokenMatches(''))
})

test('quantile interpolates within the bucket as histogram_quantile does; no observation is null', (t) => {
  t.is(quantile(0.5, [0.1, 0.2], [0, 0, 0]), null)
  t.is(quantile(0.5, [0.1, 0.2], [10, 10, 10]), 0.05)
  t.true(Math.abs(quantile(0.5, [0.1, 0.2], [0, 10, 10])! - 0.15) < 1e-12)
  t.is(quantile(0.99, [0.1, 0.2], [0, 0, 10]), 0.2, 'in +Inf: the largest finite bound')
})

test('traffic: a recorder keeps per-slot differences; reports of several workers add up slot by slot', (t) => {
  let now = 1_700_000_000_000
  const a = new Metrics({ defaultMetrics: false })
  const b = new Metrics({ defaultMetrics: false })
  const ra = new TrafficRecorder(a, () => now)
  const rb = new TrafficRecorder(b, () => now)
  a.requests.inc({ route: 'r', status: 200, code: 'ok' }, 3)
  a.duration.observe({ route: 'r' }, 0.003)
  b.requests.inc({ route: 'r', status: 401, code: 'missing_credentials' }, 2)
  b.authFailures.inc({ method: 'apiKey', code: 'missing_credentials' }, 2)
  b.rateLimited.inc({ route: 'r' })
  ra.tick(); rb.tick()
  now += SLOT_MS
  a.requests.inc({ route: 'r', status: 200, code: 'ok' }, 4)
  const view = trafficView([ra.report(), rb.report()], now)
  t.is(view.workers, 2)
  t.is(view.times.length, 450)
  t.deepEqual(view.totals, { requests: 9, byStatus: { '2xx': 7, '4xx': 2 }, authFailures: { missing_credentials: 2 }, rateLimited: 1 })
  t.deepEqual(view.rps['2xx']!.slice(-2), [1.5, 2])
  t.is(view.latency.r!.p50.at(-2), 0.0025 + 0.0025 * 0.5, 'one observation of 3 ms: the middle of (2.5 ms, 5 ms]')
  t.is(view.latency.r!.p50.at(-1), null)
})

test('/metrics of several workers: registries summed by prom-client, the policies\' own series added by name and labels', async (t) => {
  const { aggregateMetrics, metricsReport } = await import('../metrics.js')
  const reports = await Promise.all([3, 4].map(async (n) => {
    const m = new Metrics({ defaultMetrics: false })
    m.requests.inc({ route: 'r', status: 200, code: 'ok' }, n)
    m.duration.observe({ route: 'r' }, 0.001 * n)
    m.reported = () => [{ name: 'authgate_session_logins_total', help: 'Logins.', type: 'counter', labels: { result: 'ok' }, value: n }]
    return metricsReport(m)
  }))
  const { body } = await aggregateMetrics(JSON.parse(JSON.stringify(reports)) as unknown[]) // as sent between processes
  t.regex(body, /^authgate_requests_total\{route="r",status="200",code="ok"\} 7$/m)
  t.regex(body, /^authgate_request_duration_seconds_count\{route="r"\} 2$/m)
  t.regex(body, /^authgate_workers 2$/m)
  t.regex(body, /^authgate_session_logins_total\{result="ok"\} 7$/m)
})
