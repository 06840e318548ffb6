import type { BlockList } from 'node:net'
import { policies } from '../policies/index.js'
import type { CacheReporter, CookieOwner, MetricsReporter, PolicyDeps, PolicyInstance, ReportedMetric, ReservedAnswer, ReservedEndpoints, ReservedRequest, StepPosition } from '../policies/types.js'
import type { Step } from './pipeline/chain.js'
import type { LoadedConfig, RouteConfig, PolicyStep } from './config/types.js'
import { routeInfo, toRouteSpec } from './config/load.js'
import { parseDuration, parseSize } from './config/units.js'
import { identityHeaders, type IdentityHeaders } from './identity.js'
import type { Logger } from './log.js'
import { parseCidrs } from './net.js'
import { decisionTrust, type DecisionTrust } from './decision-mode/trust.js'
import { closeUpstreams, createUpstreams, decisionOnlyUpstream, type Upstream } from './upstream.js'
import { compileRoutes, type RouteSpec, type RouteTable } from './router/index.js'
import type { Store } from './store/types.js'

export interface CompiledRoute extends RouteSpec {
  readonly config: RouteConfig
  readonly upstream: Upstream
  readonly public: boolean
  readonly steps: readonly Step[]
  readonly readsBody: boolean
  /** Credential headers consumed by the chain: not forwarded. */
  readonly consumed: ReadonlySet<string>
  /** The same, comma-separated (decision mode tells Envoy to remove them). */
  readonly consumedList: string
  readonly maxBodyBytes: number
  /** Bodies up to this size are read before the upstream request starts (a slow client holds no upstream connection). */
  readonly bufferBodyBytes: number
  /** Longest pause in a request body; 0: none. */
  readonly bodyIdleTimeoutMs: number
  readonly maxHeaderBytes: number
  readonly maxHeaderCount: number
  readonly preflightPublic: boolean
  /** On a `preflight: public` route, what a CORS preflight runs: the steps that need no caller (rate limits by ip...). */
  readonly preflightSteps: readonly Step[]
  /** Headers a `Connection` token may not remove on this route: its credentials and rate-limit keys. */
  readonly connectionProtected: ReadonlySet<string>
  readonly stripPrefix: string | undefined
}

export interface GenerationDeps {
  readonly store: Store
  readonly log: Logger
  readonly now: () => number
}

/**
 * One configuration generation, compiled: route table, policy chains, upstream pools. Swapped atomically on
 * reload; requests in flight keep the generation they started with.
 */
export class Generation {
  private constructor (
    readonly config: LoadedConfig,
    readonly table: RouteTable<CompiledRoute>,
    readonly upstreams: Map<string, Upstream>,
    readonly identity: IdentityHeaders,
    readonly trustProxies: BlockList,
    readonly trustsAnyProxy: boolean,
    readonly realm: string,
    /** Decision listeners (`mode: decide`) by name: who may ask, and how forwarded certificates are verified. */
    readonly decisionListeners: ReadonlyMap<string, DecisionTrust>,
    private readonly instances: PolicyInstance[],
    private readonly shared: ReadonlyMap<string, unknown>,
  ) {
    const owned = new Set<string>()
    for (const value of shared.values()) {
      const owner = value as Partial<CookieOwner> | undefined
      if (typeof owner?.ownedCookies === 'function') for (const name of owner.ownedCookies()) owned.add(name)
    }
    this.ownedCookies = [...owned]
  }

  /** Cookies of the gateway's own (sessions): never forwarded upstream. Usually none. */
  readonly ownedCookies: readonly string[]

  /** Hit and miss counts of the caches policies share (shared objects that are a CacheReporter): /metrics. */
  cacheStats (): Array<{ cache: string, hits: number, misses: number }> {
    const out: Array<{ cache: string, hits: number, misses: number }> = []
    for (const value of this.shared.values()) {
      const reporter = value as Partial<CacheReporter> | undefined
      if (typeof reporter?.reportCaches !== 'function') continue
      for (const { cache, hits, misses } of reporter.reportCaches()) out.push({ cache, hits, misses })
    }
    return out
  }

  /** Whether any policy serves endpoints under `/.authgate/` (sessions): front doors ask before deciding. */
  get servesReserved (): boolean {
    for (const value of this.shared.values()) if (typeof (value as Partial<ReservedEndpoints> | undefined)?.serveReserved === 'function') return true
    return false
  }

  /** The answer of the policy that serves this `/.authgate/` request, or undefined (it goes on to routing). */
  async serveReserved (req: ReservedRequest, now: number): Promise<ReservedAnswer | undefined> {
    for (const value of this.shared.values()) {
      const endpoints = value as Partial<ReservedEndpoints> | undefined
      if (typeof endpoints?.serveReserved !== 'function') continue
      const answer = await endpoints.serveReserved(req, now)
      if (answer !== undefined) return answer
    }
    return undefined
  }

