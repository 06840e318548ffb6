import { createHash } from 'node:crypto'
import { Rejection, StoreUnavailableError } from '../../gateway/errors.js'
import type { Rate } from '../../gateway/config/units.js'
import type { Logger } from '../../gateway/log.js'
import { clientKey } from '../../gateway/net.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import type { GcraCheck, GcraResult, Store } from '../../gateway/store/types.js'
import type { Identity, Outcome, PolicyDeps, RequestContext } from '../types.js'
import { Leases, leaseCap, type LimitView } from './lease.js'

/** What one counter is kept for. */
export type By =
  | { readonly kind: 'client' | 'subject' | 'ip' | 'route' }
  | { readonly kind: 'header', readonly name: string }
  | { readonly kind: 'claim', readonly name: string }

/** RFC 9110 §5.6.2 token: a header field name. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** Printable ASCII without space: a claim name that can live in a structured-field string. */
const CLAIM_NAME = /^[\x21-\x7e]+$/
/** Key parts kept readable in the store; anything else is hashed (long, or characters that do not belong in keys). */
const PLAIN_VALUE = /^[A-Za-z0-9._:-]{1,64}$/

export function parseBy (text: string): By | undefined {
  if (text === 'client' || text === 'subject' || text === 'ip' || text === 'route') return { kind: text }
  if (text.startsWith('header:') && TOKEN.test(text.slice(7))) return { kind: 'header', name: text.slice(7).toLowerCase() }
  if (text.startsWith('claim:') && CLAIM_NAME.test(text.slice(6))) return { kind: 'claim', name: text.slice(6) }
  return undefined
}

/** Keys that only an authenticated caller has: meaningless on a public route or before authentication. */
export function needsIdentity (by: By): boolean {
  return by.kind === 'client' || by.kind === 'subject' || by.kind === 'claim'
}

/** With onError: allow, how long requests use the local counters without trying an unhealthy store again. */
const PROBE_INTERVAL_MS = 1000

/** One rateLimit step, compiled. */
export interface LimitSpec {
  /** `name`, else the `by` text: the header item is "<route>-<label>", the key `rl:{<route>}:<label>:<value>`. */
  readonly label: string
  readonly by: By
  /** `limit`; with `tiers`, the rate for callers whose tier is unknown. */
  readonly rate?: Rate
  /** Set for `tier: true`: rates by tier name (rateLimitTiers). */
  readonly tiers: ReadonlyMap<string, Rate> | undefined
  readonly burst?: number
  /** Cells one store call may take for later requests of the same key (1: one round trip per request). */
  readonly lease: number
}

export interface Member {
  evaluate (ctx: RequestContext): Promise<Outcome>
  /** Every limit of the member's batch (they run together). */
  readonly specs: readonly LimitSpec[]
}

/** The per-instance counters used while the store is down and `store.onError` is `allow`. One per configuration generation. */
class Fallback {
  readonly store: MemoryStore
  degraded = false
  /** While degraded and the store reports itself unhealthy, requests skip it until then (ms, real time). */
  retryAt = 0
  constructor (now: () => number) {
    this.store = new MemoryStore({ now })
  }
}

/**
 * The rate limits of one route. Consecutive rateLimit steps form a batch; the first step of a batch to run for a
 * request makes one store call for every limit of the batch and the others reuse its answer (kept per request).
 */
export class RouteLimiter {
  readonly #route: string
  readonly #store: Store
  readonly #allow: boolean
  readonly #fallback: Fallback
  readonly #log: Logger
  readonly #now: () => number
  readonly #batches = new Map<number, Batch>()
  readonly #unknownTiers = new Set<string>()

  constructor (route: string, deps: PolicyDeps) {
    this.#route = route
    this.#store = deps.store
    this.#allow = (deps.config.store as { onError?: string } | undefined)?.onError === 'allow'
    this.#fallback = deps.shared('rateLimit:fallback', () => new Fallback(() => deps.now()))
    this.#log = deps.log
    this.#now = () => deps.now()
  }

