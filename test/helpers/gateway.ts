import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Writable } from 'node:stream'
import { stringify } from 'yaml'
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici'
import { Gateway } from '../../gateway/gateway.js'
import { createLogger } from '../../gateway/log.js'
import { Metrics } from '../../gateway/metrics.js'
import { startRedis, uniquePrefix, type RedisServer } from './redis.js'

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
  /** Rewrites the config file and reloads. */
  reload (config?: Record<string, unknown>): ReturnType<Gateway['reload']>
  close (): Promise<void>
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
  const logs: string[] = []
  const destination = new Writable({ write (chunk, _enc, done) { logs.push(chunk.toString()); done() } })
  const log = createLogger({ level: 'debug', destination })
  const env = { ...process.env, ...options.env }
  let gateway: Gateway
  try {
    gateway = await Gateway.start({ configFile, env, log, metrics: new Metrics({ defaultMetrics: false }), ...(options.now ? { now: options.now } : {}), ...(options.watch ? { watch: true } : {}) })
  } catch (error) {
    await redis?.stop()
    await rm(dir, { recursive: true, force: true })
    throw error
  }
  if (redis !== undefined || options.redis === true || typeof options.redis === 'string') {
    // The store connects in the background: tests start once it answers, not on a cold connection.
    const deadline = Date.now() + 5_000
    while (Date.now() < deadline && !await gateway.currentStore.ping().then(() => true, () => false)) {
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
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
    rawLogs: () => logs.join(''),
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
