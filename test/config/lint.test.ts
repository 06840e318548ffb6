import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { Type } from '@sinclair/typebox'
import { LineCounter, parseDocument, stringify } from 'yaml'
import { checkConfig } from '../../gateway/config/load.js'
import { gatewaySchema } from '../../gateway/config/schema.js'
import { positionOf } from '../../gateway/config/positions.js'
import { validate } from '../../gateway/config/validate.js'
import type { GatewayDocument } from '../../gateway/config/types.js'
import { configuredCredentialHeaders, lintConfig, type LintRule } from '../../gateway/lint.js'
import { runCli } from '../helpers/child.js'

// The rules read the validated document as plain objects. Policy-owned sections and policy blocks are accepted as
// they are here, so each rule is tested whether or not the policy modules it talks about are registered yet.
const any = Type.Optional(Type.Any())
const lenient = gatewaySchema({ jwtProviders: any, signingClients: any, users: any, apiKeys: any })

function documentOf (config: Record<string, unknown>): GatewayDocument {
  const doc = structuredClone({
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:8080' }],
    upstreams: { demo: { echo: true } },
    ...config,
  })
  const issues = validate(lenient, doc, [])
  if (issues.length > 0) throw new Error(`test config is invalid: ${JSON.stringify(issues)}`)
  return doc as unknown as GatewayDocument
}

function rulesOf (config: Record<string, unknown>): LintRule[] {
  return lintConfig(documentOf(config)).map((i) => i.rule)
}

const keyed = (policies: unknown[], extra: Record<string, unknown> = {}) => ({ name: 'api', match: { path: '/v1/**' }, upstream: 'demo', policies, ...extra })
const exposed = [{ name: 'edge', address: '0.0.0.0:8080' }]

test('a JWT provider with requireExp: false is a warning; the default is not', (t) => {
  const provider = { issuer: 'https://idp.example.com', audience: 'api', algorithms: ['RS256'] }
  const routes = [keyed([{ jwt: { provider: 'corp' } }])]
  const found = lintConfig(documentOf({ jwtProviders: { corp: { ...provider, requireExp: false } }, routes }))
  t.deepEqual(found.map((i) => i.rule), ['jwt-exp-not-required'])
  t.is(found[0]!.severity, 'warning')
  t.deepEqual(found[0]!.path, ['jwtProviders', 'corp', 'requireExp'])
  t.regex(found[0]!.message, /works forever \[jwt-exp-not-required\]$/)
  t.truthy(found[0]!.fix)
  t.deepEqual(rulesOf({ jwtProviders: { corp: provider }, routes }), [])
  t.deepEqual(rulesOf({ jwtProviders: { corp: { ...provider, requireExp: true } }, routes }), [])
})

test('basic with allowInsecure on a plain listener other machines reach is a warning; on loopback or TLS it is not', (t) => {
  const routes = [keyed([{ basic: { allowInsecure: true } }])]
  const found = lintConfig(documentOf({ listeners: exposed, routes }))
  t.deepEqual(found.map((i) => i.rule), ['basic-insecure-exposed'])
  t.deepEqual(found[0]!.path, ['routes', 0, 'policies', 0, 'basic', 'allowInsecure'])
  t.deepEqual(rulesOf({ routes }), [])
  t.deepEqual(rulesOf({ listeners: [{ name: 'edge', address: '0.0.0.0:8443', tls: { cert: 'c.pem', key: 'k.pem' } }], routes }), [])
  // A route limited to the loopback listener is not reachable on the exposed one.
  t.deepEqual(rulesOf({
    listeners: [...exposed, { name: 'local', address: '127.0.0.1:8081' }],
    routes: [keyed([{ basic: { allowInsecure: true } }], { match: { path: '/v1/**', listener: 'local' } })],
  }), [])
})

test('public: true on a path that looks private is a warning; on an ordinary path, or without public, it is not', (t) => {
  for (const path of ['/admin/**', '/internal', '/api/private/*', '/debug/**', '/actuator/**', '/metrics', '/.env', '/management/**', '/Admin']) {
    const found = lintConfig(documentOf({ routes: [{ name: 'p', match: { path }, upstream: 'demo', public: true }] }))
    t.deepEqual(found.map((i) => i.rule), ['public-private-path'], path)
    t.deepEqual(found[0]!.path, ['routes', 0, 'public'])
  }
  t.deepEqual(rulesOf({ routes: [{ name: 'p', match: { path: '/health' }, upstream: 'demo', public: true }] }), [])
  t.deepEqual(rulesOf({ routes: [{ name: 'p', match: { path: '/administrators-guide' }, upstream: 'demo', public: true }] }), [])
  t.deepEqual(rulesOf({ routes: [keyed([{ apiKey: {} }], { match: { path: '/admin/**' } })] }), [])
})