  /** Registers a step; steps with the same batch number are evaluated in one store call. */
  add (batch: number, spec: LimitSpec): Member {
    let members = this.#batches.get(batch)
    if (!members) this.#batches.set(batch, members = new Batch(this))
    members.specs.push(spec)
    return { evaluate: (ctx) => members.evaluate(ctx), specs: members.specs }
  }

  get route (): string { return this.#route }

  /** The clock leases expire by (the gateway's; tests pass a fake one). */
  get now (): () => number { return this.#now }

  /** The rate that applies to this caller, or undefined when a tier limit has none for them. */
  rateFor (spec: LimitSpec, identity: Readonly<Partial<Identity>>): Rate | undefined {
    if (!spec.tiers) return spec.rate
    const tier = identity.tier
    const byTier = tier !== undefined ? spec.tiers.get(tier) : undefined
    if (byTier) return byTier
    if (tier !== undefined && !this.#unknownTiers.has(tier) && this.#unknownTiers.size < 100) {
      this.#unknownTiers.add(tier)
      this.#log.warn({ route: this.#route, tier }, 'rate-limit tier is not in rateLimitTiers: the limit\'s own rate, else the default tier, else 403 applies')
    }
    return spec.rate ?? spec.tiers.get('default')
  }

  /** One round trip for all checks; on a store failure with onError: allow, the per-instance counters answer. */
  async check (checks: readonly GcraCheck[]): Promise<GcraResult[]> {
    const fallback = this.#fallback
    // A stalled store costs every request the full store timeout: skip it for a moment, then probe again.
    if (this.#allow && fallback.degraded && !this.#store.healthy && Date.now() < fallback.retryAt) {
      return await fallback.store.rateLimit(checks)
    }
    try {
      const results = await this.#store.rateLimit(checks)
      if (fallback.degraded) {
        fallback.degraded = false
        this.#log.info('store answers again: rate limits are shared across instances again')
      }
      return results
    } catch (error) {
      if (!this.#allow || !(error instanceof StoreUnavailableError)) throw error
      fallback.retryAt = Date.now() + PROBE_INTERVAL_MS
      if (!fallback.degraded) {
        fallback.degraded = true
        this.#log.warn({ err: { message: error.message } }, 'store unavailable: rate limits fall back to per-instance counters (store.onError: allow)')
      }
      return await this.#fallback.store.rateLimit(checks)
    }
  }

  async close (): Promise<void> {
    await this.#fallback.store.close()
  }
}

interface Pending {
  readonly outcome: Promise<Outcome>
  /** The first step of the batch to finish returns the outcome (headers, 429); the others pass silently. */
  reported: boolean
}

/** One limit of a request, as compiled for its counter key. */
interface Limit {
  readonly id: string
  readonly rate: Rate
  readonly check: GcraCheck
  readonly lease: number
}

/** Counter keys whose compiled state is kept per batch; past this the oldest is dropped (rebuilt when it comes back). */
const MAX_KEY_STATES = 10_000

/**
 * What one counter key (one set of keys, for a batch of several limits) needs per request, built when the key is
 * first seen: the checks (frozen: the store may encode them once), the RateLimit-Policy value, and the last allowed
 * outcome with the values its RateLimit header shows, reused while they do not change.
 */
class KeyState {
  readonly limits: readonly Limit[]
  readonly checks: readonly GcraCheck[]
  readonly leased: boolean
  readonly policy: string
  /** `"<id>";r=` per limit, for the RateLimit value. */
  readonly #prefixes: readonly string[]
  #remaining: number[] = []
  #resetSec: number[] = []
  #allowed: Outcome | undefined

  constructor (limits: Limit[]) {
    this.limits = limits
    this.checks = Object.freeze(limits.map((l) => l.check))
    this.leased = limits.some((l) => leaseCap(l.lease, l.check.burst) > 1)
    this.policy = limits.map((l) => `${quoted(l.id)};q=${l.rate.count};w=${Math.ceil(l.rate.windowMs / 1000)}`).join(', ')
    this.#prefixes = limits.map((l) => `${quoted(l.id)};r=`)
  }

  /** Whether this state was built for these rates (a tier limit: the caller's tier may change). */
  matches (rates: readonly Rate[]): boolean {
    for (let i = 0; i < rates.length; i++) if (this.limits[i]!.rate !== rates[i]) return false
    return true
  }

  /** RateLimit-Policy and RateLimit on every answer; 429 with Retry-After when refused. */
  outcome (views: readonly LimitView[], allowed: boolean): Outcome {
    if (!allowed) return refusedOutcome(this.limits, this.policy, this.#state(views), views)
    const cached = this.#allowed
    if (cached !== undefined && this.#same(views)) return cached
    const remaining: number[] = []
    const resetSec: number[] = []
    for (const view of views) {
      remaining.push(view.remaining)
      resetSec.push(Math.ceil(view.resetMs / 1000))
    }
    this.#remaining = remaining
    this.#resetSec = resetSec
    // Shared by the requests that see the same values: the chain copies the headers, nothing writes to them.
    return (this.#allowed = Object.freeze({
      authenticated: false,
      responseHeaders: Object.freeze({ 'RateLimit-Policy': this.policy, RateLimit: this.#state(views) }),
    }))
  }

  #same (views: readonly LimitView[]): boolean {
    for (let i = 0; i < views.length; i++) {
      const view = views[i]!
      if (view.remaining !== this.#remaining[i] || Math.ceil(view.resetMs / 1000) !== this.#resetSec[i]) return false
    }
    return true
  }

  #state (views: readonly LimitView[]): string {
    let state = ''
    for (let i = 0; i < views.length; i++) {
      const view = views[i]!
      if (i > 0) state += ', '
      state += `${this.#prefixes[i]!}${view.remaining};t=${Math.ceil(view.resetMs / 1000)}`
    }
    return state
  }
}

class Batch {
  readonly specs: LimitSpec[] = []
  readonly #limiter: RouteLimiter
  readonly #pending = new WeakMap<RequestContext, Pending>()
  /** Local stocks, used when a limit of the batch has `lease` > 1. */
  readonly #leases: Leases
  readonly #states = new Map<string, KeyState>()

  constructor (limiter: RouteLimiter) {
    this.#limiter = limiter
    this.#leases = new Leases(limiter.now, (checks) => limiter.check(checks))
  }

  evaluate (ctx: RequestContext): Promise<Outcome> {
    // A batch of one step reports its own outcome: nothing to share with other steps.
    if (this.specs.length === 1) return this.#run(ctx)
    return this.#shared(ctx)
  }

  async #shared (ctx: RequestContext): Promise<Outcome> {
    let pending = this.#pending.get(ctx)
    if (!pending) {
      pending = { outcome: this.#run(ctx), reported: false }
      this.#pending.set(ctx, pending)
    }
    const outcome = await pending.outcome
    if (pending.reported) return { authenticated: false }
    pending.reported = true
    return outcome
  }

  async #run (ctx: RequestContext): Promise<Outcome> {
    const state = this.#stateFor(ctx)
    if (state === undefined) return Rejection.forbidden('forbidden', 'no rate limit is configured for this client\'s tier')
    if (state.leased) {
      const admission = await this.#leases.admit(state.limits)
      return state.outcome(admission.views, admission.allowed)
    }
    const results = await this.#limiter.check(state.checks)
    let allowed = true
    for (const result of results) if (!result.allowed) allowed = false
    if (allowed) return state.outcome(results, true)
    const views = results.map((result, i) => {
      // A refused request changed no counter: report the allowed limits as they stand, without this request.
      if (!result.allowed) return result
      const { burst, emissionIntervalMs } = state.checks[i]!
      return { ...result, remaining: Math.min(burst, result.remaining + 1), resetMs: Math.max(0, result.resetMs - emissionIntervalMs) }
    })
    return state.outcome(views, false)
  }

  /** The compiled limits of this request's counter keys, or undefined when a tier limit has no rate for the caller. */
  #stateFor (ctx: RequestContext): KeyState | undefined {
    const specs = this.specs
    const rates: Rate[] = []
    let id = ''
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i]!
      const rate = this.#limiter.rateFor(spec, ctx.identity)
      if (!rate) return undefined
      rates.push(rate)
      // Values are plain, `#hex` or `@ip:...`: never a NUL, so the joined form names one set of keys.
      id = i === 0 ? keyValue(spec.by, ctx) : `${id}\u0000${keyValue(spec.by, ctx)}`
    }
    const states = this.#states
    let state = states.get(id)
    if (state !== undefined && state.matches(rates)) return state
    const values = specs.length === 1 ? [id] : id.split('\u0000')
    const route = this.#limiter.route
    state = new KeyState(specs.map((spec, i) => {
      const rate = rates[i]!
      const check: GcraCheck = Object.freeze({
        key: `rl:{${route}}:${spec.label}:${values[i]!}`,
        emissionIntervalMs: rate.windowMs / rate.count,
        burst: spec.burst ?? rate.count,
      })
      return { id: `${route}-${spec.label}`, rate, check, lease: spec.lease }
    }))
    if (states.size >= MAX_KEY_STATES && !states.has(id)) states.delete(states.keys().next().value!)
    states.set(id, state)
    return state
  }
}

