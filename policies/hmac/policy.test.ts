/** What every scheme of the hmac policy shares: body reading, credential headers, signing clients, configuration checks. */
import anyTest, { type TestFn } from 'ava'
import { withDefaults } from '../../test/helpers/policy-harness.js'
import { document, ed, pem, policy, setup, signingClients } from './fixtures/policy.js'
import { hmac, signingClientsSection } from './index.js'
import { schema, signingClientsSectionSchema, type HmacPolicyConfig } from './schema.js'

const test = anyTest as TestFn
setup(test)

test('the hmac policy reads the body and declares its credential headers lower-cased per scheme', async (t) => {
  t.true((await policy({})).readsBody)
  t.deepEqual((await policy({})).credentialHeaders, ['x-key-id', 'x-timestamp', 'x-signature'])
  t.deepEqual((await policy({ scheme: 'rfc9421' })).credentialHeaders, ['signature', 'signature-input'])
  t.deepEqual((await policy({ scheme: 'github', secret: 'gh' })).credentialHeaders, ['x-hub-signature-256'])
  t.deepEqual((await policy({ scheme: 'stripe', secret: 'st' })).credentialHeaders, ['stripe-signature'])
  t.is(hmac.key, 'hmac')
  t.true(hmac.authenticates)
})

test('signing clients are parsed once per configuration generation and shared by routes', async (t) => {
  const shared = new Map<string, unknown>()
  await policy({}, { shared })
  const keys = shared.get('signingClients')
  await policy({ scheme: 'rfc9421' }, { shared })
  t.true(keys instanceof Map)
  t.is(shared.get('signingClients'), keys)
  t.is(shared.size, 1)
})

// Configuration checks

test('signingClients check: an HMAC secret under 32 bytes is an error, 32 bytes is fine', (t) => {
  const issues = signingClientsSection.check!([{ keyId: 'a', secret: 'x'.repeat(31) }, { keyId: 'b', secret: 'x'.repeat(32) }], {}, { baseDir: '.' })
  t.is(issues.length, 1)
  t.deepEqual(issues[0]!.path, ['signingClients', 0, 'secret'])
  t.regex(issues[0]!.message, /31 bytes; hmac-sha256 needs at least 32/)
  t.false(issues[0]!.message.includes('x'.repeat(31)), 'the secret is not echoed')
})

test('signingClients check: key material must fit the algorithm, keyIds must be unique', (t) => {
  const check = (entries: unknown[]) => signingClientsSection.check!(entries, {}, { baseDir: '.' }).map((issue) => `${issue.path.join('.')}: ${issue.message}`)
  t.deepEqual(check([{ keyId: 'a' }]), ['signingClients.0: keyId "a" has no secret'])
  t.deepEqual(check([{ keyId: 'a', algorithm: 'ed25519' }]), ['signingClients.0: keyId "a" (ed25519) has no publicKey'])
  t.regex(check([{ keyId: 'a', secret: 'x'.repeat(40), publicKey: pem(ed.publicKey) }])[0]!, /not a public key/)
  t.regex(check([{ keyId: 'a', algorithm: 'ed25519', secret: 'x'.repeat(40), publicKey: pem(ed.publicKey) }])[0]!, /a secret must not be given/)
  t.regex(check([{ keyId: 'a', algorithm: 'ed25519', publicKey: 'not a pem' }])[0]!, /not an SPKI PEM/)
  t.regex(check([{ keyId: 'a', algorithm: 'ed25519', publicKey: ed.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }])[0]!, /private key/)
  t.regex(check([{ keyId: 'a', algorithm: 'ecdsa-p256-sha256', publicKey: pem(ed.publicKey) }])[0]!, /ed25519 and cannot verify ecdsa-p256-sha256/)
  t.regex(check([{ keyId: 'a', secret: '!!!', secretEncoding: 'base64' }])[0]!, /not base64/)
  t.deepEqual(check([{ keyId: 'a', secret: 'x'.repeat(32) }, { keyId: 'a', secret: 'y'.repeat(32) }]), ['signingClients.1.keyId: duplicate keyId "a" (also at signingClients[0])'])
  t.deepEqual(check(signingClients), [])
})

