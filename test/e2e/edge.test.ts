/**
 * Issues 13 and 14: the edge rules of the one decision pipeline, against a real gateway, a real upstream and a raw
 * client, each refusal paired with the request that must still pass. Every test here failed on the request path
 * before decide() (64f4bc6) unless its comment says the protection already held.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'
import type { EventEmitter } from 'node:events'
import type { IncomingMessage } from 'node:http'
import https from 'node:https'
import net, { type AddressInfo } from 'node:net'
import anyTest, { type TestFn } from 'ava'
import type { GatewayDocument } from '../../gateway/config/types.js'
import { Generation } from '../../gateway/generation.js'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { until as untilHelper } from '../helpers/until.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { mintPki } from '../helpers/pki.js'
import { assertProblem, header, parseResponse, probe, rawGet, rawRequest, recordingUpstream, type RawResponse, type RecordingUpstream } from './support.js'

/** True once `check` holds, false when `timeoutMs` passes first (the one poller, test/helpers/until.ts). */
const until = (check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> =>
  untilHelper(check, { timeoutMs, message: 'the condition' }).then(() => true, () => false)

interface Context { gw: TestGateway, upstream: RecordingUpstream, key: string, hmacSecret: string }
const test = anyTest as TestFn<Context>

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
/** Scheduling slack on a loaded machine: bounded is the point, not fast. */
const SLACK_MS = 3000

/** Answers a WebSocket handshake with 101 and records it (as `UPGRADE <path>`); with `echo`, then echoes bytes. */
function acceptUpgrades (upstream: RecordingUpstream | undefined, server: EventEmitter, echo: boolean): void {
  server.on('upgrade', (req: IncomingMessage, socket: net.Socket) => {
    upstream?.seen.push({ method: req.method ?? '', url: `UPGRADE ${req.url ?? ''}`, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, body: Buffer.alloc(0), complete: true, settled: Promise.resolve() })
    socket.on('error', () => socket.destroy())
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}${WS_GUID}`).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Upstream: yes\r\n\r\n`)
    if (echo) socket.pipe(socket)
    else socket.end()
  })
}

test.before(async (t) => {
  const upstream = await recordingUpstream()
  upstream.server.removeAllListeners('upgrade')
  acceptUpgrades(upstream, upstream.server, false)
  const { id, key } = newApiKey()
  const hmacSecret = randomBytes(32).toString('hex')
  const gw = await startGateway({
    upstreams: { app: { url: upstream.url } },
    apiKeys: [{ id, hash: hashApiKey(key), client: 'key-client', scopes: ['read'] }],
    signingClients: [{ keyId: 'ws-signer', client: 'ws-signer', secret: '${env:WS_HMAC_SECRET}' }],
    routes: [
      { name: 'host-bound', match: { host: 'public.test', path: '/**' }, upstream: 'app', public: true },
      { name: 'open', match: { path: '/open/**' }, upstream: 'app', public: true },
      { name: 'tenant', match: { path: '/tenant/**' }, upstream: 'app', public: true, policies: [{ rateLimit: { by: 'header:X-Tenant', limit: '1000/min' } }] },
      { name: 'orders', match: { path: '/orders/**', methods: ['POST'] }, upstream: 'app', policies: [{ apiKey: {} }] },
      { name: 'preflight-limited', match: { path: '/preflight-limited/**' }, upstream: 'app', cors: { preflight: 'public' }, policies: [{ apiKey: {} }, { rateLimit: { by: 'ip', limit: '2/min' } }] },
      { name: 'preflight', match: { path: '/preflight/**' }, upstream: 'app', cors: { preflight: 'public' }, policies: [{ apiKey: {} }] },
      { name: 'ws', match: { path: '/ws/**' }, upstream: 'app', public: true },
      { name: 'ws-signed', match: { path: '/ws-signed/**' }, upstream: 'app', policies: [{ hmac: { scheme: 'hmac-sha256' } }] },
      { name: 'keyed', match: { path: '/**' }, upstream: 'app', policies: [{ apiKey: {} }] },
    ],
  }, { env: { WS_HMAC_SECRET: hmacSecret } })
  t.context = { gw, upstream, key, hmacSecret }
})

