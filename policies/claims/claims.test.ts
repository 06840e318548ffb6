import test from 'ava'
import { validate } from '../../gateway/config/validate.js'
import { isRejection, type Rejection } from '../../gateway/errors.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import type { Outcome } from '../types.js'
import { build, identity, makeContext, makeDeps } from '../../test/helpers/policy-harness.js'
import { claims, matches } from './index.js'

async function run (config: unknown, held: Record<string, unknown>, methods = ['jwt']): Promise<Outcome> {
  const policy = await build(claims, config, makeDeps({ store: new MemoryStore() }))
  return await policy.evaluate(makeContext({ identity: identity({ methods, claims: held }) }))
}

function forbidden (t: import('ava').ExecutionContext, outcome: Outcome): Rejection {
  t.true(isRejection(outcome), 'expected a rejection')
  const rejection = outcome as Rejection
  t.is(rejection.status, 403)
  t.is(rejection.code, 'forbidden')
  return rejection
}

test('a single value is equality', async (t) => {
  t.false(isRejection(await run({ tenant: 'acme' }, { tenant: 'acme' })))
  forbidden(t, await run({ tenant: 'acme' }, { tenant: 'beta' }))
  forbidden(t, await run({ tenant: 'acme' }, { tenant: 'ACME' }))
})

test('a list of values is membership', async (t) => {
  t.false(isRejection(await run({ tenant: ['acme', 'beta'] }, { tenant: 'beta' })))
  forbidden(t, await run({ tenant: ['acme', 'beta'] }, { tenant: 'gamma' }))
})

test('an array claim passes when it contains the value, or any of the values', async (t) => {
  t.false(isRejection(await run({ roles: 'admin' }, { roles: ['ops', 'admin'] })))
  forbidden(t, await run({ roles: 'admin' }, { roles: ['ops', 'viewer'] }))
  t.false(isRejection(await run({ roles: ['admin', 'ops'] }, { roles: ['viewer', 'ops'] })))
  forbidden(t, await run({ roles: ['admin', 'ops'] }, { roles: [] }))
})

test('every configured claim must match', async (t) => {
  t.false(isRejection(await run({ tenant: 'acme', plan: 'pro' }, { tenant: 'acme', plan: 'pro' })))
  const denied = forbidden(t, await run({ tenant: 'acme', plan: 'pro' }, { tenant: 'acme', plan: 'free' }))
  t.is(denied.detail, 'claim "plan" does not have an allowed value')
})

test('values keep their JSON type: a number or boolean is not the same string', async (t) => {
  t.false(isRejection(await run({ level: 3 }, { level: 3 })))
  forbidden(t, await run({ level: 3 }, { level: '3' }))
  t.false(isRejection(await run({ verified: true }, { verified: true })))
  forbidden(t, await run({ verified: true }, { verified: 'true' }))
  t.false(matches({ tenant: 'acme' }, ['acme']))
})

test('a missing claim is 403 naming the claim, and the caller\'s values are never echoed', async (t) => {
  const missing = forbidden(t, await run({ tenant: 'acme' }, { other: 'x' }))
  t.is(missing.detail, 'required claim "tenant" is missing')
  const wrong = forbidden(t, await run({ tenant: 'acme' }, { tenant: 'secret-tenant-value' }))
  t.false(wrong.detail.includes('secret-tenant-value'))
  t.false(wrong.detail.includes('acme'))
})

test('claims inherited from the prototype do not count', async (t) => {
  forbidden(t, await run({ constructor: 'x' }, {}))
  forbidden(t, await run({ toString: 'x' }, {}))
})

test('an identity without claims (API key) is refused with 403, and nobody authenticated is 401', async (t) => {
  forbidden(t, await run({ tenant: 'acme' }, {}, ['apiKey']))
  const policy = await build(claims, { tenant: 'acme' }, makeDeps({ store: new MemoryStore() }))
  const outcome = await policy.evaluate(makeContext({ identity: {} })) as Rejection
  t.is(outcome.status, 401)
})

test('the schema needs at least one claim and scalar values', (t) => {
  for (const bad of [{}, { tenant: [] }, { tenant: { nested: 1 } }, { tenant: null }, ['tenant']]) {
    t.true(validate(claims.schema, bad, []).length > 0, JSON.stringify(bad))
  }
  t.deepEqual(validate(claims.schema, { tenant: 'acme', roles: ['a', 'b'], level: 2, ok: true }, []), [])
})
