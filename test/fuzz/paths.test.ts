/**
 * The request-level twin of gateway/router/normalize.test.ts: random request targets built from the pieces path
 * confusion is made of (dot segments raw and encoded, encoded separators, `;`, `\`, NUL, overlong UTF-8, case,
 * doubled slashes, raw non-ASCII), sent over raw sockets to a gateway with a public and an API-key prefix.
 * Invariants ("one path string"): the path the upstream receives is exactly normalizePath's answer for the target;
 * a target normalizePath refuses is 400 and never forwarded; nothing reaches the protected prefix without the key.
 * Seeds: FUZZ_SEED or the fixed default.
 */
import anyTest, { type TestFn } from 'ava'
import fc from 'fast-check'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { normalizePath } from '../../gateway/router/normalize.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { checkProperty, exchange, portOf } from './support.js'

const test = anyTest as TestFn<{ gw: TestGateway, key: string }>

test.before(async (t) => {
  const { id, key } = newApiKey()
  const gw = await startGateway({
    apiKeys: [{ id, hash: hashApiKey(key), client: 'path-client', scopes: [] }],
    routes: [
      { name: 'public', match: { path: '/public/**' }, upstream: 'demo', public: true },
      { name: 'admin', match: { path: '/admin/**' }, upstream: 'demo', policies: [{ apiKey: {} }] },
    ],
  })
  t.context = { gw, key }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
})

/** Harmless pieces (which keep most targets routable) and the pieces path confusion is made of. */
const plain = fc.constantFrom('admin', 'public', 'x', '', '~', '%7e', 'a%20b', '%C3%A9', '%61dmin', '%61%64%6d%69%6e', 'ADMIN', '*', '%25')
const tricky = fc.constantFrom(
  '..', '.', '%2e%2e', '%2E%2e', '.%2e', '%2e', '%2f', '%2F', '%5c', '\\', ';', '%3b', ';x=1', '%00', '%0a', 'Admin', '%252e%252e',
  '%', '%zz', '%c0%ae', '%C0%AE%C0%AE', '%e2%80%ae', 'é', '#', '?', 'admin%2f', 'public%2f..%2fadmin',
)
const first = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('admin', 'public', '%61dmin', 'p%75blic') }, { weight: 1, arbitrary: fc.oneof(plain, tricky) })
const rest = fc.array(fc.oneof({ weight: 5, arbitrary: plain }, { weight: 1, arbitrary: tricky }), { maxLength: 5 })
const target = fc.tuple(first, rest, fc.constantFrom('', '?q=1', '?a=%2e%2e', '?x=/admin'))
  .map(([head, pieces, query]) => `/${[head, ...pieces].join('/')}${query}`)

test('any target: the upstream gets exactly the normalized path, refused ones are 400, the protected prefix needs the key', async (t) => {
  const { gw, key } = t.context
  const port = portOf(gw.url)
  let forwarded = 0
  await checkProperty(t, fc.asyncProperty(target, fc.boolean(), async (raw, keyed) => {
    const head = `GET ${raw} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${keyed ? `X-API-Key: ${key}\r\n` : ''}Connection: close\r\n\r\n`
    const result = await exchange(port, Buffer.from(head, 'latin1'), { timeoutMs: 10_000 })
    const res = result.responses.find((r) => r.status >= 200)
    if (!res) throw new Error(`no answer (timed out: ${result.timedOut})`)
    if (![200, 400, 401, 404].includes(res.status)) throw new Error(`status ${res.status}`)
    const normalized = normalizePath(raw)
    if (!normalized.ok && res.status !== 400) throw new Error(`normalizePath refuses it (${normalized.reason}) but the gateway answered ${res.status}`)
    if (res.status !== 200) return
    forwarded++
    const seen = JSON.parse(res.body.toString('utf8')) as { path: string, query: string }
    if (!normalized.ok) throw new Error('forwarded a target normalizePath refuses')
    if (seen.path !== normalized.path) throw new Error(`forwarded ${JSON.stringify(seen.path)}, normalized ${JSON.stringify(normalized.path)}`)
    if (seen.query !== normalized.rawQuery) throw new Error(`query ${JSON.stringify(seen.query)}, sent ${JSON.stringify(normalized.rawQuery)}`)
    const onAdmin = seen.path === '/admin' || seen.path.startsWith('/admin/')
    if (onAdmin && !keyed) throw new Error(`reached ${seen.path} without the key`)
    if (!onAdmin && !(seen.path === '/public' || seen.path.startsWith('/public/'))) throw new Error(`forwarded an unrouted path ${seen.path}`)
  }), { numRuns: 600 })
  t.log(`${forwarded} of 600 targets forwarded`)
  t.true(forwarded > 20, 'the generator reaches routable targets too')
})
