/**
 * Property-based tests of config loading: `checkConfig` (behind `authgate check`, start and reload) answers every
 * input with a list of issues and never throws, whatever the text: random YAML, random mutations of a valid
 * gateway.yaml (values, keys, deletions, interpolations), and text-level damage to it. Seeds: FUZZ_SEED or the fixed
 * default.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import anyTest, { type TestFn } from 'ava'
import fc from 'fast-check'
import { parse, stringify } from 'yaml'
import { checkConfig } from '../../gateway/config/load.js'
import type { ConfigIssue } from '../../gateway/errors.js'
import { checkProperty } from './support.js'

const test = anyTest as TestFn<{ dir: string, file: string }>

/** A valid configuration that touches most sections and policies (the mutation base). */
const BASE = `version: 1
listeners:
  - name: local
    address: 127.0.0.1:0
  - name: public
    address: 127.0.0.1:0
    tls:
      cert: server.crt
      key: server.key
      clientCA: ca.crt
      clientCert: optional
admin:
  address: 127.0.0.1:0
  token: \${env:ADMIN_TOKEN:-}
store:
  redis: \${env:REDIS_URL:-}
  prefix: "authgate:"
  onError: deny
  timeout: 500ms
trustProxies: [10.0.0.0/8, "::1"]
upstreams:
  demo: { echo: true }
  orders:
    url: http://127.0.0.1:9000
    timeout: 30s
    connections: 8
apiKeys:
  - id: demodemo
    hash: sha256:c09cff330e6131e58df507b6cecb6000fa41496875210f303a5c822b14e2f8ee
    client: demo-client
    scopes: [read, orders:read]
    tier: free
jwtProviders:
  internal:
    secret: \${env:JWT_SECRET}
    algorithms: [HS256]
    audience: internal
    clockTolerance: 30s
rateLimitTiers: { free: 60/min, gold: 6000/min }
limits: { maxBodyBytes: 1MiB, maxHeaderBytes: 16KiB, headersTimeout: 10s, requestTimeout: 60s }
realm: authgate
identity:
  headers: { subject: X-Auth-Subject, client: X-Auth-Client }
  stripInbound: [X-User-Id]
routes:
  - name: health
    match: { path: /health }
    upstream: demo
    public: true
    policies:
      - rateLimit: { by: ip, limit: 10/sec }
  - name: orders-read
    match: { path: /v1/orders/**, methods: [GET], listener: [local, public] }
    upstream: orders
    policies:
      - anyOf:
          - apiKey: { header: X-API-Key }
          - jwt: { provider: internal }
      - scopes: [orders:read]
      - claims: { tenant: [a, b] }
      - rateLimit: { by: client, limit: 100/min }
  - name: payments
    match: { path: /v1/payments/**, methods: [POST], listener: public }
    upstream: orders
    stripPrefix: /v1
    limits: { maxBodyBytes: 64KiB }
    policies:
      - mtls: { subjects: ["CN=billing-service"] }
      - jwt: { provider: internal }
      - rateLimit: { by: client, limit: 10/sec }
`

const ENV = { JWT_SECRET: 'j'.repeat(40), ADMIN_TOKEN: 't'.repeat(40) }

test.before((t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authgate-config-fuzz-'))
  writeFileSync(join(dir, 'present.pem'), '-----BEGIN PUBLIC KEY-----\nnot really\n-----END PUBLIC KEY-----\n')
  t.context = { dir, file: join(dir, 'gateway.yaml') }
})

test.after.always((t) => {
  rmSync(t.context.dir, { recursive: true, force: true })
})

/** Runs checkConfig and returns what is wrong with its answer (undefined when the answer is well-formed). */
function answerProblem (file: string, text: string): string | undefined {
  let result: { issues: ConfigIssue[], config?: unknown }
  try {
    result = checkConfig(file, { text, env: ENV })
  } catch (error) {
    const where = String((error as Error)?.stack ?? '').split('\n').slice(1, 4).map((l) => l.trim()).join(' < ')
    return `checkConfig threw ${(error as Error)?.name}: ${(error as Error)?.message} (${where})`
  }
  if (!Array.isArray(result.issues)) return 'issues is not an array'
  for (const issue of result.issues) {
    if (issue.severity !== 'error' && issue.severity !== 'warning') return `bad severity ${JSON.stringify(issue.severity)}`
    if (typeof issue.message !== 'string' || issue.message.length === 0) return 'an issue without a message'
    if (!Array.isArray(issue.path)) return 'an issue without a path'
    const { line, col } = issue as { line?: unknown, col?: unknown }
    if (line !== undefined && !(Number.isInteger(line) && (line as number) >= 1)) return `bad line ${String(line)}`
    if (col !== undefined && !(Number.isInteger(col) && (col as number) >= 1)) return `bad col ${String(col)}`
  }
  const errors = result.issues.filter((i) => i.severity === 'error').length
  if (errors > 0 && result.config !== undefined) return 'a config was returned along with errors'
  if (errors === 0 && result.config === undefined) return 'no config and no error'
  if ((Object.prototype as Record<string, unknown>).polluted !== undefined) return 'Object.prototype was polluted'
  return undefined
}

