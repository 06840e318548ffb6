/**
 * The console (shared/design/console.md) on the admin listener: static files bundled at build time (console/ ->
 * dist/console/), a session exchanged for the admin token, and a small JSON API that reads the running gateway.
 * Keys are managed through the admin API's own routes (/admin/keys), which accept the console session in place of
 * the bearer token (AdminServer.sessionAuth); explain is `authgate explain`'s own explainRequest on a read-only view
 * of this gateway's store, handed in by whoever starts the gateway (gateway/ does not import cli/).
 */
import { existsSync, readFileSync } from 'node:fs'
import type http from 'node:http'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { json, readJson, type AdminRoute } from '../admin.js'
import type { ClusterLink } from '../cluster.js'
import type { ConfigIssue } from '../errors.js'
import type { LoadedConfig, PolicyStep } from '../config/types.js'
import { sendProblem } from '../problem.js'
import type { Store } from '../store/types.js'
import { ConsoleSessions, readCookie, SESSION_TTL_MS, type Session } from './session.js'
import { trafficView, type TrafficReport } from './traffic.js'

export const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
}

/**
 * Explains one request against a loaded configuration, reading through `store` without writing (cli/explain's
 * explainRequest, see cli/explain/console.ts): the report, or what was wrong with the request asked about.
 */
export type ConsoleExplain = (config: LoadedConfig, method: string, url: string, headers: Array<[string, string]>,
  options: { store: Store, listener?: string }) => Promise<{ report: unknown } | { inputError: string }>

export interface ReloadRecord { readonly at: Date, readonly ok: boolean, readonly issues: readonly ConfigIssue[] }

export interface ConsoleDeps {
  config (): LoadedConfig
  store (): Store
  adminToken (): string | undefined
  readonly cluster: ClusterLink
  lastReload (): ReloadRecord | undefined
  /** Listener name -> URL as bound. */
  listenerUrls (): ReadonlyMap<string, string>
  readonly startedAt: number
  now (): number
  /** `authgate explain`'s decision (cli/explain explainRequest); absent: the explain page answers 501. */
  readonly explain?: ConsoleExplain | undefined
  /** The admin listener serves TLS: the cookie is `__Host-authgate-console` and Secure. */
  readonly tls?: boolean
}

/** The bundled files, from dist/console (beside dist/gateway when installed; under dist/ when run from sources). */
function assetsDir (): string | undefined {
  for (const candidate of ['../../console/', '../../dist/console/']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url))
    if (existsSync(`${dir}app.js`) && existsSync(`${dir}index.html`)) return dir
  }
  return undefined
}

/** Wrong admin tokens accepted at sign-in per minute (per process) before it answers 429 for the rest of the minute. */
const MAX_FAILURES = 10
const FAILURE_WINDOW_MS = 60_000

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' }
const ASSET = /^\/console\/([a-z0-9-]+\.(?:js|css|svg))$/

function readVersion (): string {
  for (const candidate of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(fileURLToPath(new URL(candidate, import.meta.url)), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'authgate' && pkg.version) return pkg.version
    } catch {}
  }
  return 'unknown'
}

export class Console {
  readonly sessions: ConsoleSessions
  readonly cookieName: string
  private readonly version = readVersion()
  private readonly assets = assetsDir()
  /** Times of recent wrong tokens at sign-in (this process): past MAX_FAILURES a minute, sign-in waits. */
  private failures: number[] = []

  constructor (private readonly deps: ConsoleDeps) {
    this.sessions = new ConsoleSessions(deps.adminToken, deps.now)
    this.cookieName = deps.tls === true ? '__Host-authgate-console' : 'authgate-console'
    deps.cluster.on('console-signout', (data) => {
      const session = data as Session
      if (typeof session?.id === 'string' && typeof session.expiresAt === 'number') this.sessions.revoke(session)
    })
  }

  /** The session of a request, if its cookie names a current one. */
  session (req: http.IncomingMessage): Session | undefined {
    return this.sessions.verify(readCookie(req, this.cookieName))
  }

  /**
   * A state-changing call from the console: the `X-Authgate-Console: 1` header (a form or a cross-site page cannot
   * send it without a CORS preflight, which is never granted) and an Origin that is this listener's own.
   */
  sameOrigin (req: http.IncomingMessage): boolean {
    if (req.headers['x-authgate-console'] !== '1') return false
    const origin = req.headers.origin
    const host = req.headers.host
    return origin !== undefined && host !== undefined && origin === `${this.deps.tls === true ? 'https' : 'http'}://${host}`
  }

  /** For the admin API: 'ok' when the request carries a console session (and, unless it is a read, passes the origin rule). */
  adminAccess (req: http.IncomingMessage): 'ok' | 'cross-origin' | undefined {
    if (!this.session(req)) return undefined
    const safe = req.method === 'GET' || req.method === 'HEAD'
    return safe || this.sameOrigin(req) ? 'ok' : 'cross-origin'
  }

