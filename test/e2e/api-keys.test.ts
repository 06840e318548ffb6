import anyTest, { type TestFn } from 'ava'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Agent } from 'undici'
import { stringify } from 'yaml'
import { FakeClock } from '../helpers/clock.js'
import { assertNotLogged, startGateway, withDefaults, type TestGateway } from '../helpers/gateway.js'
import { command, startRedis, uniquePrefix, type RedisServer } from '../helpers/redis.js'
import { until } from '../helpers/until.js'
import { assertProblem, type Echo } from './support.js'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { apiKeyAdminRoutes } from '../../policies/api-key/admin.js'
import { keysCommand, openConfiguredStore } from '../../policies/api-key/cli.js'
import { staticApiKeys } from '../../policies/api-key/records.js'
import { KeyService } from '../../policies/api-key/service.js'

const test = anyTest as TestFn<{ redis: RedisServer, gateways: TestGateway[] }>

const ADMIN_TOKEN = randomBytes(24).toString('base64url')

test.before(async (t) => {
  t.context.redis = await startRedis()
  t.context.gateways = []
})
test.after.always(async (t) => {
  await Promise.all((t.context.gateways ?? []).map(async (gw) => await gw.close()))
  await t.context.redis?.stop()
})

function routes (apiKey: Record<string, unknown> = {}) {
  return [
    { name: 'orders', match: { path: '/v1/**' }, upstream: 'demo', policies: [{ apiKey }] },
    { name: 'open', match: { path: '/open' }, upstream: 'demo', public: true },
  ]
}

/** Mounts the key admin API when the gateway does not mount it itself (it is wired in Gateway.start). */
function ensureKeyAdmin (gw: TestGateway): void {
  const admin = gw.gateway.adminServer!
  if (admin.routes.some((route) => route.name === 'apiKeyAdmin')) return
  admin.routes.push(apiKeyAdminRoutes(new KeyService({ store: () => gw.gateway.currentStore, staticKeys: () => staticApiKeys(gw.gateway.currentConfig.doc) })))
}

/** Gateways on the shared Redis with one key prefix, so they see the same keys and events. */
async function cluster (t: import('ava').ExecutionContext<{ redis: RedisServer, gateways: TestGateway[] }>, count: number, config: Record<string, unknown> = {}, redisUrl = t.context.redis.url, clock?: FakeClock): Promise<TestGateway[]> {
  const prefix = uniquePrefix('keys')
  const out: TestGateway[] = []
  for (let i = 0; i < count; i++) {
    const gw = await startGateway({ routes: routes(), store: { prefix }, ...config }, { redis: redisUrl, env: { AUTHGATE_ADMIN_TOKEN: ADMIN_TOKEN }, ...(clock ? { now: clock.now } : {}) })
    t.context.gateways.push(gw)
    ensureKeyAdmin(gw)
    out.push(gw)
  }
  return out
}

async function admin (gw: TestGateway, method: string, path: string, body?: unknown, token: string | null = ADMIN_TOKEN): Promise<Response> {
  return await fetch(gw.adminUrl + path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  })
}

async function withKey (gw: TestGateway, key: string, path = '/v1/orders', dispatcher?: Agent): Promise<Response> {
  return await gw.fetch(path, { headers: { 'x-api-key': key }, ...(dispatcher ? { dispatcher } : {}) })
}

function io () {
  let stdout = ''
  let stderr = ''
  return { io: { stdout: { write: (s: string) => { stdout += s } }, stderr: { write: (s: string) => { stderr += s } } }, out: () => stdout, err: () => stderr }
}

