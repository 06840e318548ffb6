/**
 * Property-based tests of request signatures, through a running gateway (raw sockets: targets and header values
 * reach it exactly as generated), and of the RFC 8941 structured-field parser under signature-shaped input.
 *
 * - hmac-sha256 and rfc9421: a correctly signed request passes once, its exact replay is 401 replayed_request; the
 *   same request with any one signed element changed (method, target, body, timestamp, key id, signature bytes,
 *   Signature-Input parameters, labels, Content-Digest) never passes; every answer is 200/400/401/413, never a 5xx.
 * - Structured-field garbage in Signature-Input / Signature / Content-Digest: never a 5xx.
 * - The parser (policies/hmac/structured-fields.ts): near-valid dictionaries never make it throw, and whatever it
 *   accepts re-serializes to a canonical form it parses back to itself.
 * Seeds: FUZZ_SEED or the fixed default.
 */
import { randomBytes } from 'node:crypto'
import anyTest, { type TestFn } from 'ava'
import fc from 'fast-check'
import { signRequest } from '../../policies/hmac/sign.js'
import { parseDictionary, parseItem, parseList, serializeDictionary, serializeItem, serializeList } from '../../policies/hmac/structured-fields.js'
import { parseSignatureFields } from '../../policies/hmac/rfc9421.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { checkProperty, exchange, portOf, type ParsedResponse } from './support.js'

interface Context { gw: TestGateway, secret: string, counter: { n: number } }
const test = anyTest as TestFn<Context>

test.before(async (t) => {
  const secret = randomBytes(32).toString('base64url')
  const gw = await startGateway({
    signingClients: [
      { keyId: 'billing', client: 'billing-service', secret: '${env:FUZZ_HMAC_SECRET}', scopes: ['write'] },
      { keyId: 'other', client: 'other-service', secret: '${env:FUZZ_OTHER_SECRET}' },
    ],
    limits: { maxBodyBytes: '4KiB' },
    routes: [
      { name: 'h', match: { path: '/h/**' }, upstream: 'demo', policies: [{ hmac: {} }] },
      { name: 's', match: { path: '/s/**' }, upstream: 'demo', policies: [{ hmac: { scheme: 'rfc9421' } }] },
    ],
  }, { env: { FUZZ_HMAC_SECRET: secret, FUZZ_OTHER_SECRET: randomBytes(32).toString('base64url') } })
  t.context = { gw, secret, counter: { n: 0 } }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
})

interface Wire { method: string, target: string, headers: Array<[string, string]>, body: Buffer }

