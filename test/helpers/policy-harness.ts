/**
 * The one harness for unit tests of a policy (no gateway, no sockets): PolicyDeps and a RequestContext built by
 * hand, a fake clock, a Store wrapper that counts calls and can fail, the schema's defaults applied as the loader
 * applies them, and a node:http peer (an IdP, a JWKS or introspection endpoint). `policies/<name>/fixtures/` keep
 * only what belongs to one policy (tokens, keys, an IdP) and re-export this.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TSchema } from '@sinclair/typebox'
import { validate } from '../../gateway/config/validate.js'
import { StoreUnavailableError } from '../../gateway/errors.js'
import { createLogger, type Logger } from '../../gateway/log.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import type { Store } from '../../gateway/store/types.js'
import { policies } from '../../policies/index.js'
import type { Identity, ListenerInfo, PolicyDefinition, PolicyDeps, PolicyInstance, RequestContext } from '../../policies/types.js'
import { FakeClock } from './clock.js'
import { LogCapture } from './gateway.js'

export { FakeClock }

/** The schema's defaults applied (to a copy) as the config loader applies them; a schema error fails loudly. */
export function withDefaults<T> (schema: TSchema, value: unknown): T {
  const copy = structuredClone(value)
  const issues = validate(schema, copy, [])
  if (issues.length > 0) throw new Error(`fixture does not match the schema: ${JSON.stringify(issues)}`)
  return copy as T
}

/** Validates a policy config against its schema (defaults applied, as the loader does), then creates the policy. */
export async function build<C> (definition: PolicyDefinition<C>, config: unknown, deps: PolicyDeps): Promise<PolicyInstance> {
  return await definition.create(withDefaults<C>(definition.schema as TSchema, config), deps)
}

export interface CountingStore extends Store {
  /** Calls per method name. */
  readonly calls: Record<string, number>
  /** Total calls to the methods given (all data methods when none given). */
  count (...methods: string[]): number
  /** While true every data call rejects with StoreUnavailableError, as a dead Redis would. */
  failing: boolean
}

const DATA_METHODS = ['get', 'set', 'setIfAbsent', 'delete', 'getHash', 'setHash', 'addToSet', 'removeFromSet', 'members', 'increment', 'reserve', 'release', 'rateLimit', 'publish']

/** Wraps a real store: counts each call and can be made to fail. */
export function countingStore (inner: Store): CountingStore {
  const calls: Record<string, number> = {}
  let failing = false
  return new Proxy(inner, {
    get (target, prop) {
      if (prop === 'calls') return calls
      if (prop === 'failing') return failing
      if (prop === 'count') {
        return (...methods: string[]) => (methods.length > 0 ? methods : DATA_METHODS).reduce((sum, m) => sum + (calls[m] ?? 0), 0)
      }
      const value = Reflect.get(target, prop) as unknown
      if (typeof value !== 'function') return value
      const name = String(prop)
      return (...args: unknown[]) => {
        calls[name] = (calls[name] ?? 0) + 1
        if (failing && DATA_METHODS.includes(name)) return Promise.reject(new StoreUnavailableError(`store ${name} failed (test)`))
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
    set (_target, prop, value) {
      if (prop === 'failing') { failing = Boolean(value); return true }
      return false
    },
  }) as CountingStore
}

export interface TestDeps extends PolicyDeps {
  /** Everything logged so far, for asserting that no secret is in it (policies log synchronously). */
  logged (): string
}

export interface DepsOptions {
  /** The gateway.yaml document (apiKeys, jwtProviders, users...). */
  readonly config?: Record<string, unknown>
  /** `now` for the policy and the default store. Default: a fake clock at the real time now. */
  readonly clock?: FakeClock
  /** Overrides `clock`: any `() => number` (a hand-rolled clock, `Date.now`). */
  readonly now?: () => number
  /** Default: a memory store on the same clock. */
  readonly store?: Store
  readonly baseDir?: string
  readonly routeName?: string
  readonly listeners?: ListenerInfo[]
  /** One generation's shared cache: pass the same Map to share across create() calls. */
  readonly shared?: Map<string, unknown>
  /** Default: a debug-level logger whose lines `logged()` returns. */
  readonly log?: Logger
  /** The registry lent to policies (which steps authenticate, which read a bearer token). Default: the real one, as the gateway lends it. */
  readonly policies?: ReadonlyMap<string, PolicyDefinition>
}

const PLAIN: ListenerInfo = { name: 'local', mode: 'forward', tls: false, clientCA: false, clientCert: 'none' }

/** PolicyDeps for one configuration generation: `shared` builds once per name, as the loader's does. */
export function makeDeps (options: DepsOptions = {}): TestDeps {
  const now = options.now ?? (options.clock ?? new FakeClock()).now
  const shared = options.shared ?? new Map<string, unknown>()
  const capture = new LogCapture()
  return {
    store: options.store ?? new MemoryStore({ now }),
    realm: 'authgate',
    config: options.config ?? {},
    route: { name: options.routeName ?? 'test', upstream: 'demo', listeners: options.listeners ?? [PLAIN], maxBodyBytes: 1 << 20 },
    policies: options.policies ?? policies,
    baseDir: options.baseDir ?? process.cwd(),
    log: options.log ?? createLogger({ level: 'debug', destination: capture.destination }),
    logged: () => capture.text(),
    shared<T> (name: string, build: () => T): T {
      if (!shared.has(name)) shared.set(name, build())
      return shared.get(name) as T
    },
    now,
  }
}

/** A debug-level logger whose lines are kept, for a test that passes its own `log` and asserts on what it wrote. */
export function quietLogger (): { log: Logger, lines: () => string } {
  const capture = new LogCapture()
  return { log: createLogger({ level: 'debug', destination: capture.destination }), lines: () => capture.text() }
}

/** An authenticated identity with the given parts, as a step after authentication sees it. */
export function identity (parts: Partial<Identity> = {}): Partial<Identity> {
  return { subject: 'alice', client: 'web', methods: ['apiKey'], scopes: [], claims: {}, ...parts }
}

export interface ContextOptions {
  /**
   * Field lines in order, a name may repeat (`headerValues` returns each). `headers` is Node's joined view:
   * duplicates of Authorization, Host, Content-Type... keep the first, others are joined with `, `.
   * A Host line (from `authority`) is added when none is given, and Content-Length for a non-empty body.
   */
  readonly headers?: ReadonlyArray<readonly [string, string]>
  /** The raw query string, without `?`. */
  readonly query?: string
  readonly method?: string
  readonly path?: string
  /** The request-target exactly as sent (path and query); wins over `path` and `query`. */
  readonly target?: string
  readonly scheme?: 'http' | 'https'
  /** The Host when the field lines carry none (default `127.0.0.1`); a Host line wins, as in the gateway. */
  readonly authority?: string
  readonly clock?: FakeClock
  /** Overrides `clock`: a fixed time in ms, or any `() => number`. */
  readonly now?: number | (() => number)
  /** body() rejects with this (e.g. the chain's PayloadTooLargeError). */
  readonly bodyError?: Error
  readonly remoteAddress?: string
  /** What earlier steps established (for steps after authentication). */
  readonly identity?: Partial<Identity>
  readonly route?: string
  readonly body?: string | Buffer
}

// Node's IncomingMessage.headers keeps the first of these when a request repeats them (and joins Cookie with `; `).
const FIRST_WINS = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization',
  'referer', 'retry-after', 'server', 'user-agent'])