test.after.always(async (t) => {
  await t.context.gw?.close()
  await t.context.upstream?.close()
})

function hostOf (gw: TestGateway): string {
  return new URL(gw.url).host
}

/** What the upstream received for the request that carried `X-Probe: id`, once its body ended. */
async function arrived (upstream: RecordingUpstream, id: string) {
  const seen = upstream.withProbe(id)[0]
  await seen?.settled
  return seen
}

/** The access line of one request (by its X-Request-Id), once it is written; never "the log so far". */
async function accessLine (gw: TestGateway, requestId: string): Promise<Record<string, unknown>> {
  const find = () => gw.rawLogs().split('\n').filter((l) => l.includes(requestId)).map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((e) => e.msg === 'request' && e.requestId === requestId)
  await until(() => find() !== undefined, 5_000)
  const line = find()
  if (!line) throw new Error(`no access line for request ${requestId}`)
  return line
}

const WS_HEADERS = ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13']

interface UpgradeAnswer extends RawResponse {
  /** Open when the answer was 101: the tunnel. */
  socket: net.Socket
  /** Bytes after the 101 head that arrived with it. */
  rest: Buffer
}

/**
 * Sends an upgrade request (head lines as given, then `body`) on a new connection. Resolves with the 101 head as
 * soon as it arrives (the tunnel stays open), or with the whole answer once the gateway closes the connection.
 */
function upgrade (url: string, lines: string[], body: string | Buffer = ''): Promise<UpgradeAnswer> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) })
    let data = Buffer.alloc(0)
    let done = false
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk])
      const end = data.indexOf('\r\n\r\n')
      if (done || end === -1 || !/^HTTP\/1\.1 101 /.test(data.toString('latin1', 0, 13))) return
      done = true
      resolve({ ...parseResponse(data.subarray(0, end + 4)), socket, rest: data.subarray(end + 4) })
    })
    socket.on('close', () => {
      if (done) return
      done = true
      try { resolve({ ...parseResponse(data), socket, rest: Buffer.alloc(0) }) } catch (error) { reject(error) }
    })
    socket.write(`${lines.join('\r\n')}\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`)
    if (body.length > 0) socket.write(body)
  })
}

/** hmac-sha256 headers for METHOD TARGET over `body`. */
function signed (secret: string, method: string, target: string, body = ''): string[] {
  const timestamp = String(Math.floor(Date.now() / 1000))
  const digest = createHash('sha256').update(body).digest('hex')
  const signature = createHmac('sha256', secret).update(`${method}\n${target}\n${timestamp}\n${digest}`).digest('base64')
  return ['X-Key-Id: ws-signer', `X-Timestamp: ${timestamp}`, `X-Signature: ${signature}`]
}

// Issue 14 item 6: Connection tokens

test('Connection: Host cannot give the upstream another authority than the one the route was chosen on', async (t) => {
  const { gw, upstream } = t.context
  for (const connection of ['close, Host, X-Custom', 'close, host, x-custom']) {
    const id = probe()
    const res = await rawRequest(gw.url, ['GET /only-public-test HTTP/1.1', 'Host: public.test', `X-Probe: ${id}`, 'X-Custom: dropped', `Connection: ${connection}`].join('\r\n'))
    t.is(res.status, 200, res.body)
    const seen = await arrived(upstream, id)
    t.is(seen?.headers.host, 'public.test', connection)
    t.is(seen?.headers['x-custom'], undefined, 'the harmless token is still honoured')
  }
})