test('passthrough to a plain-HTTP upstream on another host is a warning; to https or loopback it is not', (t) => {
  const routes = [keyed([{ jwt: { provider: 'corp', passthrough: true } }], { upstream: 'orders' })]
  const found = lintConfig(documentOf({ upstreams: { orders: { url: 'http://orders.internal:9000' } }, routes }))
  t.deepEqual(found.map((i) => i.rule), ['passthrough-plain-http'])
  t.deepEqual(found[0]!.path, ['routes', 0, 'policies', 0, 'jwt', 'passthrough'])
  t.deepEqual(rulesOf({ upstreams: { orders: { url: 'https://orders.internal:9000' } }, routes }), [])
  t.deepEqual(rulesOf({ upstreams: { orders: { url: 'http://127.0.0.1:9000' } }, routes }), [])
  t.deepEqual(rulesOf({ upstreams: { orders: { url: 'http://orders.internal:9000' } }, routes: [keyed([{ jwt: { provider: 'corp' } }], { upstream: 'orders' })] }), [])
  // Inside anyOf too.
  const anyOf = [keyed([{ anyOf: [{ apiKey: {} }, { jwt: { provider: 'corp', passthrough: true } }] }], { upstream: 'orders' })]
  const nested = lintConfig(documentOf({ upstreams: { orders: { url: 'http://10.1.2.3' } }, routes: anyOf }))
  t.deepEqual(nested.map((i) => i.path), [['routes', 0, 'policies', 0, 'anyOf', 1, 'jwt', 'passthrough']])
})

test('a credential header that the gateway strips on ingress is an error; an ordinary header is not', (t) => {
  const found = lintConfig(documentOf({ routes: [keyed([{ apiKey: { header: 'X-Auth-Client' } }])] }))
  t.deepEqual(found.map((i) => [i.rule, i.severity]), [['credential-header-stripped', 'error']])
  t.deepEqual(found[0]!.path, ['routes', 0, 'policies', 0, 'apiKey', 'header'])
  t.deepEqual(rulesOf({ identity: { stripInbound: ['X-Partner-Key'] }, routes: [keyed([{ apiKey: { header: 'x-partner-key' } }])] }), ['credential-header-stripped'])
  t.deepEqual(rulesOf({ routes: [keyed([{ hmac: { headers: { signature: 'X-Forwarded-Client-Cert' } } }])] }), ['credential-header-stripped'])
  t.deepEqual(rulesOf({ routes: [keyed([{ apiKey: { header: 'X-Partner-Key' } }])] }), [])
  t.deepEqual(rulesOf({ routes: [keyed([{ apiKey: {} }])] }), [])
})

test('store.onError: allow with Redis and a route without rateLimit is a warning; with limits everywhere or deny it is not', (t) => {
  const store = { redis: 'redis://127.0.0.1:6379', onError: 'allow' }
  const found = lintConfig(documentOf({ store, routes: [keyed([{ apiKey: {} }])] }))
  t.deepEqual(found.map((i) => i.rule), ['store-allow-without-limit'])
  t.deepEqual(found[0]!.path, ['store', 'onError'])
  t.regex(found[0]!.message, /"api"/)
  t.deepEqual(rulesOf({ store, routes: [keyed([{ apiKey: {} }, { rateLimit: { by: 'client', limit: '100/min' } }])] }), [])
  t.deepEqual(rulesOf({ store: { ...store, onError: 'deny' }, routes: [keyed([{ apiKey: {} }])] }), [])
  // Without Redis the store never fails: onError does not apply.
  t.deepEqual(rulesOf({ store: { redis: '', onError: 'allow' }, routes: [keyed([{ apiKey: {} }])] }), [])
})