  readonly route: AdminRoute = async (req, res, url, requestId) => {
    const path = url.pathname
    if (path !== '/console' && !path.startsWith('/console/')) return false
    for (const [name, value] of Object.entries(CONSOLE_HEADERS)) res.setHeader(name, value)
    const method = req.method ?? 'GET'
    if (path === '/console') {
      res.writeHead(308, { Location: '/console/', 'Content-Length': 0 })
      res.end()
      return true
    }
    if (path === '/console/' || path === '/console/index.html' || ASSET.test(path)) {
      if (method !== 'GET' && method !== 'HEAD') return notAllowed(res, 'GET, HEAD', requestId)
      return this.serveAsset(res, path === '/console/' ? 'index.html' : path.slice('/console/'.length), method, requestId)
    }
    if (path === '/console/session') return await this.sessionRoute(req, res, method, requestId)
    if (path.startsWith('/console/api/')) {
      const session = this.session(req)
      if (!session) {
        sendProblem(res, { status: 401, code: 'invalid_credentials', detail: 'sign in to the console first' }, requestId)
        return true
      }
      if (method !== 'GET' && method !== 'HEAD' && !this.sameOrigin(req)) return crossOrigin(res, requestId)
      return await this.api(req, res, path.slice('/console/api/'.length), method, requestId)
    }
    sendProblem(res, { status: 404, code: 'no_route', detail: 'no such console page' }, requestId)
    return true
  }

