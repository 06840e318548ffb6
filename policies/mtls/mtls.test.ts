import anyTest, { type TestFn } from 'ava'
import { Ajv } from 'ajv'
import { X509Certificate, createHash } from 'node:crypto'
import { issueClientCert } from '../../certs/pki.js'
import { ConfigError, isRejection, type Rejection } from '../../gateway/errors.js'
import { createLogger } from '../../gateway/log.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import { CLIENT_SPIFFE_ID, handshake, mintPki, type Handshake, type Pki } from '../../test/helpers/pki.js'
import type { Continue, ListenerInfo, PolicyDeps, RequestContext, RouteInfo } from '../types.js'
import { mtls } from './index.js'
import { schema, type MtlsConfig } from './schema.js'

interface Seen {
  none: Handshake
  client: Handshake
  other: Handshake
  untrusted: Handshake
  expired: Handshake
  revoked: Handshake
  acme: Handshake
  odd: Handshake
}
const test = anyTest as TestFn<{ pki: Pki, seen: Seen, store: MemoryStore }>

const optionalListener: ListenerInfo = { name: 'public', mode: 'forward', tls: true, clientCA: true, clientCert: 'optional' }

test.before(async (t) => {
  const pki = await mintPki()
  const acme = await issueClientCert(pki.ca, { commonName: 'billing-service', organization: 'Acme', days: 1 })
  const odd = await issueClientCert(pki.ca, {
    commonName: 'weird, "name"; x=y\\',
    uris: ['spiffe://example.org/a;b=c', 'https://example.org/x'],
    dnsNames: ['svc.internal', 'svc2.internal'],
    days: 1,
  })
  const [none, client, other, untrusted, expired, revoked, acmeSeen, oddSeen] = await Promise.all([
    handshake(pki, undefined),
    handshake(pki, pki.client),
    handshake(pki, pki.otherClient),
    handshake(pki, pki.untrusted),
    handshake(pki, pki.expired),
    handshake(pki, pki.revoked, { crl: pki.crl }),
    handshake(pki, acme),
    handshake(pki, odd),
  ])
  t.context.pki = pki
  t.context.seen = { none, client, other, untrusted, expired, revoked, acme: acmeSeen, odd: oddSeen }
  t.context.store = new MemoryStore()
})

test.after.always(async (t) => {
  await t.context.store?.close()
})

function route (listeners: ListenerInfo[] = [optionalListener]): RouteInfo {
  return { name: 'payments', upstream: 'demo', listeners, maxBodyBytes: 1024 }
}

function deps (store: MemoryStore): PolicyDeps {
  const shared = new Map<string, unknown>()
  return {
    store,
    realm: 'authgate',
    config: {},
    route: route(),
    baseDir: process.cwd(),
    log: createLogger({ destination: { write () {} } }),
    shared<T> (name: string, build: () => T): T {
      if (!shared.has(name)) shared.set(name, build())
      return shared.get(name) as T
    },
    now: () => Date.now(),
  }
}

/** A request context as the listener builds it, carrying what a real handshake established. */
function contextFor (seen: Handshake): RequestContext {
  return {
    requestId: 'req-1',
    method: 'POST',
    path: '/v1/payments',
    rawTarget: '/v1/payments',
    rawQuery: '',
    query: new URLSearchParams(),
    scheme: 'https',
    authority: 'localhost',
    headers: {},
    headerValues: () => [],
    remoteAddress: '127.0.0.1',
    peerAddress: '127.0.0.1',
    listener: 'public',
    route: 'payments',
    upstream: 'demo',
    peerCert: seen.peerCert,
    peerCertRejected: seen.peerCertRejected,
    identity: {},
    body: async () => Buffer.alloc(0),
    now: () => Date.now(),
  }
}

async function evaluate (t: { context: { store: MemoryStore } }, config: Partial<MtlsConfig>, seen: Handshake) {
  const full = { subjectFrom: 'auto' as const, ...config }
  const policy = await mtls.create(full, deps(t.context.store))
  return await policy.evaluate(contextFor(seen))
}

