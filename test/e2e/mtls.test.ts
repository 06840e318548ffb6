import anyTest, { type TestFn } from 'ava'
import { X509Certificate, createHash } from 'node:crypto'
import { Agent } from 'undici'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { CLIENT_SPIFFE_ID, mintPki, type Pki } from '../helpers/pki.js'
import { createCRL, type PemPair } from '../../certs/pki.js'

const test = anyTest as TestFn<{ pki: Pki, gw: TestGateway, agents: Agent[] }>

function tlsListener (name: string, clientCert: 'optional' | 'required') {
  return {
    name,
    address: '127.0.0.1:0',
    tls: { cert: 'pki/server.crt', key: 'pki/server.key', clientCA: 'pki/ca.crt', crl: 'pki/ca.crl', clientCert },
  }
}

function pkiFiles (pki: Pki): Record<string, string> {
  return { 'pki/server.crt': pki.server.cert, 'pki/server.key': pki.server.key, 'pki/ca.crt': pki.ca.cert, 'pki/ca.crl': pki.crl }
}

const routes = [
  { name: 'payments', match: { path: '/v1/payments/**' }, upstream: 'demo', policies: [{ mtls: { subjects: ['CN=billing-service'] } }] },
  { name: 'any', match: { path: '/v1/any/**' }, upstream: 'demo', policies: [{ mtls: {} }] },
]

test.before(async (t) => {
  const pki = await mintPki()
  t.context.pki = pki
  t.context.agents = []
  t.context.gw = await startGateway({
    listeners: [tlsListener('optional', 'optional'), tlsListener('required', 'required')],
    routes,
  }, { files: pkiFiles(pki) })
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await Promise.all((t.context.agents ?? []).map(async (agent) => await agent.close()))
})

function agentFor (t: { context: { pki: Pki, agents: Agent[] } }, client?: PemPair): Agent {
  const agent = new Agent({ connect: { ca: t.context.pki.ca.cert, cert: client?.cert, key: client?.key } })
  t.context.agents.push(agent)
  return agent
}

async function get (t: { context: { pki: Pki, gw: TestGateway, agents: Agent[] } }, listener: string, path: string,
  client?: PemPair, headers: Record<string, string> = {}) {
  // The harness's init type intersects undici's Dispatcher with the global RequestInit's: cast past it.
  return await t.context.gw.fetch(path, { listener, dispatcher: agentFor(t, client) as never, headers })
}

function fingerprintOf (pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')
}

test('an allowed client certificate reaches the upstream with the gateway\'s XFCC and identity', async (t) => {
  const res = await get(t, 'optional', '/v1/payments/1', t.context.pki.otherClient)
  t.is(res.status, 200)
  const echoed = await res.json() as { headers: Record<string, string> }
  t.is(echoed.headers['x-forwarded-client-cert'],
    `Hash=${fingerprintOf(t.context.pki.otherClient.cert)};Subject="CN=billing-service"`)
  t.is(echoed.headers['x-auth-subject'], 'billing-service')
  t.is(echoed.headers['x-auth-methods'], 'mtls')
})

test('a verified certificate that is not on the allow-list is 403 forbidden', async (t) => {
  const res = await get(t, 'optional', '/v1/payments/1', t.context.pki.client)
  t.is(res.status, 403)
  t.like(await res.json(), { error: 'forbidden' })
})

test('no client certificate on an optional listener is 401 with a ClientCert challenge', async (t) => {
  const res = await get(t, 'optional', '/v1/any/x')
  t.is(res.status, 401)
  t.like(await res.json(), { error: 'client_certificate_required', detail: 'client certificate required' })
  t.is(res.headers.get('www-authenticate'), 'ClientCert realm="authgate"')
})

for (const name of ['untrusted', 'expired', 'revoked'] as const) {
  test(`${name === 'revoked' ? 'a' : 'an'} ${name} certificate completes the handshake on an optional listener and gets 401`, async (t) => {
    const res = await get(t, 'optional', '/v1/any/x', t.context.pki[name])
    t.is(res.status, 401)
    const body = await res.json() as { error: string, detail: string }
    t.is(body.error, 'client_certificate_required')
    t.regex(body.detail, /not accepted/)
  })
}

test('the SPIFFE ID is the subject, and a client\'s own XFCC header never reaches the upstream', async (t) => {
  const res = await get(t, 'optional', '/v1/any/x', t.context.pki.client,
    { 'x-forwarded-client-cert': 'Hash=00;Subject="CN=admin"', 'x-auth-subject': 'admin' })
  t.is(res.status, 200)
  const echoed = await res.json() as { headers: Record<string, string> }
  t.is(echoed.headers['x-auth-subject'], CLIENT_SPIFFE_ID)
  t.is(echoed.headers['x-auth-client'], 'client-one')
  t.is(echoed.headers['x-forwarded-client-cert'],
    `Hash=${fingerprintOf(t.context.pki.client.cert)};Subject="CN=client-one";URI=${CLIENT_SPIFFE_ID}`)
})

test('a required listener admits a valid certificate', async (t) => {
  const res = await get(t, 'required', '/v1/any/x', t.context.pki.client)
  t.is(res.status, 200)
})

for (const name of ['none', 'untrusted', 'revoked'] as const) {
  test(`a required listener fails the handshake with ${name === 'none' ? 'no' : name === 'revoked' ? 'a revoked' : 'an untrusted'} certificate`, async (t) => {
    const client = name === 'none' ? undefined : t.context.pki[name]
    await t.throwsAsync(get(t, 'required', '/v1/any/x', client))
  })
}

test('mtls on a route reachable on a listener without clientCA refuses to start, naming the listener', async (t) => {
  const pki = t.context.pki
  const error = await t.throwsAsync(startGateway({
    listeners: [tlsListener('optional', 'optional'), { name: 'local', address: '127.0.0.1:0' }],
    routes,
  }, { files: pkiFiles(pki) }))
  t.regex(error?.message ?? '', /"local" without tls\.clientCA/)
})

test('a crl file with several CRLs is read whole: a listener whose own CA\'s CRL comes second still verifies, and still revokes', async (t) => {
  const { pki } = t.context
  // Another CA's CRL first: Node given the file as one string reads only that one, and every handshake failed.
  const otherCrl = await createCRL(pki.rogueCa, [])
  const gw = await startGateway({
    listeners: [{ name: 'two-crls', address: '127.0.0.1:0', tls: { cert: 'pki/server.crt', key: 'pki/server.key', clientCA: 'pki/ca.crt', crl: 'pki/both.crl', clientCert: 'optional' } }],
    routes,
  }, { files: { ...pkiFiles(pki), 'pki/both.crl': `${otherCrl}\n${pki.crl}` } })
  t.teardown(async () => await gw.close())
  const good = await gw.fetch('/v1/any/1', { listener: 'two-crls', dispatcher: agentFor(t, pki.client) as never })
  t.is(good.status, 200)
  const revoked = await gw.fetch('/v1/any/1', { listener: 'two-crls', dispatcher: agentFor(t, pki.revoked) as never })
  t.is(revoked.status, 401)
})
