/** The hmac policy's github webhook scheme: X-Hub-Signature-256. */
import anyTest, { type TestFn } from 'ava'
import { createHmac, randomBytes } from 'node:crypto'
import { NOW, passed, policy, rejected, run, setup, type FakeRequest } from './fixtures/policy.js'

const test = anyTest as TestFn
setup(test)

const githubSecret = randomBytes(20).toString('hex')

function githubRequest (body: string, secret = githubSecret): FakeRequest {
  return { now: NOW, body, headers: [['X-Hub-Signature-256', `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`]] }
}

test('github: a delivery signed with the webhook secret passes as the configured client (default: the route name)', async (t) => {
  const named = await policy({ scheme: 'github', secret: githubSecret, client: 'github' })
  t.deepEqual(passed(t, await run(named, githubRequest('{"zen":"ok"}'))).identity, { subject: 'github', client: 'github' })
  const unnamed = await policy({ scheme: 'github', secret: githubSecret }, { routeName: 'gh-hooks' })
  t.deepEqual(passed(t, await run(unnamed, githubRequest('{"zen":"ok"}'))).identity, { subject: 'gh-hooks', client: 'gh-hooks' })
})

test('github: a tampered body or a wrong secret is a bad signature; redeliveries are not replays', async (t) => {
  const instance = await policy({ scheme: 'github', secret: githubSecret })
  const request = githubRequest('{"action":"opened"}')
  passed(t, await run(instance, request))
  passed(t, await run(instance, request))
  t.is(rejected(t, await run(instance, { ...request, body: '{"action":"closed"}' })).detail, 'bad signature')
  t.is(rejected(t, await run(instance, githubRequest('{"action":"opened"}', 'other'))).detail, 'bad signature')
})

test('github: missing, duplicated and malformed X-Hub-Signature-256 headers', async (t) => {
  const instance = await policy({ scheme: 'github', secret: githubSecret })
  const request = githubRequest('x')
  const missing = rejected(t, await run(instance, { now: NOW, body: 'x' }))
  t.is(missing.code, 'missing_credentials')
  t.deepEqual(missing.challenge, { scheme: 'HMAC', params: { realm: 'authgate' } })
  t.is(rejected(t, await run(instance, { ...request, headers: [...request.headers!, ...request.headers!] })).status, 400)
  t.regex(rejected(t, await run(instance, { ...request, headers: [['X-Hub-Signature-256', 'sha1=abc']] })).detail, /sha256=<hex>/)
  passed(t, await run(instance, request))
})