test('Connection: Content-Length cannot strip the framing of a POST body: the upstream gets it whole, as sent', async (t) => {
  const { gw, upstream } = t.context
  // Larger than any buffer on the way, so the body is still streaming when the upstream request starts: without its
  // Content-Length that request would be re-framed as chunked.
  const body = Buffer.alloc(300_000, 'a')
  const id = probe()
  const res = await rawRequest(gw.url, ['POST /open/cl HTTP/1.1', `Host: ${hostOf(gw)}`, `X-Probe: ${id}`, `Content-Length: ${body.length}`, 'Connection: close, Content-Length'].join('\r\n'), body)
  t.is(res.status, 200, res.body)
  const seen = await arrived(upstream, id)
  t.is(seen?.headers['content-length'], String(body.length))
  t.is(seen?.headers['transfer-encoding'], undefined)
  t.true(seen?.complete)
  t.true(seen?.body.equals(body))
})

test('Connection tokens naming a header the route identifies on, or a credential passed through, are ignored; other tokens are honoured', async (t) => {
  const { gw, upstream, key } = t.context
  // The rate limit counted X-Tenant: the upstream must see the same tenant (this one failed before the fix).
  const tenant = probe()
  t.is((await rawGet(gw.url, '/tenant/x', [`X-Probe: ${tenant}`, 'X-Tenant: acme', 'Connection: close, X-Tenant'])).status, 200)
  t.is((await arrived(upstream, tenant))?.headers['x-tenant'], 'acme')
  // A public route passes credentials through to the upstream, which may authenticate on them (this held before).
  const passed = probe()
  t.is((await rawGet(gw.url, '/open/x', [`X-Probe: ${passed}`, 'X-API-Key: upstream-own-key', 'Authorization: Basic dXBzdHJlYW06a2V5', 'Connection: close, X-API-Key, Authorization'])).status, 200)
  const seen = (await arrived(upstream, passed))?.headers
  t.is(seen?.['x-api-key'], 'upstream-own-key')
  t.is(seen?.authorization, 'Basic dXBzdHJlYW06a2V5')
  // The keyed route still authenticates on X-API-Key named in Connection, and still consumes it.
  const keyed = probe()
  t.is((await rawGet(gw.url, '/keyed/x', [`X-Probe: ${keyed}`, `X-API-Key: ${key}`, 'Connection: close, X-API-Key'])).status, 200)
  t.is((await arrived(upstream, keyed))?.headers['x-api-key'], undefined)
  // The twin: a harmless header named in Connection is hop-by-hop (RFC 9110 §7.6.1) and dropped.
  const custom = probe()
  t.is((await rawGet(gw.url, '/tenant/x', [`X-Probe: ${custom}`, 'X-Tenant: acme', 'X-Custom: hop', 'X-Kept: end-to-end', 'Connection: close, X-Custom'])).status, 200)
  const customSeen = (await arrived(upstream, custom))?.headers
  t.is(customSeen?.['x-custom'], undefined)
  t.is(customSeen?.['x-kept'], 'end-to-end')
})

// Issue 14 item 7: method overrides

test('a _method override is refused however its name is spelled: percent-encoded, after ";", with "+", or as PHP reads it', async (t) => {
  const { gw, upstream, key } = t.context
  const queries = [
    '_%6Dethod=DELETE', '%5F%6D%65%74%68%6F%64=DELETE', '_METHOD=DELETE', 'a=1;_method=DELETE', '_method=DELETE;a=1',
    '_method+=DELETE', '+_method=DELETE', '.method=DELETE', '%2Emethod=DELETE', '_%6Dethod=DEL%45TE',
  ]
  for (const query of queries) {
    const id = probe()
    const res = await rawRequest(gw.url, [`POST /orders/1?${query} HTTP/1.1`, `Host: ${hostOf(gw)}`, `X-API-Key: ${key}`, `X-Probe: ${id}`, 'Content-Length: 0'].join('\r\n'))
    await assertProblem(t, res, 400, 'bad_request')
    t.is(upstream.withProbe(id).length, 0, query)
  }
  // The twins: an override naming the request's own method, and ordinary queries, pass.
  for (const query of ['_method=POST', '_%6Dethod=post', 'page=2', '%70age=2', 'methodology=a', 'a=1;b=2']) {
    const res = await rawRequest(gw.url, [`POST /orders/1?${query} HTTP/1.1`, `Host: ${hostOf(gw)}`, `X-API-Key: ${key}`, 'Content-Length: 0'].join('\r\n'))
    t.is(res.status, 200, query)
  }
  for (const query of ['_method=GET', 'page=2']) t.is((await rawGet(gw.url, `/open/x?${query}`)).status, 200, query)
})

