/**
 * `workers: 2` (issue 18): /metrics on the admin listener is the sum over every worker, whichever worker answers.
 * A real `authgate start` child process; requests on new connections, which the primary spreads over the workers.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { stringify } from 'yaml'
import { freePort, rawGet } from './support.js'
import { killChildren, runCli, waitUntilServing } from '../helpers/child.js'
import { until } from '../helpers/until.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'

test.after.always(killChildren)

const TOKEN = 'workers-admin-token-' + 'y'.repeat(20)

function value (text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

test('workers: 2 — /metrics and the console\'s traffic count the requests of every worker, whichever worker answers', async (t) => {
  t.timeout(180_000)
  const redis = await startRedis()
  const [port, adminPort] = [await freePort(), await freePort()]
  const dir = await mkdtemp(join(tmpdir(), 'authgate-workers-metrics-'))
  t.teardown(async () => { await redis.stop(); await rm(dir, { recursive: true, force: true }) })
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({
    version: 1,
    workers: 2,
    store: { redis: redis.url, prefix: uniquePrefix('workers-metrics') },
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    admin: { address: `127.0.0.1:${adminPort}`, token: TOKEN },
    upstreams: { demo: { echo: true } },
    routes: [{ name: 'open', match: { path: '/v1/**' }, upstream: 'demo', public: true }],
  }))
  const child = runCli(['start', '-c', file])
  const adminUrl = `http://127.0.0.1:${adminPort}`
  await waitUntilServing(child, `${adminUrl}/healthz`)
  await until(() => child.output().split('"msg":"authgate started"').length - 1 === 2, { timeoutMs: 90_000, message: 'both workers started' })

  const N = 40
  for (let i = 0; i < N; i++) t.is((await rawGet(`http://127.0.0.1:${port}`, `/v1/n${i}`)).status, 200)
  // The access lines are written at the end of an event-loop turn: wait for all of them.
  await until(() => child.output().split('"msg":"request"').length - 1 === N, { timeoutMs: 10_000, message: 'every access line' })

  // Several scrapes on new connections (so from both workers): each shows the total.
  for (let i = 0; i < 6; i++) {
    const res = await rawGet(adminUrl, '/metrics')
    t.is(res.status, 200)
    t.is(value(res.body, 'authgate_workers'), 2, 'the scrape sums both workers')
    t.is(value(res.body, 'authgate_requests_total{route="open",status="200",code="ok"}'), N)
    t.is(value(res.body, 'authgate_request_duration_seconds_count{route="open"}'), N)
    t.is(value(res.body, 'authgate_request_duration_seconds_bucket{le="+Inf",route="open"}'), N)
  }
  // The console's traffic too: signed in on one worker, the session holds on the other, and the totals are N.
  const signIn = await fetch(`${adminUrl}/console/session`, { method: 'POST', headers: { 'x-authgate-console': '1', origin: adminUrl, 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }) })
  t.is(signIn.status, 200)
  const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!
  for (let i = 0; i < 6; i++) {
    const res = await rawGet(adminUrl, '/console/api/traffic', [`Cookie: ${cookie}`])
    t.is(res.status, 200, res.body)
    const traffic = JSON.parse(res.body) as { workers: number, totals: { requests: number, byStatus: Record<string, number> } }
    t.is(traffic.workers, 2)
    t.is(traffic.totals.requests, N)
    t.deepEqual(traffic.totals.byStatus, { '2xx': N })
  }
  // Sign-out on one worker ends the session on every worker.
  const out = await fetch(`${adminUrl}/console/session`, { method: 'DELETE', headers: { 'x-authgate-console': '1', origin: adminUrl, cookie } })
  t.is(out.status, 204)
  await until(async () => {
    for (let i = 0; i < 6; i++) if ((await rawGet(adminUrl, '/console/api/traffic', [`Cookie: ${cookie}`])).status !== 401) return false
    return true
  }, { timeoutMs: 2_000, message: 'the session refused by both workers' })
  child.process.kill('SIGTERM')
  t.is(await child.exited, 0)
})
