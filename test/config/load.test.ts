import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import test from 'ava'
import { checkConfig } from '../../gateway/config/load.js'
import { DEMO_KEY_HASH } from '../../gateway/config/production.js'
import { formatIssues, type ConfigIssue } from '../../gateway/errors.js'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'

const dirs: string[] = []
test.after.always(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
})

/** Writes `text` as gateway.yaml (and `files` beside it) in a fresh temp folder and checks it. */
async function check (text: string, options: { env?: Record<string, string>, files?: Record<string, string> } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-config-'))
  dirs.push(dir)
  for (const [name, content] of Object.entries(options.files ?? {})) {
    await mkdir(dirname(join(dir, name)), { recursive: true })
    await writeFile(join(dir, name), content)
  }
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, text)
  return { ...checkConfig(file, { env: options.env ?? {} }), file }
}

const errors = (issues: readonly ConfigIssue[]) => issues.filter((i) => i.severity === 'error')

/** Issue summary for exact assertions: `LINE:COL path: message`. */
function where (issue: ConfigIssue): string {
  return `${issue.line}:${issue.col} ${issue.path.join('.')}`
}

/** Lines 1-3 of most documents below. */
const HEAD = `version: 1
listeners: [{ name: local, address: "127.0.0.1:0" }]
upstreams: { demo: { echo: true } }
`

test('a valid configuration loads with no issues and with defaults applied', async (t) => {
  const { issues, config } = await check(`${HEAD}routes:
  - name: open
    match: { path: /open/** }
    upstream: demo
    public: true
`)
  t.deepEqual(issues, [])
  t.truthy(config)
  t.is(config!.doc.realm, 'authgate')
  t.deepEqual(config!.doc.trustProxies, [])
  t.is(config!.doc.limits.maxBodyBytes, '1MiB')
  t.is(config!.doc.limits.maxHeaderBytes, '16KiB')
  t.is(config!.doc.upstreams.demo!.timeout, '30s')
  t.true(Object.isFrozen(config!.doc))
})

test('malformed YAML is reported with its line and column', async (t) => {
  const cases: Array<[string, string]> = [
    ['version: 1\nversion: 1\n', '2:1'], // duplicate key
    ['version: 1\nroutes:\n\t- name: x\n', '3:1'], // tab indentation
    ['version: 1\nlisteners: [{ name: a\nroutes: []\n', '3:1'], // unterminated flow mapping
  ]
  for (const [text, at] of cases) {
    const { issues, config, file } = await check(text)
    t.is(config, undefined)
    t.true(issues.length >= 1)
    const first = issues[0]!
    t.is(first.severity, 'error')
    t.is(first.file, file)
    t.is(`${first.line}:${first.col}`, at, JSON.stringify(text))
    t.regex(first.message, /^YAML: /)
    t.truthy(first.fix)
  }
})

test('an unknown top-level key is an error at the key, with a did-you-mean', async (t) => {
  const { issues, config } = await check(`${HEAD}rutes: []
routes:
  - name: open
    match: { path: /open }
    upstream: demo
    public: true
`)
  t.is(config, undefined)
  t.is(issues.length, 1)
  t.is(where(issues[0]!), '4:1 rutes')
  t.is(issues[0]!.message, 'unknown key "rutes"; did you mean "routes"?')
  t.is(issues[0]!.fix, 'rename it to routes')
})

test('unknown nested keys are errors at the exact line and column of the key, with a did-you-mean', async (t) => {
  const { issues, config } = await check(`version: 1
listeners:
  - name: local
    address: "127.0.0.1:0"
upstreams:
  demo:
    echo: true
    timout: 5s
routes:
  - name: open
    match: { path: /open, lisener: local }
    upstream: demo
    public: true
    limits:
      maxBodyByte: 1KiB
`)
  t.is(config, undefined)
  t.deepEqual(issues.map((i) => `${where(i)}: ${i.message}`), [
    '8:5 upstreams.demo.timout: unknown key "timout"; did you mean "timeout"?',
    '11:27 routes.0.match.lisener: unknown key "lisener"; did you mean "listener"?',
    '15:7 routes.0.limits.maxBodyByte: unknown key "maxBodyByte"; did you mean "maxBodyBytes"?',
  ])
})