const property = (file: string) => (text: string) => {
  const problem = answerProblem(file, text)
  if (problem) throw new Error(problem)
}

test('the mutation base is valid (the positive twin of every property below)', (t) => {
  const result = checkConfig(t.context.file, { text: BASE, env: ENV })
  t.deepEqual(result.issues.filter((i) => i.severity === 'error'), [])
  t.truthy(result.config)
})

test('random YAML-ish text never makes checkConfig throw', async (t) => {
  const yamlChars = fc.constantFrom(...'abc:- \n\t{}[],&*!|>\'"#%@$`?~=0123456789.\\/'.split(''), 'version: 1\n', 'routes:\n', '  - ', '${env:X}', '${file:x}', '<<: *a\n', '&a ', '*a', '!!binary ', '!!str ', '---\n', '...\n', '__proto__: ')
  await checkProperty(t, fc.property(fc.array(yamlChars, { maxLength: 120 }).map((parts) => parts.join('')), property(t.context.file)), { numRuns: 600 })
})

test('any JSON value written as YAML never makes checkConfig throw', async (t) => {
  await checkProperty(t, fc.property(fc.jsonValue({ maxDepth: 4 }).map((v) => stringify(v)), property(t.context.file)), { numRuns: 300, seedOffset: 1 })
})

/** Values a mutation may put anywhere: wrong types, near-valid strings, interpolations, hostile keys. */
const oddValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    '${env:NOPE}', '${env:NOPE:-}', '${env:JWT_SECRET}', '${file:missing.pem}', '${file:present.pem}', '${file:../../../../etc/hostname}',
    '${file:}', '${env:}', '${', '${env:A}${env:B}', '1MiB', '-1', '0', '1e999', '30x', 'NaN', '999999999999999999999/min', '0/sec',
    '/**', '/a/../b', '/a/%2e%2e/b', '*', '', ' ', 'none', 'HS256', 'RS256', '10.0.0.0/33', '::ffff:1.2.3.4/200', 'http://', 'redis://x',
    'constructor', '__proto__', 'toString', 'CN=', 'CN=a,=b', 'agk_x_y', 'sha256:zz', 'x'.repeat(5000),
  ),
  fc.constantFrom(-1, 0, 1, 2 ** 31, Number.MAX_SAFE_INTEGER, 1.5, -0),
  fc.constantFrom([], {}, [null], [[]], { anyOf: [] }, { anyOf: [{ anyOf: [] }] }, { apiKey: null }, { jwt: {} }, { unknownPolicy: {} }, { '': 1 }),
)
const oddKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'polluted', '', 'x-y', 'routes', 'policies', 'anyOf', 'apiKey', 'jwt', 'tls', 'redis')

type Op = { path: number[], kind: 'delete' | 'replace' | 'rename' | 'add' | 'duplicate', value: unknown, key: string }
const op: fc.Arbitrary<Op> = fc.record({
  path: fc.array(fc.nat(), { minLength: 0, maxLength: 6 }),
  kind: fc.constantFrom('delete', 'replace', 'replace', 'rename', 'add', 'duplicate'),
  value: oddValue,
  key: oddKey,
}) as fc.Arbitrary<Op>

/** Applies one mutation at the node the index path leads to (each index picks a child modulo their count). */
function mutate (root: unknown, { path, kind, value: shared, key }: Op): unknown {
  const value = structuredClone(shared) // constants are shared objects: never alias them into the document
  if (path.length === 0 || root === null || typeof root !== 'object') return kind === 'replace' ? value : root
  let parent = root as Record<string, unknown> | unknown[]
  for (let depth = 0; ; depth++) {
    const keys = Array.isArray(parent) ? parent.map((_v, i) => i) : Object.keys(parent)
    if (keys.length === 0) { if (!Array.isArray(parent)) (parent as Record<string, unknown>)[key] = value; return root }
    const k = keys[path[depth]! % keys.length]!
    const child = (parent as Record<string | number, unknown>)[k]
    const last = depth === path.length - 1 || child === null || typeof child !== 'object'
    if (!last) { parent = child as Record<string, unknown> | unknown[]; continue }
    if (Array.isArray(parent)) {
      const i = k as number
      if (kind === 'delete') parent.splice(i, 1)
      else if (kind === 'duplicate') parent.splice(i, 0, structuredClone(parent[i]))
      else if (kind === 'add') parent.push(value)
      else parent[i] = value
    } else {
      const name = k as string
      if (kind === 'delete') delete parent[name]
      else if (kind === 'rename') { Object.defineProperty(parent, key, { value: parent[name], enumerable: true, configurable: true, writable: true }); if (key !== name) delete parent[name] } else if (kind === 'add') Object.defineProperty(parent, key, { value, enumerable: true, configurable: true, writable: true })
      else if (kind === 'duplicate') parent[`${name}2`] = structuredClone(parent[name])
      else parent[name] = value
    }
    return root
  }
}