/** A request as the gateway would present it to a policy; `bodyReads()` counts the calls to `body()`. */
export function makeContext (options: ContextOptions = {}): RequestContext & { bodyReads: () => number } {
  const body = options.body === undefined ? Buffer.alloc(0) : Buffer.from(options.body)
  const lines: Array<[string, string]> = (options.headers ?? []).map(([name, value]) => [name.toLowerCase(), value])
  const host = lines.find(([name]) => name === 'host')?.[1]
  const authority = host ?? options.authority ?? '127.0.0.1'
  if (host === undefined) lines.unshift(['host', authority])
  if (body.length > 0 && !lines.some(([name]) => name === 'content-length' || name === 'transfer-encoding')) {
    lines.push(['content-length', String(body.length)])
  }
  const headers: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [name, value] of lines) {
    const held = headers[name]
    if (held === undefined) headers[name] = value
    else if (!FIRST_WINS.has(name)) headers[name] = `${held}${name === 'cookie' ? '; ' : ', '}${value}`
  }
  const q = options.target?.indexOf('?') ?? -1
  const path = options.target === undefined ? options.path ?? '/v1/orders' : q === -1 ? options.target : options.target.slice(0, q)
  const rawQuery = options.target === undefined ? options.query ?? '' : q === -1 ? '' : options.target.slice(q + 1)
  const now = typeof options.now === 'number' ? ((ms: number) => () => ms)(options.now) : options.now ?? (options.clock ?? new FakeClock()).now
  const address = options.remoteAddress ?? '127.0.0.1'
  let reads = 0
  return {
    requestId: 'test-request',
    method: options.method ?? 'GET',
    path,
    rawTarget: options.target ?? (rawQuery ? `${path}?${rawQuery}` : path),
    rawQuery,
    query: new URLSearchParams(rawQuery),
    scheme: options.scheme ?? 'http',
    authority,
    headers,
    headerValues: (name: string) => lines.filter(([n]) => n === name).map(([, v]) => v),
    remoteAddress: address,
    peerAddress: address,
    listener: 'local',
    route: options.route ?? 'test',
    upstream: 'demo',
    peerCert: undefined,
    peerCertRejected: false,
    identity: options.identity ?? {},
    body: async () => {
      reads++
      if (options.bodyError) throw options.bodyError
      return body
    },
    now,
    bodyReads: () => reads,
  }
}

export interface TestServer {
  readonly url: string
  readonly server: Server
  close (): Promise<void>
}

/** A node:http server on 127.0.0.1, port 0 (an IdP, a JWKS or an introspection endpoint). */
export async function listen (handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