test('rateLimit by ip on an exposed listener without trustProxies is a warning; with trustProxies or loopback only it is not', (t) => {
  const routes = [keyed([{ apiKey: {} }, { rateLimit: { by: 'ip', limit: '10/sec' } }])]
  const found = lintConfig(documentOf({ listeners: exposed, routes }))
  t.deepEqual(found.map((i) => i.rule), ['ip-limit-without-trust-proxies'])
  t.deepEqual(found[0]!.path, ['routes', 0, 'policies', 1, 'rateLimit', 'by'])
  t.deepEqual(rulesOf({ listeners: exposed, trustProxies: ['10.0.0.0/8'], routes }), [])
  t.deepEqual(rulesOf({ routes }), [])
  t.deepEqual(rulesOf({ listeners: exposed, routes: [keyed([{ apiKey: {} }, { rateLimit: { by: 'client', limit: '10/sec' } }])] }), [])
})

test('an admin listener other machines reach without a token is a warning; with a token or on loopback it is not', (t) => {
  const found = lintConfig(documentOf({ admin: { address: '0.0.0.0:9901' }, routes: [keyed([{ apiKey: {} }])] }))
  t.deepEqual(found.map((i) => [i.rule, i.severity]), [['admin-exposed-without-token', 'warning']])
  t.deepEqual(found[0]!.path, ['admin', 'address'])
  // ${env:AUTHGATE_ADMIN_TOKEN:-} unset interpolates to an empty token: no token.
  t.deepEqual(rulesOf({ admin: { address: '[::]:9901', token: '' }, routes: [keyed([{ apiKey: {} }])] }), ['admin-exposed-without-token'])
  t.deepEqual(rulesOf({ admin: { address: '0.0.0.0:9901', token: 'a-long-random-admin-token' }, routes: [keyed([{ apiKey: {} }])] }), [])
  t.deepEqual(rulesOf({ admin: { address: '127.0.0.1:9901' }, routes: [keyed([{ apiKey: {} }])] }), [])
})

test('maxBodyBytes above 100MiB is a warning, globally or per route; 100MiB is not', (t) => {
  const found = lintConfig(documentOf({ limits: { maxBodyBytes: '200MiB' }, routes: [keyed([{ apiKey: {} }], { limits: { maxBodyBytes: 1073741824 } })] }))
  t.deepEqual(found.map((i) => i.path), [['limits', 'maxBodyBytes'], ['routes', 0, 'limits', 'maxBodyBytes']])
  t.true(found.every((i) => i.rule === 'body-limit-too-large' && i.severity === 'warning'))
  t.deepEqual(rulesOf({ limits: { maxBodyBytes: '100MiB' }, routes: [keyed([{ apiKey: {} }])] }), [])
  t.deepEqual(rulesOf({ routes: [keyed([{ apiKey: {} }])] }), [])
})

test('every finding says why it matters and how to fix it', (t) => {
  const found = lintConfig(documentOf({
    listeners: exposed,
    admin: { address: '0.0.0.0:9901' },
    store: { redis: 'redis://127.0.0.1:6379', onError: 'allow' },
    limits: { maxBodyBytes: '1GiB' },
    upstreams: { demo: { echo: true }, orders: { url: 'http://orders.internal' } },
    jwtProviders: { corp: { issuer: 'https://idp.example.com', audience: 'api', algorithms: ['RS256'], requireExp: false } },
    routes: [
      { name: 'admin', match: { path: '/admin/**' }, upstream: 'demo', public: true },
      keyed([{ basic: { allowInsecure: true } }, { rateLimit: { by: 'ip', limit: '1/sec' } }]),
      keyed([{ jwt: { provider: 'corp', passthrough: true } }, { apiKey: { header: 'X-Auth-Subject' } }], { name: 'orders', upstream: 'orders', match: { path: '/orders/**' } }),
    ],
  }))
  t.deepEqual(new Set(found.map((i) => i.rule)), new Set<LintRule>([
    'basic-insecure-exposed', 'jwt-exp-not-required', 'store-allow-without-limit', 'ip-limit-without-trust-proxies',
    'public-private-path', 'passthrough-plain-http', 'credential-header-stripped', 'admin-exposed-without-token', 'body-limit-too-large',
  ]))
  for (const issue of found) {
    t.regex(issue.message, /: .+ \[[a-z-]+\]$/, issue.rule)
    t.true((issue.fix ?? '').length > 10, issue.rule)
  }
})

