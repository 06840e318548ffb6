/**
 * Redis faults under load, in both `store.onError` modes at once: two gateways on one real redis-server (one
 * `deny`, one `allow`) each carry a steady closed-loop load while Redis is killed and restarted, paused (SIGSTOP)
 * and resumed, and blocked by `DEBUG SLEEP`. Routes:
 *   /free/**  public, needs no store           -> 200 throughout, in both modes
 *   /rl/**    public + rateLimit by ip          -> deny: 503 while the store is gone; allow: 200 (per-instance)
 *   /krl/**   static key + rateLimit by client  -> likewise
 *   /dyn/**   a dynamic key never verified before the fault (store lookup)  -> 503 in both modes, never 200
 *   /h/**     hmac-sha256 (replay check in the store)  -> 503, never 200
 * Asserted over the requests that started and ended inside each fault window; every request of the whole run is
 * answered within the store timeout plus a margin (none hangs), and service comes back without a restart.
 */
import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { fieldsFromRecord, recordKey } from '../../policies/api-key/records.js'
import { parseKeyHash } from '../../policies/api-key/format.js'
import { signRequest } from '../../policies/hmac/sign.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { command } from '../helpers/redis.js'
import { until } from '../helpers/until.js'
import { delay, histogram, startLoad, within, type Load, type Sample } from './support.js'

interface Context { deny: TestGateway, allow: TestGateway, load: Load, keys: { static: string, dyn: Record<'deny' | 'allow', string> }, secret: string }
const test = anyTest as TestFn<Context>

const STORE_TIMEOUT_MS = 300
/** Longest acceptable answer time while the store misbehaves: the store timeout, plus scheduling margin on a busy CI box. */
const BOUND_MS = STORE_TIMEOUT_MS + 2200

function config (onError: 'deny' | 'allow', staticKey: { id: string, key: string }) {
  return {
    store: { onError, timeout: `${STORE_TIMEOUT_MS}ms` },
    apiKeys: [{ id: staticKey.id, hash: hashApiKey(staticKey.key), client: 'static-client', scopes: ['read'] }],
    signingClients: [{ keyId: 'billing', client: 'billing-service', secret: '${env:FAULT_HMAC_SECRET}' }],
    routes: [
      { name: 'free', match: { path: '/free/**' }, upstream: 'demo', public: true },
      { name: 'rl', match: { path: '/rl/**' }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'ip', limit: '1000000/sec' } }] },
      { name: 'krl', match: { path: '/krl/**' }, upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '1000000/sec' } }] },
      { name: 'dyn', match: { path: '/dyn/**' }, upstream: 'demo', policies: [{ apiKey: {} }] },
      { name: 'h', match: { path: '/h/**' }, upstream: 'demo', policies: [{ hmac: {} }] },
    ],
  }
}

/** Writes a dynamic key record into a gateway's store (what `authgate keys create` does) and returns the key. */
async function createDynamicKey (gw: TestGateway): Promise<string> {
  // After a restart the gateway reconnects by itself; wait for that, as an operator's tooling would.
  await until(() => gw.gateway.currentStore.ping().then(() => true, () => false), { timeoutMs: 10_000, intervalMs: 50, message: 'the store to reconnect' })
  const { id, key } = newApiKey()
  const fields = fieldsFromRecord({
    id, digest: parseKeyHash(hashApiKey(key))!, client: 'dynamic-client', scopes: ['read'], revoked: false, createdAtMs: Date.now(),
  })
  // The store timeout here is short on purpose (300 ms): on a loaded machine one write may miss it, so retry.
  await until(() => gw.gateway.currentStore.setHash(recordKey(id), fields).then(() => true, () => false), { timeoutMs: 10_000, intervalMs: 50, message: 'the key record to be written' })
  return key
}

