import { StoreUnavailableError } from '../errors.js'
import type { Logger } from '../log.js'
import type { GcraCheck, GcraResult, Store } from './types.js'

/**
 * Slack for floating-point noise when the emission interval is not a whole number of ms
 * (`3/s` is 333.33 ms): three requests must fill a burst of three exactly. The Lua script uses the same value.
 */
const GCRA_EPSILON = 1e-6

export interface GcraStep {
  readonly result: GcraResult
  /** The new theoretical arrival time to store when the whole call is allowed. */
  readonly newTat: number
}

/**
 * One GCRA check (DESIGN.md "Rate limits"; the Redis Lua script computes the same):
 * newTAT = max(TAT, now) + cost * T; allowed iff newTAT - now <= burst * T. Times are ms;
 * `resetMs` and `retryAfterMs` are rounded up to whole ms so waiting that long is always enough.
 */
export function evaluateGcra (tat: number | undefined, now: number, check: GcraCheck): GcraStep {
  const interval = check.emissionIntervalMs
  const limit = check.burst * interval
  const base = Math.max(tat ?? now, now)
  const cost = check.cost ?? 1
  // A lease takes every cell that conforms now (up to upTo), but never fewer than cost: too few is a refusal.
  const take = check.upTo === undefined
    ? cost
    : Math.max(cost, Math.min(check.upTo, Math.floor((limit - (base - now)) / interval + GCRA_EPSILON)))
  const newTat = base + take * interval
  const delay = newTat - now
  const lease = check.upTo !== undefined
  if (delay <= limit + GCRA_EPSILON) {
    const remaining = Math.max(0, Math.floor((limit - delay) / interval + GCRA_EPSILON))
    const result = { allowed: true, remaining, resetMs: Math.ceil(delay), retryAfterMs: 0 }
    return { result: lease ? { ...result, granted: take } : result, newTat }
  }
  const result = { allowed: false, remaining: 0, resetMs: Math.ceil(base - now), retryAfterMs: Math.ceil(delay - limit) }
  return { result: lease ? { ...result, granted: 0 } : result, newTat }
}

/** Programming mistakes in a check are RangeErrors, raised before any state is read. */
export function assertValidChecks (checks: readonly GcraCheck[]): void {
  for (const check of checks) {
    if (typeof check.key !== 'string' || check.key === '') throw new RangeError('rate limit key must be a non-empty string')
    if (!Number.isFinite(check.emissionIntervalMs) || check.emissionIntervalMs <= 0) {
      throw new RangeError(`emissionIntervalMs must be a positive number, got ${check.emissionIntervalMs}`)
    }
    if (!Number.isFinite(check.burst) || check.burst <= 0) throw new RangeError(`burst must be a positive number, got ${check.burst}`)
    const cost = check.cost ?? 1
    if (!Number.isFinite(cost) || cost < 0) throw new RangeError(`cost must be a number >= 0, got ${cost}`)
    if (check.upTo !== undefined && (!Number.isSafeInteger(check.upTo) || check.upTo < 1)) {
      throw new RangeError(`upTo must be an integer >= 1, got ${check.upTo}`)
    }
  }
}

