import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { EventEmitter, once } from 'node:events'
import { Writable } from 'node:stream'
import type { ExecutionContext } from 'ava'
import { stringify } from 'yaml'
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici'
import { Gateway } from '../../gateway/gateway.js'
import { consoleExplain } from '../../cli/explain/console.js'
import { createLogger } from '../../gateway/log.js'
import { Metrics } from '../../gateway/metrics.js'
import { startRedis, uniquePrefix, type RedisServer } from './redis.js'
import { until } from './until.js'

export interface StartOptions {
  /** true: spawn a private redis-server; a string: that Redis URL; default: the memory store. */
  redis?: boolean | string
  env?: Record<string, string>
  /** Written into the temp config folder before load (relative paths). */
  files?: Record<string, string>
  now?: () => number
  /** Reload when the config folder changes (Gateway.start's `watch`). */
  watch?: boolean
}

export interface TestGateway {
  url: string
  urls: Record<string, string>
  adminUrl: string
  dir: string
  configFile: string
  gateway: Gateway
  redis: RedisServer | undefined
  fetch (path: string, init?: Omit<RequestInit, 'dispatcher'> & { listener?: string, dispatcher?: Dispatcher | unknown }): Promise<Response>
  rawLogs (): string
  /**
   * Waits until the access-log line of that request (its `X-Request-Id`) is written, and returns it parsed; rejects
   * after `timeoutMs` (default 5 s) without one. The gateway writes access lines at the end of an event-loop turn,
   * after the answer may already have reached the client: read the log for a request only after this resolved.
   */
  logLine (requestId: string | null | undefined, options?: { timeoutMs?: number }): Promise<AccessLine>
  /** Rewrites the config file and reloads. */
  reload (config?: Record<string, unknown>): ReturnType<Gateway['reload']>
  close (): Promise<void>
}

/** One access-log line as written (gateway/access-log.ts); `raw` (not enumerable) is its exact text. */
export interface AccessLine {
  readonly msg: 'request'
  readonly requestId: string
  readonly listener: string
  readonly method: string
  readonly path: string
  readonly route: string
  readonly status: number
  readonly code: string
  readonly subject?: string
  readonly methods?: string
  readonly remote?: string
  readonly durationMs: number
  readonly raw: string
  readonly [field: string]: unknown
}

/**
 * Captures what a logger writes: the whole text, and each access line by request id as soon as it is written, so a
 * test can wait for one request's line (an event, not a poll). Also used by the policy harness.
 */
export class LogCapture {
  readonly #chunks: string[] = []
  readonly #lines = new Map<string, AccessLine>()
  readonly #events = new EventEmitter()
  #partial = ''
  readonly destination = new Writable({
    write: (chunk: Buffer | string, _enc, done) => { this.#take(chunk.toString()); done() },
  })

  text (): string {
    return this.#chunks.join('')
  }

  async accessLine (requestId: string | null | undefined, timeoutMs = 5_000): Promise<AccessLine> {
    if (typeof requestId !== 'string' || requestId === '') throw new TypeError(`no request id to find an access line for: ${String(requestId)}`)
    const seen = this.#lines.get(requestId)
    if (seen) return seen
    const [line] = await once(this.#events, requestId, { signal: AbortSignal.timeout(timeoutMs) }).catch((error: unknown) => {
      throw new Error(`no access-log line for request ${requestId} within ${timeoutMs} ms`, { cause: error })
    }) as [AccessLine]
    return line
  }

  #take (text: string): void {
    this.#chunks.push(text)
    const parts = (this.#partial + text).split('\n')
    this.#partial = parts.pop() ?? ''
    for (const raw of parts) {
      if (!raw.includes('"msg":"request"')) continue
      const fields = JSON.parse(raw) as Record<string, unknown>
      if (fields.msg !== 'request' || typeof fields.requestId !== 'string') continue
      const line = Object.defineProperty(fields, 'raw', { value: raw, enumerable: false }) as unknown as AccessLine
      this.#lines.set(line.requestId, line)
      this.#events.emit(line.requestId, line)
    }
  }
}