test('a key created through the admin API works on every instance; revoked through one, the other refuses it within 1 s', async (t) => {
  // A long cache TTL: only the pub/sub event can make the second instance notice in time.
  const [one, two] = await cluster(t, 2, { routes: routes({ cacheTtl: '60s' }) })
  const res = await admin(one!, 'POST', '/admin/keys', { client: 'orders-app', scopes: ['orders:read'], tier: 'gold', expiresIn: '90d' })
  t.is(res.status, 201)
  const created = await res.json() as Record<string, unknown>
  t.deepEqual(Object.keys(created).sort(), ['client', 'expiresAt', 'id', 'key', 'scopes', 'tier'])
  t.like(created, { client: 'orders-app', scopes: ['orders:read'], tier: 'gold' })
  const key = created.key as string

  for (const gw of [one!, two!]) {
    const ok = await withKey(gw, key)
    t.is(ok.status, 200)
    const echo = await ok.json() as Echo
    t.is(echo.headers['x-auth-client'], 'orders-app')
    t.is(echo.headers['x-auth-scopes'], 'orders:read')
    t.is(echo.headers['x-api-key'], undefined, 'the key is not forwarded')
  }
  t.is((await withKey(two!, key)).status, 200, 'cached on the second instance')

  const revoked = await admin(one!, 'DELETE', `/admin/keys/${created.id as string}`)
  t.is(revoked.status, 204)
  // The revocation reaches the other instance by pub/sub, which the test cannot observe: poll its answers.
  const last = await until(async () => {
    const res = await withKey(two!, key)
    if (res.status === 401) return res
    await res.arrayBuffer()
    return undefined
  }, { timeoutMs: 1000, intervalMs: 20, message: 'the other instance to refuse the revoked key (within 1 s)' })
  t.is(last.status, 401, 'refused by the other instance within 1 s')
  const body = await assertProblem(t, last, 401, 'invalid_credentials')
  t.is(body.detail, 'API key revoked')
  t.is(last.headers.get('www-authenticate'), 'ApiKey realm="authgate", header="X-API-Key"')
  await assertNotLogged(t, two!, last.headers.get('x-request-id'), [key], 'the key')
  for (const gw of [one!, two!]) t.false(gw.rawLogs().includes(key), 'the key is never logged')
})

test('the admin API needs the bearer token: 401 without it or with a wrong one, as problem+json', async (t) => {
  const [gw] = await cluster(t, 1)
  for (const token of [null, 'wrong-token']) {
    const res = await admin(gw!, 'GET', '/admin/keys', undefined, token)
    await assertProblem(t, res, 401, 'invalid_credentials')
    const created = await admin(gw!, 'POST', '/admin/keys', { client: 'x' }, token)
    await assertProblem(t, created, 401, 'invalid_credentials')
  }
  const listed = await admin(gw!, 'GET', '/admin/keys')
  t.is(listed.status, 200)
  t.deepEqual(await listed.json(), [])
})

test('the admin API lists keys without secrets, 404s unknown ids and 400s bad bodies', async (t) => {
  const [gw] = await cluster(t, 1)
  const created = await (await admin(gw!, 'POST', '/admin/keys', { client: 'lister', scopes: ['a', 'b'] })).json() as { id: string, key: string }
  const list = await admin(gw!, 'GET', '/admin/keys')
  t.is(list.status, 200)
  const text = await list.text()
  const entries = JSON.parse(text) as Array<Record<string, unknown>>
  t.is(entries.length, 1)
  t.deepEqual(Object.keys(entries[0]!).sort(), ['client', 'createdAt', 'expiresAt', 'id', 'lastUsedAt', 'revoked', 'scopes', 'tier'])
  t.like(entries[0], { id: created.id, client: 'lister', scopes: ['a', 'b'], tier: null, expiresAt: null, revoked: false, lastUsedAt: null })
  t.false(text.includes(created.key.slice(-43)))
  t.false(text.includes(hashApiKey(created.key).slice(7)))

  await assertProblem(t, await admin(gw!, 'DELETE', '/admin/keys/0123456789abcdef'), 404, 'not_found')
  await assertProblem(t, await admin(gw!, 'POST', '/admin/keys/0123456789abcdef/rotate', {}), 404, 'not_found')
  for (const body of ['{not json', '[]', { scopes: ['a'] }, { client: 'x', scopes: 'has"quote' }, { client: 'x', expiresIn: 'tomorrow' }, { client: 'x', extra: 1 }]) {
    await assertProblem(t, await admin(gw!, 'POST', '/admin/keys', body), 400, 'bad_request')
  }
  await assertProblem(t, await admin(gw!, 'POST', `/admin/keys/${created.id}/rotate`, { grace: 'later' }), 400, 'bad_request')
  t.is((await admin(gw!, 'DELETE', `/admin/keys/${created.id}`)).status, 204)
  t.is((await admin(gw!, 'DELETE', `/admin/keys/${created.id}`)).status, 204, 'revoking twice is fine')
  t.like((await (await admin(gw!, 'GET', '/admin/keys')).json() as unknown[])[0], { id: created.id, revoked: true })
})

