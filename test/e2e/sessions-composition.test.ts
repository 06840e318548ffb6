/**
 * Sessions with the rest of the chain and the clock: scopes and rateLimit by subject after a session, the idle and
 * absolute timeouts (on a fake clock), and WebSocket handshakes held to the cross-site rule.
 */
import { createHash, randomBytes } from 'node:crypto'
import http, { type IncomingMessage } from 'node:http'
import type net from 'node:net'
import type { AddressInfo } from 'node:net'
import anyTest, { type TestFn } from 'ava'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { FakeClock } from '../helpers/clock.js'
import { freePort, rawRequest } from './support.js'
import { startLoginIdp, type LoginIdp } from '../../policies/session/fixtures/oidc-idp.js'
import { TestBrowser } from '../../policies/session/fixtures/browser.js'

interface Context { idp: LoginIdp, gw: TestGateway, base: string, clock: FakeClock, ws: http.Server }
const test = anyTest as TestFn<Context>

test.before(async (t) => {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startLoginIdp({ port: await freePort(), clients: [{ clientId: 'app', secret: clientSecret, redirectUri: `${base}/.authgate/callback` }] })
  // An upstream that accepts WebSocket handshakes (101) and closes.
  const ws = http.createServer((_req, res) => { res.end('plain') })
  ws.on('upgrade', (req: IncomingMessage, socket: net.Socket) => {
    socket.on('error', () => socket.destroy())
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Auth-Seen: ${String(req.headers['x-auth-subject'])}\r\n\r\n`)
  })
  await new Promise<void>((resolve) => ws.listen(0, '127.0.0.1', resolve))
  const clock = new FakeClock()
  const gw = await startGateway({
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    upstreams: { demo: { echo: true }, ws: { url: `http://127.0.0.1:${(ws.address() as AddressInfo).port}` } },
    sessions: { secret: randomBytes(32).toString('hex'), allowInsecure: true, idleTimeout: '10m', absoluteTimeout: '1h' },
    oidcClients: { corp: { issuer: idp.issuer, clientId: 'app', clientSecret, redirectUri: `${base}/.authgate/callback`, scopes: ['openid', 'email'] } },
    routes: [
      { name: 'email', match: { path: '/email/**' }, upstream: 'demo', policies: [{ session: { client: 'corp' } }, { scopes: ['email'] }] },
      { name: 'admin', match: { path: '/admin/**' }, upstream: 'demo', policies: [{ session: { client: 'corp' } }, { scopes: ['admin'] }] },
      { name: 'limited', match: { path: '/limited/**' }, upstream: 'demo', policies: [{ session: { client: 'corp' } }, { rateLimit: { by: 'subject', limit: '2/min' } }] },
      { name: 'socket', match: { path: '/socket' }, upstream: 'ws', policies: [{ session: { client: 'corp' } }] },
      { name: 'page', match: { path: '/**' }, upstream: 'demo', policies: [{ session: { client: 'corp' } }] },
    ],
  }, { now: clock.now })
  t.context = { idp, gw, base, clock, ws }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.idp?.close()
  await new Promise((resolve) => t.context.ws?.close(resolve))
})

async function loggedIn (t: { context: Context }, user: string): Promise<TestBrowser> {
  t.context.clock.ms = Date.now()
  const browser = new TestBrowser()
  const { answer } = await browser.navigate(`${t.context.base}/start`, { user })
  if (answer.status !== 200) throw new Error(`login ended with ${answer.status}`)
  return browser
}

test.serial('scopes after a session: the granted scopes pass, others are 403 insufficient_scope', async (t) => {
  const { base } = t.context
  const browser = await loggedIn(t, 'frank')
  const ok = await browser.send(`${base}/email/x`, { kind: 'fetch' })
  t.is(ok.status, 200)
  t.regex(JSON.parse(ok.body).headers['x-auth-scopes'], /\bemail\b/)
  const no = await browser.send(`${base}/admin/x`, { kind: 'fetch' })
  t.is(no.status, 403)
  t.is(JSON.parse(no.body).error, 'insufficient_scope')
})

test.serial('rateLimit by subject counts each user\'s session apart', async (t) => {
  const { base } = t.context
  const gina = await loggedIn(t, 'gina')
  const hugo = await loggedIn(t, 'hugo')
  t.is((await gina.send(`${base}/limited/a`, { kind: 'fetch' })).status, 200)
  t.is((await gina.send(`${base}/limited/a`, { kind: 'fetch' })).status, 200)
  const third = await gina.send(`${base}/limited/a`, { kind: 'fetch' })
  t.is(third.status, 429)
  t.is(JSON.parse(third.body).error, 'rate_limited')
  t.is((await hugo.send(`${base}/limited/a`, { kind: 'fetch' })).status, 200, 'another user has a limit of their own')
})

test.serial('idle timeout: a session used within it goes on; one left idle past it ends', async (t) => {
  const { base, clock } = t.context
  const browser = await loggedIn(t, 'ivan')
  clock.advance(9 * 60_000)
  t.is((await browser.send(`${base}/page`, { kind: 'fetch' })).status, 200, 'used after 9 of 10 minutes (and the use is written back)')
  clock.advance(9 * 60_000)
  t.is((await browser.send(`${base}/page`, { kind: 'fetch' })).status, 200, '18 minutes after login, 9 after the last use')
  clock.advance(10 * 60_000 + 1)
  const idle = await browser.send(`${base}/page`, { kind: 'fetch' })
  t.is(idle.status, 401)
  t.true(idle.setCookies.some((c) => /^authgate=; /.test(c)))
})

test.serial('absolute timeout: a session in constant use still ends one hour after login', async (t) => {
  const { base, clock } = t.context
  const browser = await loggedIn(t, 'jane')
  for (let minutes = 0; minutes < 55; minutes += 5) {
    clock.advance(5 * 60_000)
    // The provider's 300 s access token is past; without forwardAccessToken nothing needs refreshing.
    const res = await browser.send(`${base}/page`, { kind: 'fetch' })
    if (res.status !== 200) return t.fail(`refused after ${minutes + 5} minutes: ${res.status}`)
  }
  clock.advance(5 * 60_000 + 1)
  t.is((await browser.send(`${base}/page`, { kind: 'fetch' })).status, 401)
})

test.serial('a WebSocket handshake with a session must be same-origin (cross-site WebSocket hijacking)', async (t) => {
  const { base } = t.context
  const browser = await loggedIn(t, 'kim')
  const cookie = `authgate=${browser.cookie(base, 'authgate')!.value}`
  const handshake = (origin: string) => rawRequest(base, [
    'GET /socket HTTP/1.1', `Host: ${new URL(base).host}`, 'Upgrade: websocket', 'Connection: Upgrade',
    'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, `Origin: ${origin}`, `Cookie: ${cookie}`,
  ].join('\r\n'))
  const cross = await handshake('https://evil.example')
  t.is(cross.status, 403)
  const same = await handshake(base)
  t.is(same.status, 101)
  t.is(same.headers['x-auth-seen']?.[0], 'kim')
})