function passed (outcome: Continue | Rejection): Continue {
  if (isRejection(outcome)) throw new Error(`expected a pass, got ${outcome.status} ${outcome.code}: ${outcome.detail}`)
  return outcome
}

function fingerprintOf (pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')
}

test('no client certificate is 401 client_certificate_required with a ClientCert challenge', async (t) => {
  const outcome = await evaluate(t, {}, t.context.seen.none)
  t.like(outcome, {
    status: 401,
    code: 'client_certificate_required',
    detail: 'client certificate required',
    challenge: { scheme: 'ClientCert', params: { realm: 'authgate' } },
  })
})

test('a verified client certificate passes when no allow-list is configured', async (t) => {
  const outcome = passed(await evaluate(t, {}, t.context.seen.client))
  t.is(outcome.identity?.subject, CLIENT_SPIFFE_ID)
})

for (const name of ['untrusted', 'expired', 'revoked'] as const) {
  test(`a presented but unverified (${name}) certificate is 401 and says it was not accepted`, async (t) => {
    const seen = t.context.seen[name]
    t.true(seen.peerCertRejected)
    t.not(seen.presented, undefined)
    const outcome = await evaluate(t, {}, seen)
    t.like(outcome, { status: 401, code: 'client_certificate_required' })
    t.regex((outcome as Rejection).detail, /not accepted/)
  })
}

test('an allowed subject passes and another verified subject is 403 forbidden', async (t) => {
  const config = { subjects: ['CN=billing-service'] }
  const other = passed(await evaluate(t, config, t.context.seen.other))
  t.is(other.identity?.subject, 'billing-service')
  const outcome = await evaluate(t, config, t.context.seen.client)
  t.like(outcome, { status: 403, code: 'forbidden', detail: 'client certificate is not allowed on this route' })
  t.is((outcome as Rejection).challenge, undefined)
})

test('a subject entry must name the whole DN; attribute types ignore case and spaces are padding', async (t) => {
  const { acme } = t.context.seen
  t.like(await evaluate(t, { subjects: ['CN=billing-service'] }, acme), { status: 403, code: 'forbidden' })
  t.like(await evaluate(t, { subjects: ['O=Acme,CN=billing-service'] }, acme), { status: 403 })
  t.like(await evaluate(t, { subjects: ['CN=Billing-Service,O=Acme'] }, acme), { status: 403 })
  const outcome = passed(await evaluate(t, { subjects: ['cn=billing-service , commonName=x', 'CN=billing-service, o=Acme'] }, acme))
  t.is(outcome.identity?.cert?.subject, 'CN=billing-service,O=Acme')
  passed(await evaluate(t, { subjects: ['2.5.4.3=billing-service,OID.2.5.4.10=Acme'] }, acme))
})

test('a subject with escaped specials matches its certificate', async (t) => {
  const { odd } = t.context.seen
  const outcome = passed(await evaluate(t, { subjects: ['CN=weird\\, \\"name\\"\\; x=y\\5C'] }, odd))
  t.is(outcome.identity?.cert?.subject, 'CN=weird\\, \\"name\\"\\; x=y\\\\')
  t.like(await evaluate(t, { subjects: ['CN=weird\\, \\"name\\"\\; x=y'] }, odd), { status: 403 })
})

test('a SPIFFE SAN on the allow-list passes, typed or bare, and others are 403', async (t) => {
  for (const entry of [`URI:${CLIENT_SPIFFE_ID}`, CLIENT_SPIFFE_ID, `uri:${CLIENT_SPIFFE_ID}`]) {
    const outcome = passed(await evaluate(t, { sans: [entry] }, t.context.seen.client))
    t.is(outcome.identity?.subject, CLIENT_SPIFFE_ID, entry)
  }
  t.like(await evaluate(t, { sans: [`URI:${CLIENT_SPIFFE_ID}`] }, t.context.seen.other), { status: 403, code: 'forbidden' })
  t.like(await evaluate(t, { sans: [`DNS:${CLIENT_SPIFFE_ID}`] }, t.context.seen.client), { status: 403 })
  t.like(await evaluate(t, { sans: [`${CLIENT_SPIFFE_ID}/`] }, t.context.seen.client), { status: 403 })
})

