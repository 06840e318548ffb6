import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import anyTest, { type TestFn } from 'ava'
import { SignJWT } from 'jose'
import { randomBytes } from 'node:crypto'
import { stringify } from 'yaml'
import { explain, explainCommand, ReadOnlyStore, type ExplainReport } from '../cli/explain/index.js'
import { MemoryStore } from '../gateway/store/index.js'
import { hashApiKey, newApiKey } from '../policies/api-key/format.js'
import { startGateway } from './helpers/gateway.js'
import { CLIENT_SPIFFE_ID, mintPki } from './helpers/pki.js'

const test = anyTest as TestFn<{ dir: string, file: string, reader: string, writer: string }>

// Keys made at run time: one with the read scope, one with write.
test.before(async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-'))
  const reader = newApiKey()
  const writer = newApiKey()
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:8080' }],
    upstreams: { demo: { echo: true } },
    apiKeys: [
      { id: reader.id, hash: hashApiKey(reader.key), client: 'reader-app', scopes: ['orders:read'] },
      { id: writer.id, hash: hashApiKey(writer.key), client: 'writer-app', scopes: ['orders:read', 'orders:write'] },
    ],
    routes: [
      { name: 'orders-read', match: { path: '/v1/orders/**', methods: ['GET'] }, upstream: 'demo', policies: [{ apiKey: {} }] },
      { name: 'orders-write', match: { path: '/v1/orders/**', methods: ['POST'], host: 'api.example.com' }, upstream: 'demo', stripPrefix: '/v1', policies: [{ apiKey: {} }, { scopes: ['orders:write'] }] },
    ],
  }))
  t.context = { dir, file, reader: reader.key, writer: writer.key }
})
test.after.always(async (t) => { await rm(t.context.dir, { recursive: true, force: true }) })

function capture () {
  let out = ''
  let err = ''
  return { io: { stdout: { write: (s: string) => { out += s } }, stderr: { write: (s: string) => { err += s } } }, out: () => out, err: () => err }
}

async function report (file: string, args: string[]): Promise<{ code: number, report: ExplainReport, text: string }> {
  const c = capture()
  const code = await explainCommand(['-c', file, '--json', ...args], c.io)
  return { code, report: JSON.parse(c.out()) as ExplainReport, text: c.out() + c.err() }
}

test('an allowed request shows the route, the passing step and the headers the upstream receives, without the key', async (t) => {
  const { code, report: r, text } = await report(t.context.file, ['GET', '/v1/orders/%61bc?page=2', '-H', `X-API-Key: ${t.context.reader}`, '-H', 'X-Auth-Subject: forged'])
  t.is(code, 0)
  t.deepEqual(r.path, { ok: true, normalized: '/v1/orders/abc', query: 'page=2' })
  t.like(r.route, { name: 'orders-read', upstream: 'demo' })
  t.like(r.steps[0], { policy: 'apiKey', verdict: 'pass', identity: { subject: 'reader-app', scopes: ['orders:read'] } })
  t.true(r.decision.forwarded)
  t.is(r.upstream!.target, '/v1/orders/abc?page=2')
  t.like(r.upstream!.headers, { 'x-auth-subject': 'reader-app', 'x-auth-client': 'reader-app', 'x-auth-methods': 'apiKey', 'x-auth-scopes': 'orders:read' })
  t.false('x-api-key' in r.upstream!.headers, 'the consumed credential is not forwarded')
  t.false(text.includes(t.context.reader), 'the key never appears in the output')
  t.false(text.includes('forged'))
})

test('a wrong key is 401 invalid_credentials with the challenge; no key is 401 missing_credentials', async (t) => {
  const wrong = newApiKey().key
  const { report: r, text } = await report(t.context.file, ['GET', '/v1/orders/1', '-H', `X-API-Key: ${wrong}`])
  t.like(r.decision, { forwarded: false, status: 401, code: 'invalid_credentials' })
  t.deepEqual(r.decision.wwwAuthenticate, ['ApiKey realm="authgate", header="X-API-Key"'])
  t.like(r.steps[0], { policy: 'apiKey', verdict: 'reject', code: 'invalid_credentials' })
  t.is(r.upstream, undefined)
  t.false(text.includes(wrong))

  const { report: none } = await report(t.context.file, ['GET', '/v1/orders/1'])
  t.like(none.decision, { status: 401, code: 'missing_credentials' })
  const { report: ok } = await report(t.context.file, ['GET', '/v1/orders/1', '-H', `X-API-Key: ${t.context.writer}`])
  t.true(ok.decision.forwarded)
})

