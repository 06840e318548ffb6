import test from 'ava'
import { stringify } from 'yaml'
import { checkConfig } from '../../gateway/config/load.js'

const SECRET = 'k'.repeat(48)

function config (overrides: { sessions?: Record<string, unknown>, listeners?: unknown[], client?: Record<string, unknown>, route?: Record<string, unknown> } = {}) {
  return {
    version: 1,
    listeners: overrides.listeners ?? [{ name: 'local', address: '127.0.0.1:8080' }],
    upstreams: { demo: { echo: true } },
    sessions: { secret: SECRET, allowInsecure: true, ...overrides.sessions },
    oidcClients: { corp: { issuer: 'https://idp.example.com', clientId: 'app', clientSecret: 'client-secret', redirectUri: 'https://app.example.com/.authgate/callback', ...overrides.client } },
    routes: [{ name: 'app', match: { path: '/**', host: 'app.example.com' }, upstream: 'demo', policies: [{ session: { client: 'corp' } }], ...overrides.route }],
  }
}

/** `authgate check`'s findings: the loader's issues, the lint rules' among them (those carry their rule id). */
function issuesOf (doc: Record<string, unknown>) {
  const { issues } = checkConfig('/virtual/gateway.yaml', { text: stringify(doc), env: {} })
  return issues.map((i) => ({ severity: i.severity, where: (i as { rule?: string }).rule ?? i.path.join('.'), message: i.message, fix: i.fix }))
}

test('a valid session configuration has no error and no warning', (t) => {
  t.deepEqual(issuesOf(config()), [])
})

test('missing or short sessions.secret is an error', (t) => {
  const noSecret = config()
  delete (noSecret.sessions as Record<string, unknown>).secret
  t.true(issuesOf(noSecret).some((i) => i.severity === 'error' && /sessions\.secret/.test(i.message)))
  const short = issuesOf(config({ sessions: { secret: 'x'.repeat(31) } }))
  t.true(short.some((i) => i.severity === 'error' && i.where === 'sessions.secret' && /31 bytes/.test(i.message)))
})

test('sameSite: none is an error', (t) => {
  t.true(issuesOf(config({ sessions: { sameSite: 'none' } })).some((i) => i.severity === 'error' && i.where === 'sessions.sameSite'))
  t.false(issuesOf(config({ sessions: { sameSite: 'strict' } })).some((i) => i.severity === 'error'))
})

test('a plain-HTTP listener: an error without allowInsecure, and an error beyond loopback even with it', (t) => {
  t.true(issuesOf(config({ sessions: { allowInsecure: false } })).some((i) => i.severity === 'error' && /plain-HTTP listener "local"/.test(i.message)))
  const exposed = issuesOf(config({ listeners: [{ name: 'edge', address: '0.0.0.0:8080' }] }))
  t.true(exposed.some((i) => i.severity === 'error' && i.where === 'session-insecure-exposed'))
})

test('a client without offline_access is a warning', (t) => {
  const found = issuesOf(config({ client: { scopes: ['openid', 'email'] } }))
  t.true(found.some((i) => i.severity === 'warning' && i.where === 'session-no-refresh'))
  t.false(found.some((i) => i.severity === 'error'))
})

test('a session route on another host than the redirectUri\'s is an error', (t) => {
  t.true(issuesOf(config({ route: { match: { path: '/**', host: 'api.example.com' } } })).some((i) => i.severity === 'error' && /cookie belongs to "app.example.com"/.test(i.message)))
})

test('an unknown client, a bad redirectUri and neither secret nor key are errors', (t) => {
  t.true(issuesOf(config({ route: { policies: [{ session: { client: 'crop' } }] } })).some((i) => /unknown OIDC client "crop"/.test(i.message) && /corp/.test(JSON.stringify(i))))
  t.true(issuesOf(config({ client: { redirectUri: 'http://app.example.com/.authgate/callback' } })).some((i) => i.where === 'oidcClients.corp.redirectUri'))
  t.true(issuesOf(config({ client: { redirectUri: 'https://app.example.com/callback' } })).some((i) => i.where === 'oidcClients.corp.redirectUri'))
  t.true(issuesOf(config({ client: { clientSecret: undefined } })).some((i) => /exactly one of `clientSecret` and `privateKeyJwt`/.test(i.message)))
})