// Issue 14 item 9: no body on upgrades

test('an upgrade request with a body is 400 and never tunneled, signed or not; a bodiless one tunnels (101)', async (t) => {
  const { gw, upstream, hmacSecret } = t.context
  const host = `Host: ${hostOf(gw)}`
  const attempts: Array<[string, string[], string]> = [
    ['/ws/cl', ['Content-Length: 5'], 'hello'],
    ['/ws/te', ['Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n'],
    // The issue: the signature covers an empty body, while the declared body would reach the upstream.
    ['/ws-signed/cl', [...signed(hmacSecret, 'GET', '/ws-signed/cl'), 'Content-Length: 5'], 'hello'],
    ['/keyed/cl', ['Content-Length: 5'], 'hello'],
  ]
  for (const [path, extra, body] of attempts) {
    const res = await upgrade(gw.url, [`GET ${path} HTTP/1.1`, host, ...WS_HEADERS, ...extra], body)
    await assertProblem(t, res, 400, 'bad_request')
    t.false(upstream.seen.some((s) => s.url === `UPGRADE ${path}`), path)
  }
  // The twins: no body, or Content-Length: 0, tunnel; so does a signed upgrade without a body.
  for (const [path, extra] of [['/ws/plain', []], ['/ws/zero', ['Content-Length: 0']], ['/ws-signed/plain', signed(hmacSecret, 'GET', '/ws-signed/plain')]] as const) {
    const res = await upgrade(gw.url, [`GET ${path} HTTP/1.1`, host, ...WS_HEADERS, ...extra])
    res.socket.destroy()
    t.is(res.status, 101, `${path}: ${res.raw.slice(0, 60)}`)
    t.regex(header(res, 'x-request-id') ?? '', /^[0-9a-f-]{36}$/, 'X-Request-Id on the 101')
    t.true(upstream.seen.some((s) => s.url === `UPGRADE ${path}`), path)
  }
})

test('an upgrade the tunnel cannot carry (h2c, a bodiless POST, no Host) is 400 with an access line, not a silent close; a WebSocket GET tunnels', async (t) => {
  const { gw, upstream } = t.context
  const host = `Host: ${hostOf(gw)}`
  for (const [path, lines] of [
    ['/ws/h2c', ['GET /ws/h2c HTTP/1.1', host, 'Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA']],
    ['/ws/post', ['POST /ws/post HTTP/1.1', host, ...WS_HEADERS]],
    // RFC 9112 §3.2: Node answers 400 itself to an HTTP/1.1 request without Host, but not to an upgrade.
    ['/ws/no-host', ['GET /ws/no-host HTTP/1.1', ...WS_HEADERS]],
  ] as const) {
    const res = await upgrade(gw.url, [...lines])
    await assertProblem(t, res, 400, 'bad_request')
    t.like(await accessLine(gw, header(res, 'x-request-id')!), { path, status: 400, code: 'bad_request' })
    t.false(upstream.seen.some((s) => s.url === `UPGRADE ${path}`), path)
  }
  const ws = await upgrade(gw.url, ['GET /ws/get HTTP/1.1', host, ...WS_HEADERS])
  ws.socket.destroy()
  t.is(ws.status, 101)
})

// Issue 14 item 11: preflights

test('preflights on a cors.preflight: public route still count against its rate limit: the third is 429', async (t) => {
  const { gw } = t.context
  const preflight = ['Origin: https://app.example', 'Access-Control-Request-Method: POST']
  t.is((await rawRequest(gw.url, ['OPTIONS /preflight-limited/x HTTP/1.1', `Host: ${hostOf(gw)}`, ...preflight].join('\r\n'))).status, 200)
  t.is((await rawRequest(gw.url, ['OPTIONS /preflight-limited/x HTTP/1.1', `Host: ${hostOf(gw)}`, ...preflight].join('\r\n'))).status, 200)
  const third = await rawRequest(gw.url, ['OPTIONS /preflight-limited/x HTTP/1.1', `Host: ${hostOf(gw)}`, ...preflight].join('\r\n'))
  await assertProblem(t, third, 429, 'rate_limited')
  t.truthy(header(third, 'retry-after'))
})

test('an OPTIONS request that is no preflight (no Origin, no Access-Control-Request-Method, or a body) needs credentials; a preflight does not', async (t) => {
  const { gw, upstream, key } = t.context
  const host = `Host: ${hostOf(gw)}`
  const notPreflights: Array<[string[], string]> = [
    [['Access-Control-Request-Method: POST'], ''],
    [['Origin: https://app.example'], ''],
    [['Origin: https://app.example', 'Access-Control-Request-Method: POST', 'Content-Length: 9'], 'smuggled'.padEnd(9)],
    [['Origin: https://app.example', 'Access-Control-Request-Method: POST', 'Transfer-Encoding: chunked'], '3\r\nabc\r\n0\r\n\r\n'],
  ]
  for (const [lines, body] of notPreflights) {
    const id = probe()
    const res = await rawRequest(gw.url, ['OPTIONS /preflight/x HTTP/1.1', host, `X-Probe: ${id}`, ...lines].join('\r\n'), body)
    await assertProblem(t, res, 401, 'missing_credentials')
    t.is(upstream.withProbe(id).length, 0, lines.join(' '))
    // The twin: the same request with the key passes, body and all.
    const keyed = probe()
    const ok = await rawRequest(gw.url, ['OPTIONS /preflight/x HTTP/1.1', host, `X-Probe: ${keyed}`, `X-API-Key: ${key}`, ...lines].join('\r\n'), body)
    t.is(ok.status, 200, lines.join(' '))
    t.is((await arrived(upstream, keyed))?.body.toString(), body.startsWith('3\r\n') ? 'abc' : body)
  }
  // A real preflight needs none.
  const res = await rawRequest(gw.url, ['OPTIONS /preflight/x HTTP/1.1', host, 'Origin: https://app.example', 'Access-Control-Request-Method: POST'].join('\r\n'))
  t.is(res.status, 200)
})

// Issue 14 item 15 (and 8: what the log sees)

const CLIENT_IP_HEADERS = ['X-Client-IP', 'True-Client-IP', 'X-Original-Forwarded-For', 'CF-Connecting-IP', 'Fastly-Client-IP', 'X-Cluster-Client-IP', 'Client-IP', 'X-Real-IP', 'Forwarded']

test('client-address headers from an untrusted peer never reach the upstream, and the access log shows the socket address', async (t) => {
  const { gw, upstream } = t.context
  const id = probe()
  const res = await rawGet(gw.url, '/open/ip', [`X-Probe: ${id}`, 'X-Forwarded-For: 198.51.100.7', ...CLIENT_IP_HEADERS.map((name) => `${name}: ${name === 'Forwarded' ? 'for=198.51.100.7' : '198.51.100.7'}`)])
  t.is(res.status, 200)
  const seen = (await arrived(upstream, id))!.headers
  for (const name of CLIENT_IP_HEADERS) t.is(seen[name.toLowerCase()], undefined, name)
  t.is(seen['x-forwarded-for'], '127.0.0.1')
  const line = await accessLine(gw, header(res, 'x-request-id')!)
  t.is(line.remote, '127.0.0.1')
})

test('client-address headers from a trusted proxy reach the upstream as sent', async (t) => {
  const upstream = await recordingUpstream()
  const gw = await startGateway({
    trustProxies: ['127.0.0.1'],
    upstreams: { app: { url: upstream.url } },
    routes: [{ name: 'open', match: { path: '/**' }, upstream: 'app', public: true }],
  })
  t.teardown(async () => { await gw.close(); await upstream.close() })
  const id = probe()
  const res = await rawGet(gw.url, '/ip', [`X-Probe: ${id}`, 'X-Forwarded-For: 198.51.100.7', ...CLIENT_IP_HEADERS.map((name) => `${name}: ${name === 'Forwarded' ? 'for=198.51.100.7' : '198.51.100.7'}`)])
  t.is(res.status, 200)
  const seen = (await arrived(upstream, id))!.headers
  for (const name of CLIENT_IP_HEADERS) t.is(seen[name.toLowerCase()], name === 'Forwarded' ? 'for=198.51.100.7' : '198.51.100.7', name)
  t.is(seen['x-forwarded-for'], '198.51.100.7, 127.0.0.1')
})

// Issue 14 item 8: what policies see

/** Rate-limit keys that name a header the gateway owns or reads only from a trusted proxy. */
const RESERVED_KEYS = ['X-User-Id', 'X-Auth-Client', 'X-Auth-Subject', 'X-Real-IP', 'X-Client-IP', 'True-Client-IP', 'CF-Connecting-IP', 'X-Forwarded-For', 'Forwarded']

test('a rate limit keyed on a gateway-owned or forwarding header counts every spoofed value on one counter; an ordinary header keeps its own', async (t) => {
  const gw = await startGateway({
    trustProxies: ['10.0.0.0/8'],
    identity: { stripInbound: ['X-User-Id'] },
    routes: [
      ...RESERVED_KEYS.map((_, i) => ({ name: `by-${i}`, match: { path: `/by-${i}/**` }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'header:X-Tenant', limit: '2/min' } }] })),
      { name: 'by-tenant', match: { path: '/by-tenant/**' }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'header:X-Tenant', limit: '2/min' } }] },
      { name: 'by-ip', match: { path: '/by-ip/**' }, upstream: 'demo', public: true, policies: [{ rateLimit: { by: 'ip', limit: '2/min' } }] },
    ],
  })
  // `check` refuses a rateLimit by a gateway-owned or forwarding header (lint rate-limit-reserved-header), so such a
  // configuration is installed past it, as one written before that rule would run: the pipeline must hold anyway.
  const loaded = gw.gateway.handler.runtime
  const doc = structuredClone(loaded.config.doc) as GatewayDocument
  RESERVED_KEYS.forEach((name, i) => { (doc.routes.find((r) => r.name === `by-${i}`)!.policies![0] as { rateLimit: { by: string } }).rateLimit.by = `header:${name}` })
  gw.gateway.handler.runtime = await Generation.build({ ...loaded.config, doc }, { store: gw.gateway.currentStore, log: gw.gateway.log, now: Date.now })
  t.teardown(async () => { await gw.close(); await loaded.close() })

  for (const [i, name] of RESERVED_KEYS.entries()) {
    const statuses: number[] = []
    for (const k of [1, 2, 3]) {
      const value = name === 'Forwarded' ? `for=198.51.100.${k}` : /ip|for/i.test(name) ? `198.51.100.${k}` : `spoofed-${k}`
      statuses.push((await rawGet(gw.url, `/by-${i}/x`, [`${name}: ${value}`])).status)
    }
    t.deepEqual(statuses, [200, 200, 429], name)
  }
  // By ip: a spoofed client address from an untrusted peer does not open another counter (this held before).
  const byIp: number[] = []
  for (const spoof of ['X-Forwarded-For: 198.51.100.1', 'X-Real-IP: 198.51.100.2', 'True-Client-IP: 198.51.100.3']) byIp.push((await rawGet(gw.url, '/by-ip/x', [spoof])).status)
  t.deepEqual(byIp, [200, 200, 429])
  // The twin: an ordinary header is the client's to choose; each value has its own counter.
  const tenants: number[] = []
  for (const tenant of ['acme', 'globex', 'initech', 'acme', 'acme']) tenants.push((await rawGet(gw.url, '/by-tenant/x', [`X-Tenant: ${tenant}`])).status)
  t.deepEqual(tenants, [200, 200, 200, 200, 429])
})