test('a key without the scope is 403 insufficient_scope after the key passed; with the scope it is forwarded', async (t) => {
  const { report: r } = await report(t.context.file, ['POST', 'http://api.example.com/v1/orders/1', '-H', `X-API-Key: ${t.context.reader}`])
  t.like(r.route, { name: 'orders-write' })
  t.deepEqual(r.steps.map((s) => [s.policy, s.verdict, s.code]), [['apiKey', 'pass', undefined], ['scopes', 'reject', 'insufficient_scope']])
  t.like(r.decision, { forwarded: false, status: 403, code: 'insufficient_scope' })

  const { report: ok } = await report(t.context.file, ['POST', 'http://api.example.com/v1/orders/1', '-H', `X-API-Key: ${t.context.writer}`])
  t.true(ok.decision.forwarded)
  t.is(ok.upstream!.target, '/orders/1', 'stripPrefix applied')
  t.is(ok.upstream!.headers.host, 'api.example.com')
})

test('no route: the routes whose path matched say what did not; an unknown path names none', async (t) => {
  const { report: r } = await report(t.context.file, ['DELETE', 'http://api.example.com/v1/orders/1'])
  t.like(r.decision, { forwarded: false, status: 404, code: 'no_route' })
  t.deepEqual(r.misses, [
    { route: 'orders-read', reason: 'method DELETE is not one of GET' },
    { route: 'orders-write', reason: 'method DELETE is not one of POST' },
  ])
  const { report: host } = await report(t.context.file, ['POST', 'http://other.example.com/v1/orders/1'])
  t.deepEqual(host.misses, [
    { route: 'orders-read', reason: 'method POST is not one of GET' },
    { route: 'orders-write', reason: 'host "other.example.com" is not one of api.example.com' },
  ])
  const { report: unknown } = await report(t.context.file, ['GET', '/v2/anything'])
  t.deepEqual(unknown.misses, [])
  t.is(unknown.route, undefined)
})

test('a path the gateway refuses is reported with the 400 reason, before any route', async (t) => {
  const { report: r } = await report(t.context.file, ['GET', '/v1/orders/../admin'])
  t.deepEqual(r.path, { ok: false, reason: r.decision.detail! })
  t.like(r.decision, { status: 400, code: 'bad_request' })
  t.is(r.route, undefined)
})

test('the text report names the path, route, each step and the decision', async (t) => {
  const c = capture()
  t.is(await explain(t.context.file, 'POST', 'http://api.example.com/v1/orders/1', [['X-API-Key', t.context.reader]], c.io), 0)
  const text = c.out()
  t.regex(text, /^path {6}\/v1\/orders\/1$/m)
  t.regex(text, /^route {5}"orders-write" -> upstream "demo"$/m)
  t.regex(text, /^ {2}apiKey +pass {2}subject=reader-app/m)
  t.regex(text, /^ {2}scopes +reject: 403 insufficient_scope/m)
  t.regex(text, /^decision {2}403 insufficient_scope/m)
})

test('a configuration with errors is reported and exits 1; bad arguments exit 2', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'gateway.yaml'), 'version: 1\nroutes: []\n')
  const c = capture()
  t.is(await explain(join(dir, 'gateway.yaml'), 'GET', '/', [], c.io), 1)
  t.regex(c.err(), /gateway\.yaml:\d+:\d+: error/)
  const d = capture()
  t.is(await explain(t.context.file, 'GET', 'orders', [], d.io), 2)
  t.regex(d.err(), /URL must be/)
})

test('explain does not spend a rate-limit token: the real request after it still passes', async (t) => {
  const gw = await startGateway({
    routes: [{ name: 'status', match: { path: '/status' }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'ip', limit: '1/min' } }] }],
  }, { redis: true })
  t.teardown(() => gw.close())
  for (let i = 0; i < 2; i++) {
    const { report: r } = await report(gw.configFile, ['GET', '/status'])
    t.true(r.decision.forwarded, `explain ${i + 1}`)
    t.true(r.skippedWrites.some((w) => w.startsWith('rateLimit')))
  }
  t.is((await gw.fetch('/status')).status, 200, 'the one token is still there')
  t.is((await gw.fetch('/status')).status, 429)
  const { report: limited } = await report(gw.configFile, ['GET', '/status'])
  t.like(limited.decision, { forwarded: false, status: 429, code: 'rate_limited' })
})