test.before(async (t) => {
  const staticKey = newApiKey()
  const secret = randomBytes(32).toString('base64url')
  const env = { FAULT_HMAC_SECRET: secret }
  const deny = await startGateway(config('deny', staticKey), { redis: true, env })
  const allow = await startGateway(config('allow', staticKey), { redis: deny.redis!.url, env })
  const keys = { static: staticKey.key, dyn: { deny: await createDynamicKey(deny), allow: await createDynamicKey(allow) } }
  const kinds = ['free', 'rl', 'krl', 'dyn', 'h'] as const
  // Each worker cycles through every kind on its own count: with one shared count, which worker drew which kind
  // followed the order answers came back in, and a fault window could pass without a single deny:dyn request.
  const workers = 8
  const sent = new Array<number>(workers).fill(0)
  const load = startLoad((worker, n) => {
    const which = worker % 2 === 0 ? 'deny' : 'allow'
    const gw = which === 'deny' ? deny : allow
    const kind = kinds[sent[worker]!++ % kinds.length]!
    const label = `${which}:${kind}`
    const target = `/${kind}/x?n=${n}`
    switch (kind) {
      case 'krl': return { label, url: gw.url + target, headers: { 'x-api-key': keys.static } }
      case 'dyn': return { label, url: gw.url + target, headers: { 'x-api-key': keys.dyn[which] } }
      case 'h': return { label, url: gw.url + target, headers: signRequest({ keyId: 'billing', secret, method: 'GET', url: gw.url + target }) }
      default: return { label, url: gw.url + target }
    }
  }, { workers, timeoutMs: 8_000 })
  t.context = { deny, allow, load, keys, secret }
})

test.after.always(async (t) => {
  await t.context.load?.stop()
  await t.context.allow?.close()
  await t.context.deny?.close()
})

interface Window { from: number, to: number }

/**
 * Runs one fault: fresh dynamic keys (never verified), a healthy stretch, the fault for ~3 s, recovery; returns the
 * fault window (from the moment the fault was in place to the moment recovery began) and the recovery instant.
 */
async function fault (ctx: Context, inject: () => Promise<number>, recover: () => Promise<void>): Promise<{ window: Window, recovered: number }> {
  // Keys made before the fault and first used inside it: nothing cached them, so their lookup needs the store.
  const fresh = { deny: await createDynamicKey(ctx.deny), allow: await createDynamicKey(ctx.allow) }
  await delay(500)
  const from = await inject()
  ctx.keys.dyn = fresh
  await delay(3_000)
  const to = performance.now()
  await recover()
  return { window: { from, to }, recovered: performance.now() }
}

/** Resolves once a PING to Redis goes unanswered for 150 ms (it is blocked), at most after 5 s. */
async function untilAsleep (port: number): Promise<void> {
  await until(() => command(port, ['PING'], 150).then(() => false, () => true), { timeoutMs: 5_000, intervalMs: 10, message: 'Redis to start sleeping' })
}

/** The common assertions for one fault window. */
async function assertFault (t: import('ava').ExecutionContext<Context>, name: string, window: Window, recovered: number) {
  const { samples } = t.context.load
  const inside = (label: string) => within(samples, window.from, window.to, label)
  const show = (label: string) => `${name} ${label}: ${JSON.stringify(histogram(inside(label)))}`

  // deny: nothing that needs the store is let through while it is gone.
  for (const kind of ['rl', 'krl', 'dyn', 'h']) {
    const got = inside(`deny:${kind}`)
    t.true(got.length > 0, `${show(`deny:${kind}`)}: no requests inside the window`)
    t.true(got.every((s) => s.status === 503 && s.code === 'store_unavailable'), show(`deny:${kind}`))
  }
  // allow: rate limits fall back to per-instance counters; a key or a replay check nobody can verify is still refused.
  for (const kind of ['rl', 'krl']) {
    const got = inside(`allow:${kind}`)
    t.true(got.length > 0 && got.every((s) => s.status === 200), show(`allow:${kind}`))
  }
  for (const kind of ['dyn', 'h']) t.true(inside(`allow:${kind}`).every((s) => s.status === 503), show(`allow:${kind}`))
  // Routes that need no store keep serving in both modes.
  for (const mode of ['deny', 'allow']) t.true(inside(`${mode}:free`).every((s) => s.status === 200), show(`${mode}:free`))

  t.log(`${name}: inside the ${Math.round(window.to - window.from)} ms window: ${['deny', 'allow'].map((mode) => ['free', 'rl', 'krl', 'dyn', 'h'].map((kind) => show(`${mode}:${kind}`).replace(`${name} `, '')).join('; ')).join(' | ')}`)

  // Recovery without a restart: every store-backed kind of both gateways answers 200 again.
  const started = performance.now()
  const back = await until(() => {
    const recent = samples.filter((s) => s.start > Math.max(recovered, performance.now() - 1000))
    return ['deny', 'allow'].every((mode) => ['rl', 'krl', 'dyn', 'h', 'free'].every((kind) => {
      const got = recent.filter((s) => s.label === `${mode}:${kind}`)
      return got.length > 0 && got.every((s) => s.status === 200)
    }))
  }, { timeoutMs: 10_000, intervalMs: 50, message: `${name}: service to come back` }).catch(() => false)
  t.true(back, `${name}: service did not come back within 10 s of recovery`)
  t.log(`${name}: every route answered 200 again ${Math.round(performance.now() - started)} ms after recovery`)
}