// Issue 13: WebSocket upgrades through the same decision

/** Prometheus text -> value of the series with exactly these labels (0 when absent). */
function metric (text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const found = Object.fromEntries([...match[2]!.matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.keys(labels).every((k) => found[k] === labels[k]) && Object.keys(found).length === Object.keys(labels).length) return Number(match[3])
  }
  return 0
}

test('a refused upgrade gets the same status, challenge, problem, access line and metrics as the same request without Upgrade', async (t) => {
  const upstream = await recordingUpstream()
  upstream.server.removeAllListeners('upgrade')
  acceptUpgrades(upstream, upstream.server, false)
  const gw = await startGateway({
    upstreams: { app: { url: upstream.url } },
    routes: [{ name: 'keyed', match: { path: '/**' }, upstream: 'app', policies: [{ apiKey: {} }] }],
  })
  t.teardown(async () => { await gw.close(); await upstream.close() })
  const counters = async () => {
    const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    return {
      requests: metric(text, 'authgate_requests_total', { route: 'keyed', status: '401', code: 'missing_credentials' }),
      failures: metric(text, 'authgate_auth_failures_total', { method: 'apiKey', code: 'missing_credentials' }),
    }
  }
  const host = `Host: ${hostOf(gw)}`
  const before = await counters()
  const plain = await rawGet(gw.url, '/chat', [])
  const plainLine = await accessLine(gw, header(plain, 'x-request-id')!)
  const afterPlain = await counters()
  const upgraded = await upgrade(gw.url, ['GET /chat HTTP/1.1', host, ...WS_HEADERS])
  const upgradeLine = await accessLine(gw, header(upgraded, 'x-request-id')!)
  const afterUpgrade = await counters()

  const plainBody = await assertProblem(t, plain, 401, 'missing_credentials')
  const upgradeBody = await assertProblem(t, upgraded, 401, 'missing_credentials')
  t.is(header(upgraded, 'www-authenticate'), header(plain, 'www-authenticate'))
  t.regex(header(plain, 'www-authenticate') ?? '', /^ApiKey realm="authgate"/)
  const { requestId: plainId, ...plainRest } = plainBody
  const { requestId: upgradeId, ...upgradeRest } = upgradeBody
  t.deepEqual(upgradeRest, plainRest)
  t.not(upgradeId, plainId)
  t.is(upgradeLine.requestId, upgradeId)
  t.is(plainLine.requestId, plainId)
  for (const field of ['method', 'path', 'route', 'status', 'code', 'remote', 'listener']) t.is(upgradeLine[field], plainLine[field], field)
  t.like(upgradeLine, { route: 'keyed', status: 401, code: 'missing_credentials' })
  t.deepEqual({ requests: afterPlain.requests - before.requests, failures: afterPlain.failures - before.failures }, { requests: 1, failures: 1 })
  t.deepEqual({ requests: afterUpgrade.requests - afterPlain.requests, failures: afterUpgrade.failures - afterPlain.failures }, { requests: 1, failures: 1 })
  t.false(upstream.seen.some((s) => s.url.startsWith('UPGRADE')))
})