test('random mutations of a valid gateway.yaml never make checkConfig throw', async (t) => {
  const base = parse(BASE) as unknown
  await checkProperty(t, fc.property(fc.array(op, { minLength: 1, maxLength: 5 }), (ops) => {
    let doc = structuredClone(base)
    for (const o of ops) doc = mutate(doc, o)
    property(t.context.file)(stringify(doc))
  }), { numRuns: 1000, seedOffset: 2 })
})

test('text-level damage to a valid gateway.yaml (cut, spliced, re-indented lines) never makes checkConfig throw', async (t) => {
  const lines = BASE.split('\n')
  const edit = fc.record({
    line: fc.nat({ max: lines.length - 1 }),
    kind: fc.constantFrom('delete', 'duplicate', 'indent', 'dedent', 'insert', 'truncate', 'swap'),
    text: fc.string({ maxLength: 20 }),
    other: fc.nat({ max: lines.length - 1 }),
  })
  await checkProperty(t, fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
    let current = [...lines]
    for (const e of edits) {
      const i = e.line % Math.max(1, current.length)
      switch (e.kind) {
        case 'delete': current.splice(i, 1); break
        case 'duplicate': current.splice(i, 0, current[i] ?? ''); break
        case 'indent': current[i] = `  ${current[i] ?? ''}`; break
        case 'dedent': current[i] = (current[i] ?? '').replace(/^ {1,2}/, ''); break
        case 'insert': current[i] = `${(current[i] ?? '').slice(0, e.text.length)}${e.text}${(current[i] ?? '').slice(e.text.length)}`; break
        case 'truncate': current = current.slice(0, i); break
        case 'swap': { const j = e.other % Math.max(1, current.length); [current[i], current[j]] = [current[j] ?? '', current[i] ?? '']; break }
      }
    }
    property(t.context.file)(current.join('\n'))
  }), { numRuns: 600, seedOffset: 3 })
})

test('a YAML alias bomb is an issue, not a crash or a hang', (t) => {
  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
  for (const [name, prev] of [['b', 'a'], ['c', 'b'], ['d', 'c'], ['e', 'd'], ['f', 'e'], ['g', 'f']]) {
    bomb.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`)
  }
  const started = performance.now()
  const problem = answerProblem(t.context.file, bomb.join('\n'))
  t.is(problem, undefined)
  t.true(performance.now() - started < 2000)
  const { issues } = checkConfig(t.context.file, { text: bomb.join('\n'), env: ENV })
  t.true(issues.some((i) => i.severity === 'error'))
})

test('a document with missing sections or a wrong top-level shape is answered with issues', (t) => {
  for (const text of ['', '~', '[]', '42', 'version: 1', 'routes: 5', 'a: &a [1]\nb: *a\n', '__proto__: { polluted: true }\nversion: 1\n', 'version: 1\nlisteners: []\nroutes: []\n']) {
    t.is(answerProblem(t.context.file, text), undefined, JSON.stringify(text))
    t.true(checkConfig(t.context.file, { text, env: ENV }).issues.some((i) => i.severity === 'error'), JSON.stringify(text))
  }
})

test('a recursive alias (an anchor referred to from inside itself) is an issue, not a stack overflow', (t) => {
  for (const text of ['version: 1\nx: &a [*a]\n', 'version: 1\nroutes: &r\n  - name: x\n    more: *r\n', 'a: &m { b: *m }\n']) {
    t.is(answerProblem(t.context.file, text), undefined, JSON.stringify(text))
    t.true(checkConfig(t.context.file, { text, env: ENV }).issues.some((i) => i.severity === 'error' && /alias/.test(i.message)), JSON.stringify(text))
  }
  // Its twin: an alias used twice without recursion is a plain copy and loads.
  const shared = BASE.replace('scopes: [read, orders:read]', 'scopes: &s [read, orders:read]').replace('      - scopes: [orders:read]', '      - scopes: *s')
  t.deepEqual(checkConfig(t.context.file, { text: shared, env: ENV }).issues.filter((i) => i.severity === 'error'), [])
})

test('deeply nested YAML is an issue, not a crash', (t) => {
  for (const text of ['['.repeat(5000) + ']'.repeat(5000), `x: ${'{a: '.repeat(3000)}1${'}'.repeat(3000)}`]) {
    t.is(answerProblem(t.context.file, text), undefined)
  }
})
