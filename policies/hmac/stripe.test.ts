/** The hmac policy's stripe webhook scheme: Stripe-Signature. */
import anyTest, { type TestFn } from 'ava'
import { createHmac, randomBytes } from 'node:crypto'
import { NOW, NOW_SEC, passed, policy, rejected, run, setup, type FakeRequest } from './fixtures/policy.js'

const test = anyTest as TestFn
setup(test)

const stripeSecret = `whsec_${randomBytes(24).toString('base64url')}`

function stripeRequest (body: string, t: number, options: { secret?: string, extra?: string } = {}): FakeRequest {
  const v1 = createHmac('sha256', options.secret ?? stripeSecret).update(`${t}.${body}`).digest('hex')
  return { now: NOW, body, headers: [['Stripe-Signature', `t=${t},v1=${v1}${options.extra ?? ''}`]] }
}

test('stripe: an event signed with the endpoint secret passes; a tampered one does not', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret, client: 'stripe' })
  t.deepEqual(passed(t, await run(instance, stripeRequest('{"id":"evt_1"}', NOW_SEC))).identity, { subject: 'stripe', client: 'stripe' })
  t.is(rejected(t, await run(instance, { ...stripeRequest('{"id":"evt_2"}', NOW_SEC), body: '{"id":"evt_3"}' })).detail, 'bad signature')
  t.is(rejected(t, await run(instance, stripeRequest('{"id":"evt_4"}', NOW_SEC, { secret: 'whsec_other' }))).detail, 'bad signature')
})

test('stripe: any of several v1 signatures may match (secret rolling); v0 is ignored', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  const other = createHmac('sha256', 'old').update('x').digest('hex')
  const request = stripeRequest('{"id":"evt_5"}', NOW_SEC, { extra: `,v1=${other},v0=${other}` })
  passed(t, await run(instance, request))
  const onlyWrong = { ...request, headers: [['Stripe-Signature', `t=${NOW_SEC},v1=${other}`]] as Array<[string, string]> }
  t.is(rejected(t, await run(instance, onlyWrong)).detail, 'bad signature')
})

test('stripe: t outside the tolerance is refused, inside passes', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  passed(t, await run(instance, stripeRequest('a', NOW_SEC - 300)))
  passed(t, await run(instance, stripeRequest('b', NOW_SEC + 300)))
  t.regex(rejected(t, await run(instance, stripeRequest('c', NOW_SEC - 301))).detail, /stale/)
  t.regex(rejected(t, await run(instance, stripeRequest('d', NOW_SEC + 301))).detail, /future/)
})

test('stripe: the same signed event twice is a replay', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  const request = stripeRequest('{"id":"evt_6"}', NOW_SEC)
  passed(t, await run(instance, request))
  t.is(rejected(t, await run(instance, request)).code, 'replayed_request')
})

test('stripe: missing, duplicated and malformed Stripe-Signature headers', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  t.is(rejected(t, await run(instance, { now: NOW, body: 'x' })).code, 'missing_credentials')
  const request = stripeRequest('x', NOW_SEC)
  t.is(rejected(t, await run(instance, { ...request, headers: [...request.headers!, ...request.headers!] })).status, 400)
  for (const value of ['garbage', `t=${NOW_SEC}`, 'v1=00', `t=${NOW_SEC},t=${NOW_SEC},v1=${'0'.repeat(64)}`, `t=abc,v1=${'0'.repeat(64)}`, `t=${NOW_SEC},v1=xyz`]) {
    t.is(rejected(t, await run(instance, { ...request, headers: [['Stripe-Signature', value]] })).code, 'invalid_signature', value)
  }
  passed(t, await run(instance, request))
})

test('stripe: Stripe-Signature members named like Object.prototype properties are ignored, not looked up', async (t) => {
  const instance = await policy({ scheme: 'stripe', secret: stripeSecret })
  passed(t, await run(instance, stripeRequest('{"id":"evt_7"}', NOW_SEC, { extra: ',constructor=1,__proto__=2,toString=3' })))
  const onlyProto = { now: NOW, body: 'x', headers: [['Stripe-Signature', 'constructor=1,__proto__=2']] as Array<[string, string]> }
  t.is(rejected(t, await run(instance, onlyProto)).code, 'invalid_signature')
})