test('a wss upstream is reached with its configured CA (101, frames both ways), refused without it (502); a silent upstream is 504 within its timeout', async (t) => {
  const pki = await mintPki()
  const wss = https.createServer({ cert: pki.server.cert, key: pki.server.key }, (_req, res) => res.end())
  acceptUpgrades(undefined, wss, true)
  await new Promise<void>((resolve) => wss.listen(0, '127.0.0.1', resolve))
  // Takes the upgrade request and never answers it.
  const held = new Set<net.Socket>()
  const silent = net.createServer((socket) => { held.add(socket); socket.on('error', () => {}); socket.resume() })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const wssUrl = `https://127.0.0.1:${(wss.address() as AddressInfo).port}`
  const timeoutMs = 500
  const gw = await startGateway({
    upstreams: {
      withCa: { url: wssUrl, ca: 'pki/ca.crt' },
      withoutCa: { url: wssUrl },
      silent: { url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, timeout: `${timeoutMs}ms` },
    },
    routes: [
      { name: 'with-ca', match: { path: '/with-ca/**' }, upstream: 'withCa', public: true },
      { name: 'without-ca', match: { path: '/without-ca/**' }, upstream: 'withoutCa', public: true },
      { name: 'silent', match: { path: '/silent/**' }, upstream: 'silent', public: true },
    ],
  }, { files: { 'pki/ca.crt': pki.ca.cert } })
  t.teardown(async () => {
    await gw.close()
    wss.closeAllConnections()
    await new Promise((resolve) => wss.close(resolve))
    for (const socket of held) socket.destroy()
    await new Promise((resolve) => silent.close(resolve))
  })
  const host = `Host: ${hostOf(gw)}`

  const tunnel = await upgrade(gw.url, ['GET /with-ca/chat HTTP/1.1', host, ...WS_HEADERS])
  t.is(tunnel.status, 101, tunnel.raw)
  t.is(header(tunnel, 'x-upstream'), 'yes')
  const echoed = new Promise<string>((resolve) => {
    let text = tunnel.rest.toString('latin1')
    if (text === 'ping') { resolve(text); return }
    tunnel.socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1'); if (text.length >= 4) resolve(text) })
  })
  tunnel.socket.write('ping')
  t.is(await echoed, 'ping')
  tunnel.socket.destroy()

  const untrusted = await upgrade(gw.url, ['GET /without-ca/chat HTTP/1.1', host, ...WS_HEADERS])
  await assertProblem(t, untrusted, 502, 'upstream_unavailable')

  const started = performance.now()
  const timedOut = await upgrade(gw.url, ['GET /silent/chat HTTP/1.1', host, ...WS_HEADERS])
  const elapsed = performance.now() - started
  await assertProblem(t, timedOut, 504, 'upstream_timeout')
  t.true(elapsed >= timeoutMs - 50 && elapsed < timeoutMs + SLACK_MS, `answered after ${Math.round(elapsed)} ms`)
  t.like(await accessLine(gw, header(timedOut, 'x-request-id')!), { route: 'silent', status: 504, code: 'upstream_timeout' })
})