  private serveAsset (res: http.ServerResponse, name: string, method: string, requestId: string): true {
    const dir = this.assets
    let body: Buffer
    try {
      if (!dir) throw new Error('not built')
      body = readFileSync(`${dir}${name}`)
    } catch {
      sendProblem(res, { status: 404, code: 'no_route', detail: dir ? 'no such console file' : 'the console is not built (npm run build)' }, requestId)
      return true
    }
    const type = TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream'
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length, 'Cache-Control': name === 'index.html' ? 'no-store' : 'no-cache' })
    res.end(method === 'HEAD' ? undefined : body)
    return true
  }

  private async sessionRoute (req: http.IncomingMessage, res: http.ServerResponse, method: string, requestId: string): Promise<true> {
    if (method === 'GET') {
      const session = this.session(req)
      if (!session) sendProblem(res, { status: 401, code: 'invalid_credentials', detail: 'no console session' }, requestId)
      else json(res, 200, { expiresAt: new Date(session.expiresAt).toISOString() })
      return true
    }
    if (method !== 'POST' && method !== 'DELETE') return notAllowed(res, 'GET, POST, DELETE', requestId)
    if (!this.sameOrigin(req)) return crossOrigin(res, requestId)
    if (method === 'DELETE') {
      const session = this.session(req)
      if (session) this.deps.cluster.broadcast('console-signout', session)
      res.writeHead(204, { 'Set-Cookie': this.cookie('', 0), 'Cache-Control': 'no-store' })
      res.end()
      return true
    }
    let token: unknown
    try {
      const body = await readJson(req, 4 * 1024)
      token = (body as { token?: unknown } | null)?.token
    } catch {
      sendProblem(res, { status: 400, code: 'bad_request', detail: 'send {"token": "..."} as JSON' }, requestId)
      return true
    }
    if (typeof token !== 'string' || token === '') {
      sendProblem(res, { status: 400, code: 'bad_request', detail: 'send {"token": "..."} as JSON' }, requestId)
      return true
    }
    if (this.deps.adminToken() === undefined) {
      sendProblem(res, { status: 401, code: 'invalid_credentials', detail: 'the admin listener has no token (admin.token): the console cannot be used' }, requestId)
      return true
    }
    const now = this.deps.now()
    const recent = this.failures.filter((at) => at > now - FAILURE_WINDOW_MS)
    this.failures = recent
    if (recent.length >= MAX_FAILURES) {
      const retryAfter = Math.max(1, Math.ceil((recent[0]! + FAILURE_WINDOW_MS - now) / 1000))
      sendProblem(res, { status: 429, code: 'rate_limited', detail: 'too many wrong admin tokens: wait before trying again', headers: { 'Retry-After': String(retryAfter) } }, requestId)
      return true
    }
    if (!this.sessions.tokenMatches(token)) {
      this.failures.push(now)
      sendProblem(res, { status: 401, code: 'invalid_credentials', detail: 'wrong admin token' }, requestId)
      return true
    }
    const issued = this.sessions.issue()!
    res.writeHead(200, { 'Set-Cookie': this.cookie(issued.value, SESSION_TTL_MS / 1000), 'Content-Type': 'application/json', 'Cache-Control': 'no-store' })
    res.end(JSON.stringify({ expiresAt: new Date(issued.session.expiresAt).toISOString() }))
    return true
  }

  private cookie (value: string, maxAgeSeconds: number): string {
    return `${this.cookieName}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${this.deps.tls === true ? '; Secure' : ''}`
  }

  private async api (req: http.IncomingMessage, res: http.ServerResponse, name: string, method: string, requestId: string): Promise<true> {
    const read = method === 'GET' || method === 'HEAD'
    if (name === 'overview' && read) { json(res, 200, await this.overview()); return true }
    if (name === 'routes' && read) { json(res, 200, this.routes()); return true }
    if (name === 'traffic' && read) {
      const reports = await this.deps.cluster.collect('traffic') as TrafficReport[]
      json(res, 200, trafficView(reports, this.deps.now()))
      return true
    }
    if (name === 'explain' && method === 'POST') return await this.explain(req, res, requestId)
    if (['overview', 'routes', 'traffic', 'explain'].includes(name)) return notAllowed(res, name === 'explain' ? 'POST' : 'GET, HEAD', requestId)
    sendProblem(res, { status: 404, code: 'no_route', detail: 'no such console endpoint' }, requestId)
    return true
  }

  private async overview (): Promise<unknown> {
    const config = this.deps.config()
    const doc = config.doc
    const store = this.deps.store()
    const started = performance.now()
    const reachable = await Promise.race([
      store.ping().then(() => true, () => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1_000).unref()),
    ])
    const latencyMs = reachable ? Math.round((performance.now() - started) * 100) / 100 : null
    const reports = await this.deps.cluster.collect('traffic')
    const reload = this.deps.lastReload()
    const urls = this.deps.listenerUrls()
    return {
      version: this.version,
      uptimeSeconds: Math.round((this.deps.now() - this.deps.startedAt) / 1000),
      workers: { configured: doc.workers, reporting: Math.max(1, reports.length) },
      config: { file: config.file, hash: config.hash, loadedAt: config.loadedAt.toISOString() },
      lastReload: reload ? {
        at: reload.at.toISOString(),
        ok: reload.ok,
        errors: reload.issues.filter((i) => i.severity === 'error').map((i) => ({ where: where(i), message: i.message, ...(i.fix ? { fix: i.fix } : {}) })),
      } : null,
      listeners: doc.listeners.map((l) => ({
        name: l.name,
        address: l.address,
        url: urls.get(l.name) ?? null,
        tls: l.tls !== undefined,
        clientCertificate: l.tls?.clientCA ? (l.tls.clientCert ?? 'required') : (l.clientCA ? 'forwarded by the proxy' : 'none'),
        mode: l.mode ?? 'forward',
      })),
      store: { kind: store.kind, reachable, latencyMs },
    }
  }

  private routes (): unknown {
    const config = this.deps.config()
    const warnings = config.warnings
    // The chains as written (before defaults are filled in and ${env:..} replaced): what the operator wrote, no secret.
    const written = writtenPolicies(config)
    return {
      file: config.file,
      routes: config.doc.routes.map((route, index) => ({
        name: route.name,
        host: route.match.host ?? null,
        path: route.match.path,
        methods: route.match.methods ?? null,
        listener: route.match.listener ?? null,
        upstream: route.upstream ?? null,
        public: route.public === true,
        chain: (written?.[index] ?? route.policies ?? []).map(describeStep),
        warnings: warnings.filter((w) => w.path[0] === 'routes' && w.path[1] === index).map((w) => ({ where: where(w), message: w.message })),
      })),
      warnings: warnings.filter((w) => !(w.path[0] === 'routes' && typeof w.path[1] === 'number')).map((w) => ({ where: where(w), message: w.message })),
    }
  }

  private async explain (req: http.IncomingMessage, res: http.ServerResponse, requestId: string): Promise<true> {
    let body: unknown
    try { body = await readJson(req, 64 * 1024) } catch {
      sendProblem(res, { status: 400, code: 'bad_request', detail: 'send the request to explain as JSON' }, requestId)
      return true
    }
    const input = body as { method?: unknown, url?: unknown, headers?: unknown, listener?: unknown } | null
    const method = input?.method
    const url = input?.url
    const headerText = input?.headers ?? ''
    if (typeof method !== 'string' || !/^[A-Z]{1,20}$/.test(method) || typeof url !== 'string' || url === '' || typeof headerText !== 'string' ||
      (input?.listener !== undefined && input.listener !== '' && typeof input.listener !== 'string')) {
      sendProblem(res, { status: 400, code: 'bad_request', detail: 'method (GET, POST, ...), url (/path or http(s)://host/path) and headers (Name: value lines) are required' }, requestId)
      return true
    }
    const headers: Array<[string, string]> = []
    for (const line of headerText.split(/\r?\n/)) {
      if (line.trim() === '') continue
      const colon = line.indexOf(':')
      const name = colon > 0 ? line.slice(0, colon).trim() : ''
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
        sendProblem(res, { status: 400, code: 'bad_request', detail: `not a header line (Name: value): ${JSON.stringify(line.slice(0, 60))}` }, requestId)
        return true
      }
      headers.push([name, line.slice(colon + 1).trim()])
    }
    const explain = this.deps.explain
    if (!explain) {
      sendProblem(res, { status: 501, code: 'internal_error', detail: 'explain is not available in this gateway (started without cli/explain)' }, requestId)
      return true
    }
    const listener = typeof input?.listener === 'string' && input.listener !== '' ? input.listener : undefined
    const result = await explain(this.deps.config(), method, url, headers, { store: this.deps.store(), ...(listener ? { listener } : {}) })
    if ('inputError' in result) sendProblem(res, { status: 400, code: 'bad_request', detail: result.inputError }, requestId)
    else json(res, 200, result.report)
    return true
  }
}

