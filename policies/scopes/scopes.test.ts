import test from 'ava'
import { formatChallenge } from '../../gateway/pipeline/chain.js'
import { validate } from '../../gateway/config/validate.js'
import { isRejection, type Rejection } from '../../gateway/errors.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import type { Outcome } from '../types.js'
import { build, identity, makeContext, makeDeps } from '../../test/helpers/policy-harness.js'
import { scopes } from './index.js'

const deps = () => makeDeps({ store: new MemoryStore() })

async function run (config: unknown, who: Parameters<typeof identity>[0]): Promise<Outcome> {
  const policy = await build(scopes, config, deps())
  return await policy.evaluate(makeContext({ identity: identity(who) }))
}

function rejected (t: import('ava').ExecutionContext, outcome: Outcome): Rejection {
  t.true(isRejection(outcome), 'expected a rejection')
  return outcome as Rejection
}

test('a list of scopes requires every one of them', async (t) => {
  t.false(isRejection(await run(['orders:read', 'orders:write'], { scopes: ['orders:write', 'orders:read', 'other'] })))
  const denied = rejected(t, await run(['orders:read', 'orders:write'], { scopes: ['orders:read'] }))
  t.is(denied.status, 403)
  t.is(denied.code, 'insufficient_scope')
  t.is(denied.detail, 'missing scope: orders:write')
})

test('the detail names every missing scope', async (t) => {
  const denied = rejected(t, await run(['a', 'b', 'c'], { scopes: ['b'] }))
  t.is(denied.detail, 'missing scopes: a, c')
})

test('anyOf passes with one of the scopes and is 403 with none', async (t) => {
  t.false(isRejection(await run({ anyOf: ['admin', 'orders:read'] }, { scopes: ['orders:read'] })))
  const denied = rejected(t, await run({ anyOf: ['admin', 'orders:read'] }, { scopes: ['orders:write'] }))
  t.is(denied.status, 403)
  t.is(denied.code, 'insufficient_scope')
  t.is(denied.detail, 'requires one of the scopes: admin, orders:read')
})

test('a bearer-token caller gets the RFC 6750 insufficient_scope challenge with the required scopes', async (t) => {
  for (const method of ['jwt', 'introspection']) {
    const denied = rejected(t, await run(['a', 'b'], { methods: ['mtls', method], scopes: ['a'] }))
    t.is(denied.status, 403)
    t.truthy(denied.challenge)
    t.is(formatChallenge(denied.challenge!), 'Bearer realm="authgate", error="insufficient_scope", scope="a b"')
  }
  t.false(isRejection(await run(['a', 'b'], { methods: ['jwt'], scopes: ['a', 'b'] })))
})

test('a caller authenticated without a bearer token gets 403 without a challenge', async (t) => {
  for (const methods of [['apiKey'], ['hmac'], ['mtls'], ['basic']]) {
    const denied = rejected(t, await run(['a'], { methods, scopes: [] }))
    t.is(denied.status, 403)
    t.is(denied.code, 'insufficient_scope')
    t.is(denied.challenge, undefined)
  }
})

test('nobody authenticated is 401, never 403', async (t) => {
  const policy = await build(scopes, ['a'], deps())
  const outcome = rejected(t, await policy.evaluate(makeContext({ identity: {} })))
  t.is(outcome.status, 401)
  t.is(outcome.code, 'missing_credentials')
  const withScopes = rejected(t, await policy.evaluate(makeContext({ identity: { methods: [], scopes: ['a'] } })))
  t.is(withScopes.status, 401)
})

test('the schema refuses an empty list, an empty anyOf, unknown keys and scope tokens with spaces or quotes', (t) => {
  for (const bad of [[], { anyOf: [] }, { allOf: ['a'] }, ['a b'], ['say"hi'], [''], 'a']) {
    t.true(validate(scopes.schema, bad, []).length > 0, JSON.stringify(bad))
  }
  for (const good of [['a'], ['orders:read', 'https://api.example.com/write'], { anyOf: ['a', 'b'] }]) {
    t.deepEqual(validate(scopes.schema, good, []), [], JSON.stringify(good))
  }
})

test('scopes neither authenticates nor is allowed on a public route', (t) => {
  t.false(scopes.authenticates)
  t.true(scopes.needsIdentity)
})