test('a DNS SAN on the allow-list matches without regard to case', async (t) => {
  passed(await evaluate(t, { sans: ['DNS:SVC2.internal'] }, t.context.seen.odd))
  t.like(await evaluate(t, { sans: ['DNS:svc3.internal'] }, t.context.seen.odd), { status: 403 })
})

test('a fingerprint with colons and upper case passes; another certificate\'s is 403', async (t) => {
  const { pki } = t.context
  const colons = new X509Certificate(pki.client.cert).fingerprint256 // AB:CD:... as openssl and Node print it
  t.regex(colons, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)
  passed(await evaluate(t, { fingerprints: [colons] }, t.context.seen.client))
  passed(await evaluate(t, { fingerprints: [fingerprintOf(pki.client.cert).toUpperCase()] }, t.context.seen.client))
  t.like(await evaluate(t, { fingerprints: [colons] }, t.context.seen.other), { status: 403, code: 'forbidden' })
})

test('any one matching allow-list entry passes', async (t) => {
  const config = { subjects: ['CN=nobody'], sans: ['DNS:nowhere'], fingerprints: [fingerprintOf(t.context.pki.client.cert)] }
  passed(await evaluate(t, config, t.context.seen.client))
  t.like(await evaluate(t, config, t.context.seen.other), { status: 403 })
})

test('an allow-list does not turn an unverified certificate into a 403: it stays 401', async (t) => {
  const outcome = await evaluate(t, { subjects: ['CN=client-one'] }, t.context.seen.untrusted)
  t.like(outcome, { status: 401, code: 'client_certificate_required' })
})

test('identity: SPIFFE URI as subject, CN as client, and the certificate facts', async (t) => {
  const outcome = passed(await evaluate(t, {}, t.context.seen.client))
  t.deepEqual(outcome.identity, {
    subject: CLIENT_SPIFFE_ID,
    client: 'client-one',
    cert: {
      subject: 'CN=client-one',
      fingerprint: fingerprintOf(t.context.pki.client.cert),
      sans: [`URI:${CLIENT_SPIFFE_ID}`],
      uri: CLIENT_SPIFFE_ID,
    },
  })
})

test('identity: without a SPIFFE URI the subject is the CN', async (t) => {
  const outcome = passed(await evaluate(t, {}, t.context.seen.other))
  t.like(outcome.identity, { subject: 'billing-service', client: 'billing-service' })
  t.is(outcome.identity?.cert?.uri, undefined)
  t.deepEqual(outcome.identity?.cert?.sans, [])
})

test('subjectFrom picks the CN or the URI, and a certificate without one is 403', async (t) => {
  t.like(passed(await evaluate(t, { subjectFrom: 'cn' }, t.context.seen.client)).identity, { subject: 'client-one' })
  t.like(passed(await evaluate(t, { subjectFrom: 'uri' }, t.context.seen.client)).identity, { subject: CLIENT_SPIFFE_ID })
  t.like(passed(await evaluate(t, { subjectFrom: 'uri' }, t.context.seen.odd)).identity,
    { subject: 'spiffe://example.org/a;b=c', client: 'weird, "name"; x=y\\' })
  t.like(await evaluate(t, { subjectFrom: 'uri' }, t.context.seen.other),
    { status: 403, code: 'forbidden', detail: 'client certificate has no URI SAN' })
})