test('an unknown policy is an error at its key with a did-you-mean, and no "no authenticating policy" noise', async (t) => {
  const { issues } = await check(`${HEAD}routes:
  - name: keyed
    match: { path: /v1/** }
    upstream: demo
    policies:
      - apikey: {}
`)
  t.is(issues.length, 1)
  t.is(where(issues[0]!), '9:9 routes.0.policies.0.apikey')
  t.is(issues[0]!.message, 'unknown policy "apikey"; did you mean "apiKey"?')
  t.regex(issues[0]!.fix ?? '', /apiKey/)
  // The twin: the right spelling loads.
  const fixed = await check(`${HEAD}routes:
  - name: keyed
    match: { path: /v1/** }
    upstream: demo
    policies:
      - apiKey: {}
`)
  t.deepEqual(fixed.issues, [])
})

test('a missing environment variable is an error naming the variable and no value', async (t) => {
  const text = `${HEAD}admin: { address: "127.0.0.1:0", token: "\${env:AUTHGATE_TEST_TOKEN}" }
routes: [{ name: open, match: { path: /x }, upstream: demo, public: true }]
`
  const other = 'unrelated-secret-value-4242'
  const { issues, config } = await check(text, { env: { SOME_OTHER_SECRET: other } })
  t.is(config, undefined)
  t.is(issues.length, 1)
  t.is(where(issues[0]!), '4:41 admin.token')
  t.is(issues[0]!.message, 'environment variable AUTHGATE_TEST_TOKEN is not set')
  t.false(JSON.stringify(issues).includes(other))
  // The twin: set, it is interpolated, and nothing reports it.
  const set = await check(text, { env: { AUTHGATE_TEST_TOKEN: 'the-token-value' } })
  t.deepEqual(set.issues, [])
  t.is(set.config!.doc.admin!.token, 'the-token-value')
})

test('${env:NAME:-default} uses the default when the variable is unset or empty, the variable when set', async (t) => {
  const text = `${HEAD}admin: { address: "127.0.0.1:0", token: "\${env:AUTHGATE_TEST_TOKEN:-fallback}" }
store: { redis: "\${env:AUTHGATE_TEST_REDIS:-}" }
routes: [{ name: open, match: { path: /x }, upstream: demo, public: true }]
`
  const unset = await check(text)
  t.deepEqual(unset.issues, [])
  t.is(unset.config!.doc.admin!.token, 'fallback')
  t.is(unset.config!.doc.store.redis, '')
  const empty = await check(text, { env: { AUTHGATE_TEST_TOKEN: '' } })
  t.is(empty.config!.doc.admin!.token, 'fallback')
  const set = await check(text, { env: { AUTHGATE_TEST_TOKEN: 'from-env' } })
  t.is(set.config!.doc.admin!.token, 'from-env')
})