test('hmac check: webhook schemes need a secret; signing schemes need signing clients and refuse a secret', (t) => {
  const check = (config: Partial<HmacPolicyConfig>, doc: Record<string, unknown> = document) =>
    hmac.check!(withDefaults<HmacPolicyConfig>(schema, config), { config: doc, route: { name: 'r', upstream: 'demo', listeners: [], maxBodyBytes: 1024 } })
      .filter((issue) => issue.severity === 'error').map((issue) => issue.message)
  t.deepEqual(check({ scheme: 'github', secret: 's' }), [])
  t.regex(check({ scheme: 'github' })[0]!, /needs the webhook `secret`/)
  t.regex(check({ scheme: 'stripe' })[0]!, /needs the webhook `secret`/)
  t.deepEqual(check({ scheme: 'hmac-sha256' }), [])
  t.regex(check({ scheme: 'hmac-sha256' }, {})[0]!, /needs at least one entry in `signingClients`/)
  t.regex(check({ scheme: 'hmac-sha256' }, { signingClients: [{ keyId: 'e', algorithm: 'ed25519', publicKey: pem(ed.publicKey) }] })[0]!, /needs a signing client with algorithm hmac-sha256/)
  t.deepEqual(check({ scheme: 'rfc9421' }, { signingClients: [{ keyId: 'e', algorithm: 'ed25519', publicKey: pem(ed.publicKey) }] }), [])
  t.regex(check({ scheme: 'rfc9421', secret: 's' })[0]!, /`secret` is for the github and stripe schemes/)
  t.regex(check({ scheme: 'rfc9421', components: ['@method', 'bad name with spaces'] })[0]!, /not a lower-case field name/)
  t.regex(check({ scheme: 'rfc9421', components: ['@method', '"unclosed'] })[0]!, /malformed/)
  t.regex(check({ scheme: 'rfc9421', components: ['@status'] })[0]!, /only for responses: it cannot be a required component/)
  t.regex(check({ scheme: 'rfc9421', components: ['@query-param'] })[0]!, /needs name=/)
  t.deepEqual(check({ scheme: 'rfc9421', components: ['@query-param;name="id"', '"x-request";sf', 'content-digest'] }), [])
})

test('hmac check: options of another scheme are warnings', (t) => {
  const warnings = hmac.check!(withDefaults<HmacPolicyConfig>(schema, { scheme: 'github', secret: 's', components: ['@method'], headers: { keyId: 'X-K' } }),
    { config: document, route: { name: 'r', upstream: 'demo', listeners: [], maxBodyBytes: 1024 } })
  t.deepEqual(warnings.map((w) => [w.severity, w.path.join('.')]), [['warning', 'components'], ['warning', 'headers']])
})

test('the schema refuses unknown fields and schemes, and fills the defaults', (t) => {
  t.throws(() => withDefaults(schema, { scheme: 'md5' }))
  t.throws(() => withDefaults(schema, { windw: '5s' }))
  t.throws(() => withDefaults(schema, { label: 'Not A Key' }))
  t.like(withDefaults(schema, {}), { scheme: 'hmac-sha256', window: '300s', replay: true, requireNonce: false })
  t.like(withDefaults<unknown[]>(signingClientsSectionSchema, [{ keyId: 'k', secret: 's' }])[0], { secretEncoding: 'utf8', algorithm: 'hmac-sha256', scopes: [] })
  t.true((schema.properties.secret as { sensitive?: boolean }).sensitive)
})

test('hmac check: more required rfc9421 components than a signature may cover is an error; 32 is fine', (t) => {
  const check = (components: string[]) =>
    hmac.check!(withDefaults<HmacPolicyConfig>(schema, { scheme: 'rfc9421', components }), { config: document, route: { name: 'r', upstream: 'demo', listeners: [], maxBodyBytes: 1024 } })
      .filter((issue) => issue.severity === 'error')
  const fields = (count: number) => ['@method', '@target-uri', ...Array.from({ length: count - 2 }, (_, i) => `x-h${i}`)]
  t.deepEqual(check(fields(32)), [])
  const issues = check(fields(33))
  t.is(issues.length, 1)
  t.deepEqual(issues[0]!.path, ['components'])
  t.regex(issues[0]!.message, /33 required components: a signature may cover at most 32/)
})
