/**
 * A client that leaves while its request is still in the policy chain (here: a slow token introspection) must not
 * cost the gateway an upstream connection: the request is never forwarded, and the next requests are served. The
 * upstream allows ONE connection, so a connection left paused on a response nobody reads would block every later
 * request of that upstream.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import anyTest, { type TestFn } from 'ava'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { until } from '../helpers/until.js'
import { openGet, probe, recordingUpstream, type RecordingUpstream } from './support.js'

const test = anyTest as TestFn<{ gw: TestGateway, upstream: RecordingUpstream, introspection: http.Server }>

const SLOW_MS = 400

test.before(async (t) => {
  // Every token is active, after SLOW_MS: the chain is still running when the impatient client leaves.
  const introspection = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => setTimeout(() => {
      const body = JSON.stringify({ active: true, sub: 'slow-user', client_id: 'slow-client', exp: Math.floor(Date.now() / 1000) + 60 })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body)
    }, SLOW_MS))
  })
  await new Promise<void>((resolve) => introspection.listen(0, '127.0.0.1', resolve))
  const endpoint = `http://127.0.0.1:${(introspection.address() as AddressInfo).port}/introspect`
  // A body big enough to need several writes, so a response nobody reads would leave the upstream paused.
  const upstream = await recordingUpstream((req, res) => {
    req.resume()
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.alloc(256 * 1024, 0x61)))
  })
  const gw = await startGateway({
    upstreams: { one: { url: upstream.url, connections: 1 } },
    routes: [
      { name: 'slow', match: { path: '/slow/**' }, upstream: 'one', policies: [{ introspection: { endpoint, clientId: 'gw', clientSecret: 'introspection-test-secret' } }] },
      { name: 'open', match: { path: '/open/**' }, upstream: 'one', public: true },
    ],
  })
  t.context = { gw, upstream, introspection }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.upstream?.close()
  t.context.introspection?.closeAllConnections()
  await new Promise((resolve) => t.context.introspection?.close(resolve))
})

/** A GET that the client abandons after `leaveAfterMs`. */
async function abandon (gw: TestGateway, path: string, token: string, leaveAfterMs: number): Promise<void> {
  const { socket } = await openGet(gw.url, path, 0, [`Authorization: Bearer ${token}`])
  await new Promise((resolve) => setTimeout(resolve, leaveAfterMs))
  socket.destroy()
}

async function within<T> (ms: number, work: Promise<T>): Promise<T | 'timed out'> {
  return await Promise.race([work, new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), ms).unref())])
}

test('clients that leave while the chain runs are never forwarded, and later requests still get the upstream', async (t) => {
  const { gw, upstream } = t.context
  const gone = probe()
  // Three in a row: each would have taken the upstream's only connection for good.
  for (let i = 0; i < 3; i++) await abandon(gw, `/slow/${gone}/${i}`, `opaque-token-${gone}-${i}`, 50)
  // Each is logged when its chain ends (after the slow introspection); it had no X-Request-Id to wait for. A request
  // forwarded would have reached the upstream before its line, so only now is "never forwarded" final.
  const lines = () => gw.rawLogs().split('\n').filter((l) => l.includes(gone) && l.includes('"msg":"request"'))
  await until(() => lines().length >= 3, { timeoutMs: 5000, intervalMs: 10, message: 'the access lines of the three abandoned requests' })
  t.is(upstream.seen.filter((s) => s.url.includes(gone)).length, 0, 'a departed client\'s request was forwarded')
  const logged = lines().map((l) => JSON.parse(l) as { status: number, code: string })
  t.deepEqual(logged.map((l) => `${l.status} ${l.code}`), ['499 client_closed', '499 client_closed', '499 client_closed'])

  // The twin: requests whose clients wait are answered in full, through the same single connection.
  const open = await within(5_000, gw.fetch(`/open/${probe()}`).then(async (res) => ({ status: res.status, bytes: (await res.arrayBuffer()).byteLength })))
  t.deepEqual(open, { status: 200, bytes: 256 * 1024 })
  const slow = await within(5_000, gw.fetch(`/slow/${probe()}`, { headers: { authorization: 'Bearer opaque-token-patient' } }).then((res) => res.status))
  t.is(slow, 200)
})