test('${file:path} is read relative to the config folder, one trailing newline trimmed; a missing file is an error', async (t) => {
  const text = (ref: string) => `${HEAD}admin: { address: "127.0.0.1:0", token: "\${file:${ref}}" }
routes: [{ name: open, match: { path: /x }, upstream: demo, public: true }]
`
  const files = { 'secrets/token': 'file-token\n', 'secrets/pem': '-----BEGIN X-----\nAAAA\n-----END X-----\n\n' }
  const token = await check(text('secrets/token'), { files })
  t.deepEqual(token.issues, [])
  t.is(token.config!.doc.admin!.token, 'file-token')
  const pem = await check(text('secrets/pem'), { files })
  t.is(pem.config!.doc.admin!.token, '-----BEGIN X-----\nAAAA\n-----END X-----\n')

  const missing = await check(text('secrets/nope'), { files })
  t.is(missing.config, undefined)
  t.is(missing.issues.length, 1)
  t.is(where(missing.issues[0]!), '4:41 admin.token')
  t.is(missing.issues[0]!.message, 'cannot read file secrets/nope (ENOENT)')
  t.regex(missing.issues[0]!.fix ?? '', /relative to the config file's folder/)
})

test('a route without an authenticating policy that is not public is an error; public: true or a policy fixes it', async (t) => {
  const route = (extra: string) => `${HEAD}routes:
  - name: orders
    match: { path: /v1/orders/** }
    upstream: demo
${extra}`
  const { issues, config } = await check(route(''))
  t.is(config, undefined)
  t.is(issues.length, 1)
  t.is(where(issues[0]!), '5:5 routes.0')
  t.is(issues[0]!.message, 'route "orders" has no authenticating policy')
  t.regex(issues[0]!.fix ?? '', /public: true/)

  t.deepEqual((await check(route('    public: true\n'))).issues, [])
  t.deepEqual((await check(route('    policies: [{ apiKey: {} }]\n'))).issues, [])
})

test('an authenticating policy on a public route is an error', async (t) => {
  const { issues, config } = await check(`${HEAD}routes:
  - name: open
    match: { path: /open }
    upstream: demo
    public: true
    policies:
      - apiKey: {}
`)
  t.is(config, undefined)
  t.is(issues.length, 1)
  t.is(where(issues[0]!), '10:9 routes.0.policies.0.apiKey')
  t.regex(issues[0]!.message, /public: true, so the authenticating policy "apiKey" would never be required/)
})

test('an unknown upstream or listener is an error with a did-you-mean', async (t) => {
  const { issues } = await check(`${HEAD}routes:
  - name: open
    match: { path: /open, listener: locl }
    upstream: dmeo
    public: true
`)
  t.deepEqual(issues.map((i) => `${where(i)}: ${i.message} (${i.fix})`), [
    '6:37 routes.0.match.listener: unknown listener "locl" (known: local) (did you mean "local"?)',
    '7:15 routes.0.upstream: unknown upstream "dmeo" (known: demo) (did you mean "demo"?)',
  ])
})

test('malformed durations, sizes and rates are errors that say how to write them', async (t) => {
  const { issues, config } = await check(`version: 1
listeners: [{ name: local, address: "127.0.0.1:0" }]
upstreams:
  app: { url: "http://127.0.0.1:9", timeout: 30 secs }
limits:
  maxBodyBytes: 1 MB
  headersTimeout: soon
rateLimitTiers:
  free: lots
routes: [{ name: open, match: { path: /x }, upstream: app, public: true }]
`)
  t.is(config, undefined)
  t.deepEqual(issues.map((i) => `${where(i)}: ${i.message}`), [
    '4:46 upstreams.app.timeout: not a duration',
    '6:17 limits.maxBodyBytes: not a size',
    '7:19 limits.headersTimeout: not a duration',
    '9:9 rateLimitTiers.free: not a rate',
  ])
  t.regex(issues[0]!.fix ?? '', /30s/)
  t.regex(issues[1]!.fix ?? '', /1MiB/)
  t.regex(issues[3]!.fix ?? '', /100\/min/)
  // The twin: well-formed values load.
  const ok = await check(`version: 1
listeners: [{ name: local, address: "127.0.0.1:0" }]
upstreams:
  app: { url: "http://127.0.0.1:9", timeout: 30s }
limits: { maxBodyBytes: 1MiB, headersTimeout: 250ms }
rateLimitTiers: { free: 100/min }
routes: [{ name: open, match: { path: /x }, upstream: app, public: true }]
`)
  t.deepEqual(ok.issues, [])
})

test('a malformed trustProxies entry is an error at that entry; valid CIDRs and addresses load', async (t) => {
  const text = (list: string) => `${HEAD}trustProxies: [${list}]
routes: [{ name: open, match: { path: /x }, upstream: demo, public: true }]
`
  const { issues } = await check(text('10.0.0.0/8, 10.0.0.0/33, proxy.local, "::1/129"'))
  t.deepEqual(issues.map((i) => `${where(i)}: ${i.message}`), [
    '4:28 trustProxies.1: not an IP address or CIDR',
    '4:41 trustProxies.2: not an IP address or CIDR',
    '4:54 trustProxies.3: not an IP address or CIDR',
  ])
  t.deepEqual((await check(text('10.0.0.0/8, 192.0.2.7, "::1/128", "fd00::/32"'))).issues, [])
})

test('duplicate route names are an error at the second name', async (t) => {
  const { issues } = await check(`${HEAD}routes:
  - name: same
    match: { path: /a }
    upstream: demo
    public: true
  - name: same
    match: { path: /b }
    upstream: demo
    public: true
`)
  t.is(issues.length, 1)
  t.is(where(issues[0]!), '9:11 routes.1.name')
  t.is(issues[0]!.message, 'duplicate route name "same" (also routes[0])')
})

test('a configuration with three separate mistakes reports all three, each with its line and column', async (t) => {
  const { issues, config, file } = await check(`${HEAD}routes:
  - name: keyed
    match: { path: /v1/** }
    upstream: dmeo
    policies:
      - apikey: {}
  - name: open
    match: { path: /open, lisener: local }
    upstream: demo
    public: true
`)
  t.is(config, undefined)
  t.deepEqual(issues.map((i) => `${where(i)}: ${i.message}`), [
    '7:15 routes.0.upstream: unknown upstream "dmeo" (known: demo)',
    '9:9 routes.0.policies.0.apikey: unknown policy "apikey"; did you mean "apiKey"?',
    '11:27 routes.1.match.lisener: unknown key "lisener"; did you mean "listener"?',
  ])
  const text = formatIssues(issues)
  t.true(text.includes(`${file}:7:15: error: routes[0].upstream: unknown upstream "dmeo"`))
  t.true(text.includes(`${file}:9:9: error: routes[0].policies[0].apikey: unknown policy "apikey"`))
  t.true(text.includes(`${file}:11:27: error: routes[1].match.lisener: unknown key "lisener"`))
  t.is(text.match(/\n {4}fix: /g)?.length, 3)
})

test('a route that an earlier route shadows is a warning, and the configuration still loads', async (t) => {
  const { issues, config } = await check(`${HEAD}routes:
  - name: everything
    match: { path: /v1/** }
    upstream: demo
    public: true
  - name: orders
    match: { path: /v1/orders }
    upstream: demo
    public: true
`)
  t.truthy(config)
  t.is(issues.length, 1)
  t.is(issues[0]!.severity, 'warning')
  t.is(issues[0]!.path.join('.'), 'routes.1.match')
  t.is(issues[0]!.line, 10)
  t.regex(issues[0]!.message, /route "orders" can never match: routes\[0\] \("everything"\)/)
  t.deepEqual(config!.warnings, issues)
  // The twin: in the other order nothing is shadowed.
  const reordered = await check(`${HEAD}routes:
  - name: orders
    match: { path: /v1/orders }
    upstream: demo
    public: true
  - name: everything
    match: { path: /v1/** }
    upstream: demo
    public: true
`)
  t.deepEqual(reordered.issues, [])
})

test('NODE_ENV=production refuses the demo API key and an admin API without a token; development accepts them', async (t) => {
  const text = `${HEAD}admin: { address: "127.0.0.1:0" }
apiKeys:
  - id: demodemo
    hash: ${DEMO_KEY_HASH}
    client: demo-client
routes:
  - name: keyed
    match: { path: /v1/** }
    upstream: demo
    policies: [{ apiKey: {} }]
`
  const production = await check(text, { env: { NODE_ENV: 'production' } })
  t.is(production.config, undefined)
  t.deepEqual(errors(production.issues).map((i) => where(i)), ['4:8 admin', '7:11 apiKeys.0.hash'])
  t.regex(production.issues[0]!.message, /no token/)
  t.regex(production.issues[1]!.message, /demo API key/)

  t.deepEqual((await check(text)).issues, [])

  // The twin: production with a real key and a real token loads.
  const { id, key } = newApiKey()
  const real = `${HEAD}admin: { address: "127.0.0.1:0", token: "\${env:AUTHGATE_ADMIN_TOKEN}" }
apiKeys:
  - id: ${id}
    hash: ${hashApiKey(key)}
    client: real-client
routes:
  - name: keyed
    match: { path: /v1/** }
    upstream: demo
    policies: [{ apiKey: {} }]
`
  const ok = await check(real, { env: { NODE_ENV: 'production', AUTHGATE_ADMIN_TOKEN: 'a-long-random-admin-token-0123456789' } })
  t.deepEqual(ok.issues, [])
  // A placeholder token is refused in production.
  const weak = await check(real, { env: { NODE_ENV: 'production', AUTHGATE_ADMIN_TOKEN: 'changeme' } })
  t.deepEqual(errors(weak.issues).map((i) => i.path.join('.')), ['admin.token'])
  t.false(JSON.stringify(weak.issues).includes('changeme'))
})

test('a value interpolated from the environment is never printed in an error, even where a name belongs; its reference is', async (t) => {
  const secret = 'sup3r-s3cret-value-that-must-not-leak'
  const { issues } = await check([
    'version: 1',
    'listeners: [{ name: local, address: "127.0.0.1:0" }]',
    'upstreams: { demo: { echo: true } }',
    'routes:',
    '  - name: r',
    '    match: { path: /x }',
    '    upstream: ${env:UPSTREAM_NAME}',
    '    public: true',
  ].join('\n'), { env: { UPSTREAM_NAME: secret } })
  const text = formatIssues(issues)
  t.regex(text, /unknown upstream "\$\{env:UPSTREAM_NAME\}"/)
  t.false(text.includes(secret))
  const clean = await check([
    'version: 1',
    'listeners: [{ name: local, address: "127.0.0.1:0" }]',
    'upstreams: { demo: { echo: true } }',
    'routes:',
    '  - name: r',
    '    match: { path: /x }',
    '    upstream: ${env:UPSTREAM_NAME}',
    '    public: true',
  ].join('\n'), { env: { UPSTREAM_NAME: 'demo' } })
  t.deepEqual(clean.issues.filter((i) => i.severity === 'error'), [])
})

test('decision listeners: a route without upstream is fine on them only; their own keys are refused on a forwarding listener', async (t) => {
  const listeners = `version: 1
listeners:
  - { name: local, address: "127.0.0.1:0" }
  - { name: decide, address: "127.0.0.1:0", mode: decide, trustProxies: [10.0.0.0/8, nonsense], crl: crl.pem }
upstreams: { demo: { echo: true } }
`
  const { issues } = await check(`${listeners}routes:
  - name: open
    match: { path: /open }
    public: true
`)
  t.deepEqual(issues.map((i) => `${where(i)}: ${i.message}`), [
    '4:86 listeners.1.trustProxies.1: not an IP address or CIDR',
    '4:102 listeners.1.crl: a CRL needs clientCA',
    '7:5 routes.0: route "open" has no upstream but is reachable on listener "local", which forwards requests',
  ])
  const ok = await check(`version: 1
listeners:
  - { name: local, address: "127.0.0.1:0" }
  - { name: decide, address: "127.0.0.1:0", mode: decide }
upstreams: { demo: { echo: true } }
routes:
  - name: open
    match: { path: /open, listener: decide }
    public: true
`)
  t.deepEqual(ok.issues, [])
  t.truthy(ok.config)
  const forward = await check(`version: 1
listeners:
  - { name: local, address: "127.0.0.1:0", trustProxies: [10.0.0.0/8] }
upstreams: { demo: { echo: true } }
routes:
  - { name: open, match: { path: /open }, upstream: demo, public: true }
`)
  t.deepEqual(forward.issues.map((i) => `${i.path.join('.')}: ${i.message}`), ['listeners.0.trustProxies: trustProxies here is for decision listeners only'])
})