test('X-Forwarded-Client-Cert is in Envoy\'s format with the hash of the DER certificate', async (t) => {
  const outcome = passed(await evaluate(t, {}, t.context.seen.client))
  t.deepEqual(outcome.upstreamHeaders, {
    'x-forwarded-client-cert':
      `Hash=${fingerprintOf(t.context.pki.client.cert)};Subject="CN=client-one";URI=${CLIENT_SPIFFE_ID}`,
  })
  const other = passed(await evaluate(t, {}, t.context.seen.other))
  t.is(other.upstreamHeaders?.['x-forwarded-client-cert'],
    `Hash=${fingerprintOf(t.context.pki.otherClient.cert)};Subject="CN=billing-service"`)
})

test('X-Forwarded-Client-Cert quotes values with , ; = and keeps the subject free of quotes', async (t) => {
  const outcome = passed(await evaluate(t, {}, t.context.seen.odd))
  const xfcc = outcome.upstreamHeaders?.['x-forwarded-client-cert'] ?? ''
  t.is(xfcc.replace(/^Hash=[0-9a-f]{64};/, ''),
    'Subject="CN=weird\\, \\22name\\22\\; x=y\\5C";URI="spiffe://example.org/a;b=c";URI=https://example.org/x;' +
    'DNS=svc.internal;DNS=svc2.internal')
})

test('a certificate that cannot be parsed is 401, never an exception', async (t) => {
  const seen = t.context.seen.client
  const broken = { ...seen, peerCert: { ...seen.peerCert!, raw: Buffer.from('not a certificate') } }
  t.like(await evaluate(t, {}, broken), { status: 401, code: 'client_certificate_required' })
})

test('check: mtls on a route reachable on a listener without clientCA is an error with a fix', (t) => {
  const plain: ListenerInfo = { name: 'local', mode: 'forward', tls: false, clientCA: false, clientCert: 'none' }
  const tlsOnly: ListenerInfo = { name: 'edge', mode: 'forward', tls: true, clientCA: false, clientCert: 'none' }
  const issues = mtls.check!({ subjectFrom: 'auto' }, { config: {}, route: route([optionalListener, plain, tlsOnly]) })
  t.is(issues.length, 1)
  t.like(issues[0], { severity: 'error', path: [] })
  t.regex(issues[0]!.message, /"local", "edge" without tls\.clientCA/)
  t.regex(issues[0]!.fix ?? '', /match\.listener/)

  t.deepEqual(mtls.check!({ subjectFrom: 'auto' }, { config: {}, route: route([optionalListener]) }), [])
})

test('check: a subject that is not a DN and a bad SAN are errors at their entries', (t) => {
  const issues = mtls.check!({ subjectFrom: 'auto', subjects: ['CN=ok', 'billing-service', 'CN=a"b'], sans: ['IP:1.2.3', 'URI:nope'] },
    { config: {}, route: route() })
  t.deepEqual(issues.map((issue) => issue.path), [['subjects', 1], ['subjects', 2], ['sans', 0], ['sans', 1]])
  t.true(issues.every((issue) => issue.severity === 'error' && issue.fix !== undefined))
  t.throws(() => mtls.create({ subjectFrom: 'auto', subjects: ['billing-service'] }, deps(t.context.store)),
    { instanceOf: ConfigError })
})

test('check: empty allow-lists warn that every certificate will be refused, and they are', async (t) => {
  const issues = mtls.check!({ subjectFrom: 'auto', subjects: [] }, { config: {}, route: route() })
  t.like(issues, [{ severity: 'warning' }])
  t.like(await evaluate(t, { subjects: [] }, t.context.seen.client), { status: 403 })
})

test('the schema applies subjectFrom: auto and refuses unknown fields and malformed fingerprints', (t) => {
  const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: false })
  const validate = ajv.compile(schema)
  const config: Record<string, unknown> = { subjects: ['CN=x'] }
  t.true(validate(config))
  t.is(config.subjectFrom, 'auto')
  t.false(validate({ subject: ['CN=x'] }))
  t.false(validate({ fingerprints: ['abcd'] }))
  t.false(validate({ subjectFrom: 'email' }))
  t.true(validate({ fingerprints: ['AB'.repeat(32), `${'ab:'.repeat(31)}ab`] }))
})