test('the read-only store answers lookups from the real store and writes nothing', async (t) => {
  const inner = new MemoryStore()
  t.teardown(() => inner.close())
  await inner.set('nonce:a', '1', 60_000)
  const check = { key: 'rl:x', emissionIntervalMs: 1000, burst: 1 }
  await inner.rateLimit([check])
  const store = new ReadOnlyStore(inner)
  t.false(await store.setIfAbsent('nonce:a', '1', 60_000), 'a stored nonce is a replay')
  t.true(await store.setIfAbsent('nonce:b', '1', 60_000))
  t.is(await inner.get('nonce:b'), null)
  t.false((await store.rateLimit([check]))[0]!.allowed)
  t.true((await store.rateLimit([{ ...check, key: 'rl:y' }]))[0]!.allowed)
  t.is(await inner.get('rl:y'), null)
  await store.set('k', 'v')
  await store.setHash('h', { a: '1' })
  t.is(await inner.get('k'), null)
  t.is(await inner.getHash('h'), null)
  t.deepEqual(store.skipped, ['setIfAbsent (replay nonce)', 'rateLimit (token not spent)', 'set', 'setHash'])
})

test('a JWT is verified for real: a valid token is forwarded without Authorization, an expired one is 401 invalid_token', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const secret = randomBytes(32).toString('base64')
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:8080' }],
    upstreams: { demo: { echo: true } },
    jwtProviders: { corp: { secret: '${env:JWT_SECRET}', secretEncoding: 'base64', algorithms: ['HS256'], audience: 'orders', issuer: 'https://idp.example.com' } },
    routes: [{ name: 'api', match: { path: '/api/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'corp' } }] }],
  }))
  const key = Buffer.from(secret, 'base64')
  const mint = (expiresAt: number) => new SignJWT({ scope: 'orders:read' }).setProtectedHeader({ alg: 'HS256' })
    .setSubject('alice').setIssuer('https://idp.example.com').setAudience('orders').setIssuedAt().setExpirationTime(expiresAt).sign(key)
  const now = Math.floor(Date.now() / 1000)
  const run = async (token: string) => {
    const c = capture()
    t.is(await explain(file, 'GET', '/api/me', [['Authorization', `Bearer ${token}`]], c.io, { json: true, env: { JWT_SECRET: secret } }), 0, c.err())
    t.false(c.out().includes(token), 'the token never appears in the output')
    return JSON.parse(c.out()) as ExplainReport
  }

  const ok = await run(await mint(now + 300))
  t.true(ok.decision.forwarded)
  t.like(ok.steps[0], { policy: 'jwt', verdict: 'pass', identity: { subject: 'alice', scopes: ['orders:read'] } })
  t.false('authorization' in ok.upstream!.headers)
  t.is(ok.upstream!.headers['x-auth-subject'], 'alice')

  const expired = await run(await mint(now - 300))
  t.like(expired.decision, { forwarded: false, status: 401, code: 'invalid_token' })
  t.regex(expired.decision.wwwAuthenticate![0]!, /^Bearer realm="authgate", error="invalid_token"/)
})

test('--cert presents a client certificate verified against the listener\'s clientCA; one from another CA is refused', async (t) => {
  const pki = await mintPki()
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({
    version: 1,
    listeners: [{ name: 'mesh', address: '127.0.0.1:8443', tls: { cert: pki.server.certPath, key: pki.server.keyPath, clientCA: pki.caPath } }],
    upstreams: { demo: { echo: true } },
    routes: [{ name: 'billing', match: { path: '/billing/**' }, upstream: 'demo', policies: [{ mtls: { sans: [`URI:${CLIENT_SPIFFE_ID}`] } }] }],
  }))
  const ok = await report(file, ['GET', 'https://localhost:8443/billing/1', '--cert', pki.client.certPath])
  t.true(ok.report.decision.forwarded)
  t.like(ok.report.steps[0], { policy: 'mtls', verdict: 'pass', identity: { subject: CLIENT_SPIFFE_ID } })
  t.regex(String(ok.report.upstream!.headers['x-forwarded-client-cert']), /^Hash=[0-9a-f]{64};/)

  const rogue = await report(file, ['GET', 'https://localhost:8443/billing/1', '--cert', pki.untrusted.certPath])
  t.like(rogue.report.decision, { forwarded: false, status: 401, code: 'client_certificate_required' })
  t.true(rogue.report.notes.some((n) => /not issued by the listener's clientCA/.test(n)))

  const none = await report(file, ['GET', 'https://localhost:8443/billing/1'])
  t.like(none.report.decision, { status: 401, code: 'client_certificate_required' })
})

test('issue 14: explain answers a method the GET route refuses with 404 no_route, not the later public route; HEAD gets the GET route', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:8080' }],
    upstreams: { demo: { echo: true } },
    routes: [
      { name: 'orders-read', match: { path: '/v1/orders/**', methods: ['GET'] }, upstream: 'demo', policies: [{ apiKey: {} }] },
      { name: 'public', match: { path: '/v1/**' }, upstream: 'demo', public: true },
    ],
  }))
  const { report: deleted } = await report(file, ['DELETE', '/v1/orders/42'])
  t.is(deleted.route, undefined)
  t.like(deleted.decision, { forwarded: false, status: 404, code: 'no_route' })
  t.deepEqual(deleted.misses, [{ route: 'orders-read', reason: 'method DELETE is not one of GET' }])
  const { report: head } = await report(file, ['HEAD', '/v1/orders/42'])
  t.like(head.route, { name: 'orders-read' })
  t.like(head.decision, { forwarded: false, status: 401, code: 'missing_credentials' })
  const { report: elsewhere } = await report(file, ['DELETE', '/v1/customers/42'])
  t.like(elsewhere.route, { name: 'public' })
  t.true(elsewhere.decision.forwarded)
})