test('a CONNECT request is 400 bad_request with an access line, not a silent close; a GET to the same authority is served', async (t) => {
  const { gw } = t.context
  const host = new URL(gw.url).host
  const res = await rawRequest(gw.url, [`CONNECT ${host} HTTP/1.1`, `Host: ${host}`].join('\r\n'))
  const body = await assertProblem(t, res, 400, 'bad_request')
  const line = await accessLine(gw, String(body.requestId))
  t.like(line, { method: 'CONNECT', status: 400, code: 'bad_request', route: '(none)' })
  // The twin: an ordinary request on the same connection target is answered as usual.
  const open = await rawGet(gw.url, '/open/x')
  t.is(open.status, 200)
})

test('Transfer-Encoding: gzip, chunked is 400 and never forwarded (the gzip coding would be lost); plain chunked is forwarded', async (t) => {
  const { gw, upstream } = t.context
  const host = new URL(gw.url).host
  const id = probe()
  const refused = await rawRequest(gw.url, [`POST /open/${id} HTTP/1.1`, `Host: ${host}`, 'Transfer-Encoding: gzip, chunked'].join('\r\n'), '5\r\nhello\r\n0\r\n\r\n')
  await assertProblem(t, refused, 400, 'bad_request')
  t.false(upstream.seen.some((s) => s.url.includes(id)))
  const ok = await rawRequest(gw.url, [`POST /open/${id}-ok HTTP/1.1`, `Host: ${host}`, 'Transfer-Encoding: chunked'].join('\r\n'), '5\r\nhello\r\n0\r\n\r\n')
  t.is(ok.status, 200)
})
