import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseAddress } from './net.js'
import { sendProblem } from './problem.js'
import type { Logger } from './log.js'
import { aggregateMetrics, type Metrics } from './metrics.js'
import type { ClusterLink } from './cluster.js'
import { closeServer } from './listeners.js'

/** What the admin listener needs from the gateway. */
export interface AdminState {
  readonly configHash: string
  readonly loadedAt: Date
  storeHealthy (): boolean
  /** True once shutdown started: /readyz turns 503 so balancers stop sending traffic while requests drain. */
  draining (): boolean
  storeKind (): string
  /** Bearer token for /admin/*; undefined: the admin API answers 401 to everything under /admin/. */
  adminToken (): string | undefined
}

/** Handlers mounted under /admin/ and at other paths by later layers (keys, tokens, JWKS). */
export type AdminRoute = (req: http.IncomingMessage, res: http.ServerResponse, url: URL, requestId: string) => Promise<boolean> | boolean

export class AdminServer {
  readonly routes: AdminRoute[] = []
  /**
   * The console's session in place of the bearer token on /admin/* (the console manages keys through the admin API's
   * own routes): 'ok', 'cross-origin' (a state-changing call without the console's header and own Origin: 403), or
   * undefined (no session).
   */
  sessionAuth: ((req: http.IncomingMessage) => 'ok' | 'cross-origin' | undefined) | undefined
  private server: http.Server | undefined
  url = ''

  constructor (private readonly state: AdminState, private readonly metrics: Metrics, private readonly log: Logger, private readonly cluster?: ClusterLink) {}

  async listen (address: string): Promise<void> {
    const { host, port } = parseAddress(address)
    this.server = http.createServer({ maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 1_000 }, (req, res) => {
      void this.handle(req, res)
    })
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject)
      this.server!.listen(port, host, () => { this.server!.off('error', reject); resolve() })
    })
    const bound = this.server.address() as AddressInfo
    this.url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
  }

  private async handle (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const requestId = randomUUID()
    res.setHeader('X-Request-Id', requestId)
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://admin')
    } catch {
      return sendProblem(res, { status: 400, code: 'bad_request', detail: 'malformed request target' }, requestId)
    }
    try {
      if (req.method === 'GET' && url.pathname === '/healthz') return json(res, 200, { status: 'ok' })
      if (req.method === 'GET' && url.pathname === '/readyz') {
        const draining = this.state.draining()
        const ready = !draining && this.state.storeHealthy()
        return json(res, ready ? 200 : 503, {
          status: draining ? 'draining' : ready ? 'ready' : 'store_unavailable',
          store: this.state.storeKind(),
          config: { hash: this.state.configHash, loadedAt: this.state.loadedAt.toISOString() },
        })
      }
      if (req.method === 'GET' && url.pathname === '/metrics') {
        // With workers, the sum over all of them, whichever worker answers.
        const { contentType, body } = this.cluster?.clustered === true
          ? await aggregateMetrics(await this.cluster.collect('metrics'))
          : { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() + this.metrics.reportedText() }
        res.writeHead(200, { 'Content-Type': contentType })
        res.end(body)
        return
      }
      if (url.pathname.startsWith('/admin/') || url.pathname === '/admin') {
        const session = this.authorized(req) ? 'ok' : this.sessionAuth?.(req)
        if (session === 'cross-origin') {
          return sendProblem(res, { status: 403, code: 'forbidden', detail: 'console calls that change state need the X-Authgate-Console: 1 header and this listener\'s own Origin' }, requestId)
        }
        if (session !== 'ok') {
          return sendProblem(res, { status: 401, code: 'invalid_credentials', detail: 'admin token required', challenges: [{ scheme: 'Bearer', params: { realm: 'authgate-admin' } }] }, requestId)
        }
      }
      for (const route of this.routes) {
        if (await route(req, res, url, requestId)) return
      }
      sendProblem(res, { status: 404, code: 'no_route', detail: 'no such admin endpoint' }, requestId)
    } catch (error) {
      this.log.error({ requestId, err: { message: (error as Error).message } }, 'admin request failed')
      sendProblem(res, { status: 500, code: 'internal_error', detail: 'internal error' }, requestId)
    }
  }

  private authorized (req: http.IncomingMessage): boolean {
    const token = this.state.adminToken()
    const header = req.headers.authorization ?? ''
    const match = /^Bearer +(\S+)$/i.exec(header)
    if (!token || !match) return false
    // Hash both sides: equal lengths for timingSafeEqual, and no length oracle.
    const a = createHash('sha256').update(match[1]!).digest()
    const b = createHash('sha256').update(token).digest()
    return timingSafeEqual(a, b)
  }

  async close (): Promise<void> {
    if (this.server) await closeServer(this.server, 1_000)
  }
}

export function json (res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' })
  res.end(text)
}

/** Reads a small JSON body (admin API); throws on malformed input or more than maxBytes. */
export async function readJson (req: http.IncomingMessage, maxBytes = 64 * 1024): Promise<unknown> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of req) {
    total += (chunk as Buffer).length
    if (total > maxBytes) throw new RangeError('body too large')
    chunks.push(chunk as Buffer)
  }
  if (total === 0) return {}
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}