test('the demo gateway.yaml has no lint findings', (t) => {
  const { config, issues } = checkConfig('gateway.yaml', { env: {} })
  t.deepEqual(issues.filter((i) => i.severity === 'error'), [])
  t.deepEqual(lintConfig(config!.doc), [])
})

test('lint paths point at the offending line of the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-lint-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const text = stringify({
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:8080' }],
    upstreams: { demo: { echo: true } },
    routes: [{ name: 'ops', match: { path: '/admin/**' }, upstream: 'demo', public: true }],
  })
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, text)
  const { config } = checkConfig(file, { env: {} })
  const [issue] = lintConfig(config!.doc)
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter })
  const line = text.split('\n').findIndex((l) => l.includes('public: true')) + 1
  t.is(positionOf(doc, lineCounter, issue!.path).line, line)
})

test('authgate check reports lint findings with file, line and column (lintConfig wired into the loader)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-lint-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:8080' }],
    upstreams: { demo: { echo: true } },
    limits: { maxBodyBytes: '1GiB' },
    routes: [{ name: 'ops', match: { path: '/admin/**' }, upstream: 'demo', public: true }],
  }))
  const { issues, config } = checkConfig(file, { env: {} })
  t.truthy(config, 'warnings do not block loading')
  const lint = issues.filter((i) => /\[[a-z-]+\]$/.test(i.message))
  t.deepEqual(lint.map((i) => [i.severity, i.line, i.message.slice(i.message.lastIndexOf('['))]), [
    ['warning', 9, '[body-limit-too-large]'],
    ['warning', 15, '[public-private-path]'],
  ])
  t.true(lint.every((i) => i.file === file && (i.col ?? 0) > 0))
})

test('configured API-key and signature headers are listed for log redaction', (t) => {
  const doc = documentOf({ routes: [keyed([{ anyOf: [{ apiKey: { header: 'X-Partner-Key' } }, { hmac: { headers: { signature: 'X-Sig', keyId: 'X-Kid' } } }] }])] })
  t.deepEqual(configuredCredentialHeaders(doc).sort(), ['x-partner-key', 'x-sig'])
})

// The classic mistakes whose owners report them (see gateway/lint.ts): each appears once in `check`'s output.

async function checkText (t: import('ava').ExecutionContext, config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-lint-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({ version: 1, listeners: [{ name: 'local', address: '127.0.0.1:8080' }], upstreams: { demo: { echo: true } }, ...config }))
  return checkConfig(file, { env }).issues
}

const jwtRoute = { name: 'api', match: { path: '/v1/**' }, upstream: 'demo', policies: [{ jwt: { provider: 'corp' } }] }
const secret = 'k'.repeat(48)

test('a JWT provider without audience is one warning; with audience there is none', async (t) => {
  const provider = { secret: '${env:JWT_SECRET}', algorithms: ['HS256'] }
  const without = await checkText(t, { jwtProviders: { corp: provider }, routes: [jwtRoute] }, { JWT_SECRET: secret })
  t.deepEqual(without.filter((i) => /audience/.test(i.message)).map((i) => i.severity), ['warning'])
  t.deepEqual(await checkText(t, { jwtProviders: { corp: { ...provider, audience: 'api' } }, routes: [jwtRoute] }, { JWT_SECRET: secret }), [])
})

test('an HS secret shorter than its hash is one error; a long enough one is not', async (t) => {
  const provider = { secret: '${env:JWT_SECRET}', algorithms: ['HS512'], audience: 'api' }
  const short = await checkText(t, { jwtProviders: { corp: provider }, routes: [jwtRoute] }, { JWT_SECRET: secret })
  t.deepEqual(short.map((i) => [i.severity, i.path.join('.')]), [['error', 'jwtProviders.corp.secret']])
  t.deepEqual(await checkText(t, { jwtProviders: { corp: provider }, routes: [jwtRoute] }, { JWT_SECRET: 'k'.repeat(64) }), [])
})

test('HS and asymmetric algorithms in one provider are one error; one family is not', async (t) => {
  const provider = { issuer: 'https://idp.example.com', audience: 'api', algorithms: ['RS256', 'HS256'] }
  const mixed = await checkText(t, { jwtProviders: { corp: provider }, routes: [jwtRoute] })
  t.deepEqual(mixed.filter((i) => /in one provider/.test(i.message)).map((i) => i.severity), ['error'])
  t.deepEqual(await checkText(t, { jwtProviders: { corp: { ...provider, algorithms: ['RS256', 'ES256'] } }, routes: [jwtRoute] }), [])
})