async function send (gw: TestGateway, wire: Wire): Promise<ParsedResponse> {
  const port = portOf(gw.url)
  const lines = [`${wire.method} ${wire.target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...wire.headers.map(([n, v]) => `${n}: ${v}`)]
  if (wire.body.length > 0 || ['POST', 'PUT', 'PATCH'].includes(wire.method)) lines.push(`Content-Length: ${wire.body.length}`)
  lines.push('Connection: close')
  const data = Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), wire.body])
  const result = await exchange(port, data, { timeoutMs: 10_000, head: wire.method === 'HEAD' })
  const res = result.responses.find((r) => r.status >= 200)
  if (!res) throw new Error(`no answer (timed out: ${result.timedOut})`)
  return res
}

function assertAnswer (res: ParsedResponse): void {
  if (res.status >= 500) throw new Error(`status ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`)
  if (![200, 400, 401, 413].includes(res.status)) throw new Error(`unexpected status ${res.status}`)
  if (res.status === 401 && (res.headers['www-authenticate'] ?? []).length === 0) throw new Error('401 without a challenge')
}

const requestArb = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'),
  path: fc.constantFrom('/x', '/a/b', '/%61/b', '/a%20b', '/~user', '/a/'),
  query: fc.constantFrom('', '?a=1', '?a=1&b=2', '?b=2&a=1', '?q=%20', '?x=y+z'),
  body: fc.oneof(fc.constant(''), fc.string({ maxLength: 60 }), fc.constantFrom('{"amount":10}', 'ü')),
})

type Spoil = [string, (w: Wire) => void]

const replaceHeader = (w: Wire, name: string, value: string) => {
  const i = w.headers.findIndex(([n]) => n.toLowerCase() === name.toLowerCase())
  if (i >= 0) w.headers[i] = [w.headers[i]![0], value]
}
const headerValue = (w: Wire, name: string) => w.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1] ?? ''
const flip = (text: string) => text.length === 0 ? 'x' : text.slice(0, -1) + (text.endsWith('A') ? 'B' : 'A')

/** Changes that no valid signature survives (each leaves a request a client could send). */
const COMMON_SPOILS: Spoil[] = [
  ['method', (w) => { w.method = w.method === 'GET' ? 'DELETE' : 'GET' }],
  ['path', (w) => { w.target = w.target.replace(/^\/(h|s)\//, '/$1/z') }],
  ['query added', (w) => { w.target += w.target.includes('?') ? '&extra=1' : '?extra=1' }],
  ['query reordered', (w) => { const [p, q] = w.target.split('?'); if (q && q.includes('&')) w.target = `${p}?${q.split('&').reverse().join('&')}`; else w.target += '?z=9' }],
  ['body', (w) => { w.body = Buffer.concat([w.body, Buffer.from('!')]) }],
]

const HMAC_SPOILS: Spoil[] = [
  ...COMMON_SPOILS,
  ['timestamp +1', (w) => replaceHeader(w, 'X-Timestamp', String(Number(headerValue(w, 'X-Timestamp')) + 1))],
  ['timestamp stale', (w) => replaceHeader(w, 'X-Timestamp', String(Number(headerValue(w, 'X-Timestamp')) - 301))],
  ['timestamp text', (w) => replaceHeader(w, 'X-Timestamp', fcPick(['', 'abc', '1e10', '-1', '0x10', '1.5', '99999999999999999999', '0']))],
  ['key id other', (w) => replaceHeader(w, 'X-Key-Id', 'other')],
  ['key id unknown', (w) => replaceHeader(w, 'X-Key-Id', fcPick(['nobody', '', 'BILLING', 'billing,billing', '../billing']))],
  ['signature flipped', (w) => replaceHeader(w, 'X-Signature', flip(headerValue(w, 'X-Signature')))],
  ['signature garbage', (w) => replaceHeader(w, 'X-Signature', fcPick(['', '=', 'AAAA', 'x'.repeat(500), randomBytes(32).toString('base64'), randomBytes(32).toString('hex')]))],
  ['signature base64url', (w) => replaceHeader(w, 'X-Signature', Buffer.from(headerValue(w, 'X-Signature'), 'base64').toString('base64url'))],
  ['signature twice', (w) => { w.headers.push(['X-Signature', headerValue(w, 'X-Signature')]) }],
  ['key id twice', (w) => { w.headers.push(['x-key-id', 'billing']) }],
  ['header dropped', (w) => { w.headers.splice(fcPickIndex(w.headers.length), 1) }],
]

const RFC9421_SPOILS: Spoil[] = [
  ...COMMON_SPOILS,
  ['created +1', (w) => replaceHeader(w, 'Signature-Input', headerValue(w, 'Signature-Input').replace(/created=(\d+)/, (_m, c) => `created=${Number(c) + 1}`))],
  ['created stale', (w) => replaceHeader(w, 'Signature-Input', headerValue(w, 'Signature-Input').replace(/created=(\d+)/, (_m, c) => `created=${Number(c) - 10_000}`))],
  ['keyid other', (w) => replaceHeader(w, 'Signature-Input', headerValue(w, 'Signature-Input').replace('keyid="billing"', 'keyid="other"'))],
  ['alg changed', (w) => replaceHeader(w, 'Signature-Input', headerValue(w, 'Signature-Input').replace('alg="hmac-sha256"', fcPick(['alg="ed25519"', 'alg="none"', 'alg="HMAC-SHA256"'])))],
  ['component dropped', (w) => replaceHeader(w, 'Signature-Input', headerValue(w, 'Signature-Input').replace('"@method" ', ''))],
  ['component added', (w) => replaceHeader(w, 'Signature-Input', headerValue(w, 'Signature-Input').replace('("@method"', '("@authority" "@method"'))],
  ['label mismatch', (w) => replaceHeader(w, 'Signature', headerValue(w, 'Signature').replace(/^sig1=/, 'sig2='))],
  ['signature flipped', (w) => replaceHeader(w, 'Signature', headerValue(w, 'Signature').replace(/:([^:]*):/, (_m, b: string) => `:${Buffer.from(flip(Buffer.from(b, 'base64').toString('latin1')), 'latin1').toString('base64')}:`))],
  ['duplicate label', (w) => replaceHeader(w, 'Signature-Input', `${headerValue(w, 'Signature-Input')}, ${headerValue(w, 'Signature-Input')}`)],
  ['second field line', (w) => { w.headers.push(['Signature-Input', 'sig1=("@method");created=1']) }],
  ['digest wrong', (w) => { if (headerValue(w, 'Content-Digest')) replaceHeader(w, 'Content-Digest', 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:'); else w.body = Buffer.from('unsigned body') }],
  ['digest garbage', (w) => { if (headerValue(w, 'Content-Digest')) replaceHeader(w, 'Content-Digest', fcPick(['sha-256=abc', 'sha-256=:x:', 'md5=:AAAA:', '', 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:, sha-256=:AAAA:'])); else w.method = 'HEAD' }],
  ['header dropped', (w) => { w.headers.splice(fcPickIndex(w.headers.length), 1) }],
]

// Spoils pick among variants with this deterministic counter (fast-check drives which spoil runs).
let pickState = 0
function fcPick<T> (items: readonly T[]): T { return items[(pickState++) % items.length]! }
function fcPickIndex (length: number): number { return (pickState++) % Math.max(1, length) }

function signed (ctx: Context, scheme: 'hmac-sha256' | 'rfc9421', r: { method: string, path: string, query: string, body: string }): Wire {
  // A unique query parameter per request: two generated requests are never each other's replay.
  const n = ++ctx.counter.n
  const prefix = scheme === 'hmac-sha256' ? '/h' : '/s'
  const target = `${prefix}${r.path}${r.query ? `${r.query}&n=${n}` : `?n=${n}`}`
  const body = Buffer.from(r.body)
  const headers = signRequest({ scheme, keyId: 'billing', secret: ctx.secret, method: r.method, url: `http://127.0.0.1:${portOf(ctx.gw.url)}${target}`, target, body })
  return { method: r.method, target, headers: Object.entries(headers), body }
}

for (const scheme of ['hmac-sha256', 'rfc9421'] as const) {
  test(`${scheme}: a signed request passes once and its replay is refused; any one change to it never passes`, async (t) => {
    t.timeout(120_000)
    const ctx = t.context
    const spoils = scheme === 'hmac-sha256' ? HMAC_SPOILS : RFC9421_SPOILS
    let passed = 0
    await checkProperty(t, fc.asyncProperty(requestArb, fc.option(fc.nat({ max: spoils.length - 1 }), { nil: undefined, freq: 4 }), fc.nat(), async (r, spoilIndex, pick) => {
      pickState = pick
      const wire = signed(ctx, scheme, r)
      if (spoilIndex === undefined) {
        const res = await send(ctx.gw, wire)
        if (res.status !== 200) throw new Error(`a correctly signed request was refused: ${res.status} ${res.body.toString('utf8').slice(0, 200)}`)
        const seen = (JSON.parse(res.body.toString('utf8')) as { headers: Record<string, string> }).headers
        if (seen['x-auth-subject'] !== 'billing-service') throw new Error('no identity upstream')
        if (seen['x-signature'] !== undefined || seen.signature !== undefined || seen['signature-input'] !== undefined) throw new Error('the signature was forwarded')
        passed++
        const again = await send(ctx.gw, wire)
        if (again.status !== 401 || !again.body.toString('utf8').includes('replayed_request')) throw new Error(`the replay was answered ${again.status}`)
        return
      }
      const [name, apply] = spoils[spoilIndex]!
      apply(wire)
      const res = await send(ctx.gw, wire)
      assertAnswer(res)
      if (res.status === 200) throw new Error(`spoiled (${name}) and still accepted`)
    }), { numRuns: 300, seedOffset: scheme === 'hmac-sha256' ? 0 : 1 })
    t.true(passed > 10, `correctly signed requests accepted: ${passed}`)
  })
}

/** Text shaped like Signature-Input / Signature / Content-Digest: SF tokens, glued by random separators. */
const sfPiece = fc.constantFrom(
  'sig1', 'sig2', '=', '(', ')', '"@method"', '"@target-uri"', '"content-digest"', '"@query-param";name="a"', ';', 'created=', 'expires=',
  '1', '-1', '99999999999999999', '1.5', 'keyid=', '"billing"', 'alg=', '"hmac-sha256"', 'nonce=', '"n"', ':', ':AAAA:', ':=:', ',', ' ', '\t',
  '?1', '?0', '*', 'sha-256=', '"', '\\', 'é', ';tag="x"', 'sig1=()', 'sig1=("@method");created=1', '%', 'a'.repeat(300),
)
const sfText = fc.array(sfPiece, { maxLength: 30 }).map((parts) => parts.join(''))

test('signature-shaped garbage in Signature-Input, Signature and Content-Digest is refused, never a 5xx', async (t) => {
  const ctx = t.context
  await checkProperty(t, fc.asyncProperty(sfText, sfText, fc.option(sfText, { nil: undefined }), fc.boolean(), async (input, signature, digest, withBody) => {
    const headers: Array<[string, string]> = [['Signature-Input', input], ['Signature', signature]]
    if (digest !== undefined) headers.push(['Content-Digest', digest])
    const res = await send(ctx.gw, { method: withBody ? 'POST' : 'GET', target: '/s/x', headers, body: Buffer.from(withBody ? 'body' : '') })
    assertAnswer(res)
    if (res.status === 200) throw new Error('garbage accepted')
  }), { numRuns: 400, seedOffset: 2 })
})

test('the structured-field parser never throws on signature-shaped text, and what it accepts re-serializes to a fixed point', async (t) => {
  await checkProperty(t, fc.property(sfText, (text) => {
    for (const [parse, serialize] of [[parseDictionary, serializeDictionary], [parseList, serializeList], [parseItem, serializeItem]] as const) {
      const first = (parse as (s: string) => ReturnType<typeof parseDictionary>)(text)
      if (!first.ok) continue
      const canonical = (serialize as (v: unknown) => string)(first.value)
      const again = (parse as (s: string) => ReturnType<typeof parseDictionary>)(canonical)
      if (!again.ok) throw new Error(`canonical form ${JSON.stringify(canonical)} does not parse: ${again.error}`)
      if ((serialize as (v: unknown) => string)(again.value) !== canonical) throw new Error(`not a fixed point: ${JSON.stringify(canonical)}`)
    }
    parseSignatureFields(text, text)
  }), { numRuns: 3000, seedOffset: 3 })
})