test('--decide explains a decision request: the original it describes, the chain, and the answer the proxy gets', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-decide-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const key = newApiKey()
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:8080' }, { name: 'decide', address: '127.0.0.1:8181', mode: 'decide' }],
    upstreams: { demo: { echo: true } },
    apiKeys: [{ id: key.id, hash: hashApiKey(key.key), client: 'alice-app', scopes: ['orders:read'] }],
    routes: [{ name: 'orders', match: { path: '/v1/orders/**', listener: 'decide' }, policies: [{ apiKey: {} }, { scopes: ['orders:write'] }] },
      { name: 'reads', match: { path: '/v1/reads/**', listener: 'decide' }, policies: [{ apiKey: {} }] }],
  }))
  const description = ['-H', 'X-Original-Method: GET', '-H', 'X-Forwarded-Host: api.example.com', '-H', 'X-Forwarded-For: 203.0.113.7']
  const allowed = await report(file, ['--decide', 'nginx', 'GET', '/nginx', ...description, '-H', 'X-Original-URI: /v1/reads/1', '-H', `X-API-Key: ${key.key}`])
  t.is(allowed.code, 0, allowed.text)
  t.like(allowed.report.request, { method: 'GET', target: '/v1/reads/1', host: 'api.example.com', listener: 'decide', remoteAddress: '203.0.113.7' })
  t.like(allowed.report.decision, { allowed: true })
  t.like(allowed.report.answer, { dialect: 'nginx', status: 200, headers: { 'x-auth-subject': 'alice-app', 'x-auth-scopes': 'orders:read', 'x-auth-tier': '' } })
  t.false(allowed.text.includes(key.key), 'the key is not printed')

  const refused = await report(file, ['--decide', 'nginx', 'GET', '/nginx', ...description, '-H', 'X-Original-URI: /v1/orders/1', '-H', `X-API-Key: ${key.key}`])
  t.like(refused.report.decision, { forwarded: false, status: 403, code: 'insufficient_scope' })
  t.like(refused.report.answer, { status: 403, headers: { 'x-authgate-status': '403' } })
  t.deepEqual(refused.report.steps.map((s) => [s.policy, s.verdict]), [['apiKey', 'pass'], ['scopes', 'reject']])

  const noRoute = await report(file, ['--decide', 'nginx', 'GET', '/nginx', ...description, '-H', 'X-Original-URI: /elsewhere'])
  t.like(noRoute.report.answer, { status: 403, headers: { 'x-authgate-status': '404' } }, 'nginx gets 403 and the real status')
  const malformed = await report(file, ['--decide', 'forward', 'GET', '/forward', '-H', 'X-Forwarded-Method: GET'])
  t.like(malformed.report.decision, { status: 400, code: 'bad_request' })
  const untrusted = await report(file, ['--decide', 'forward', '--remote', '192.0.2.1', 'GET', '/forward', '-H', 'X-Forwarded-Method: GET'])
  t.like(untrusted.report.decision, { status: 403, code: 'forbidden' })

  const c = capture()
  t.is(await explainCommand(['-c', file, '--decide', 'nginx', 'GET', '/forward'], c.io), 2)
  t.regex(c.err(), /is the forward endpoint/)
  await t.throwsAsync(explainCommand(['-c', file, '--decide', 'haproxy', 'GET', '/forward'], capture().io), { message: /--decide takes nginx, forward or envoy/ })
})