test('basic on a plain-HTTP listener is one error from the basic policy', async (t) => {
  const users = { inline: [{ username: 'alice', hash: '$2y$04$abcdefghijklmnopqrstuu5xJ1v9Lq2hHkQmX1mY0y3G0WvJY8a2e' }] }
  const route = { name: 'tool', match: { path: '/**' }, upstream: 'demo', policies: [{ basic: {} }] }
  const plain = await checkText(t, { users, routes: [route] })
  t.deepEqual(plain.filter((i) => i.severity === 'error').length, 1)
  t.regex(plain[0]!.message, /plain|HTTP|TLS|insecure/i)
  const tls = await checkText(t, { listeners: [{ name: 'secure', address: '127.0.0.1:8443', tls: { cert: 'server.crt', key: 'server.key' } }], users, routes: [route] })
  t.deepEqual(tls.filter((i) => i.severity === 'error'), [])
})

test('a route shadowed by an earlier one is one warning; in the right order it is not', async (t) => {
  const broad = { name: 'all', match: { path: '/v1/**' }, upstream: 'demo', public: true }
  const narrow = { name: 'orders', match: { path: '/v1/orders' }, upstream: 'demo', public: true }
  const shadowed = await checkText(t, { routes: [broad, narrow] })
  t.deepEqual(shadowed.map((i) => [i.severity, i.path.join('.')]), [['warning', 'routes.1.match']])
  t.deepEqual(await checkText(t, { routes: [narrow, broad] }), [])
})

// Issue 14: workers without a shared store, trust lists that trust the internet, rate limits by a header the client
// controls.

test('workers > 1 (or auto) with the in-process store is an error; with Redis or one worker it is not', (t) => {
  const routes = [keyed([{ apiKey: {} }])]
  for (const workers of [2, 8, 'auto']) {
    const found = lintConfig(documentOf({ workers, routes }))
    t.deepEqual(found.map((i) => [i.rule, i.severity]), [['workers-without-shared-store', 'error']], String(workers))
    t.deepEqual(found[0]!.path, ['workers'])
    t.regex(found[0]!.message, /in-process store .+ \[workers-without-shared-store\]$/)
    t.regex(found[0]!.fix ?? '', /store\.redis/)
  }
  // ${env:REDIS_URL:-} unset interpolates to '': the in-process store.
  t.deepEqual(rulesOf({ workers: 2, store: { redis: '' }, routes }), ['workers-without-shared-store'])
  t.deepEqual(rulesOf({ workers: 2, store: { redis: 'redis://127.0.0.1:6379' }, routes }), [])
  t.deepEqual(rulesOf({ workers: 'auto', store: { redis: { cluster: ['redis://10.0.0.1:6379'] } }, routes }), [])
  t.deepEqual(rulesOf({ workers: 1, routes }), [])
  t.deepEqual(rulesOf({ routes }), [])
})

test('a trustProxies prefix shorter than /8 (IPv4) or /32 (IPv6), IPv4-mapped forms included, is an error at that entry', (t) => {
  const routes = [keyed([{ apiKey: {} }])]
  const broad = ['0.0.0.0/0', '0.0.0.0/1', '10.0.0.0/7', '::/0', '2000::/3', 'fc00::/7', '::ffff:0:0/96', '::ffff:0.0.0.0/96', '::/80', '::ffff:10.0.0.0/100', '::FFFF:0:0/97']
  for (const cidr of broad) {
    const found = lintConfig(documentOf({ trustProxies: ['10.1.0.0/16', cidr], routes }))
    t.deepEqual(found.map((i) => [i.rule, i.severity]), [['trust-proxies-too-broad', 'error']], cidr)
    t.deepEqual(found[0]!.path, ['trustProxies', 1], cidr)
    t.true(found[0]!.message.includes(cidr) && /X-Forwarded-For/.test(found[0]!.message), cidr)
  }
  const narrow = ['10.0.0.0/8', '192.0.2.7', '192.0.2.0/24', '::1', '2001:db8::/32', '2001:db8:1::/48', '::ffff:10.0.0.0/104', '::ffff:192.0.2.7', '::/96', 'fe80::1%eth0']
  t.deepEqual(rulesOf({ trustProxies: narrow, routes }), [])
})

