/**
 * Early answers are delivered (DESIGN "Early answers are delivered"): a refusal sent before the request body was read
 * (413, 401, ...) reaches a client that is still writing that body, because the gateway keeps reading and discarding
 * it for a while (lingering close) instead of closing a socket with unread data, which resets the connection.
 */
import anyTest, { type TestFn } from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { assertProblem, header, probe, pushBody, type Pushed } from './support.js'
import { until } from '../helpers/until.js'

const test = anyTest as TestFn<{ gw: TestGateway }>

const key = newApiKey()
const MiB = 1024 * 1024
/** Lingering lasts at most 2 s; scheduling slack on a loaded machine on top. */
const LINGER_MS = 2000
const SLACK_MS = 3000

test.before(async (t) => {
  t.context.gw = await startGateway({
    apiKeys: [{ id: key.id, hash: hashApiKey(key.key), client: 'early-app', scopes: [] }],
    routes: [
      { name: 'open', match: { path: '/open/**' }, upstream: 'demo', public: true },
      // A large limit, so that a large body is refused by the chain (401), not by its size.
      { name: 'keyed', match: { path: '/keyed/**' }, upstream: 'demo', policies: [{ apiKey: {} }], limits: { maxBodyBytes: '64MiB' } },
    ],
  })
})
test.after.always(async (t) => { await t.context.gw?.close() })

function head (gw: TestGateway, path: string, framing: string, extra: string[] = []): string {
  return [`POST ${path} HTTP/1.1`, `Host: ${new URL(gw.url).host}`, framing, ...extra, '', ''].join('\r\n')
}

/** A chunked-coding frame for one chunk. */
const chunked = (chunk: Buffer) => Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])

function describe (result: Pushed): string {
  return `answered ${result.answeredMs?.toFixed(0)} ms, closed ${result.closedMs?.toFixed(0)} ms, sent ${result.sentBytes} B, got ${JSON.stringify(result.received.toString('latin1').slice(0, 80))}`
}

test('a client that keeps writing a 2 MiB body to a 1 MiB route reads the whole 413, every time, then the connection closes', async (t) => {
  const { gw } = t.context
  for (let round = 0; round < 5; round++) {
    const results = await Promise.all(Array.from({ length: 4 }, () =>
      pushBody(gw.url, head(gw, '/open/upload', `Content-Length: ${2 * MiB}`), { chunk: Buffer.alloc(64 * 1024, 0x61), totalBytes: 2 * MiB, maxMs: 15_000 })))
    for (const result of results) {
      t.truthy(result.response, describe(result))
      if (!result.response) continue
      await assertProblem(t, result.response, 413, 'payload_too_large')
      t.regex(header(result.response, 'connection') ?? '', /close/i)
      t.not(result.closedMs, undefined, 'the server closes the connection')
    }
  }
})

/** Resolves once the access line of the request to `path` is written: its answer has been sent. */
async function answered (gw: TestGateway, path: string): Promise<void> {
  // The request's id is not known to a client that has not read its answer yet: its path names the line.
  await until(() => gw.rawLogs().includes(`"path":"${path}"`), { timeoutMs: 10_000, intervalMs: 5, message: `the access line of ${path}` })
}

test('a client that starts its 2 MiB upload after the 413 was sent, and reads only once it is written, gets the whole 413', async (t) => {
  const { gw } = t.context
  // The blocking client (Python's http.client, curl at times): it writes the whole request before it reads, so a
  // connection reset while it writes loses the answer it was sent.
  for (let round = 0; round < 10; round++) {
    const path = `/open/late?n=${probe()}`
    const result = await pushBody(gw.url, head(gw, path, `Content-Length: ${2 * MiB}`),
      { chunk: Buffer.alloc(64 * 1024, 0x61), totalBytes: 2 * MiB, maxMs: 15_000, readAfterBody: true, beforeBody: () => answered(gw, path) })
    t.truthy(result.response, describe(result))
    if (result.response) await assertProblem(t, result.response, 413, 'payload_too_large')
  }
})

test('a client that keeps writing a large body to an API-key route without a key reads the whole 401, every time', async (t) => {
  const { gw } = t.context
  for (let round = 0; round < 3; round++) {
    const results = await Promise.all(Array.from({ length: 4 }, () =>
      pushBody(gw.url, head(gw, '/keyed/upload', `Content-Length: ${8 * MiB}`), { chunk: Buffer.alloc(64 * 1024, 0x62), totalBytes: 8 * MiB, maxMs: 15_000 })))
    for (const result of results) {
      t.truthy(result.response, describe(result))
      if (!result.response) continue
      await assertProblem(t, result.response, 401, 'missing_credentials')
      t.regex(header(result.response, 'connection') ?? '', /close/i)
      t.not(result.closedMs, undefined, 'the server closes the connection')
    }
  }
})

test('after a 401, a body that never ends is read for at most the lingering time, then the connection is closed', async (t) => {
  const { gw } = t.context
  // An endless chunked upload at a steady pace: without a bound the gateway would read and discard it forever.
  const result = await pushBody(gw.url, head(gw, '/keyed/upload', 'Transfer-Encoding: chunked'),
    { chunk: Buffer.alloc(16 * 1024, 0x63), everyMs: 5, frame: chunked, maxMs: LINGER_MS + SLACK_MS + 5_000 })
  t.truthy(result.response, describe(result))
  if (!result.response) return
  await assertProblem(t, result.response, 401, 'missing_credentials')
  t.regex(header(result.response, 'connection') ?? '', /close/i)
  t.not(result.closedMs, undefined, `the connection stayed open while the client kept writing (${describe(result)})`)
  t.true(result.closedMs! - result.answeredMs! < LINGER_MS + SLACK_MS, describe(result))
  // The twin: with the key, the same route takes a body (a small one, ended).
  const ok = await gw.fetch('/keyed/upload', { method: 'POST', headers: { 'x-api-key': key.key }, body: 'hello' })
  t.is(ok.status, 200)
  t.is((await ok.json() as { body: string }).body, 'hello')
})