/** A refused request: its RateLimit headers, and Retry-After from the limits that refused it. */
function refusedOutcome (limits: readonly Limit[], policy: string, state: string, results: readonly LimitView[]): Outcome {
  const refused = limits.filter((_limit, i) => !results[i]!.allowed)
  const retryAfterMs = Math.max(...results.map((r) => r.retryAfterMs))
  const retryAfter = Math.max(1, Math.ceil(retryAfterMs / 1000))
  return Rejection.tooManyRequests(
    `rate limit ${refused.map((l) => `"${l.id}"`).join(', ')} exceeded; retry in ${retryAfter} s`,
    { 'RateLimit-Policy': policy, RateLimit: state, 'Retry-After': String(retryAfter) },
  )
}

/**
 * The counter's value part: readable when short and plain, else a truncated SHA-256 (`#...`). A missing header or
 * claim counts against the client address (`@ip:...`); neither `#` nor `@` can start a readable value, so the three
 * forms never collide.
 */
export function keyValue (by: By, ctx: RequestContext): string {
  const identity = ctx.identity
  let value: string | undefined
  switch (by.kind) {
    case 'route': return '-'
    case 'ip': return addressValue(ctx.remoteAddress)
    case 'client': value = identity.client || identity.subject || undefined; break
    case 'subject': value = identity.subject || undefined; break
    case 'header': {
      const values = ctx.headerValues(by.name)
      value = values.length > 0 ? values.join(', ') : undefined
      break
    }
    case 'claim': {
      const claim = identity.claims?.[by.name]
      value = claim === undefined || claim === null ? undefined : typeof claim === 'string' ? claim : JSON.stringify(claim)
      break
    }
  }
  if (value === undefined || value === '') return `@ip:${addressValue(ctx.remoteAddress)}`
  return encode(value)
}

/**
 * A client address as counted: an IPv6 address by its /64 (clientKey: one client may use any address in it), an
 * IPv4-mapped one as the IPv4 address. `2001:db8:1:2::/64` is readable as it is (hex, `:` and `/` only).
 */
function addressValue (address: string): string {
  const key = clientKey(address)
  return key.endsWith('::/64') ? key : encode(key)
}

function encode (value: string): string {
  if (PLAIN_VALUE.test(value)) return value
  return '#' + createHash('sha256').update(value).digest('hex').slice(0, 32)
}

/** Limit ids as sf-strings: a handful per configuration, quoted once instead of per request. */
const QUOTED = new Map<string, string>()
function quoted (id: string): string {
  let text = QUOTED.get(id)
  if (text === undefined) {
    text = sfString(id)
    if (QUOTED.size < 10_000) QUOTED.set(id, text)
  }
  return text
}

/** RFC 8941 §3.3.3 sf-string. */
function sfString (text: string): string {
  return `"${text.replace(/[\\"]/g, '\\$&')}"`
}