test('rateLimit by a header the gateway owns or a forwarding header is an error; by an ordinary header it is not', (t) => {
  const limited = (by: string) => [keyed([{ apiKey: {} }, { rateLimit: { by, limit: '3/min' } }])]
  const identity = { headers: { subject: 'X-Gw-Sub' }, signed: { header: 'X-Gw-Identity' }, stripInbound: ['X-User-Id'] }
  const reserved = [
    'header:X-Auth-Client', 'header:x-auth-client', 'header:X-Auth-Tier', 'header:X-Gw-Sub', 'header:X-Gw-Identity', 'header:x-user-id',
    'header:X-Auth-Identity', 'header:X-Forwarded-Client-Cert',
    'header:Forwarded', 'header:X-Forwarded-For', 'header:x-forwarded-host', 'header:X-Real-IP', 'header:X-Client-IP',
    'header:True-Client-IP', 'header:X-Original-Forwarded-For', 'header:CF-Connecting-IP', 'header:Fastly-Client-IP',
  ]
  for (const by of reserved) {
    const found = lintConfig(documentOf({ identity, routes: limited(by) }))
    t.deepEqual(found.map((i) => [i.rule, i.severity]), [['rate-limit-reserved-header', 'error']], by)
    t.deepEqual(found[0]!.path, ['routes', 0, 'policies', 1, 'rateLimit', 'by'], by)
  }
  for (const by of ['header:X-Tenant', 'header:X-Forwarded', 'client', 'ip', 'claim:tenant']) {
    t.deepEqual(rulesOf({ identity, trustProxies: ['10.0.0.0/8'], routes: limited(by) }), [], by)
  }
})

test('a credential header that is a forwarding header is an error like a gateway-owned one', (t) => {
  for (const header of ['X-Real-IP', 'X-Forwarded-Key', 'CF-Connecting-IP']) {
    const found = lintConfig(documentOf({ routes: [keyed([{ apiKey: { header } }])] }))
    t.deepEqual(found.map((i) => [i.rule, i.severity, i.path.join('.')]), [['credential-header-stripped', 'error', 'routes.0.policies.0.apiKey.header']], header)
  }
  t.deepEqual(rulesOf({ routes: [keyed([{ hmac: { headers: { keyId: 'Forwarded' } } }])] }), ['credential-header-stripped'])
})

test('check prints the issue-14 errors at their line and column with a fix, and refuses the file', async (t) => {
  const config = {
    workers: 2,
    trustProxies: ['0.0.0.0/0'],
    routes: [{ name: 'api', match: { path: '/v1/**' }, upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'header:X-Auth-Client', limit: '3/min' } }] }],
  }
  const issues = await checkText(t, config)
  // checkText writes exactly this text.
  const lines = stringify({ version: 1, listeners: [{ name: 'local', address: '127.0.0.1:8080' }], upstreams: { demo: { echo: true } }, ...config }).split('\n')
  const at = (key: string, value: string) => {
    const line = lines.findIndex((l) => l.includes(key + value))
    return [line + 1, lines[line]!.indexOf(key + value) + key.length + 1]
  }
  const lint = issues.filter((i) => /\[(workers-without-shared-store|trust-proxies-too-broad|rate-limit-reserved-header)\]$/.test(i.message))
  t.deepEqual(lint.map((i) => [i.severity, i.path.join('.'), i.line, i.col]).sort(), [
    ['error', 'trustProxies.0', ...at('- ', '0.0.0.0/0')],
    ['error', 'routes.0.policies.1.rateLimit.by', ...at('by: ', 'header:X-Auth-Client')],
    ['error', 'workers', ...at('workers: ', '2')],
  ].sort())
  t.true(lint.every((i) => (i.fix ?? '').length > 10 && i.file !== undefined))
  const { config: loaded } = checkConfig(lint[0]!.file!, { env: {} })
  t.is(loaded, undefined, 'errors block loading (and so start and reload)')
})