/** Every request of the run so far was answered, quickly. */
function assertBounded (t: import('ava').ExecutionContext<Context>, samples: readonly Sample[]) {
  const slow = samples.filter((s) => s.end - s.start > BOUND_MS)
  const failed = samples.filter((s) => s.status === 0)
  t.deepEqual(failed.slice(0, 5).map((s) => `${s.label} ${s.error}`), [], 'requests without an answer')
  t.deepEqual(slow.slice(0, 5).map((s) => `${s.label} ${Math.round(s.end - s.start)} ms`), [], `answers slower than ${BOUND_MS} ms`)
  t.false(samples.some((s) => s.status >= 500 && s.status !== 503), `unexpected 5xx: ${JSON.stringify(histogram(samples.filter((s) => s.status >= 500)))}`)
}

test.serial('Redis killed under load and restarted: deny refuses, allow falls back, neither hangs, both recover', async (t) => {
  t.timeout(60_000)
  const ctx = t.context
  const redis = ctx.deny.redis!
  const { window, recovered } = await fault(ctx, async () => {
    await redis.kill()
    return performance.now() + 50
  }, async () => {
    await redis.restart()
    // A restarted Redis is empty: put the dynamic keys back, as an operator restoring a backup would.
    ctx.keys.dyn = { deny: await createDynamicKey(ctx.deny), allow: await createDynamicKey(ctx.allow) }
  })
  await assertFault(t, 'kill', window, recovered)
  assertBounded(t, ctx.load.samples)
})

test.serial('Redis paused with SIGSTOP under load: answers within the store timeout, nothing wrongly allowed, recovery on SIGCONT', async (t) => {
  t.timeout(60_000)
  const ctx = t.context
  const redis = ctx.deny.redis!
  const { window, recovered } = await fault(ctx, async () => {
    redis.pause()
    // Commands already on the wire when the process stopped time out first: start the window after one timeout.
    return performance.now() + STORE_TIMEOUT_MS + 50
  }, async () => { redis.resume() })
  await assertFault(t, 'pause', window, recovered)
  assertBounded(t, ctx.load.samples)
})

test.serial('Redis blocked by DEBUG SLEEP under load: same outcome as a pause, and no request waits past the timeout', async (t) => {
  t.timeout(60_000)
  const ctx = t.context
  const redis = ctx.deny.redis!
  let sleeping: Promise<string> | undefined
  const { window, recovered } = await fault(ctx, async () => {
    sleeping = command(redis.port, ['DEBUG', 'SLEEP', '3.5'], 10_000)
    // The command may reach Redis well after it was sent on a busy machine: the window starts once Redis is seen
    // asleep (a PING left unanswered), else keys first used "inside" it could be looked up before the sleep began.
    await untilAsleep(redis.port)
    return performance.now() + STORE_TIMEOUT_MS + 50
  }, async () => { await sleeping })
  await assertFault(t, 'DEBUG SLEEP', window, recovered)
  assertBounded(t, ctx.load.samples)
  t.log(`whole run: ${ctx.load.samples.length} requests ${JSON.stringify(histogram(ctx.load.samples))}`)
})