test('rotation through the admin API: the new key works at once and the old one until the grace ends', async (t) => {
  const clock = new FakeClock()
  const [gw] = await cluster(t, 1, {}, t.context.redis.url, clock)
  const old = await (await admin(gw!, 'POST', '/admin/keys', { client: 'rotor', scopes: ['x'] })).json() as { id: string, key: string }
  t.is((await withKey(gw!, old.key)).status, 200)
  const res = await admin(gw!, 'POST', `/admin/keys/${old.id}/rotate`, { grace: '1s' })
  t.is(res.status, 201)
  const rotated = await res.json() as Record<string, unknown>
  t.deepEqual(Object.keys(rotated).sort(), ['client', 'expiresAt', 'id', 'key', 'replaces', 'scopes', 'tier'])
  t.like(rotated, { client: 'rotor', scopes: ['x'], replaces: old.id })
  t.not(rotated.id, old.id)
  t.is((await withKey(gw!, rotated.key as string)).status, 200)
  t.is((await withKey(gw!, old.key)).status, 200, 'the old key works during the grace period')
  clock.advance(1100)
  const expired = await withKey(gw!, old.key)
  t.is((await assertProblem(t, expired, 401, 'invalid_credentials')).detail, 'API key expired')
  t.is((await withKey(gw!, rotated.key as string)).status, 200)
})

test('an expired key is 401 "API key expired"; until then it is accepted', async (t) => {
  const clock = new FakeClock()
  const [gw] = await cluster(t, 1, {}, t.context.redis.url, clock)
  const created = await (await admin(gw!, 'POST', '/admin/keys', { client: 'brief', expiresIn: '1s' })).json() as { key: string }
  t.is((await withKey(gw!, created.key)).status, 200)
  clock.advance(1100)
  t.is((await assertProblem(t, await withKey(gw!, created.key), 401, 'invalid_credentials')).detail, 'API key expired')
})

test('a key in the query string is 400 bad_request; the same key in the header is 200; malformed and unknown keys are 401', async (t) => {
  const { id, key } = newApiKey()
  const [gw] = await cluster(t, 1, { apiKeys: [{ id, hash: hashApiKey(key), client: 'static-one', scopes: [] }] })
  const inQuery = await gw!.fetch(`/v1/orders?api_key=${key}`)
  t.regex(String((await assertProblem(t, inQuery, 400, 'bad_request')).detail), /X-API-Key header/)
  t.is((await withKey(gw!, key)).status, 200)
  t.is((await assertProblem(t, await withKey(gw!, 'agk_nope'), 401, 'invalid_credentials')).detail, 'API key not accepted')
  const unknown = await withKey(gw!, newApiKey().key)
  t.is((await assertProblem(t, unknown, 401, 'invalid_credentials')).detail, 'API key not accepted')
  await assertNotLogged(t, gw!, inQuery.headers.get('x-request-id'), [key], 'the key in the query')
  await assertNotLogged(t, gw!, unknown.headers.get('x-request-id'), [key], 'the key')
})