test('authgate start refuses workers: 2 with the in-process store and exits 1 with the positioned error', async (t) => {
  t.timeout(60_000)
  const dir = await mkdtemp(join(tmpdir(), 'authgate-lint-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify({
    version: 1,
    workers: 2,
    listeners: [{ name: 'local', address: '127.0.0.1:0' }],
    upstreams: { demo: { echo: true } },
    routes: [{ name: 'echo', match: { path: '/**' }, upstream: 'demo', public: true }],
  }))
  const child = runCli(['start', '-c', file])
  t.teardown(() => { child.process.kill('SIGKILL') })
  const code = await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, 45_000, 'still running'))])
  t.is(code, 1, child.output())
  t.regex(child.output(), new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: error: workers: .+\\[workers-without-shared-store\\]\\n    fix: `))
})

test('a method-restricted route before a catch-all over its paths is a warning saying the other methods get 404; a method split of one path is not', (t) => {
  const read = { name: 'orders-read', match: { path: '/v1/orders/**', methods: ['GET'] }, upstream: 'demo', policies: [{ apiKey: {} }] }
  const open = { name: 'public', match: { path: '/v1/**' }, upstream: 'demo', public: true }
  const found = lintConfig(documentOf({ routes: [read, open] }))
  t.deepEqual(found.map((i) => [i.rule, i.severity, i.path.join('.')]), [['method-restricted-path', 'warning', 'routes.0.match.methods']])
  t.regex(found[0]!.message, /^route "orders-read" accepts only GET, HEAD on \/v1\/orders\/\*\*: other methods there get 404 no_route and never reach the later route "public" \(\/v1\/\*\*\).* \[method-restricted-path\]$/)
  t.regex(found[0]!.fix ?? '', /add a route for \/v1\/orders\/\*\* that lists them/)
  // Twins: the same path split by method, the catch-all naming its methods, or paths that do not meet.
  const write = { name: 'orders-write', match: { path: '/v1/orders/**', methods: ['POST'] }, upstream: 'demo', policies: [{ apiKey: {} }] }
  t.deepEqual(rulesOf({ routes: [read, write] }), [])
  t.deepEqual(rulesOf({ routes: [read, { ...open, match: { path: '/v1/**', methods: ['GET', 'POST'] } }] }), [])
  t.deepEqual(rulesOf({ routes: [read, { ...open, match: { path: '/v2/**' } }] }), [])
})

test('decision listeners: a trust list wider than /8 is an error, plain HTTP beyond loopback a warning, a body-signing route on one a warning', (t) => {
  const routes = [keyed([{ apiKey: {} }])]
  const decide = (extra: Record<string, unknown>) => ({ listeners: [{ name: 'decide', address: '127.0.0.1:8181', mode: 'decide', ...extra }], routes })
  const broad = lintConfig(documentOf(decide({ trustProxies: ['10.1.0.0/16', '0.0.0.0/0'] })))
  t.deepEqual(broad.map((i) => [i.rule, i.severity, i.path.join('.')]), [['trust-proxies-too-broad', 'error', 'listeners.0.trustProxies.1']])
  t.deepEqual(rulesOf(decide({ trustProxies: ['10.1.0.0/16', '192.0.2.7'] })), [])
  t.deepEqual(rulesOf(decide({})), [], 'the default (loopback) is fine')

  const plain = lintConfig(documentOf({ listeners: [{ name: 'decide', address: '0.0.0.0:8181', mode: 'decide', trustProxies: ['10.1.0.0/16'] }], routes }))
  t.deepEqual(plain.map((i) => [i.rule, i.severity]), [['decision-listener-plain-http', 'warning']])
  t.deepEqual(rulesOf({ listeners: [{ name: 'decide', address: '0.0.0.0:8181', mode: 'decide', trustProxies: ['10.1.0.0/16'], tls: { cert: 'c', key: 'k' } }], routes }), [])
  t.deepEqual(rulesOf({ listeners: [{ name: 'edge', address: '127.0.0.1:8080' }], routes }), [], 'a forwarding listener is not a decision listener')

  const signed = [{ name: 'pay', match: { path: '/pay/**' }, policies: [{ hmac: {} }] }]
  const found = lintConfig(documentOf({ listeners: [{ name: 'decide', address: '127.0.0.1:8181', mode: 'decide' }], routes: signed }))
  t.deepEqual(found.map((i) => [i.rule, i.severity]), [['hmac-body-in-decision-mode', 'warning']])
  t.regex(found[0]!.message, /the proxy sent no body/)
  t.deepEqual(rulesOf({ routes: [{ ...signed[0], upstream: 'demo' }] }), [], 'the same route in proxy mode')
})
