/**
 * Query redaction (DESIGN.md "Query redaction"), end to end: the access-log line the gateway writes for one request,
 * found by that request's X-Request-Id.
 */
import anyTest, { type TestFn } from 'ava'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

const test = anyTest as TestFn<{ gw: TestGateway }>

test.before(async (t) => {
  t.context.gw = await startGateway({ routes: [{ name: 'open', match: { path: '/open/**' }, upstream: 'demo', public: true }] })
})
test.after.always(async (t) => { await t.context.gw?.close() })

/** The access line of the request with this id, once the gateway has written it. */
async function accessLine (gw: TestGateway, requestId: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 5_000
  for (;;) {
    const line = gw.rawLogs().split('\n').find((l) => l.includes(`"requestId":"${requestId}"`) && l.includes('"msg":"request"'))
    if (line !== undefined) return JSON.parse(line) as Record<string, unknown>
    if (Date.now() > deadline) throw new Error(`no access line for ${requestId}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk'

test('a JWT under an unlisted name and a token after ; are redacted in that request\'s access line; the rest is logged as sent', async (t) => {
  const { gw } = t.context
  const res = await gw.fetch(`/open/x?x=${JWT}&page=2;auth_token=s3cr3t-opaque&sort=name`)
  t.is(res.status, 200)
  const line = await accessLine(gw, res.headers.get('x-request-id')!)
  t.is(line.path, '/open/x?x=[redacted]&page=2;auth_token=[redacted]&sort=name')
  t.like(line, { route: 'open', status: 200 })
  for (const secret of [...JWT.split('.'), 's3cr3t-opaque']) t.false(gw.rawLogs().includes(secret), secret)
})

test('a benign query is logged exactly as sent', async (t) => {
  const { gw } = t.context
  const res = await gw.fetch('/open/x?page=2&sort=name')
  t.is(res.status, 200)
  const line = await accessLine(gw, res.headers.get('x-request-id')!)
  t.is(line.path, '/open/x?page=2&sort=name')
})