test('a flood of 1,000 bad keys costs a few Redis reads, and lastUsedAt is written in a batch, not per request', async (t) => {
  const redis = await startRedis() // its own server: INFO commandstats counts only this test
  t.teardown(async () => await redis.stop())
  const [gw] = await cluster(t, 1, {}, redis.url)
  const created = await (await admin(gw!, 'POST', '/admin/keys', { client: 'busy' })).json() as { id: string, key: string }
  const stats = async () => {
    const info = await command(redis.port, ['INFO', 'commandstats'])
    const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
    return { hgetall: calls('hgetall'), set: calls('set') }
  }
  const before = await stats()
  const bad = newApiKey().key
  const agent = new Agent({ connections: 50 })
  t.teardown(async () => await agent.close())
  let badRequestId: string | null = null
  for (let round = 0; round < 10; round++) {
    const answers = await Promise.all(Array.from({ length: 100 }, async () => {
      const res = await withKey(gw!, bad, '/v1/orders', agent)
      await res.arrayBuffer()
      badRequestId = res.headers.get('x-request-id')
      return res.status
    }))
    t.true(answers.every((s) => s === 401))
  }
  for (let i = 0; i < 50; i++) {
    const res = await withKey(gw!, created.key, '/v1/orders', agent)
    t.is(res.status, 200)
    await res.arrayBuffer()
  }
  const after = await stats()
  t.true(after.hgetall - before.hgetall <= 6, `${after.hgetall - before.hgetall} HGETALL calls`)
  t.is(after.set - before.set, 0, 'no lastUsedAt write on the request path')
  const listedBefore = await (await admin(gw!, 'GET', '/admin/keys')).json() as Array<{ lastUsedAt: string | null }>
  t.is(listedBefore[0]!.lastUsedAt, null)
  await gw!.close() // flushes the batch
  t.is((await stats()).set - before.set, 1, 'one write for the key used 50 times')
  const { store } = await openStoreFor(redis.url, gw!)
  t.teardown(async () => await store.close())
  const reader = new KeyService({ store })
  const listed = await reader.list()
  t.true(typeof listed[0]!.lastUsedAt === 'string')
  await assertNotLogged(t, gw!, badRequestId, [bad], 'the bad key')
})

async function openStoreFor (url: string, gw: TestGateway) {
  const { createStore } = await import('../../gateway/store/index.js')
  const store = createStore({ redis: url, prefix: gw.gateway.currentConfig.doc.store.prefix })
  return { store }
}