/** A reservation limit is a whole number >= 1 (a programming mistake otherwise, raised before any state is read). */
export function assertValidLimit (limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be an integer >= 1, got ${limit}`)
}

/** TTLs are whole positive milliseconds, as Redis PX takes them. */
export function toTtlMs (ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new RangeError(`ttlMs must be a positive number, got ${ttlMs}`)
  return Math.ceil(ttlMs)
}

type Entry =
  | { kind: 'string', value: string, expiresAt: number | undefined }
  | { kind: 'hash', value: Map<string, string>, expiresAt: number | undefined }
  | { kind: 'set', value: Set<string>, expiresAt: number | undefined }

export interface MemoryStoreOptions {
  /** Kept for parity with Redis; one MemoryStore never shares its keys anyway. */
  prefix?: string
  /** Clock in ms; tests pass a fake one. Default Date.now. */
  now?: () => number
  /** How often expired keys are swept so memory stays bounded (default 1000 ms). */
  sweepIntervalMs?: number
  log?: Logger
}

/**
 * The in-process store: one instance, nothing to install, same semantics as RedisStore.
 * Expired keys vanish on read and in a periodic sweep; pub/sub reaches subscribers of this instance only.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const
  readonly prefix: string
  readonly #now: () => number
  readonly #log: Logger | undefined
  readonly #entries = new Map<string, Entry>()
  readonly #channels = new Map<string, Set<(message: string) => void>>()
  readonly #sweeper: NodeJS.Timeout
  #closed = false

  constructor (options: MemoryStoreOptions = {}) {
    this.prefix = options.prefix ?? ''
    this.#now = options.now ?? Date.now
    this.#log = options.log
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepIntervalMs ?? 1000)
    this.#sweeper.unref()
  }

  get healthy (): boolean {
    return !this.#closed
  }

  /** Keys held, expired ones not yet swept included (for tests and metrics). */
  get size (): number {
    return this.#entries.size
  }

  async get (key: string): Promise<string | null> {
    const entry = this.#read(key, 'string')
    return entry ? entry.value : null
  }

  async set (key: string, value: string, ttlMs?: number): Promise<void> {
    this.#open()
    const expiresAt = ttlMs === undefined ? undefined : this.#now() + toTtlMs(ttlMs)
    this.#entries.set(key, { kind: 'string', value, expiresAt })
  }

  async setIfAbsent (key: string, value: string, ttlMs: number): Promise<boolean> {
    this.#open()
    const ttl = toTtlMs(ttlMs)
    if (this.#live(key)) return false
    this.#entries.set(key, { kind: 'string', value, expiresAt: this.#now() + ttl })
    return true
  }

  async delete (key: string): Promise<void> {
    this.#open()
    this.#entries.delete(key)
  }

  async renewOrReleaseIfHeld (key: string, owner: string, ttlMs: number): Promise<boolean> {
    this.#open()
    const entry = this.#live(key)
    if (entry === undefined || entry.kind !== 'string' || entry.value !== owner) return false
    if (ttlMs === 0) this.#entries.delete(key)
    else this.#entries.set(key, { kind: 'string', value: owner, expiresAt: this.#now() + toTtlMs(ttlMs) })
    return true
  }

  async getHash (key: string): Promise<Record<string, string> | null> {
    const entry = this.#read(key, 'hash')
    return entry ? Object.fromEntries(entry.value) : null
  }

  /** Replaces the whole record (not a merge); an empty map deletes it. */
  async setHash (key: string, fields: Readonly<Record<string, string>>, ttlMs?: number): Promise<void> {
    this.#open()
    const expiresAt = ttlMs === undefined ? undefined : this.#now() + toTtlMs(ttlMs)
    const value = new Map(Object.entries(fields))
    if (value.size === 0) this.#entries.delete(key)
    else this.#entries.set(key, { kind: 'hash', value, expiresAt })
  }

  async addToSet (key: string, member: string): Promise<void> {
    const entry = this.#read(key, 'set')
    if (entry) entry.value.add(member)
    else this.#entries.set(key, { kind: 'set', value: new Set([member]), expiresAt: undefined })
  }

  async removeFromSet (key: string, member: string): Promise<void> {
    const entry = this.#read(key, 'set')
    if (!entry) return
    entry.value.delete(member)
    if (entry.value.size === 0) this.#entries.delete(key) // as Redis: an empty set does not exist
  }

  async members (key: string): Promise<string[]> {
    const entry = this.#read(key, 'set')
    return entry ? [...entry.value] : []
  }

  async increment (key: string, windowMs: number): Promise<{ count: number, resetMs: number }> {
    const window = toTtlMs(windowMs)
    const entry = this.#read(key, 'string')
    const now = this.#now()
    if (!entry || entry.expiresAt === undefined) {
      const count = entry ? toCount(entry.value) + 1 : 1
      this.#entries.set(key, { kind: 'string', value: String(count), expiresAt: now + window })
      return { count, resetMs: window }
    }
    const count = toCount(entry.value) + 1
    entry.value = String(count)
    return { count, resetMs: entry.expiresAt - now }
  }

  async reserve (key: string, limit: number, windowMs: number): Promise<{ granted: boolean, count: number, resetMs: number }> {
    assertValidLimit(limit)
    const window = toTtlMs(windowMs)
    const entry = this.#read(key, 'string')
    const now = this.#now()
    const count = entry ? toCount(entry.value) : 0
    if (entry && count >= limit) {
      // As the Lua script: a counter left without expiry gets one rather than locking out for ever.
      if (entry.expiresAt === undefined) entry.expiresAt = now + window
      return { granted: false, count, resetMs: entry.expiresAt - now }
    }
    if (!entry || entry.expiresAt === undefined) {
      this.#entries.set(key, { kind: 'string', value: String(count + 1), expiresAt: now + window })
      return { granted: true, count: count + 1, resetMs: window }
    }
    entry.value = String(count + 1)
    return { granted: true, count: count + 1, resetMs: entry.expiresAt - now }
  }

  async release (key: string): Promise<void> {
    const entry = this.#read(key, 'string')
    if (!entry) return
    const count = toCount(entry.value)
    if (count <= 1) this.#entries.delete(key)
    else entry.value = String(count - 1)
  }

  async rateLimit (checks: readonly GcraCheck[]): Promise<GcraResult[]> {
    this.#open()
    assertValidChecks(checks)
    const now = this.#now()
    const steps = checks.map((check) => {
      const stored = this.#read(check.key, 'string')
      return evaluateGcra(stored ? Number(stored.value) : undefined, now, check)
    })
    // All or nothing: a request refused by any limit costs nothing in the others.
    if (steps.every((step) => step.result.allowed)) {
      checks.forEach((check, i) => {
        const ttl = Math.ceil(steps[i]!.newTat - now)
        if (ttl > 0) this.#entries.set(check.key, { kind: 'string', value: String(steps[i]!.newTat), expiresAt: now + ttl })
        else this.#entries.delete(check.key)
      })
    }
    return steps.map((step) => step.result)
  }

  async publish (channel: string, message: string): Promise<void> {
    this.#open()
    const handlers = this.#channels.get(channel)
    if (!handlers) return
    // Snapshot now: a handler added after publish does not get this message, as with Redis.
    for (const handler of [...handlers]) {
      setImmediate(() => {
        if (!this.#channels.get(channel)?.has(handler)) return
        try {
          handler(message)
        } catch (err) {
          this.#log?.error({ err, channel }, 'store subscriber failed')
        }
      })
    }
  }

  subscribe (channel: string, handler: (message: string) => void): () => void {
    this.#open()
    // Wrap so the same function subscribed twice gets two deliveries and two independent unsubscribes.
    const entry = (message: string) => handler(message)
    let handlers = this.#channels.get(channel)
    if (!handlers) this.#channels.set(channel, handlers = new Set())
    handlers.add(entry)
    return () => {
      const current = this.#channels.get(channel)
      if (!current) return
      current.delete(entry)
      if (current.size === 0) this.#channels.delete(channel)
    }
  }

  async ping (): Promise<void> {
    this.#open()
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#sweeper)
    this.#channels.clear()
    this.#entries.clear()
  }

  #open (): void {
    if (this.#closed) throw new StoreUnavailableError('store is closed')
  }

  /** The entry if it exists, has not expired and has this kind; a different kind is Redis's WRONGTYPE. */
  #read<K extends Entry['kind']> (key: string, kind: K): Extract<Entry, { kind: K }> | undefined {
    this.#open()
    const entry = this.#live(key)
    if (!entry) return undefined
    if (entry.kind !== kind) {
      throw new StoreUnavailableError(`store key holds a ${entry.kind}, not a ${kind}`,
        { cause: new TypeError('WRONGTYPE Operation against a key holding the wrong kind of value') })
    }
    return entry as Extract<Entry, { kind: K }>
  }

  #live (key: string): Entry | undefined {
    const entry = this.#entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAt !== undefined && entry.expiresAt <= this.#now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry
  }

  #sweep (): void {
    const now = this.#now()
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= now) this.#entries.delete(key)
    }
  }
}

function toCount (value: string): number {
  const count = Number(value)
  if (!Number.isSafeInteger(count)) {
    throw new StoreUnavailableError('store counter holds a non-integer value',
      { cause: new TypeError('ERR value is not an integer or out of range') })
  }
  return count
}