  /** Series that shared objects count themselves (sessions: logins, refreshes): /metrics, at scrape time. */
  reportedMetrics (): ReportedMetric[] {
    const out: ReportedMetric[] = []
    for (const value of this.shared.values()) {
      const reporter = value as Partial<MetricsReporter> | undefined
      if (typeof reporter?.reportMetrics === 'function') out.push(...reporter.reportMetrics())
    }
    return out
  }

  static async build (config: LoadedConfig, deps: GenerationDeps): Promise<Generation> {
    const doc = config.doc
    const upstreams = createUpstreams(doc.upstreams, config.baseDir)
    const shared = new Map<string, unknown>()
    const instances: PolicyInstance[] = []
    try {
      const routes: CompiledRoute[] = []
      for (const [index, route] of doc.routes.entries()) {
        const info = routeInfo(doc, route)
        const routeDeps: PolicyDeps = {
          store: deps.store,
          realm: doc.realm,
          config: doc,
          route: info,
          policies,
          baseDir: config.baseDir,
          log: deps.log,
          now: deps.now,
          shared<T> (name: string, build: () => T): T {
            if (!shared.has(name)) shared.set(name, build())
            return shared.get(name) as T
          },
        }
        const make = async (step: PolicyStep, position: StepPosition) => {
          const [key, policyConfig] = Object.entries(step)[0]!
          const definition = policies.get(key)!
          const instance = await definition.create(policyConfig, { ...routeDeps, step: position })
          instances.push(instance)
          return { key, instance, authenticates: definition.authenticates }
        }
        const steps: Step[] = []
        for (const [s, step] of (route.policies ?? []).entries()) {
          if ('anyOf' in step) {
            const members = []
            for (const [m, member] of (step.anyOf as PolicyStep[]).entries()) members.push(await make(member, { index: s, member: m }))
            steps.push({ kind: 'anyOf', members })
          } else {
            steps.push({ kind: 'policy', ...(await make(step, { index: s })) })
          }
        }
        const all = steps.flatMap((s) => s.kind === 'policy' ? [s.instance] : s.members.map((m) => m.instance))
        const limits = { ...doc.limits, ...route.limits }
        routes.push({
          ...toRouteSpec(route, index),
          config: route,
          upstream: route.upstream === undefined ? decisionOnlyUpstream(route.name) : upstreams.get(route.upstream)!,
          public: route.public === true,
          steps,
          readsBody: all.some((i) => i.readsBody === true),
          consumed: new Set(all.flatMap((i) => i.credentialHeaders ?? [])),
          consumedList: [...new Set(all.flatMap((i) => i.credentialHeaders ?? []))].join(','),
          maxBodyBytes: info.maxBodyBytes,
          bufferBodyBytes: parseSize(limits.bufferBodyBytes),
          bodyIdleTimeoutMs: parseDuration(limits.bodyIdleTimeout),
          maxHeaderBytes: parseSize(limits.maxHeaderBytes),
          maxHeaderCount: limits.maxHeaderCount ?? 200,
          preflightPublic: route.cors?.preflight === 'public',
          preflightSteps: steps.filter((s) => s.kind === 'policy' && !s.authenticates && s.instance.anonymous === true),
          connectionProtected: new Set(all.flatMap((i) => [...(i.credentialHeaders ?? []), ...(i.keyHeaders ?? [])])),
          stripPrefix: route.stripPrefix,
        })
      }
      const { list } = parseCidrs(doc.trustProxies)
      const decisionListeners = new Map(doc.listeners.filter((l) => l.mode === 'decide').map((l) => [l.name, decisionTrust(l, config.baseDir, deps.now)]))
      return new Generation(config, compileRoutes(routes), upstreams, identityHeaders(doc.identity), list,
        doc.trustProxies.length > 0, doc.realm, decisionListeners, instances, shared)
    } catch (error) {
      await Promise.all(instances.map(async (i) => i.close?.()))
      await closeUpstreams(upstreams)
      throw error
    }
  }

  get headersTimeoutMs (): number { return parseDuration(this.config.doc.limits.headersTimeout) }
  get requestTimeoutMs (): number { return parseDuration(this.config.doc.limits.requestTimeout) }
  get maxHeaderBytes (): number {
    return Math.max(parseSize(this.config.doc.limits.maxHeaderBytes),
      ...this.table.routes.map((r) => r.maxHeaderBytes))
  }

  async close (): Promise<void> {
    await Promise.all(this.instances.map(async (i) => { try { await i.close?.() } catch {} }))
    await closeUpstreams(this.upstreams)
  }
}