test('authgate keys create, list, rotate and revoke print the documented JSON against Redis, and the keys work', async (t) => {
  const prefix = uniquePrefix('cli')
  const [gw] = await cluster(t, 1, { store: { prefix } })
  const configFile = join(gw!.dir, 'cli.yaml')
  await writeFile(configFile, stringify(withDefaults({ routes: routes(), store: { redis: t.context.redis.url, prefix } })))
  const run = async (...args: string[]) => {
    const out = io()
    const code = await keysCommand([...args, '-c', configFile], out.io, openConfiguredStore)
    return { code, out: out.out(), err: out.err() }
  }

  const created = await run('create', '--client', 'cli-app', '--scopes', 'orders:read,orders:write', '--tier', 'gold', '--expires', '90d', '--json')
  t.is(created.code, 0, created.err)
  const key = JSON.parse(created.out) as Record<string, unknown>
  t.deepEqual(Object.keys(key), ['id', 'key', 'client', 'scopes', 'tier', 'expiresAt'])
  t.like(key, { client: 'cli-app', scopes: ['orders:read', 'orders:write'], tier: 'gold' })
  const expiresIn = Date.parse(key.expiresAt as string) - Date.now()
  t.true(expiresIn > 89.9 * 86_400_000 && expiresIn <= 90 * 86_400_000)
  t.is((await withKey(gw!, key.key as string)).status, 200)

  const listed = await run('list', '--json')
  t.is(listed.code, 0, listed.err)
  const entries = JSON.parse(listed.out) as Array<Record<string, unknown>>
  t.deepEqual(Object.keys(entries[0]!), ['id', 'client', 'scopes', 'tier', 'createdAt', 'expiresAt', 'revoked', 'lastUsedAt'])
  t.like(entries[0], { id: key.id, client: 'cli-app', revoked: false, expiresAt: key.expiresAt })
  t.false(listed.out.includes(key.key as string))
  t.false(listed.out.includes(hashApiKey(key.key as string).slice(7)))

  const rotated = await run('rotate', key.id as string, '--grace', '24h', '--json')
  t.is(rotated.code, 0, rotated.err)
  const next = JSON.parse(rotated.out) as Record<string, unknown>
  t.deepEqual(Object.keys(next), ['id', 'key', 'client', 'scopes', 'tier', 'expiresAt', 'replaces'])
  t.is(next.replaces, key.id)
  t.is((await withKey(gw!, next.key as string)).status, 200)
  t.is((await withKey(gw!, key.key as string)).status, 200, 'old key valid during the grace period')

  const revoked = await run('revoke', next.id as string, '--json')
  t.is(revoked.code, 0, revoked.err)
  t.deepEqual(JSON.parse(revoked.out), { id: next.id, revoked: true })
  // The CLI's revocation reaches the gateway by pub/sub, which the test cannot observe: poll its answers.
  const refused = await until(async () => {
    const res = await withKey(gw!, next.key as string)
    if (res.status === 401) return res
    await res.arrayBuffer()
    return undefined
  }, { timeoutMs: 5000, message: 'the gateway to refuse the key the CLI revoked' })
  t.is((await assertProblem(t, refused, 401, 'invalid_credentials')).detail, 'API key revoked')

  const human = await run('create', '--client', 'human')
  t.is(human.code, 0)
  t.regex(human.out, /agk_[a-z0-9]+_[0-9A-Za-z]{43}/)
  t.regex(human.out, /shown only this once/)
  const table = await run('list')
  t.regex(table.out, /^ID\s+CLIENT\s+SCOPES/)
  t.regex(table.out, /revoked/)
  t.false(table.out.includes('agk_'))
  await assertNotLogged(t, gw!, refused.headers.get('x-request-id'), [key.key as string, next.key as string], 'a key')
})

test('authgate keys: usage mistakes exit 2, an unknown id or a memory store exits 1 with a message', async (t) => {
  const [gw] = await cluster(t, 1)
  const configFile = join(gw!.dir, 'cli.yaml')
  await writeFile(configFile, stringify(withDefaults({ routes: routes(), store: { redis: t.context.redis.url, prefix: uniquePrefix('cli') } })))
  for (const args of [[], ['bogus'], ['create'], ['create', '--client'], ['create', '--client', 'x', '--expires', 'soon'], ['revoke'], ['rotate', 'a', 'b'], ['list', '--nope'], ['create', '--client', 'x', '--scopes', 'bad"scope']]) {
    const out = io()
    t.is(await keysCommand([...args, '-c', configFile], out.io), 2, args.join(' '))
    t.regex(out.err(), /usage: authgate keys/)
  }
  for (const sub of ['revoke', 'rotate']) {
    const out = io()
    t.is(await keysCommand([sub, '0123456789abcdef', '-c', configFile], out.io), 1)
    t.regex(out.err(), /no API key with id 0123456789abcdef/)
  }
  const memoryFile = join(gw!.dir, 'memory.yaml')
  await writeFile(memoryFile, stringify(withDefaults({ routes: routes() })))
  const out = io()
  t.is(await keysCommand(['list', '-c', memoryFile], out.io), 1)
  t.regex(out.err(), /memory store/)
})