/** The `policies` of each route as the file has them, when the file still reads as the loaded routes. */
function writtenPolicies (config: LoadedConfig): PolicyStep[][] | undefined {
  try {
    const raw = parseYaml(readFileSync(config.file, 'utf8')) as { routes?: Array<{ name?: unknown, policies?: unknown }> } | null
    const routes = raw?.routes
    if (!Array.isArray(routes) || routes.length !== config.doc.routes.length) return undefined
    if (routes.some((r, i) => r?.name !== config.doc.routes[i]!.name)) return undefined
    return routes.map((r) => Array.isArray(r.policies) ? r.policies.filter((p): p is PolicyStep => p !== null && typeof p === 'object') : [])
  } catch {
    return undefined
  }
}

function where (issue: ConfigIssue): string {
  if (issue.file === undefined) return issue.path.join('.')
  return `${issue.file}${issue.line !== undefined ? `:${issue.line}${issue.col !== undefined ? `:${issue.col}` : ''}` : ''}`
}

/** Field names that may hold a secret: never shown, not even in a chain summary. */
const SECRET = /secret|password|passwd|token|key|hash|cert|private|credential|salt|users/i

/** One step of a route's chain as drawn: the policy and a short summary of its settings (`rateLimit 100/min by ip`). */
export interface ChainStep { readonly policy: string, readonly summary: string, readonly anyOf?: readonly ChainStep[] }

export function describeStep (step: PolicyStep): ChainStep {
  const [policy, settings] = Object.entries(step)[0] ?? ['?', undefined]
  if (policy === 'anyOf' && Array.isArray(settings)) {
    const members = (settings as PolicyStep[]).map(describeStep)
    return { policy, summary: `anyOf(${members.map((m) => m.policy).join(' | ')})`, anyOf: members }
  }
  return { policy, summary: [policy, ...summarize(settings)].join(' ') }
}

function summarize (settings: unknown): string[] {
  if (settings === null || settings === undefined) return []
  if (typeof settings !== 'object') return [String(settings)]
  if (Array.isArray(settings)) return [settings.filter(isScalar).map(String).join(',')].filter(Boolean)
  const parts: string[] = []
  for (const [name, value] of Object.entries(settings as Record<string, unknown>)) {
    if (SECRET.test(name)) continue
    if (name === 'limit' && isScalar(value)) parts.unshift(String(value))
    else if (isScalar(value)) parts.push(`${name}=${String(value)}`)
    else if (Array.isArray(value) && value.every(isScalar)) parts.push(`${name}=${value.map(String).join(',')}`)
    else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const inner = Object.entries(value as Record<string, unknown>).filter(([k, v]) => !SECRET.test(k) && (isScalar(v) || (Array.isArray(v) && v.every(isScalar))))
      for (const [k, v] of inner) parts.push(`${k}=${Array.isArray(v) ? v.map(String).join(',') : String(v)}`)
    }
  }
  return parts.map((p) => p.length > 60 ? `${p.slice(0, 57)}...` : p)
}

function isScalar (value: unknown): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
}

function notAllowed (res: http.ServerResponse, allow: string, requestId: string): true {
  sendProblem(res, { status: 405, code: 'bad_request', detail: `method not allowed here (allowed: ${allow})`, headers: { Allow: allow } }, requestId)
  return true
}

function crossOrigin (res: http.ServerResponse, requestId: string): true {
  sendProblem(res, { status: 403, code: 'forbidden', detail: 'console calls that change state need the X-Authgate-Console: 1 header and this listener\'s own Origin' }, requestId)
  return true
}