/**
 * Waits for the access line of the request `requestId`, then asserts that none of `secrets` is in that line nor
 * anywhere in the log written so far. The line must exist, so the check cannot pass before the request was logged.
 */
export async function assertNotLogged (t: ExecutionContext, gw: Pick<TestGateway, 'logLine' | 'rawLogs'>, requestId: string | null | undefined, secrets: readonly string[], what = 'the secret'): Promise<AccessLine> {
  const line = await gw.logLine(requestId)
  t.is(line.requestId, String(requestId), 'the access line of that very request')
  for (const secret of secrets) {
    t.true(secret.length > 0, 'an empty secret would prove nothing')
    t.false(line.raw.includes(secret), `${what} is in the request's access line`)
    t.false(gw.rawLogs().includes(secret), `${what} is in the log`)
  }
  return line
}

/** Fills in what a test need not say: a plain listener on port 0, the echo upstream, an admin listener. */
export function withDefaults (config: Record<string, unknown>): Record<string, unknown> {
  return {
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:0' }],
    admin: { address: '127.0.0.1:0', token: '${env:AUTHGATE_ADMIN_TOKEN:-}' },
    upstreams: { demo: { echo: true } },
    ...config,
  }
}

/** An in-process gateway on loopback ports, its config written to a temp folder, its logs captured. */
export async function startGateway (config: Record<string, unknown>, options: StartOptions = {}): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-test-'))
  for (const [name, content] of Object.entries(options.files ?? {})) {
    await mkdir(dirname(join(dir, name)), { recursive: true })
    await writeFile(join(dir, name), content)
  }
  let redis: RedisServer | undefined
  const full = withDefaults(config)
  if (options.redis !== undefined && options.redis !== false) {
    let url: string
    if (options.redis === true) {
      redis = await startRedis()
      url = redis.url
    } else {
      url = options.redis
    }
    full.store = { prefix: uniquePrefix('gw'), ...(full.store as object | undefined), redis: url }
  }
  const configFile = join(dir, 'gateway.yaml')
  await writeFile(configFile, stringify(full))
  const logs = new LogCapture()
  const log = createLogger({ level: 'debug', destination: logs.destination })
  const env = { ...process.env, ...options.env }
  let gateway: Gateway
  try {
    gateway = await Gateway.start({ configFile, env, log, metrics: new Metrics({ defaultMetrics: false }), explain: consoleExplain, ...(options.now ? { now: options.now } : {}), ...(options.watch ? { watch: true } : {}) })
  } catch (error) {
    await redis?.stop()
    await rm(dir, { recursive: true, force: true })
    throw error
  }
  if (redis !== undefined || options.redis === true || typeof options.redis === 'string') {
    // The store connects in the background: tests start once it answers, not on a cold connection.
    await until(() => gateway.currentStore.ping().then(() => true, () => false), { timeoutMs: 5_000, message: 'the store to answer PING' })
      .catch(() => {}) // tests of a store that is down start anyway
  }
  const urls = Object.fromEntries(gateway.listeners.map((l) => [l.name, l.url]))
  const first = gateway.listeners[0]!.url
  const agents: Agent[] = []
  return {
    url: first,
    urls,
    adminUrl: gateway.adminUrl ?? '',
    dir,
    configFile,
    gateway,
    redis,
    async fetch (path, init = {}) {
      const { listener, dispatcher, ...rest } = init
      const base = listener ? urls[listener] : first
      if (!base) throw new Error(`no listener ${listener}`)
      let agent = dispatcher as Dispatcher | undefined
      if (!agent) { const created = new Agent({ keepAliveTimeout: 1000 }); agents.push(created); agent = created }
      return await undiciFetch(base + path, { ...(rest as object), dispatcher: agent }) as unknown as Response
    },
    rawLogs: () => logs.text(),
    logLine: (requestId, options = {}) => logs.accessLine(requestId, options.timeoutMs),
    async reload (next) {
      if (next) await writeFile(configFile, stringify(withDefaults(next)))
      return await gateway.reload()
    },
    async close () {
      await gateway.close(1000)
      await Promise.all(agents.map((a) => a.close().catch(() => {})))
      await redis?.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
